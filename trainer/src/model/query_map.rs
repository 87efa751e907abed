//! The query map: a small residual network on a free text's tangent vector, `t + W2 relu(W1 t +
//! b1) + b2`, between the head's projection and the exponential map. Codes never go through it.
//!
//! Why: in a training step the text adapters see only the step's leaves as the other answers,
//! so siblings that differ by a word (ICD-10-CM's laterality, NAICS's industries of one group)
//! rarely compete. The map is fitted after the last stage against every leaf at once, the
//! encoder, fusion and codes' points fixed (`train::query_map`); until then W2 and b2 are zero
//! and the map is the identity, so the stages train exactly as without it.

use super::kernels::linear;
use candle_core::{Result, Tensor, Var};
use candle_nn::{Init, Linear, VarBuilder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Where its variables live in the model's variable map (the head's `query_map`): what the
/// seeded initialization and the stages' optimizer leave alone.
pub const VARS: &str = "head.query_map.";

pub struct QueryMap {
    /// W1 [hidden, d], b1, W2 [d, hidden], b2.
    vars: [Var; 4],
}

impl QueryMap {
    /// Zero weights: the identity until [`QueryMap::reset`] and fitting.
    pub fn new(vb: VarBuilder, dim: usize, hidden: usize) -> Result<Self> {
        let zero = |name: &str, shape: &[usize]| -> Result<Var> {
            Var::from_tensor(&vb.get_with_hints(shape, name, Init::Const(0.0))?)
        };
        Ok(QueryMap {
            vars: [
                zero("up.weight", &[hidden, dim])?,
                zero("up.bias", &[hidden])?,
                zero("down.weight", &[dim, hidden])?,
                zero("down.bias", &[dim])?,
            ],
        })
    }

    /// `t + W2 relu(W1 t + b1) + b2` for tangent vectors `t` [n, d].
    pub fn forward(&self, t: &Tensor) -> Result<Tensor> {
        let layer = |w: &Var, b: &Var| Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
        let [w1, b1, w2, b2] = &self.vars;
        t + linear(&layer(w2, b2), &linear(&layer(w1, b1), t)?.relu()?)?
    }

    /// Back to the identity, W1 drawn from a stream seeded by `seed` (uniform in +-1/sqrt(d), a
    /// Linear's default) so that fitting can start: were W1 zero too, no gradient would reach
    /// either layer.
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

    /// Its variables, for the optimizer that fits it.
    pub fn vars(&self) -> Vec<Var> {
        self.vars.to_vec()
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
        let map = QueryMap::new(vb, dim, hidden).unwrap();
        (varmap, map)
    }

    fn rows(t: &Tensor) -> Vec<Vec<f32>> {
        t.to_vec2().unwrap()
    }

    /// The identity as built and after a reset (W1 drawn, deterministically by seed); then one
    /// hand-computed case: t = (1, 2), W1 = [[1, 0], [0, -1]], b1 = (0, 0.5) give
    /// relu((1, -1.5)) = (1, 0); W2 = [[1, 2], [0, 1]], b2 = (0.1, 0) add (1.1, 0).
    #[test]
    fn identity_until_fitted_then_the_residual_network() {
        let (_, m) = map(2, 2);
        let t = Tensor::new(&[[1f32, 2.0], [-3.0, 0.5]], &Device::Cpu).unwrap();
        assert_eq!(rows(&m.forward(&t).unwrap()), rows(&t));
        m.reset(7).unwrap();
        assert_eq!(rows(&m.forward(&t).unwrap()), rows(&t));
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
        set(0, &[1.0, 0.0, 0.0, -1.0]);
        set(1, &[0.0, 0.5]);
        set(2, &[1.0, 2.0, 0.0, 1.0]);
        set(3, &[0.1, 0.0]);
        let one = Tensor::new(&[[1f32, 2.0]], &Device::Cpu).unwrap();
        let got = rows(&m.forward(&one).unwrap());
        assert!(
            (got[0][0] - 2.1).abs() < 1e-6 && (got[0][1] - 2.0).abs() < 1e-6,
            "{got:?}"
        );
    }
}
