//! naics-trainer: the multi-channel encoder over a pretrained transformer (BERT or MPNet, with
//! per-channel LoRA), and the commands that use it. CPU by default; CUDA with `--features cuda`.
//!
//! Modules in the order data flows, each depending only on those above it: process set-up and
//! the step's timing;
//! the pipeline's tables and the measures and charts over them; the model (encoder -> channel
//! vectors -> MoE fusion -> Lorentz head, as one `Embedder`); then what uses the model: training,
//! and, from a trained checkpoint (`embedded`, its `disk` picture), the coder, evaluation, and the
//! coder's interfaces: files (`classify`) and HTTP (`serve`). Training and evaluation never
//! depend on each other.

pub mod setup;
pub mod timing;
pub mod tables;
pub mod metrics;
pub mod plots;
pub mod model;
pub mod train;
pub mod embedded;
pub mod disk;
pub mod coder;
pub mod eval;
pub mod classify;
pub mod serve;
