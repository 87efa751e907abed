//! Process-wide CPU settings, applied first thing in `main` (and in the benchmarks), and the
//! thread the work runs on.

/// The allocator keeps what it frees (`memory`). Threads that wait for work sleep soon instead of
/// spinning, handing the cores to the threads with work: candle's element-wise pool spins
/// 25,000 rounds after each op unless `CANDLE_BARRIER_POOL_SPIN_LIMIT` says otherwise (here 1,000
/// unless set), and with `--features mkl` MKL's OpenMP threads sleep 1 ms after a matrix product
/// instead of 200. What each saved: docs/benchmarks.md.
pub fn setup() {
    super::memory::keep_freed_pages();
    const SPIN: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(SPIN).is_none() {
        // SAFETY: no other thread runs yet (`setup` comes first in `main`), so none reads the
        // environment while it changes; candle reads it when its pool starts, on first use.
        unsafe { std::env::set_var(SPIN, "1000") };
    }
    #[cfg(feature = "mkl")]
    {
        unsafe extern "C" {
            /// Intel OpenMP's runtime (libiomp5, linked with MKL).
            fn kmp_set_blocktime(msec: i32);
        }
        // SAFETY: sets an integer in the OpenMP runtime's settings; no other thread runs yet.
        unsafe { kmp_set_blocktime(1) };
    }
}

/// Runs `work` on a worker of rayon's global pool (one thread per core), the calling thread
/// waiting: the products (gemm) and our kernels then split their work between the thread that
/// asks for it and the pool's other threads, instead of waking all of them while the asking
/// thread sleeps; candle's element-wise ops share the asking thread with candle's pool. So one
/// thread drives every pool, and no more threads are busy than there are cores (a frozen step
/// had four taking turns on two cores, with 3.7 times the context switches: docs/benchmarks.md).
pub fn on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| work())
}
