//! The Lorentz model, InfoNCE and MoE routing against independent hand computations.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use naics_trainer::model::fusion::{Moe, global_load, load_balancing_loss};
use naics_trainer::model::lorentz::{distance, distance_rows, exp_map0, inner, log_map0, pairwise, to_poincare};
use naics_trainer::train::loss::info_nce;

fn t2(rows: &[&[f32]]) -> Tensor {
    let cols = rows[0].len();
    Tensor::from_vec(rows.concat(), (rows.len(), cols), &Device::Cpu).unwrap()
}

fn v1(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn exp_map_lands_on_the_hyperboloid_at_the_right_distance() {
    for c in [1.0, 0.5, 2.0] {
        let v = Tensor::randn(0f32, 1.0, (64, 16), &Device::Cpu).unwrap();
        let x = exp_map0(&v, c).unwrap();
        // <x, x>_L = -1/c, relative to the size of x0^2.
        let x0 = v1(&x.narrow(1, 0, 1).unwrap());
        for (m, x0) in v1(&inner(&x, &x).unwrap()).iter().zip(&x0) {
            assert!((m + 1.0 / c as f32).abs() < 1e-5 * x0 * x0, "c={c}: <x,x> = {m}");
        }
        // d(origin, exp0(v)) = |v|, and log0 inverts exp0.
        let origin = exp_map0(&v.zeros_like().unwrap(), c).unwrap();
        let d = v1(&distance(&origin, &x, c).unwrap());
        let norms = v1(&v.sqr().unwrap().sum(1).unwrap().sqrt().unwrap());
        for (d, n) in d.iter().zip(&norms) {
            assert!((d - n).abs() < 1e-4 * n.max(1.0), "c={c}: d = {d}, |v| = {n}");
        }
        let back = log_map0(&x, c).unwrap();
        let err = v1(&(back - &v).unwrap().abs().unwrap())
            .into_iter()
            .fold(0f32, f32::max);
        assert!(err < 1e-4, "c={c}: log0(exp0(v)) off by {err}");
    }
    // Hand value: v = (1, 0), c = 1 -> x = (cosh 1, sinh 1, 0).
    let x = v1(&exp_map0(&t2(&[&[1.0, 0.0]]), 1.0).unwrap());
    assert!((x[0] - 1.0f32.cosh()).abs() < 1e-6 && (x[1] - 1.0f32.sinh()).abs() < 1e-6 && x[2] == 0.0);
    // Poincare ball: |p| < 1.
    let p = to_poincare(
        &exp_map0(&Tensor::randn(0f32, 3.0, (32, 4), &Device::Cpu).unwrap(), 1.0).unwrap(),
        1.0,
    )
    .unwrap();
    assert!(v1(&p.sqr().unwrap().sum(1).unwrap()).iter().all(|r| *r < 1.0));
}

#[test]
fn distance_is_a_metric_and_stable() {
    let c = 1.0;
    let pts = exp_map0(&Tensor::randn(0f32, 1.5, (24, 8), &Device::Cpu).unwrap(), c).unwrap();
    let n = 24;
    let a = pts
        .unsqueeze(1)
        .unwrap()
        .broadcast_as((n, n, 9))
        .unwrap()
        .contiguous()
        .unwrap();
    let b = pts
        .unsqueeze(0)
        .unwrap()
        .broadcast_as((n, n, 9))
        .unwrap()
        .contiguous()
        .unwrap();
    let d: Vec<Vec<f32>> = distance(&a, &b, c).unwrap().to_vec2().unwrap();
    for i in 0..n {
        assert!(d[i][i] < 1e-5, "d(x, x) = {}", d[i][i]);
        for j in 0..n {
            assert!((d[i][j] - d[j][i]).abs() < 1e-4, "symmetry");
            for k in 0..n {
                assert!(
                    d[i][k] <= d[i][j] + d[j][k] + 1e-3,
                    "triangle inequality at {i} {j} {k}"
                );
            }
        }
    }
    // Hand value: two points on one geodesic through the origin, t = 0.3 and t = -1.2: d = 1.5.
    let x = exp_map0(&t2(&[&[0.3, 0.0], &[-1.2, 0.0]]), 1.0).unwrap();
    let d = v1(&distance(&x.narrow(0, 0, 1).unwrap(), &x.narrow(0, 1, 1).unwrap(), 1.0).unwrap());
    assert!((d[0] - 1.5).abs() < 1e-5, "{}", d[0]);
    // No NaN gradient at u = v.
    let v = candle_core::Var::from_tensor(&t2(&[&[0.2, -0.4, 0.1]])).unwrap();
    let x = exp_map0(v.as_tensor(), 1.0).unwrap();
    let grads = distance(&x, &x, 1.0).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(v1(grads.get(&v).unwrap()).iter().all(|g| g.is_finite()));
}

#[test]
fn info_nce_by_hand() {
    // Distances [1, 2, 3], T = 0.5: logits [-2, -4, -6];
    // loss = -log(e^-2 / (e^-2 + e^-4 + e^-6)) = log(1 + e^-2 + e^-4) = 0.14293...
    let d = t2(&[&[1.0, 2.0, 3.0]]);
    let loss = info_nce(&d, 0.5).unwrap().to_scalar::<f32>().unwrap();
    let expected = (1.0f64 + (-2.0f64).exp() + (-4.0f64).exp()).ln() as f32;
    assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");
    // Mean over rows; a row whose positive is farthest costs more.
    let two = info_nce(&t2(&[&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]]), 0.5)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let worse = (1.0f64 + 4.0f64.exp() + 2.0f64.exp()).ln() as f32;
    assert!((two - (expected + worse) / 2.0).abs() < 1e-5);
}

