//! Process set-up, below everything else: CPU thread and allocator settings (`cpu`, `memory`),
//! the compute device (`device`), and fetching the pretrained models (`fetch`).

pub mod cpu;
pub mod device;
pub mod fetch;
pub mod memory;
