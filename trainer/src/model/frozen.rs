//! The frozen base's layers with a backward pass that carries the gradient to their input only.
//!
//! candle's autograd differentiates every operand of an op: for `x W^T` it also computes the
//! weight's gradient (a matmul as large as the forward one, and for a batched input a
//! batch-sized copy of the weight kept until the end of the backward pass) although a frozen
//! weight never uses it. Its fused LayerNorm and softmax kernels have no backward at all, and the
//! composed versions keep half a dozen intermediate tensors and their gradients per call. Here
//! each frozen layer computes its value with no graph (fused kernels included) and is attached to
//! its input by one op whose backward is the hand-written input gradient; checked against candle's
//! own autograd of the composed layers in the tests below.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, D, DType, Layout, Result, Shape, Tensor};
use candle_nn::{LayerNorm, Linear, Module};

/// The gradient of a frozen layer with respect to its input: (input, output, output gradient).
type InputGrad = Box<dyn Fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor> + Send + Sync>;

/// Op over (input, value): returns `value` unchanged, back-propagates through `grad` to the input.
/// A custom op must return new storage, so the value is copied (a memcpy, small next to the layer),
/// and the graph holds both until the backward pass.
struct Frozen {
    name: &'static str,
    grad: InputGrad,
}

impl CustomOp2 for Frozen {
    fn name(&self) -> &'static str {
        self.name
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, value: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        Ok((value.try_clone(layout)?, layout.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
        value: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        Ok((value.try_clone(layout)?, layout.shape().clone()))
    }

    fn bwd(&self, input: &Tensor, _: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some((self.grad)(input, res, grad)?), None))
    }
}

/// `layer` applied to `x` without a graph; when `x` needs a gradient, joined to it by `grad`.
fn frozen(
    name: &'static str,
    x: &Tensor,
    layer: impl Fn(&Tensor) -> Result<Tensor>,
    grad: InputGrad,
) -> Result<Tensor> {
    // Fresh, contiguous and at offset 0: what the pass-through copies.
    let value = layer(&x.detach())?.contiguous()?;
    if !x.track_op() {
        return Ok(value);
    }
    x.apply_op2(&value, Frozen { name, grad })
}

/// `x W^T + b`; the input gradient is `g W`.
pub fn linear(layer: &Linear, x: &Tensor) -> Result<Tensor> {
    let weight = layer.weight().clone();
    frozen(
        "frozen-linear",
        x,
        |x| layer.forward(x),
        Box::new(move |_, _, g| g.broadcast_matmul(&weight)),
    )
}

/// LayerNorm over the last dimension; with x̂ the normalized input, σ its standard deviation and
/// h = g γ, the input gradient is (h - mean(h) - x̂ mean(h x̂)) / σ.
pub fn layer_norm(layer: &LayerNorm, x: &Tensor) -> Result<Tensor> {
    let (gamma, eps) = (layer.weight().clone(), layer.eps());
    frozen(
        "frozen-layer-norm",
        x,
        // candle's fused kernel has no f64 (which the finite-difference tests run in).
        |x| match (x.dtype(), layer.bias()) {
            (DType::F64, Some(beta)) => candle_nn::ops::layer_norm_slow(x, layer.weight(), beta, eps as f32),
            _ => layer.forward(x),
        },
        Box::new(move |x, _, g| {
            let dtype = g.dtype();
            let (x, g) = (x.to_dtype(DType::F32)?, g.to_dtype(DType::F32)?);
            let centered = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
            let sigma = (centered.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?;
            let normed = centered.broadcast_div(&sigma)?;
            let h = g.broadcast_mul(&gamma.to_dtype(DType::F32)?)?;
            let inner = h
                .broadcast_sub(&h.mean_keepdim(D::Minus1)?)?
                .sub(&normed.broadcast_mul(&(&h * &normed)?.mean_keepdim(D::Minus1)?)?)?;
            inner.broadcast_div(&sigma)?.to_dtype(dtype)
        }),
    )
}

/// Softmax over the last dimension; with p the output, the input gradient is p (g - sum(g p)).
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    frozen(
        "frozen-softmax",
        x,
        candle_nn::ops::softmax_last_dim,
        Box::new(|_, p, g| p * g.broadcast_sub(&(g * p)?.sum_keepdim(D::Minus1)?)?),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn rand(shape: &[usize]) -> Tensor {
        Tensor::rand(-2f32, 2., shape, &Device::Cpu).unwrap()
    }

    /// The value of `layer` at x, and the gradient of sum(layer(x) * weights) with respect to x.
    fn value_and_grad(x: &Tensor, weights: &Tensor, layer: impl Fn(&Tensor) -> Result<Tensor>) -> (Tensor, Tensor) {
        let var = Var::from_tensor(x).unwrap();
        let value = layer(var.as_tensor()).unwrap();
        let grads = (&value * weights).unwrap().sum_all().unwrap().backward().unwrap();
        (value, grads.get(var.as_tensor()).unwrap().clone())
    }

    /// Same values and input gradients as candle's autograd through the composed layer.
    fn assert_matches(ours: impl Fn(&Tensor) -> Result<Tensor>, composed: impl Fn(&Tensor) -> Result<Tensor>) {
        let x = rand(&[2, 3, 8]);
        let weights = composed(&x).unwrap().rand_like(-1., 1.).unwrap();
        let (value, grad) = value_and_grad(&x, &weights, ours);
        let (want_value, want_grad) = value_and_grad(&x, &weights, composed);
        let diff =
            |a: &Tensor, b: &Tensor| -> f32 { (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap() };
        assert!(
            diff(&value, &want_value) < 1e-5,
            "values differ by {}",
            diff(&value, &want_value)
        );
        assert!(
            diff(&grad, &want_grad) < 1e-5,
            "gradients differ by {}",
            diff(&grad, &want_grad)
        );
        assert!(want_grad.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() > 1e-2);
    }

    #[test]
    fn linear_gradient_matches_autograd() {
        let layer = Linear::new(rand(&[5, 8]), Some(rand(&[5])));
        assert_matches(|x| linear(&layer, x), |x| layer.forward(x));
    }

    #[test]
    fn layer_norm_gradient_matches_autograd() {
        let (gamma, beta) = (rand(&[8]), rand(&[8]));
        let layer = LayerNorm::new(gamma.clone(), beta.clone(), 1e-5);
        assert_matches(
            |x| layer_norm(&layer, x),
            |x| candle_nn::ops::layer_norm_slow(x, &gamma, &beta, 1e-5),
        );
    }

    #[test]
    fn softmax_gradient_matches_autograd() {
        assert_matches(softmax, |x| candle_nn::ops::softmax(x, D::Minus1));
    }

    #[test]
    fn untracked_input_gets_no_graph() {
        let layer = Linear::new(rand(&[5, 8]), None);
        let y = linear(&layer, &rand(&[2, 3, 8])).unwrap();
        assert!(!y.track_op());
    }
}
