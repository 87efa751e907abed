//! Confidence that means what it says: the fusion's weights fitted by maximum likelihood on
//! validation entries (a conditional logit over the candidates: concave, solved by Newton's
//! method), a map of the top answer's confidence fitted on the same entries, and the measures
//! of calibration `eval` reports: expected calibration error, the reliability bins behind it,
//! and accuracy against coverage when low-confidence answers abstain.

use rayon::prelude::*;
use std::ops::Range;

/// The weights w maximizing the mean log-probability of the true candidates, where candidate j
/// of query q has probability softmax_j(w . features[q][j]). `features[q]` holds one row of `F`
/// features per candidate; `truth[q]` is the range of its true candidates' rows (one row for a
/// text of a leaf; the leaves under a text's code otherwise: any of them codes it right). A
/// feature not `kept` keeps weight 0: the fit of the others alone, without copying the features
/// (`eval`'s ablations of ICD-10-CM's 574 texts x 36,355 leaves were 0.5 GB a copy).
/// Newton's method from `start` with a step halved until the likelihood rises. With one true
/// row per query the problem is concave and this finds its maximum; with ranges the Hessian can
/// lose its sign away from the maximum, and a ridge then keeps each step uphill. From 0 the first
/// steps overshoot by orders of magnitude and are halved pass after pass: a start near the
/// answer (an ablation's: the full fit's weights) saves most of a fit's passes over the rows.
pub fn fit_logit<const F: usize>(
    features: &[Vec<[f64; F]>],
    truth: &[Range<usize>],
    start: [f64; F],
    kept: [bool; F],
) -> [f64; F] {
    let mut w: [f64; F] = std::array::from_fn(|i| if kept[i] { start[i] } else { 0.0 });
    let mut current = log_likelihood(features, truth, &w);
    for _ in 0..100 {
        let (mut grad, mut hess) = derivatives(features, truth, &w);
        // A feature left out: no slope, and a row of the identity, so that its step is 0.
        for i in (0..F).filter(|&i| !kept[i]) {
            grad[i] = 0.0;
            hess.iter_mut().for_each(|row| row[i] = 0.0);
            hess[i] = [0.0; F];
            hess[i][i] = 1.0;
        }
        let step = uphill(hess, grad);
        let mut scale = 1.0;
        let improved = loop {
            let trial: [f64; F] = std::array::from_fn(|i| w[i] + scale * step[i]);
            let value = log_likelihood(features, truth, &trial);
            if value > current {
                break Some((trial, value));
            }
            scale /= 2.0;
            if scale < 1e-6 {
                break None;
            }
        };
        match improved {
            Some((trial, value)) if value - current > 1e-10 => {
                w = trial;
                current = value;
            }
            Some((trial, _)) => return trial,
            None => return w,
        }
    }
    w
}

/// The position of the largest of `p` (the last of equals), None when empty.
fn top(p: &[f64]) -> Option<usize> {
    (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b]))
}

/// Under weights `w`, each query's top candidate: its probability, and whether it is among the
/// query's `truth`.
pub fn top_answers<const F: usize>(
    features: &[Vec<[f64; F]>],
    truth: &[Range<usize>],
    w: &[f64; F],
) -> (Vec<f64>, Vec<bool>) {
    features
        .par_iter()
        .zip(truth)
        .map(|(rows, truth)| {
            let p = probabilities(rows, w);
            top(&p).map_or((0.0, false), |best| (p[best], truth.contains(&best)))
        })
        .unzip()
}

/// The map [a, b] of a top answer's probability c to sigma(a logit(c) + b) that best predicts
/// whether it is right (a logistic regression on logit(c), fitted by [`fit_logit`] as a choice
/// between "right", [logit c, 1], and "wrong", [0, 0]). The likelihood of the fusion's weights
/// spreads one scale over tens of thousands of candidates: on ICD-10-CM its top answers were
/// right 16 % of the time at a confidence of 0.05 and 59 % at 0.75, on the very entries it was
/// fitted on. A monotone map keeps every ranking.
pub fn fit_top(confidence: &[f64], correct: &[bool]) -> [f64; 2] {
    let rows: Vec<Vec<[f64; 2]>> = confidence.iter().map(|&c| vec![[logit(c), 1.0], [0.0, 0.0]]).collect();
    let truth: Vec<Range<usize>> = correct.iter().map(|&r| if r { 0..1 } else { 1..2 }).collect();
    fit_logit(&rows, &truth, [0.0; 2], [true; 2])
}

