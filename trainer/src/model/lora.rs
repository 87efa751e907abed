//! LoRA (Hu et al. 2021) on a frozen linear layer: y = W x + b + (alpha / r) B A dropout(x),
//! with one (A, B) pair per channel. B starts at zero, so an untrained adapter changes nothing.

use super::frozen;
use super::kernels::{laid_out, matmul, rows, unrows};
use super::rng::{self, masked};
use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor};
use candle_nn::{Linear, VarBuilder};

/// Adapter set names 0..n (`lora` mode's channel sets, one per channel).
pub fn numbered(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

/// Which adapter (if any) a forward pass uses, and whether dropout is on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pass {
    pub channel: Option<usize>,
    pub train: bool,
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
    /// Each adapter folded into the base and laid out ([`LoraLinear::fold`]), for a model that
    /// only infers; empty while the adapters train.
    pub folded: Vec<Linear>,
    pub scale: f64,
    pub dropout: f32,
}

/// What the backward pass needs from an adapter's forward: its input rows after dropout, the
/// dropout mask, and the low-rank activations A x.
pub struct LoraTape {
    channel: usize,
    input: Tensor,
    mask: Option<Tensor>,
    low: Tensor,
}

impl LoraLinear {
    pub fn frozen(base: Linear) -> Self {
        LoraLinear {
            base,
            adapters: Vec::new(),
            folded: Vec::new(),
            scale: 0.0,
            dropout: 0.0,
        }
    }

    /// Creates one adapter of rank `r` per name under `vb` (`{name}.a`, `{name}.b`), adapter i
    /// for `Pass::channel` i: A with Kaiming-uniform values as PEFT does, B zeros.
    pub fn add_adapters(
        &mut self,
        vb: &VarBuilder,
        names: &[String],
        r: usize,
        alpha: f64,
        dropout: f32,
    ) -> Result<()> {
        let (out_dim, in_dim) = self.base.weight().dims2()?;
        let bound = (1.0 / in_dim as f64).sqrt();
        for name in names {
            let vb = vb.pp(name);
            let a = vb.get_with_hints((r, in_dim), "a", candle_nn::Init::Uniform { lo: -bound, up: bound })?;
            let b = vb.get_with_hints((out_dim, r), "b", candle_nn::Init::Const(0.0))?;
            self.adapters.push(Adapter { a, b });
        }
        self.scale = alpha / r as f64;
        self.dropout = dropout;
        Ok(())
    }

    /// The adapter of `channel` in the base's dtype (f32 master weights; bf16 compute on GPU),
    /// as constants: gradients come from [`Self::backward`], not from a graph.
    fn weights(&self, channel: usize, like: &Tensor) -> Result<(Tensor, Tensor)> {
        let adapter = &self.adapters[channel];
        Ok((
            adapter.a.detach().to_dtype(like.dtype())?,
            adapter.b.detach().to_dtype(like.dtype())?,
        ))
    }

    pub fn forward(&self, x: &Tensor, pass: Pass) -> Result<(Tensor, Option<LoraTape>)> {
        if let Some(folded) = pass.channel.and_then(|c| self.folded.get(c)).filter(|_| !pass.train) {
            return Ok((frozen::linear(folded, x)?, None));
        }
        let y = frozen::linear(&self.base, x)?;
        let Some(channel) = pass.channel.filter(|&c| c < self.adapters.len()) else {
            return Ok((y, None));
        };
        let mask = rng::dropout_mask(x, self.dropout, pass.train)?;
        let input = rows(&masked(x, mask.as_ref())?)?;
        let (a, b) = self.weights(channel, x)?;
        let low = matmul(&input, &a.t()?)?;
        let delta = unrows(&(matmul(&low, &b.t()?)? * self.scale)?, &y)?;
        let tape = LoraTape {
            channel,
            input,
            mask,
            low,
        };
        Ok(((y + delta)?, Some(tape)))
    }

    /// From the output's gradient `g`: adds the adapter's (A, B) gradients to `grads` and, when
    /// `input_grad`, returns the input's gradient.
    pub fn backward(
        &self,
        tape: Option<&LoraTape>,
        g: &Tensor,
        input_grad: bool,
        grads: &mut GradStore,
    ) -> Result<Option<Tensor>> {
        let base = input_grad.then(|| frozen::linear_grad(&self.base, g)).transpose()?;
        let Some(tape) = tape else {
            return Ok(base);
        };
        let adapter = &self.adapters[tape.channel];
        let (a, b) = self.weights(tape.channel, g)?;
        let g = (rows(g)? * self.scale)?;
        accumulate(grads, &adapter.b, &matmul(&g.t()?, &tape.low)?)?;
        let g_low = matmul(&g, &b)?;
        accumulate(grads, &adapter.a, &matmul(&g_low.t()?, &tape.input)?)?;
        let Some(base) = base else {
            return Ok(None);
        };
        let through = unrows(&matmul(&g_low, &a)?, &base)?;
        Ok(Some((base + masked(&through, tape.mask.as_ref())?)?))
    }

    /// The base layer with channel `channel`'s update folded in: W + (alpha / r) B A.
    pub fn merged(&self, channel: usize) -> Result<Linear> {
        let adapter = &self.adapters[channel];
        let update = (matmul(&adapter.b, &adapter.a)? * self.scale)?.to_dtype(self.base.weight().dtype())?;
        let weight = (self.base.weight() + update)?;
        Ok(Linear::new(weight, self.base.bias().cloned()))
    }

    /// For a model that only infers, its adapters loaded: each adapter's pass becomes one product
    /// with its merged weight, in the layout inference is fastest in, where it was the base's
    /// product, two low-rank ones and two element-wise passes. The values agree to rounding.
    pub fn fold(&mut self) -> Result<()> {
        self.folded = (0..self.adapters.len())
            .map(|c| laid_out(&self.merged(c)?))
            .collect::<Result<_>>()?;
        Ok(())
    }
}

/// Adds `grad` (in the parameter's dtype) to the gradient of `param` in `grads`.
fn accumulate(grads: &mut GradStore, param: &Tensor, grad: &Tensor) -> Result<()> {
    let grad = grad.to_dtype(param.dtype())?;
    let sum = match grads.remove(param) {
        Some(previous) => (previous + grad)?,
        None => grad,
    };
    grads.insert(param, sum);
    Ok(())
}
