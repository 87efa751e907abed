//! The model, in the order data flows through it: a pretrained encoder (weights located and
//! loaded, the transformer and its LoRA adapters on f32 CPU kernels) gives each code four channel
//! vectors; the MoE fuses them, the head projects and maps them onto the hyperboloid; the
//! [`Embedder`] is all of it as one type, the thing `train` fits and `eval` measures.

// The encoder.
pub mod config;
pub mod locate;
pub mod rng;
pub mod kernels;
pub mod frozen;
pub mod lora;
pub mod transformer;
pub mod encoder;
// Codes and texts to channel vectors.
pub mod cache;
pub mod mapped;
pub mod channels;
// Channel vectors to points.
pub mod fusion;
pub mod lorentz;
pub mod query_map;
pub mod head;
pub mod embedder;

pub use embedder::Embedder;
pub use encoder::{Encoder, MODEL_FILES, pool};

/// The rows `rows` of `t` (codes, entries, picks: indexes kept as `usize` elsewhere).
pub fn select_rows(t: &candle_core::Tensor, rows: &[usize]) -> candle_core::Result<candle_core::Tensor> {
    let index = candle_core::Tensor::from_vec(
        rows.iter().map(|&r| r as u32).collect::<Vec<_>>(),
        rows.len(),
        t.device(),
    )?;
    t.index_select(&index, 0)
}

/// The largest absolute difference between two f32 tensors of one shape (the kernels' tests).
#[cfg(test)]
pub(crate) fn max_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap()
}