fn tiny_moe(dim: usize) -> (Moe, VarMap) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    (Moe::new(vb, dim, 16, 4, 2, 0.1).unwrap(), varmap)
}

#[test]
fn moe_routes_each_row_through_its_top_two_only() {
    let (moe, varmap) = tiny_moe(6);
    let x = Tensor::randn(0f32, 1.0, (10, 6), &Device::Cpu).unwrap();
    let out = moe.forward(&x, false).unwrap();
    assert_eq!(out.output.dims(), &[10, 6]);
    // Routing: the two largest gate probabilities, ties to the lower index.
    assert_eq!(moe.route(&[vec![0.1, 0.4, 0.1, 0.4]]).unwrap(), vec![vec![1, 3]]);
    assert_eq!(moe.route(&[vec![0.7, 0.1, 0.15, 0.05]]).unwrap(), vec![vec![0, 2]]);
    // Each row's gradient reaches exactly its two experts: perturbing one row's input changes
    // only the output of that row, and experts it did not pick get no gradient from it.
    let row = x.narrow(0, 3, 1).unwrap();
    let single = moe.forward(&row, false).unwrap();
    let picked: Vec<usize> = single
        .load
        .iter()
        .enumerate()
        .filter(|(_, l)| **l > 0.0)
        .map(|(e, _)| e)
        .collect();
    assert_eq!(picked.len(), 2);
    let grads = single.output.sum_all().unwrap().backward().unwrap();
    let data = varmap.data().lock().unwrap();
    for e in 0..4 {
        let w = data.get(&format!("expert{e}.up.weight")).unwrap();
        assert_eq!(grads.get(w).is_some(), picked.contains(&e), "expert {e}");
    }
    // The gate learns too: its gradient flows through the renormalized weights.
    let gate = grads.get(data.get("gate.weight").unwrap()).expect("a gate gradient");
    assert!(gate.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0);
    // The output row equals the renormalized mixture of its two experts, computed by hand.
    assert!(
        v1(&(single.output - out.output.narrow(0, 3, 1).unwrap())
            .unwrap()
            .abs()
            .unwrap())
        .iter()
        .all(|d| *d < 1e-5)
    );
    // Load sums to top_k.
    assert!((out.load.iter().sum::<f32>() - 2.0).abs() < 1e-6);
}

