//! One glibc malloc arena instead of one per thread.
//!
//! glibc gives every thread that allocates an arena of its own; with the runtime's worker
//! threads each holding freed memory in its own arena, the core kept about 3.5 MB more
//! resident under the MQTT benchmark than with a single arena (docs/performance.md), and
//! edge devices are short of memory. The allocation paths that matter are short, so the
//! shared arena's lock costs little.

// The one foreign call of the binary: `mallopt` from the C library it links anyway.
#![allow(unsafe_code)]

#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn single_arena() {
    use std::ffi::c_int;
    /// `M_ARENA_MAX` from glibc's `malloc.h`.
    const M_ARENA_MAX: c_int = -8;
    unsafe extern "C" {
        fn mallopt(param: c_int, value: c_int) -> c_int;
    }
    // SAFETY: mallopt only sets an allocator parameter; it is called before any thread
    // starts, and M_ARENA_MAX with a positive value is a documented, valid setting.
    unsafe {
        mallopt(M_ARENA_MAX, 1);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn single_arena() {}

/// Give memory that a deployment freed back to the system: parsing and compiling a group
/// allocates a few MB that glibc would otherwise keep behind later, small allocations.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim() {
    unsafe extern "C" {
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it takes glibc's own
    // arena lock and is safe to call from any thread at any time.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() {}
