//! The frozen base's ops and their gradients with respect to their input, written by hand (on
//! the CPU in f32 through `model::kernels`).
//!
//! The encoder's backward pass is written out layer by layer (`Layer::backward`) instead of run
//! by candle's autograd, which for every op also differentiates the frozen weights (a matmul as
//! large as the forward one), allocates a zero tensor per gradient before adding into it, and
//! has no backward for the fused LayerNorm and softmax kernels. Each gradient here is checked
//! against candle's autograd of the composed op in the tests below.

use super::kernels::{self, AttentionProbs, BatchMatmul, Gelu, GeluGrad, LayerNormGrad, SoftmaxGrad, rows, unrows};
use candle_core::{D, DType, Result, Tensor};
use candle_nn::{LayerNorm, Linear, Module};

/// `x W^T + b` over all rows, without a backward pass (the base is frozen): on the CPU in f32
/// the bias added in place after the product (`kernels::affine`), with `--features mkl` by MKL
/// with the bias fused; elsewhere `kernels::linear`.
pub fn linear(layer: &Linear, x: &Tensor) -> Result<Tensor> {
    if let (true, Some(bias)) = (kernels::applies(x), layer.bias()) {
        #[cfg(feature = "mkl")]
        return x
            .contiguous()?
            .apply_op3_no_bwd(layer.weight(), bias, &kernels::MklLinear);
        #[cfg(not(feature = "mkl"))]
        return kernels::affine(layer, bias, x);
    }
    kernels::linear(layer, x)
}

/// The input gradient of [`linear`]: `g W`.
pub fn linear_grad(layer: &Linear, g: &Tensor) -> Result<Tensor> {
    unrows(&kernels::matmul(&rows(g)?, layer.weight())?, g)
}

/// LayerNorm over the last dimension (candle's fused kernel; the composed one in f64, which the
/// finite-difference tests run in and the fused kernel lacks).
pub fn layer_norm(layer: &LayerNorm, x: &Tensor) -> Result<Tensor> {
    match (x.dtype(), layer.bias()) {
        (DType::F64, Some(beta)) => candle_nn::ops::layer_norm_slow(x, layer.weight(), beta, layer.eps() as f32),
        _ => layer.forward(x),
    }
}

/// The input gradient of [`layer_norm`] at `x`: with x̂ the normalized input, σ its standard
/// deviation and h = g γ, (h - mean(h) - x̂ mean(h x̂)) / σ. Computed in f32 at least.
pub fn layer_norm_grad(layer: &LayerNorm, x: &Tensor, g: &Tensor) -> Result<Tensor> {
    if kernels::applies(x) {
        let gamma = layer.weight().to_dtype(DType::F32)?.to_vec1()?;
        let op = LayerNormGrad {
            gamma,
            eps: layer.eps() as f32,
        };
        return x.contiguous()?.apply_op2_no_bwd(&g.contiguous()?, &op);
    }
    let dtype = g.dtype();
    let work = if dtype == DType::F64 { DType::F64 } else { DType::F32 };
    let (x, g) = (x.to_dtype(work)?, g.to_dtype(work)?);
    let centered = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
    let sigma = (centered.sqr()?.mean_keepdim(D::Minus1)? + layer.eps())?.sqrt()?;
    let normed = centered.broadcast_div(&sigma)?;
    let h = g.broadcast_mul(&layer.weight().to_dtype(work)?)?;
    let inner = h
        .broadcast_sub(&h.mean_keepdim(D::Minus1)?)?
        .sub(&normed.broadcast_mul(&(&h * &normed)?.mean_keepdim(D::Minus1)?)?)?;
    inner.broadcast_div(&sigma)?.to_dtype(dtype)
}

/// scale A B over batches of matrices [.., m, k] x [.., k, n] (attention's p v and its
/// gradients): on the CPU in f32 by [`BatchMatmul`], which reads transposed and head-split views
/// without copying them.
pub fn batch_matmul(a: &Tensor, b: &Tensor, scale: f64) -> Result<Tensor> {
    if kernels::applies(a) {
        return a.apply_op2_no_bwd(b, &BatchMatmul { scale: scale as f32 });
    }
    let product = a.contiguous()?.matmul(&b.contiguous()?)?;
    if scale == 1.0 { Ok(product) } else { product * scale }
}

