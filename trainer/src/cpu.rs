//! Process-wide CPU settings, applied first thing in `main` (and in the benchmarks).

/// The allocator keeps what it frees (`memory`); with `--features mkl`, MKL's OpenMP threads go
/// to sleep 1 ms after a matrix product instead of 200: spinning, they took the cores from the
/// element-wise kernels that run between products (forward + backward 12 % slower).
pub fn setup() {
    crate::memory::keep_freed_pages();
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