/// The routing bias: `balance` moves it by the rate toward the experts below the mean load; it
/// changes which experts are picked, not their weights; it is saved and loaded with the weights;
/// and repeated steps spread a gate that sends every row to two experts over all four.
#[test]
fn routing_bias_balances_a_collapsed_gate() {
    let (moe, varmap) = tiny_moe(6);
    let var = |name: &str| varmap.data().lock().unwrap().get(name).unwrap().clone();
    // A collapsed gate: experts 0 and 1 near 0.5 for every row, 2 and 3 near 0.
    let weight = var("gate.weight");
    weight.set(&(weight.as_tensor() * 0.1).unwrap()).unwrap();
    var("gate.bias")
        .set(&Tensor::new(&[10f32, 10.0, 0.0, 0.0], &Device::Cpu).unwrap())
        .unwrap();
    let x = Tensor::randn(0f32, 1.0, (256, 6), &Device::Cpu).unwrap();
    let first = moe.forward(&x, false).unwrap();
    assert_eq!(first.load, vec![1.0, 1.0, 0.0, 0.0]);
    moe.balance(&first.load, 0.25).unwrap();
    assert_eq!(moe.route_bias().unwrap(), vec![-0.25, -0.25, 0.25, 0.25]);
    // Scores 0.05, 0.05, 0.45, 0.45: the bias decides the choice.
    assert_eq!(moe.route(&[vec![0.3, 0.3, 0.2, 0.2]]).unwrap(), vec![vec![2, 3]]);
    // Rate 0 changes nothing; a balanced load changes nothing.
    moe.balance(&[1.0, 1.0, 0.0, 0.0], 0.0).unwrap();
    moe.balance(&[0.5; 4], 0.1).unwrap();
    assert_eq!(moe.route_bias().unwrap(), vec![-0.25, -0.25, 0.25, 0.25]);
    // Saved and loaded with the weights.
    let file = tempfile::NamedTempFile::new().unwrap();
    varmap.save(file.path()).unwrap();
    let (again, mut varmap2) = tiny_moe(6);
    varmap2.load(file.path()).unwrap();
    assert_eq!(again.route_bias().unwrap(), vec![-0.25, -0.25, 0.25, 0.25]);
    // From scratch, small steps: within 200 steps every expert carries 10-40 % of routed rows.
    var("route_bias")
        .set(&Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap())
        .unwrap();
    let mut share = vec![];
    for _ in 0..200 {
        let out = moe.forward(&x, false).unwrap();
        moe.balance(&out.load, 0.01).unwrap();
        share = naics_trainer::model::fusion::shares(&out.load);
    }
    assert!(share.iter().all(|s| (0.10..=0.40).contains(s)), "{share:?}");
}

#[test]
fn load_balancing_loss_by_hand_and_over_the_global_batch() {
    let (moe, _) = tiny_moe(6);
    let a = moe
        .forward(&Tensor::randn(0f32, 1.0, (7, 6), &Device::Cpu).unwrap(), false)
        .unwrap();
    let b = moe
        .forward(&Tensor::randn(0f32, 1.0, (3, 6), &Device::Cpu).unwrap(), false)
        .unwrap();
    // By hand: E x sum_e (row-weighted mean importance) x (row-weighted mean load).
    let (ia, ib) = (v1(&a.importance), v1(&b.importance));
    let mut expected = 0.0;
    for e in 0..4 {
        let imp = (7.0 * ia[e] + 3.0 * ib[e]) / 10.0;
        let load = (7.0 * a.load[e] + 3.0 * b.load[e]) / 10.0;
        expected += imp * load;
    }
    expected *= 4.0;
    let got = load_balancing_loss(&[&a, &b]).unwrap().to_scalar::<f32>().unwrap();
    assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
    // Uniform gate, perfectly balanced routing: the loss is top_k.
    let uniform = naics_trainer::model::fusion::MoeOutput {
        output: Tensor::zeros((4, 6), DType::F32, &Device::Cpu).unwrap(),
        importance: Tensor::new(&[0.25f32, 0.25, 0.25, 0.25], &Device::Cpu).unwrap(),
        load: vec![0.5; 4],
        rows: 4,
    };
    assert!((load_balancing_loss(&[&uniform]).unwrap().to_scalar::<f32>().unwrap() - 2.0).abs() < 1e-6);
}

