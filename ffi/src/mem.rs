//! Caller memory: the pointers a caller lends, each checked once here.

use std::mem::MaybeUninit;

use super::guard::Fail;
use super::types::{procspy_walk_stats, procspy_walker};
use procspy::{Stats, Walker};

/// The walker behind `walker`, the `try_ref_from_ptr!` way of rustls-ffi:
/// NULL is `PROCSPY_NULL_ARGUMENT`.
pub(super) fn walker_ref<'a>(walker: *const procspy_walker) -> Result<&'a Walker, Fail> {
    // SAFETY: a non-NULL `walker` came from `procspy_walker_new` and is not
    // yet freed: the header makes that the caller's part of the contract.
    unsafe { walker.as_ref() }.map(|w| &w.inner).ok_or(Fail::Null("walker"))
}

/// The caller's out parameter `out`; NULL is `PROCSPY_NULL_ARGUMENT`
/// naming it (`name`).
pub(super) fn out_ref<'a, T>(out: *mut T, name: &'static str) -> Result<&'a mut T, Fail> {
    // SAFETY: a non-NULL out parameter points at a writable `T`: the header
    // makes that the caller's part of the contract.
    unsafe { out.as_mut() }.ok_or(Fail::Null(name))
}

/// `out_ref`, set to `value` at once: what it holds after every failure.
pub(super) fn out_reset<'a, T>(out: *mut T, name: &'static str, value: T) -> Result<&'a mut T, Fail> {
    let out = out_ref(out, name)?;
    *out = value;
    Ok(out)
}

/// Hands the caller a new handle holding `value`: the one place one is
/// made; `take_back` is the one place one is freed.
pub(super) fn give<T>(out: &mut *mut T, value: T) {
    *out = Box::into_raw(Box::new(value));
}

/// Frees a handle `give` made; NULL is a no-op. Never fails: `Ok` is for
/// the guard whose body it is.
///
/// # Safety
/// A non-NULL `handle` came from `give` and is not used again.
pub(super) unsafe fn take_back<T>(handle: *mut T) -> Result<(), Fail> {
    if !handle.is_null() {
        // SAFETY: the caller's promise: `give` made it and it is freed once.
        drop(unsafe { Box::from_raw(handle) });
    }
    Ok(())
}

/// The caller's buffer as uninitialised memory: `cap == 0` is an empty
/// buffer whatever `buf` is.
///
/// # Safety
/// `buf` must be NULL or valid for writes of `cap` bytes for `'a`.
pub(super) unsafe fn caller_buffer<'a>(buf: *mut u8, cap: usize) -> Result<&'a mut [MaybeUninit<u8>], Fail> {
    if cap == 0 {
        return Ok(&mut []);
    }
    if buf.is_null() {
        return Err(Fail::Null("buf"));
    }
    if cap > isize::MAX as usize {
        return Err(Fail::Invalid(format!("cap {cap} exceeds the address space")));
    }
    // SAFETY: the caller lends `cap` writable bytes; they are only written
    // through read(2) and never read before that.
    Ok(unsafe { std::slice::from_raw_parts_mut(buf.cast::<MaybeUninit<u8>>(), cap) })
}

/// Copies `text` into `buf` the snprintf way: at most `cap - 1` bytes and a
/// NUL (nothing where `cap` is 0); whether it all fit.
///
/// # Safety
/// `buf` must be valid for writes of `cap` bytes (NULL only with `cap` 0).
pub(super) unsafe fn copy_out(text: &[u8], buf: *mut std::ffi::c_char, cap: usize) -> bool {
    if cap == 0 || buf.is_null() {
        return text.is_empty() && cap > 0;
    }
    let n = text.len().min(cap - 1);
    // SAFETY: the caller lends `cap` writable bytes at `buf`; n < cap.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n);
        *buf.add(n) = 0;
    }
    n == text.len()
}

/// Stores `stats` where the caller asked, if it did.
pub(super) fn put_stats(out: *mut procspy_walk_stats, stats: &Stats) {
    // SAFETY: a non-NULL `out` points at a caller-allocated struct.
    if let Some(out) = unsafe { out.as_mut() } {
        *out = stats.into();
    }
}
