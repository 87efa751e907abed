//! The compute device and dtype: the first CUDA device when built with `--features cuda` and a
//! GPU is present, else the CPU; the dtype from `training.trainer.precision`.

use anyhow::{Result, bail};
use candle_core::{DType, Device};

/// The device, and the compute dtype `precision` asks for: `auto` is bf16 on a GPU (f32 master
/// weights stay f32 whatever the encoder computes in) and f32 on the CPU; `32` and `bf16` force
/// one (bf16 on the CPU too, where candle computes it, slowly).
pub fn best(precision: &str) -> Result<(Device, DType)> {
    let device = match Device::cuda_if_available(0) {
        Ok(device) if device.is_cuda() => device,
        _ => Device::Cpu,
    };
    let dtype = match precision {
        "auto" if device.is_cuda() => DType::BF16,
        "auto" | "32" => DType::F32,
        "bf16" => DType::BF16,
        other => bail!("training.trainer.precision: `{other}` is not one of auto, 32, bf16"),
    };
    Ok((device, dtype))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests run without a GPU: `auto` is f32 here.
    #[test]
    fn precision_picks_the_dtype() {
        assert_eq!(best("auto").unwrap().1, DType::F32);
        assert_eq!(best("32").unwrap().1, DType::F32);
        assert_eq!(best("bf16").unwrap().1, DType::BF16);
        let err = best("16-mixed").unwrap_err().to_string();
        assert!(
            err.contains("training.trainer.precision") && err.contains("16-mixed"),
            "{err}"
        );
    }
}