/// sigma(a logit(c) + b): the confidence under a map of [`fit_top`].
pub fn recalibrated(c: f64, [a, b]: [f64; 2]) -> f64 {
    1.0 / (1.0 + (-(a * logit(c) + b)).exp())
}

/// Gives the top candidate of the distribution `p` its mapped confidence and the others the
/// rest, in their proportions: still a distribution, in the same order (another candidate is
/// held at most level with the top, where near-ties and a top lowered below 1/2 would pass it).
/// Returns the top's position (None when `p` is empty).
pub fn with_top(p: &mut [f64], map: [f64; 2]) -> Option<usize> {
    let best = top(p)?;
    let (old, new) = (p[best], recalibrated(p[best], map));
    let scale = if old < 1.0 { (1.0 - new) / (1.0 - old) } else { 0.0 };
    for q in p.iter_mut() {
        *q = (*q * scale).min(new);
    }
    p[best] = new;
    Some(best)
}

fn logit(c: f64) -> f64 {
    let c = c.clamp(1e-12, 1.0 - 1e-12);
    (c / (1.0 - c)).ln()
}

/// The Newton step for the negated Hessian `hess`, with a ridge added until it points uphill.
fn uphill<const F: usize>(hess: [[f64; F]; F], grad: [f64; F]) -> [f64; F] {
    let mut ridge = 0.0;
    loop {
        let mut a = hess;
        (0..F).for_each(|i| a[i][i] += ridge);
        let step = solve(a, grad);
        if dot(&step, &grad) > 0.0 || ridge > 1e12 {
            return step;
        }
        ridge = (ridge * 10.0).max(1e-6);
    }
}

/// softmax over candidates of w . features.
pub fn probabilities<const F: usize>(rows: &[[f64; F]], w: &[f64; F]) -> Vec<f64> {
    softmax(rows.iter().map(|f| dot(f, w)).collect())
}

/// The probabilities of logits, computed in their place.
pub fn softmax(mut logits: Vec<f64>) -> Vec<f64> {
    let max = logits.iter().cloned().fold(f64::MIN, f64::max);
    logits.iter_mut().for_each(|l| *l = (*l - max).exp());
    let sum: f64 = logits.iter().sum();
    logits.iter_mut().for_each(|e| *e /= sum);
    logits
}