/// Attention's probabilities: softmax over the last dimension of scale q kᵀ + bias, from q
/// [.., t, d], `k_t` (kᵀ, [.., d, t]) and `bias` broadcast to the scores' shape (on the CPU in
/// f32 by [`AttentionProbs`], the scores never stored).
pub fn attention_probs(q: &Tensor, k_t: &Tensor, bias: &Tensor, scale: f64) -> Result<Tensor> {
    let mut dims = q.dims().to_vec();
    *dims.last_mut().expect("matrices") = k_t.dim(D::Minus1)?;
    let bias = bias.broadcast_as(dims)?;
    if kernels::applies(q) && bias.stride().last() == Some(&1) {
        return q.apply_op3_no_bwd(k_t, &bias, &AttentionProbs { scale: scale as f32 });
    }
    candle_nn::ops::softmax_last_dim(&(batch_matmul(q, k_t, scale)? + bias)?)
}

/// The input gradient of the softmax (of [`attention_probs`]) from its output p: p (g - sum(g p)).
pub fn softmax_grad(p: &Tensor, g: &Tensor) -> Result<Tensor> {
    if !kernels::applies(p) {
        return p * g.broadcast_sub(&(g * p)?.sum_keepdim(D::Minus1)?)?;
    }
    p.contiguous()?.apply_op2_no_bwd(&g.contiguous()?, &SoftmaxGrad)
}

/// Exact GELU, x Φ(x), the feed-forward activation of BERT and MPNet.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if !kernels::applies(x) {
        return x.gelu_erf();
    }
    x.contiguous()?.apply_op1_no_bwd(&Gelu)
}

