//! f32 CPU kernels for the encoder, by job: scalar math (`math`), element-wise passes
//! (`elementwise`: GELU, its gradient, the softmax's and LayerNorm's gradients), attention's
//! batched products (`attention`: the softmax with attention's bias applied to each matrix of
//! scores as it comes out of its product) and, with `--features mkl`, linear layers (`mkl`).
//!
//! candle runs the element-wise work as chains of ops, each a pass over memory with a fresh
//! buffer, and calls libm's scalar `exp` and `erf` per element (its softmax and the GELU gradient
//! took a fifth of a forward + backward pass). Here each is one pass on all threads, and `exp` and
//! `erf` are branch-free polynomial approximations the compiler vectorizes. Other devices and
//! dtypes use candle's ops (`model::frozen` dispatches).

pub mod attention;
pub mod elementwise;
pub mod math;
#[cfg(feature = "mkl")]
pub mod mkl;

pub use attention::{AttentionProbs, BatchMatmul};
pub use elementwise::{Gelu, GeluGrad, LayerNormGrad, SoftmaxGrad};
#[cfg(feature = "mkl")]
pub use mkl::MklLinear;

use candle_core::{CpuStorage, DType, Device, Layout, Result, Tensor, bail};

/// Whether `x` takes these kernels: an f32 tensor on the CPU.
pub fn applies(x: &Tensor) -> bool {
    matches!(x.device(), Device::Cpu) && x.dtype() == DType::F32
}

/// The contiguous f32 values of a storage (the callers make their operands contiguous).
fn values<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Ok(&data[start..end]),
        _ => bail!("expected a contiguous f32 tensor on the CPU"),
    }
}

/// Runs `f` compiled for the widest vector unit of this CPU (AVX-512, AVX2 + FMA, else the
/// SSE2 baseline the crate is built for); `f` and what it calls are inlined into each version.
#[inline(always)]
pub fn widest<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx2,fma")]
        fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features (checked just above).
            return unsafe { avx512(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { avx2(f) };
        }
    }
    f()
}
