//! Process-wide CPU settings, applied first thing in `main` (and in the benchmarks).

/// The allocator keeps what it frees (`memory`). Threads that wait for work sleep soon instead of
/// spinning, taking the cores from the other pools' threads: candle's element-wise pool spins
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
