//! The compute device and dtype: CPU and f32 by default; the first CUDA device with bf16
//! compute when built with `--features cuda` and a GPU is present.

use candle_core::{DType, Device};

pub fn best() -> (Device, DType) {
    match Device::cuda_if_available(0) {
        Ok(device) if device.is_cuda() => (device, DType::BF16),
        _ => (Device::Cpu, DType::F32),
    }
}