/// w . features: a candidate's logit.
pub fn dot<const F: usize>(a: &[f64; F], b: &[f64; F]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Per query in parallel, summed in query order: the same sum on any number of threads.
fn log_likelihood<const F: usize>(features: &[Vec<[f64; F]>], truth: &[Range<usize>], w: &[f64; F]) -> f64 {
    let each: Vec<f64> = features
        .par_iter()
        .zip(truth)
        .map(|(rows, t)| probabilities(rows, w)[t.clone()].iter().sum::<f64>().max(1e-300).ln())
        .collect();
    each.iter().sum::<f64>() / features.len().max(1) as f64
}

/// The mean and second moments of the features under the weights `p` (normalized over them),
/// in one pass over the rows (a pass per moment was most of a fit's time on ICD-10-CM's 36,355
/// leaves); each sum adds in row order, as a pass of its own would.
fn moments<const F: usize>(rows: &[[f64; F]], p: &[f64]) -> ([f64; F], [[f64; F]; F]) {
    let (mut total, mut mean, mut second) = (0.0, [0.0; F], [[0.0; F]; F]);
    for (f, p) in rows.iter().zip(p) {
        total += p;
        for i in 0..F {
            mean[i] += p * f[i];
            for j in 0..F {
                second[i][j] += p * f[i] * f[j];
            }
        }
    }
    let total: f64 = f64::max(total, 1e-300);
    mean.iter_mut().for_each(|m| *m /= total);
    second.iter_mut().flatten().for_each(|s| *s /= total);
    (mean, second)
}

/// Gradient and negated Hessian of the mean log-likelihood: per query, the features' mean over
/// the true candidates less their mean over all, and their covariance over all less that over
/// the true ones (positive definite with one true candidate). Queries' moments in parallel,
/// summed in query order.
fn derivatives<const F: usize>(
    features: &[Vec<[f64; F]>],
    truth: &[Range<usize>],
    w: &[f64; F],
) -> ([f64; F], [[f64; F]; F]) {
    let each: Vec<_> = features
        .par_iter()
        .zip(truth)
        .map(|(rows, t)| {
            let p = probabilities(rows, w);
            (moments(rows, &p), moments(&rows[t.clone()], &p[t.clone()]))
        })
        .collect();
    let mut grad = [0.0; F];
    let mut hess = [[0.0; F]; F];
    for ((mean, second), (mean_t, second_t)) in each {
        for i in 0..F {
            grad[i] += mean_t[i] - mean[i];
            for j in 0..F {
                hess[i][j] += (second[i][j] - mean[i] * mean[j]) - (second_t[i][j] - mean_t[i] * mean_t[j]);
            }
        }
    }
    let n = features.len().max(1) as f64;
    for (i, (g, row)) in grad.iter_mut().zip(hess.iter_mut()).enumerate() {
        *g /= n;
        for x in row.iter_mut() {
            *x /= n;
        }
        // A little ridge keeps the system solvable when a feature is constant.
        row[i] += 1e-9;
    }
    (grad, hess)
}

/// x with a x = b, by Gaussian elimination with partial pivoting.
fn solve<const F: usize>(mut a: [[f64; F]; F], mut b: [f64; F]) -> [f64; F] {
    for col in 0..F {
        let pivot = (col..F)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap_or(col);
        a.swap(col, pivot);
        b.swap(col, pivot);
        if a[col][col].abs() < 1e-300 {
            continue;
        }
        for row in col + 1..F {
            let f = a[row][col] / a[col][col];
            let pivot_row = a[col];
            for (x, p) in a[row][col..].iter_mut().zip(&pivot_row[col..]) {
                *x -= f * p;
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = [0.0; F];
    for row in (0..F).rev() {
        let rest: f64 = (row + 1..F).map(|k| a[row][k] * x[k]).sum();
        x[row] = if a[row][row].abs() < 1e-300 {
            0.0
        } else {
            (b[row] - rest) / a[row][row]
        };
    }
    x
}

/// One bin of a reliability diagram: answers whose confidence fell in [low, high).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Bin {
    pub low: f64,
    pub high: f64,
    pub count: usize,
    pub mean_confidence: f64,
    pub accuracy: f64,
}

/// `bins` equal-width bins of confidence over [0, 1] (1.0 falls in the last).
pub fn reliability(confidence: &[f64], correct: &[bool], bins: usize) -> Vec<Bin> {
    let mut out: Vec<Bin> = (0..bins)
        .map(|b| Bin {
            low: b as f64 / bins as f64,
            high: (b + 1) as f64 / bins as f64,
            count: 0,
            mean_confidence: 0.0,
            accuracy: 0.0,
        })
        .collect();
    for (&c, &ok) in confidence.iter().zip(correct) {
        let b = ((c * bins as f64) as usize).min(bins - 1);
        out[b].count += 1;
        out[b].mean_confidence += c;
        out[b].accuracy += ok as u8 as f64;
    }
    for b in &mut out {
        if b.count > 0 {
            b.mean_confidence /= b.count as f64;
            b.accuracy /= b.count as f64;
        }
    }
    out
}

/// Expected calibration error: the count-weighted mean of |accuracy - confidence| over the bins.
pub fn expected_calibration_error(confidence: &[f64], correct: &[bool], bins: usize) -> f64 {
    let n = confidence.len().max(1) as f64;
    reliability(confidence, correct, bins)
        .iter()
        .map(|b| b.count as f64 / n * (b.accuracy - b.mean_confidence).abs())
        .sum()
}

/// Answering only when confidence >= threshold: the share answered and their accuracy (1 when
/// none is answered).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Coverage {
    pub threshold: f64,
    pub coverage: f64,
    pub accuracy: f64,
}

pub fn coverage_curve(confidence: &[f64], correct: &[bool], thresholds: &[f64]) -> Vec<Coverage> {
    thresholds
        .iter()
        .map(|&t| {
            let answered: Vec<bool> = confidence
                .iter()
                .zip(correct)
                .filter(|(c, _)| **c >= t)
                .map(|(_, ok)| *ok)
                .collect();
            let right = answered.iter().filter(|ok| **ok).count();
            Coverage {
                threshold: t,
                coverage: answered.len() as f64 / confidence.len().max(1) as f64,
                accuracy: if answered.is_empty() {
                    1.0
                } else {
                    right as f64 / answered.len() as f64
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Outcomes drawn with probability sigma(0.6 logit(c) + 0.3): the map found is that one.
    #[test]
    fn the_top_map_recovers_a_known_distortion() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let c: Vec<f64> = (0..40_000).map(|_| rng.random_range(0.01..0.99)).collect();
        let right: Vec<bool> = c
            .iter()
            .map(|&c| rng.random::<f64>() < recalibrated(c, [0.6, 0.3]))
            .collect();
        let [a, b] = fit_top(&c, &right);
        assert!((a - 0.6).abs() < 0.03 && (b - 0.3).abs() < 0.03, "{a} {b}");
        assert!((recalibrated(0.5, [1.0, 0.0]) - 0.5).abs() < 1e-12);
        assert!((recalibrated(0.9, [1.0, 0.0]) - 0.9).abs() < 1e-12);
        // The recalibrated confidences are calibrated; the raw ones are not.
        let fixed: Vec<f64> = c.iter().map(|&c| recalibrated(c, [a, b])).collect();
        assert!(expected_calibration_error(&fixed, &right, 10) < 0.02);
        assert!(expected_calibration_error(&c, &right, 10) > 0.05);
        // A distribution keeps its sum and its order; a near-tie is held level with the top.
        let mut p = vec![0.7, 0.2, 0.1];
        assert_eq!(with_top(&mut p, [0.6, 0.3]), Some(0));
        let top = recalibrated(0.7, [0.6, 0.3]);
        assert!((p[0] - top).abs() < 1e-12 && (p[1] / p[2] - 2.0).abs() < 1e-9);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let mut p = vec![0.5, 0.49, 0.01];
        with_top(&mut p, [1.0, -1.0]);
        assert!(p[1] <= p[0] && p[0] < 0.5, "{p:?}");
    }

    /// Outcomes drawn with known probabilities: those probabilities are calibrated (ECE at the
    /// level of sampling noise), the same made overconfident are not.
    #[test]
    fn known_probabilities_are_calibrated_and_distorted_ones_are_not() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let p: Vec<f64> = (0..20_000).map(|_| rng.random::<f64>()).collect();
        let correct: Vec<bool> = p.iter().map(|&p| rng.random::<f64>() < p).collect();
        let ece = expected_calibration_error(&p, &correct, 10);
        assert!(ece < 0.015, "calibrated: {ece}");
        let overconfident: Vec<f64> = p.iter().map(|p| p.sqrt()).collect();
        let ece = expected_calibration_error(&overconfident, &correct, 10);
        assert!(ece > 0.1, "overconfident: {ece}");
        // Each bin's accuracy is near its mean confidence.
        for b in reliability(&p, &correct, 10) {
            assert!((b.accuracy - b.mean_confidence).abs() < 0.04, "{b:?}");
        }
    }

    /// One candidate drawn with probabilities `p` (the last where rounding leaves a gap).
    fn draw(rng: &mut ChaCha8Rng, p: &[f64]) -> usize {
        let (mut acc, u) = (0.0, rng.random::<f64>());
        p.iter()
            .position(|&x| {
                acc += x;
                u < acc
            })
            .unwrap_or(p.len() - 1)
    }

    /// `queries` texts of `candidates` candidates each, their features drawn uniformly from
    /// [-1, 1), and each text's candidate drawn from the conditional logit with weights `w`.
    fn logit_data<const F: usize>(
        rng: &mut ChaCha8Rng,
        w: &[f64; F],
        queries: usize,
        candidates: usize,
    ) -> (Vec<Vec<[f64; F]>>, Vec<usize>) {
        (0..queries)
            .map(|_| {
                let rows: Vec<[f64; F]> = (0..candidates)
                    .map(|_| std::array::from_fn(|_| rng.random::<f64>() * 2.0 - 1.0))
                    .collect();
                let pick = draw(rng, &probabilities(&rows, w));
                (rows, pick)
            })
            .unzip()
    }

    /// Data drawn from a conditional logit with known weights: the fit recovers them, and its
    /// probabilities are calibrated.
    #[test]
    fn fit_recovers_the_weights_that_generated_the_data() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let w_true = [2.0, -1.0, 0.5];
        let (features, truth) = logit_data(&mut rng, &w_true, 4000, 6);
        let ranges: Vec<Range<usize>> = truth.iter().map(|&t| t..t + 1).collect();
        let w = fit_logit(&features, &ranges, [0.0; 3], [true; 3]);
        for (got, want) in w.iter().zip(w_true) {
            assert!((got - want).abs() < 0.15, "{w:?} vs {w_true:?}");
        }
        let (conf, ok): (Vec<f64>, Vec<bool>) = features
            .iter()
            .zip(&truth)
            .map(|(rows, &t)| {
                let p = probabilities(rows, &w);
                let best = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
                (p[best], best == t)
            })
            .unzip();
        assert!(expected_calibration_error(&conf, &ok, 10) < 0.03);
    }

    /// A feature left out: weight 0, and the others' weights those of a fit on copies of the
    /// features with that column zeroed, from 0 or from another fit's weights.
    #[test]
    fn a_feature_left_out_fits_as_if_it_were_zero() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let w_true = [1.0, 2.0, -0.5];
        let (features, picks) = logit_data(&mut rng, &w_true, 1000, 5);
        let truth: Vec<Range<usize>> = picks.iter().map(|&t| t..t + 1).collect();
        let zeroed: Vec<Vec<[f64; 3]>> = features
            .iter()
            .map(|rows| rows.iter().map(|f| [f[0], 0.0, f[2]]).collect())
            .collect();
        let kept = fit_logit(&features, &truth, [0.0; 3], [true, false, true]);
        let copied = fit_logit(&zeroed, &truth, [0.0; 3], [true; 3]);
        assert_eq!(kept[1], 0.0);
        for (a, b) in kept.iter().zip(copied) {
            assert!((a - b).abs() < 1e-9, "{kept:?} vs {copied:?}");
        }
        // Without the strongest feature the fit is a different one; from the full fit's
        // weights it is the same one.
        let all = fit_logit(&features, &truth, [0.0; 3], [true; 3]);
        assert!((kept[0] - all[0]).abs() > 1e-3);
        let warm = fit_logit(&features, &truth, all, [true, false, true]);
        for (a, b) in kept.iter().zip(warm) {
            assert!((a - b).abs() < 1e-6, "{kept:?} vs {warm:?}");
        }
    }

    /// Against the likelihood itself: with ranges of true candidates, the fitted weights are
    /// where its gradient vanishes (central differences), and better than weights nearby.
    #[test]
    fn fit_with_ranges_of_true_candidates_maximizes_their_likelihood() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let w_true = [1.5, 0.5];
        let (features, picks) = logit_data(&mut rng, &w_true, 2000, 8);
        // Half the texts name the pair of candidates around their pick (a code with two leaves),
        // half the pick alone.
        let truth: Vec<Range<usize>> = picks
            .iter()
            .map(|&pick| {
                let pair = pick - pick % 2;
                if rng.random::<bool>() {
                    pair..pair + 2
                } else {
                    pick..pick + 1
                }
            })
            .collect();
        let w = fit_logit(&features, &truth, [0.0; 2], [true; 2]);
        let at = |w: [f64; 2]| log_likelihood(&features, &truth, &w);
        let h = 1e-4;
        for i in 0..2 {
            let (mut up, mut down) = (w, w);
            up[i] += h;
            down[i] -= h;
            let slope = (at(up) - at(down)) / (2.0 * h);
            assert!(slope.abs() < 1e-5, "d/dw{i} = {slope} at {w:?}");
        }
        for d in [[0.1, 0.0], [0.0, 0.1], [-0.1, 0.05]] {
            assert!(at(w) > at([w[0] + d[0], w[1] + d[1]]), "{w:?} is not a maximum");
        }
    }

    #[test]
    fn coverage_counts_answers_at_and_above_the_threshold() {
        let conf = [0.2, 0.5, 0.5, 0.9];
        let ok = [false, false, true, true];
        let c = coverage_curve(&conf, &ok, &[0.0, 0.5, 0.50001, 1.0]);
        assert_eq!((c[0].coverage, c[0].accuracy), (1.0, 0.5));
        assert_eq!((c[1].coverage, c[1].accuracy), (0.75, 2.0 / 3.0));
        assert_eq!((c[2].coverage, c[2].accuracy), (0.25, 1.0));
        assert_eq!((c[3].coverage, c[3].accuracy), (0.0, 1.0));
    }
}
