//! f32 CPU kernels for the encoder, by job: scalar math (`math`), element-wise passes
//! (`elementwise`: GELU, its gradient, the softmax's and LayerNorm's gradients), matrix products
//! along a chosen instruction-set path of the `gemm` crate (`product`: every product of the
//! model, counted), attention's probabilities (`attention`: the softmax with attention's bias
//! applied to each matrix of scores as it comes out of its product) and, with
//! `--features mkl`, linear layers (`mkl`).
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
pub mod product;

pub use attention::AttentionProbs;
pub use elementwise::{Gelu, GeluGrad, LayerNormGrad, SoftmaxGrad};
#[cfg(feature = "mkl")]
pub use mkl::MklLinear;
pub use product::{Affine, BatchMatmul, Matmul, affine, laid_out, linear, matmul, rows, unrows};

use candle_core::{CpuStorage, DType, Device, Layout, Result, Tensor, bail};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

/// Whether `x` takes these kernels: an f32 tensor on the CPU.
pub fn applies(x: &Tensor) -> bool {
    matches!(x.device(), Device::Cpu) && x.dtype() == DType::F32
}

/// The contiguous f32 values of a storage (the callers make their operands contiguous).
pub(crate) fn values<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Ok(&data[start..end]),
        _ => bail!("expected a contiguous f32 tensor on the CPU"),
    }
}

/// The vector instructions a kernel runs with, narrowest first. `Baseline` is what the crate is
/// built for (SSE2 on x86-64: the compiler vectorizes 4 lanes, no FMA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    Baseline,
    Avx2,
    Avx512,
}

impl Isa {
    pub const ALL: [Isa; 3] = [Isa::Baseline, Isa::Avx2, Isa::Avx512];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Baseline => "baseline",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// The widest this CPU has.
    pub fn detected() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Baseline
    }
}

/// `force`'s choice (u8::MAX: none).
static FORCED: AtomicU8 = AtomicU8::new(u8::MAX);

/// Makes the kernels run with at most `isa` (None: as detected and `NAICS_ISA` say), so that
/// one machine can measure and test each path. Process-wide.
pub fn force(isa: Option<Isa>) {
    FORCED.store(isa.map_or(u8::MAX, |i| i as u8), Ordering::Relaxed);
}

/// The path the kernels take: the widest the CPU has, capped by [`force`], else by the
/// environment variable `NAICS_ISA` (`avx512`, `avx2` or `baseline`; read once).
pub fn isa() -> Isa {
    static FROM_ENV: OnceLock<Option<Isa>> = OnceLock::new();
    let cap = match FORCED.load(Ordering::Relaxed) {
        u8::MAX => *FROM_ENV.get_or_init(|| {
            let value = std::env::var("NAICS_ISA").ok()?;
            let isa = Isa::ALL.into_iter().find(|i| i.name() == value);
            if isa.is_none() {
                eprintln!("NAICS_ISA={value} is not one of avx512, avx2, baseline: ignored");
            }
            isa
        }),
        forced => Isa::ALL.get(forced as usize).copied(),
    };
    let detected = Isa::detected();
    cap.map_or(detected, |cap| cap.min(detected))
}

/// Runs `f` compiled for the widest vector unit [`isa`] allows (AVX-512, AVX2 + FMA, else the
/// baseline the crate is built for); `f` and what it calls are inlined into each version.
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
        match isa() {
            // SAFETY: `isa` never exceeds what the CPU has.
            Isa::Avx512 => return unsafe { avx512(f) },
            // SAFETY: as above.
            Isa::Avx2 => return unsafe { avx2(f) },
            Isa::Baseline => {}
        }
    }
    f()
}
