//! naics-trainer: the multi-channel encoder over a pretrained transformer (BERT or MPNet, with
//! per-channel LoRA), and the commands that use it. CPU by default; CUDA with `--features cuda`.

pub mod device;
pub mod fetch;
pub mod model;
