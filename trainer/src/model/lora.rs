//! LoRA (Hu et al. 2021) on a frozen linear layer: y = W x + b + (alpha / r) B A dropout(x),
//! with one (A, B) pair per channel. B starts at zero, so an untrained adapter changes nothing.

use super::frozen;
use crate::rng::dropout;
use candle_core::{Result, Tensor};
use candle_nn::{Linear, VarBuilder};

/// Which adapter (if any) a forward pass uses, and whether dropout is on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pass {
    pub channel: Option<usize>,
    pub train: bool,
    /// A backward pass through this forward follows. Otherwise the adapters enter as constants
    /// (they are variables: through them even a no-gradient forward would build a graph).
    pub backward: bool,
}

#[derive(Debug, Clone)]
pub struct Adapter {
    /// [r, in]
    pub a: Tensor,
    /// [out, r]
    pub b: Tensor,
}

#[derive(Debug, Clone)]
pub struct LoraLinear {
    pub base: Linear,
    pub adapters: Vec<Adapter>,
    pub scale: f64,
    pub dropout: f32,
}

impl LoraLinear {
    pub fn frozen(base: Linear) -> Self {
        LoraLinear {
            base,
            adapters: Vec::new(),
            scale: 0.0,
            dropout: 0.0,
        }
    }

    /// Creates `channels` adapters of rank `r` under `vb` (`{channel}.a`, `{channel}.b`): A with
    /// Kaiming-uniform values as PEFT does, B zeros.
    pub fn add_adapters(&mut self, vb: &VarBuilder, channels: usize, r: usize, alpha: f64, dropout: f32) -> Result<()> {
        let (out_dim, in_dim) = self.base.weight().dims2()?;
        let bound = (1.0 / in_dim as f64).sqrt();
        for c in 0..channels {
            let vb = vb.pp(c.to_string());
            let a = vb.get_with_hints((r, in_dim), "a", candle_nn::Init::Uniform { lo: -bound, up: bound })?;
            let b = vb.get_with_hints((out_dim, r), "b", candle_nn::Init::Const(0.0))?;
            self.adapters.push(Adapter { a, b });
        }
        self.scale = alpha / r as f64;
        self.dropout = dropout;
        Ok(())
    }

    pub fn forward(&self, x: &Tensor, pass: Pass) -> Result<Tensor> {
        let y = frozen::linear(&self.base, x)?;
        let Some(adapter) = pass.channel.and_then(|c| self.adapters.get(c)) else {
            return Ok(y);
        };
        let x = dropout(x, self.dropout, pass.train)?;
        // Adapters are f32 master weights; they compute in the base's dtype (bf16 on GPU).
        let (mut a, mut b) = (adapter.a.to_dtype(x.dtype())?, adapter.b.to_dtype(x.dtype())?);
        if !pass.backward {
            (a, b) = (a.detach(), b.detach());
        }
        let low = x.broadcast_matmul(&a.t()?)?;
        let delta = low.broadcast_matmul(&b.t()?)?;
        y + (delta * self.scale)?
    }

    /// The base layer with channel `channel`'s update folded in: W + (alpha / r) B A.
    pub fn merged(&self, channel: usize) -> Result<Linear> {
        let adapter = &self.adapters[channel];
        let update = (adapter.b.matmul(&adapter.a)? * self.scale)?.to_dtype(self.base.weight().dtype())?;
        let weight = (self.base.weight() + update)?;
        Ok(Linear::new(weight, self.base.bias().cloned()))
    }
}
