//! The query map: a small residual network on a free text's tangent vector, `t + W2 relu(W1 [t;
//! v] + b1) + b2`, between the head's projection and the exponential map, where v is the text's
//! own encoder vector (the mean of its channel vectors, scaled to unit length times sqrt(h)).
//! Codes never go through it.
//!
//! Why: in a training step the text adapters see only the step's leaves as the other answers,
//! so siblings that differ by a word (ICD-10-CM's laterality, NAICS's industries of one group)
//! rarely compete. The map is fitted after the last stage against every leaf at once, the
//! encoder, fusion and codes' points fixed (`train::query_map`); until then W2 and b2 are zero
//! and the map is the identity, so the stages train exactly as without it. It reads the
//! encoder's vector beside the tangent because the fusion and projection narrow a text to the
//! tangent's d numbers: with v, NAICS's held-out points went from 0.76 to 0.81 top-1
//! (docs/benchmarks.md). The fitted map is the mean of a few such networks fitted apart
//! ([`QueryMap::average`]): one network of all their hidden units side by side.

use super::kernels::linear;
use candle_core::{Result, Tensor, Var};
use candle_nn::{Init, Linear, VarBuilder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Where its variables live in the model's variable map (the head's `query_map`): what the
/// seeded initialization and the stages' optimizer leave alone.
pub const VARS: &str = "head.query_map.";

pub struct QueryMap {
    /// W1 [hidden, d + h], b1, W2 [d, hidden], b2.
    vars: [Var; 4],
    /// h: the encoder's width.
    width: usize,
}

impl QueryMap {
    /// Zero weights: the identity until [`QueryMap::reset`] and fitting. `dim`: the tangent's
    /// d; `width`: the encoder's h.
    pub fn new(vb: VarBuilder, dim: usize, width: usize, hidden: usize) -> Result<Self> {
        let vars = Self::layout(dim, width, hidden)
            .map(|(name, shape)| Var::from_tensor(&vb.get_with_hints(shape, name, Init::Const(0.0))?));
        Self::of(vars, width)
    }

    /// The map of its four variables as made, the first error if one could not be.
    fn of([w1, b1, w2, b2]: [Result<Var>; 4], width: usize) -> Result<Self> {
        Ok(QueryMap {
            vars: [w1?, b1?, w2?, b2?],
            width,
        })
    }