/// Expert loads over the global batch: each forward's load weighted by its rows, by hand.
#[test]
fn expert_loads_are_pooled_over_the_global_batch() {
    let part = |load: Vec<f32>, rows: usize| naics_trainer::model::fusion::MoeOutput {
        output: Tensor::zeros((rows, 6), DType::F32, &Device::Cpu).unwrap(),
        importance: Tensor::new(&[0.25f32; 4], &Device::Cpu).unwrap(),
        load,
        rows,
    };
    let a = part(vec![1.0, 1.0, 0.0, 0.0], 30);
    let b = part(vec![0.0, 0.0, 1.0, 1.0], 10);
    let pooled = global_load(&[&a, &b]);
    for (got, want) in pooled.iter().zip([0.75, 0.75, 0.25, 0.25]) {
        assert!((got - want).abs() < 1e-6, "{pooled:?}");
    }
    // Not the mean of the parts' loads (0.5 each): rows count.
    assert!((pooled.iter().sum::<f32>() - 2.0).abs() < 1e-6);
}

#[test]
fn pairwise_matches_the_broadcast_distance() {
    let c = 0.7;
    let u = exp_map0(&Tensor::randn(0f32, 1.0, (5, 6), &Device::Cpu).unwrap(), c).unwrap();
    let v = exp_map0(&Tensor::randn(0f32, 1.0, (7, 6), &Device::Cpu).unwrap(), c).unwrap();
    let fast = v1(&pairwise(&u, &v, c).unwrap());
    let exact = v1(&distance(&u.unsqueeze(1).unwrap(), &v.unsqueeze(0).unwrap(), c).unwrap());
    assert_eq!(fast.len(), 35);
    for (f, e) in fast.iter().zip(&exact) {
        assert!((f - e).abs() < 1e-3 * e.max(1.0), "pairwise {f} vs distance {e}");
    }
}

/// The pair-by-pair distances (the coder's, eval's and validation's) against the broadcast
/// formula, on random points (dimension 21: eight-lane blocks and a remainder; 39 queries and
/// 600 targets: a block of 32 queries and one of 7, in groups of four, then two and one, and
/// tiles of targets with a remainder), and exactly 0 at d(x, x) as the clamp makes it.
#[test]
fn distance_rows_match_the_broadcast_distance() {
    let c = 0.7;
    let u = exp_map0(&Tensor::randn(0f32, 1.0, (39, 20), &Device::Cpu).unwrap(), c).unwrap();
    let v = exp_map0(&Tensor::randn(0f32, 1.0, (600, 20), &Device::Cpu).unwrap(), c).unwrap();
    let rows = distance_rows(&u, &v, c).unwrap();
    let exact = distance(&u.unsqueeze(1).unwrap(), &v.unsqueeze(0).unwrap(), c)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert_eq!((rows.len(), rows[0].len()), (39, 600));
    for (r, e) in rows.iter().flatten().zip(exact.iter().flatten()) {
        assert!((r - e).abs() <= 1e-5 * e.max(1.0), "rows {r} vs distance {e}");
    }
    let own = distance_rows(&u, &u, c).unwrap();
    for (i, row) in own.iter().enumerate() {
        assert!(row[i] < 1e-5, "d(x, x) = {}", row[i]);
    }
}
