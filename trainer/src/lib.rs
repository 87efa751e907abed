//! naics-trainer: the multi-channel encoder over a pretrained transformer (BERT or MPNet, with
//! per-channel LoRA), and the commands that use it. CPU by default; CUDA with `--features cuda`.

pub mod channels;
pub mod checkpoint;
pub mod cpu;
pub mod device;
pub mod eval;
pub mod fetch;
pub mod fit;
pub mod head;
pub mod lorentz;
pub mod memory;
pub mod model;
pub mod moe;
pub mod optim;
pub mod plots;
pub mod queries;
pub mod rng;
pub mod tables;
pub mod tree_loss;
