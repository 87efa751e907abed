//! The compute device and dtype: the first CUDA device when built with `--features cuda` and a
//! GPU is present, else the CPU; the dtype from `training.trainer.precision`.

use anyhow::Result;
use candle_core::{DType, Device};
use naics_common::config::Precision;

/// The device, and the compute dtype `precision` asks for: `auto` is bf16 on a GPU (f32 master
/// weights stay f32 whatever the encoder computes in) and f32 on the CPU; `32` and `bf16` force
/// one (bf16 on the CPU too, where candle computes it, slowly).
pub fn best(precision: Precision) -> Result<(Device, DType)> {
    let device = match Device::cuda_if_available(0) {
        Ok(device) if device.is_cuda() => device,
        _ => Device::Cpu,
    };
    let dtype = match precision {
        Precision::Auto if device.is_cuda() => DType::BF16,
        Precision::Auto | Precision::F32 => DType::F32,
        Precision::Bf16 => DType::BF16,
    };
    Ok((device, dtype))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests run without a GPU: `auto` is f32 here.
    #[test]
    fn precision_picks_the_dtype() {
        assert_eq!(best(Precision::Auto).unwrap().1, DType::F32);
        assert_eq!(best(Precision::F32).unwrap().1, DType::F32);
        assert_eq!(best(Precision::Bf16).unwrap().1, DType::BF16);
    }
}
