//! One seeded random stream for everything random in training (initialization, dropout), so
//! that a CPU run is reproducible from its seed and `--resume` continues the same stream.
//! (candle's CPU random functions draw from an unseeded thread RNG.) The stream is per thread:
//! a training run stays on its thread, and runs on other threads (tests) do not disturb it.

use candle_core::{Result, Tensor, Var};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cell::RefCell;

thread_local! {
    static STREAM: RefCell<ChaCha8Rng> = RefCell::new(ChaCha8Rng::seed_from_u64(0));
}

pub fn seed(seed: u64) {
    STREAM.with_borrow_mut(|rng| *rng = ChaCha8Rng::seed_from_u64(seed));
}

/// Where the stream is (its seed and word position): saved with a checkpoint.
pub fn position() -> ([u8; 32], u128) {
    STREAM.with_borrow(|rng| (rng.get_seed(), rng.get_word_pos()))
}

/// Continues the stream from a [`position`].
pub fn restore(seed: [u8; 32], word_pos: u128) {
    STREAM.with_borrow_mut(|rng| {
        *rng = ChaCha8Rng::from_seed(seed);
        rng.set_word_pos(word_pos);
    });
}

/// Inverted dropout: `x` times its [`dropout_mask`].
pub fn dropout(x: &Tensor, p: f32, train: bool) -> Result<Tensor> {
    masked(x, dropout_mask(x, p, train)?.as_ref())
}

/// A dropout mask shaped like `x` from the seeded stream (kept entries 1 / (1 - p), dropped 0)
/// when training; none otherwise. The backward pass multiplies its gradient by the same mask.
pub fn dropout_mask(x: &Tensor, p: f32, train: bool) -> Result<Option<Tensor>> {
    if !train || p <= 0.0 {
        return Ok(None);
    }
    let keep = 1.0 - p;
    let mask: Vec<f32> = STREAM.with_borrow_mut(|rng| {
        (0..x.elem_count())
            .map(|_| if rng.random::<f32>() < keep { 1.0 / keep } else { 0.0 })
            .collect()
    });
    Ok(Some(
        Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?,
    ))
}

/// `x` times `mask`, or `x` where there is none.
pub fn masked(x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    match mask {
        Some(mask) => x * mask,
        None => Ok(x.clone()),
    }
}

/// Re-initializes every variable of `varmap` from the stream, in name order: `*.weight` and
/// LoRA `*.a` uniform in +-1/sqrt(fan_in) (PyTorch's Linear default), biases and LoRA `*.b` zero.
pub fn init(varmap: &VarMap) -> Result<()> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut vars: Vec<(&String, &Var)> = data.iter().collect();
    vars.sort_by(|a, b| a.0.cmp(b.0));
    for (name, var) in vars {
        let dims = var.dims();
        let values: Vec<f32> = STREAM.with_borrow_mut(|rng| {
            if name.ends_with(".weight") || name.ends_with(".a") {
                let bound = 1.0 / (*dims.last().unwrap_or(&1) as f32).sqrt();
                (0..var.elem_count()).map(|_| rng.random_range(-bound..bound)).collect()
            } else {
                vec![0.0; var.elem_count()]
            }
        });
        var.set(&Tensor::from_vec(values, dims, var.device())?.to_dtype(var.dtype())?)?;
    }
    Ok(())
}
