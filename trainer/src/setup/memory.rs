//! The process allocator. candle allocates a fresh buffer for every op, megabytes at a time. With
//! glibc's allocator those buffers went back to the kernel when freed and came back zeroed on the
//! next op: page faults (and the TLB shootdowns of two threads faulting at once) took much of the
//! encoder's forward + backward time. mimalloc, told to keep what it frees, serves them from
//! memory already mapped. The price: the process stays at its peak resident size. Both figures:
//! docs/benchmarks.md.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_e` values (mimalloc.h, v3).
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Never return freed pages to the kernel, and commit arenas up front (`cpu::setup`).
pub fn keep_freed_pages() {
    // SAFETY: mi_option_set only stores an integer in mimalloc's option table.
    unsafe {
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 1);
        libmimalloc_sys::mi_option_set(PURGE_DELAY, -1);
    }
}