/// The input gradient of [`gelu`] at `x`: g (Φ(x) + x φ(x)).
pub fn gelu_grad(x: &Tensor, g: &Tensor) -> Result<Tensor> {
    if !kernels::applies(x) {
        let cdf = ((x * std::f64::consts::FRAC_1_SQRT_2)?.erf()? + 1.0)? * 0.5;
        let pdf = ((x.sqr()? * -0.5)?.exp()? * (1.0 / (2.0 * std::f64::consts::PI).sqrt()))?;
        return g * (cdf? + (x * pdf)?)?;
    }
    x.contiguous()?.apply_op2_no_bwd(&g.contiguous()?, &GeluGrad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::max_diff;
    use candle_core::{Device, Var};

    fn rand(shape: &[usize]) -> Tensor {
        Tensor::rand(-2f32, 2., shape, &Device::Cpu).unwrap()
    }

    /// The value of `op` at x, and the gradient of sum(op(x) * weights) with respect to x.
    fn value_and_grad(x: &Tensor, weights: &Tensor, op: impl Fn(&Tensor) -> Result<Tensor>) -> (Tensor, Tensor) {
        let var = Var::from_tensor(x).unwrap();
        let value = op(var.as_tensor()).unwrap();
        let grads = (&value * weights).unwrap().sum_all().unwrap().backward().unwrap();
        (value, grads.get(var.as_tensor()).unwrap().clone())
    }

    /// `ours` and its hand-written gradient (from the input, the output and the output's
    /// gradient) give the values and input gradients of candle's autograd through `composed`.
    fn assert_matches(
        ours: impl Fn(&Tensor) -> Result<Tensor>,
        grad: impl Fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>,
        composed: impl Fn(&Tensor) -> Result<Tensor>,
    ) {
        let x = rand(&[2, 3, 8]);
        let value = ours(&x).unwrap();
        let weights = value.rand_like(-1., 1.).unwrap();
        let (want_value, want_grad) = value_and_grad(&x, &weights, composed);
        let ours_grad = grad(&x, &value, &weights).unwrap();
        assert!(
            max_diff(&value, &want_value) < 1e-5,
            "values differ by {}",
            max_diff(&value, &want_value)
        );
        assert!(
            max_diff(&ours_grad, &want_grad) < 1e-5,
            "gradients differ by {}",
            max_diff(&ours_grad, &want_grad)
        );
        assert!(want_grad.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() > 1e-2);
    }

    #[test]
    fn linear_gradient_matches_autograd() {
        let layer = Linear::new(rand(&[5, 8]), Some(rand(&[5])));
        assert_matches(
            |x| linear(&layer, x),
            |_, _, g| linear_grad(&layer, g),
            |x| {
                x.broadcast_matmul(&layer.weight().t()?)?
                    .broadcast_add(layer.bias().unwrap())
            },
        );
    }

    #[test]
    fn layer_norm_gradient_matches_autograd() {
        let (gamma, beta) = (rand(&[8]), rand(&[8]));
        let layer = LayerNorm::new(gamma.clone(), beta.clone(), 1e-5);
        assert_matches(
            |x| layer_norm(&layer, x),
            |x, _, g| layer_norm_grad(&layer, x, g),
            |x| candle_nn::ops::layer_norm_slow(x, &gamma, &beta, 1e-5),
        );
    }

    #[test]
    fn softmax_gradient_matches_autograd() {
        assert_matches(
            candle_nn::ops::softmax_last_dim,
            |_, p, g| softmax_grad(p, g),
            |x| candle_nn::ops::softmax(x, D::Minus1),
        );
    }

    /// Against candle's softmax of the scaled scores plus a padding mask [b, 1, 1, t], a position
    /// bias [1, heads, t, t] or a full one, q's heads split out of each row; the padding's
    /// f32::MIN gets probability 0 exactly.
    #[test]
    fn attention_probs_add_a_broadcast_bias() {
        let q = rand(&[2, 5, 3, 4]).transpose(1, 2).unwrap();
        let k = rand(&[2, 3, 5, 4]);
        let mut padding = vec![0f32; 10];
        padding[4] = f32::MIN;
        let padding = Tensor::from_vec(padding, (2, 1, 1, 5), &Device::Cpu).unwrap();
        let scores = (q.contiguous().unwrap().matmul(&k.t().unwrap()).unwrap() * 0.5).unwrap();
        for bias in [padding.clone(), rand(&[1, 3, 5, 5]), rand(&[2, 3, 5, 5])] {
            let ours = attention_probs(&q, &k.t().unwrap(), &bias, 0.5).unwrap();
            let want = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&bias).unwrap()).unwrap();
            assert!(max_diff(&ours, &want) < 1e-6, "differs by {}", max_diff(&ours, &want));
        }
        let masked = attention_probs(&q, &k.t().unwrap(), &padding, 0.5).unwrap();
        let last: Vec<f32> = masked
            .get(0)
            .unwrap()
            .narrow(2, 4, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(last.iter().all(|&p| p == 0.0));
    }

    /// candle's exact GELU and its autograd, from -10 to 10 in steps of 0.01 (past the clamp of
    /// erf's argument on both sides); the gradient also on the composed path (f64).
    #[test]
    fn gelu_and_its_gradient_match_candles_exact_gelu() {
        let x = (Tensor::arange(-1000f32, 1001., &Device::Cpu).unwrap() / 100.).unwrap();
        let weights = x.cos().unwrap();
        let (want, want_grad) = value_and_grad(&x, &weights, |x| x.gelu_erf());
        let ours = gelu(&x).unwrap();
        assert!(
            max_diff(&ours, &want) < 2e-6,
            "values differ by {}",
            max_diff(&ours, &want)
        );
        let f64_grad = gelu_grad(&x.to_dtype(DType::F64).unwrap(), &weights.to_dtype(DType::F64).unwrap()).unwrap();
        for grad in [gelu_grad(&x, &weights).unwrap(), f64_grad.to_dtype(DType::F32).unwrap()] {
            assert!(
                max_diff(&grad, &want_grad) < 2e-6,
                "gradients differ by {}",
                max_diff(&grad, &want_grad)
            );
        }
    }
}