    /// Each variable's name and shape: W1 [hidden, d + h], b1, W2 [d, hidden], b2.
    fn layout(dim: usize, width: usize, hidden: usize) -> [(&'static str, Vec<usize>); 4] {
        [
            ("up.weight", vec![hidden, dim + width]),
            ("up.bias", vec![hidden]),
            ("down.weight", vec![dim, hidden]),
            ("down.bias", vec![dim]),
        ]
    }

    /// The map of texts' tangent vectors `t` [n, d] whose channel vectors are `channels` [n, 4h].
    pub fn forward(&self, t: &Tensor, channels: &Tensor) -> Result<Tensor> {
        self.apply(t, &self.input(t, channels)?)
    }

    /// What the first layer reads, [t; v] [n, d + h]: v the mean of the four channel vectors
    /// (in `query` mode all four are the text's one vector), scaled to length sqrt(h) so that
    /// its entries are about as large as the tangent's.
    pub fn input(&self, t: &Tensor, channels: &Tensor) -> Result<Tensor> {
        let n = channels.dim(0)?;
        let v = channels.reshape((n, 4, self.width))?.mean(1)?;
        let length = v.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        let v = (v.broadcast_div(&length)? * (self.width as f64).sqrt())?;
        Tensor::cat(&[t, &v.to_dtype(t.dtype())?], 1)
    }

    /// `t + W2 relu(W1 x + b1) + b2`, x = [`QueryMap::input`].
    pub fn apply(&self, t: &Tensor, x: &Tensor) -> Result<Tensor> {
        let layer = |w: &Var, b: &Var| Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
        let [w1, b1, w2, b2] = &self.vars;
        t + linear(&layer(w2, b2), &linear(&layer(w1, b1), x)?.relu()?)?
    }

    /// Back to the identity, W1 drawn from a stream seeded by `seed` (uniform in
    /// +-1/sqrt(d + h), a Linear's default) so that fitting can start: were W1 zero too, no
    /// gradient would reach either layer.
    pub fn reset(&self, seed: u64) -> Result<()> {
        let mut stream = ChaCha8Rng::seed_from_u64(seed);
        let w1 = &self.vars[0];
        let bound = 1.0 / (w1.dim(1)? as f32).sqrt();
        let values: Vec<f32> = (0..w1.elem_count())
            .map(|_| stream.random_range(-bound..bound))
            .collect();
        w1.set(&Tensor::from_vec(values, w1.dims(), w1.device())?.to_dtype(w1.dtype())?)?;
        for var in &self.vars[1..] {
            var.set(&var.zeros_like()?)?;
        }
        Ok(())
    }

    /// Whether it has been fitted: W2 or b2 not zero (else its output is its input exactly).
    pub fn fitted(&self) -> Result<bool> {
        let nonzero = |var: &Var| -> Result<bool> {
            let largest = var.as_tensor().abs()?.flatten_all()?.max(0)?;
            Ok(largest.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()? > 0.0)
        };
        Ok(nonzero(&self.vars[2])? || nonzero(&self.vars[3])?)
    }

    /// Its variables, for the optimizer that fits it.
    pub fn vars(&self) -> Vec<Var> {
        self.vars.to_vec()
    }

    /// A map of the same input and output with `hidden` units of its own, outside any variable
    /// map: one member to fit apart and then [`QueryMap::average`].
    pub fn member(&self, hidden: usize) -> Result<QueryMap> {
        let (dim, w1) = (self.vars[3].dim(0)?, &self.vars[0]);
        let vars = Self::layout(dim, self.width, hidden).map(|(_, shape)| Var::zeros(shape, w1.dtype(), w1.device()));
        Self::of(vars, self.width)
    }

    /// Becomes the mean of `members`' maps: t + (1/k) sum_i (W2_i relu(W1_i x + b1_i) + b2_i)
    /// is one network whose hidden units are all of theirs, W2 their side by side over k and b2
    /// their mean. Their hidden layers must fill this one's.
    pub fn average(&self, members: &[QueryMap]) -> Result<()> {
        let k = members.len() as f64;
        let part = |i: usize| -> Vec<Tensor> { members.iter().map(|m| m.vars[i].as_tensor().clone()).collect() };
        self.vars[0].set(&Tensor::cat(&part(0), 0)?)?;
        self.vars[1].set(&Tensor::cat(&part(1), 0)?)?;
        self.vars[2].set(&(Tensor::cat(&part(2), 1)? / k)?)?;
        self.vars[3].set(&(Tensor::stack(&part(3), 0)?.sum(0)? / k)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    fn map(dim: usize, hidden: usize) -> (VarMap, QueryMap) {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let map = QueryMap::new(vb, dim, 1, hidden).unwrap();
        (varmap, map)
    }

    fn rows(t: &Tensor) -> Vec<Vec<f32>> {
        t.to_vec2().unwrap()
    }

    /// The identity as built and after a reset (W1 drawn, deterministically by seed), and not
    /// `fitted` until W2 or b2 is set; then two hand-computed cases, encoder width h = 1 (so v
    /// is the sign of the channels' mean): t = (1, 2), W1 = [[1, 0, 1], [0, -1, 1]], b1 = (0,
    /// 0.5), W2 = [[1, 2], [0, 1]], b2 = (0.1, 0). Channels of mean 3: v = 1, relu((2, -0.5)) =
    /// (2, 0), and W2 (2, 0) + b2 = (2.1, 0) is added. Of mean -3: v = -1, relu((0, -2.5)) = 0,
    /// and only b2 is added.
    #[test]
    fn identity_until_fitted_then_the_residual_network() {
        let (_, m) = map(2, 2);
        let t = Tensor::new(&[[1f32, 2.0], [-3.0, 0.5]], &Device::Cpu).unwrap();
        let channels = Tensor::new(&[[3f32, 2.0, 4.0, 3.0], [-1.0, -1.0, -1.0, -1.0]], &Device::Cpu).unwrap();
        assert_eq!(rows(&m.forward(&t, &channels).unwrap()), rows(&t));
        m.reset(7).unwrap();
        assert_eq!(rows(&m.forward(&t, &channels).unwrap()), rows(&t));
        assert!(!m.fitted().unwrap());
        let w1 = rows(m.vars()[0].as_tensor());
        assert!(w1.iter().flatten().any(|&x| x != 0.0));
        let (_, again) = map(2, 2);
        again.reset(7).unwrap();
        assert_eq!(rows(again.vars()[0].as_tensor()), w1);

        let set = |i: usize, values: &[f32]| {
            let var = &m.vars()[i];
            var.set(&Tensor::from_slice(values, var.dims(), &Device::Cpu).unwrap())
                .unwrap();
        };
        set(0, &[1.0, 0.0, 1.0, 0.0, -1.0, 1.0]);
        set(1, &[0.0, 0.5]);
        set(2, &[1.0, 2.0, 0.0, 1.0]);
        set(3, &[0.1, 0.0]);
        assert!(m.fitted().unwrap());
        let t = Tensor::new(&[[1f32, 2.0], [1.0, 2.0]], &Device::Cpu).unwrap();
        let channels = Tensor::new(&[[3f32; 4], [-3.0; 4]], &Device::Cpu).unwrap();
        let got = rows(&m.forward(&t, &channels).unwrap());
        let want = [[3.1f32, 2.0], [1.1, 2.0]];
        for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    /// The map averaged from three members of 2 hidden units (drawn, and W2 and b2 set to
    /// seeded values) gives the mean of their three outputs, text by text; a member of the
    /// wrong width is refused.
    #[test]
    fn the_average_of_members_is_their_mean_output() {
        let (_, whole) = map(3, 6);
        let mut stream = ChaCha8Rng::seed_from_u64(11);
        let mut draw = |shape: &[usize]| {
            let n = shape.iter().product();
            let values: Vec<f32> = (0..n).map(|_| stream.random_range(-1.0f32..1.0)).collect();
            Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
        };
        let members: Vec<QueryMap> = (0..3)
            .map(|i| {
                let m = whole.member(2).unwrap();
                m.reset(i).unwrap();
                m.vars[1].set(&draw(&[2])).unwrap();
                m.vars[2].set(&draw(&[3, 2])).unwrap();
                m.vars[3].set(&draw(&[3])).unwrap();
                m
            })
            .collect();
        whole.average(&members).unwrap();
        let t = draw(&[5, 3]);
        let channels = draw(&[5, 4]);
        let outputs: Vec<Vec<Vec<f32>>> = members
            .iter()
            .map(|m| rows(&m.forward(&t, &channels).unwrap()))
            .collect();
        let got = rows(&whole.forward(&t, &channels).unwrap());
        for (r, row) in got.iter().enumerate() {
            for (c, g) in row.iter().enumerate() {
                let want = outputs.iter().map(|o| o[r][c]).sum::<f32>() / 3.0;
                assert!((g - want).abs() < 1e-5, "text {r}, entry {c}: {g} vs {want}");
            }
        }
        assert!(whole.average(&members[..2]).is_err());
    }
}
