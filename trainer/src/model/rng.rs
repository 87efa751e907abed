//! One seeded random stream for everything random in training (initialization, dropout), so
//! that a CPU run is reproducible from its seed and `--resume` continues the same stream.
//! (candle's CPU random functions draw from an unseeded thread RNG.) The stream is per thread:
//! a training run stays on its thread, and runs on other threads (tests) do not disturb it.

use super::kernels::widest;
use candle_core::{Result, Tensor, Var};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
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
///
/// Entry i is kept where `random::<f32>()` of the stream's word at (current position + i) is
/// below 1 - p: the mask is drawn in parallel chunks (ChaCha seeks in constant time), in bulk,
/// and is the same as one drawn word by word.
pub fn dropout_mask(x: &Tensor, p: f32, train: bool) -> Result<Option<Tensor>> {
    if !train || p <= 0.0 {
        return Ok(None);
    }
    const CHUNK: usize = 64 * 1024;
    let (keep, n) = (1.0 - p, x.elem_count());
    let (seed, start) = position();
    let mut mask = vec![0f32; n];
    mask.par_chunks_mut(CHUNK).enumerate().for_each(|(k, chunk)| {
        let mut rng = ChaCha8Rng::from_seed(seed);
        rng.set_word_pos(start + (k * CHUNK) as u128);
        let mut words = vec![0u32; chunk.len()];
        rng.fill(&mut words[..]);
        widest(
            #[inline(always)]
            || {
                for (m, &w) in chunk.iter_mut().zip(&words) {
                    // `random::<f32>()` of this word: its top 24 bits over 2^24.
                    let uniform = (w >> 8) as f32 * (1.0 / (1u32 << 24) as f32);
                    *m = if uniform < keep { 1.0 / keep } else { 0.0 };
                }
            },
        );
    });
    restore(seed, start + n as u128);
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

/// Re-initializes every variable of `varmap` but those under the prefixes `apart` from the
/// stream, in name order: `*.weight` and LoRA `*.a` uniform in +-1/sqrt(fan_in) (PyTorch's
/// Linear default), biases and LoRA `*.b` zero. (Those under `apart` draw nothing, so the
/// stream reads the same with them or without.)
pub fn init(varmap: &VarMap, apart: &[&str]) -> Result<()> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut vars: Vec<(&String, &Var)> = data
        .iter()
        .filter(|(name, _)| !apart.iter().any(|a| name.starts_with(a)))
        .collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Drawn in parallel chunks, a mask is still the stream read in order: two masks drawn one
    /// after the other are the halves of one mask twice as long (lengths not multiples of the
    /// chunk), and the stream moves on by exactly one word per entry.
    #[test]
    fn masks_read_the_stream_in_order() {
        let draw = |n: usize| -> Vec<f32> {
            let x = Tensor::zeros(n, candle_core::DType::F32, &Device::Cpu).unwrap();
            dropout_mask(&x, 0.5, true).unwrap().unwrap().to_vec1().unwrap()
        };
        let n = 100_003;
        seed(11);
        let whole = draw(2 * n);
        seed(11);
        let mut halves = draw(n);
        halves.extend(draw(n));
        assert_eq!(whole, halves);
        assert_eq!(position().1, 2 * n as u128);
        // Entry i kept where the stream's i-th `random::<f32>()` is below 1 - p.
        let mut stream = ChaCha8Rng::seed_from_u64(11);
        for (i, &m) in whole.iter().enumerate().take(1000) {
            assert_eq!(m == 2.0, stream.random::<f32>() < 0.5, "entry {i}");
        }
        let kept = whole.iter().filter(|&&m| m == 2.0).count() as f64 / whole.len() as f64;
        assert!((kept - 0.5).abs() < 0.01, "kept {kept}");
    }
}
