//! The C API: every `mw_*` function that `include/mamba_wgpu.h` declares, exported from the
//! shared library (`libmamba_wgpu.so`, `.dylib`, `.dll`) and the static one (`.a`, `.lib`).
//!
//! The header is the documentation; this module keeps to it:
//! - Types seen from C carry their C names (`mw_status`, `mw_sampling_options`), so that the
//!   test that compares the header with these sources (tests/c_api.rs) needs no name mapping.
//! - Every entry point runs in [`errors::guard`]: the thread's last error is cleared, a failure
//!   becomes a status code and a message (`mw_last_error`), a panic becomes
//!   `MW_ERR_INTERNAL`; nothing unwinds into C.
//! - Handles are boxes with a tag checked on every use, so that a NULL, a handle of another
//!   kind or (often) a freed one is an error rather than undefined behaviour.
//! - A session holds a busy flag: a second call on it while one runs (another thread, or its
//!   own callback) fails with `MW_ERR_BUSY` instead of racing.
//!
//! Async work is blocked on with `pollster`: the C API is synchronous.

#![allow(non_camel_case_types)]

pub mod chat;
pub mod context;
pub mod errors;
pub mod generate;
pub mod model;
pub mod session;

pub use chat::mw_chat_message;
pub use context::mw_context;
pub use errors::mw_status;
pub use generate::{mw_finish_reason, mw_generate_result, mw_sampling_options, mw_text_fn, mw_token_fn};
pub use model::{mw_load_options, mw_model, mw_model_info, mw_weight_dtype, MW_NO_TOKEN};
pub use session::mw_session;

use errors::{CResult, Failure};

/// A handle type: a box whose first field is a tag naming its kind.
pub(crate) trait Handle: Sized {
    /// Nonzero, distinct per kind; a freed handle's tag is zeroed.
    const TAG: u64;
    /// The C type name, for messages.
    const NAME: &'static str;
    fn tag(&self) -> u64;
    fn clear_tag(&mut self);
}

/// The handle behind `p`, checked: not NULL, and tagged as a live handle of this kind.
///
/// # Safety
/// `p` is NULL or points to memory readable as `T` (a handle this library returned).
pub(crate) unsafe fn handle<'a, T: Handle>(p: *const T, name: &str) -> CResult<&'a T> {
    if p.is_null() {
        return Err(Failure::null(name));
    }
    let h = &*p;
    if h.tag() != T::TAG {
        return Err(Failure::invalid(name, format!("is not a live {} (already freed, or a handle of another kind)", T::NAME)));
    }
    Ok(h)
}

/// A new handle for C.
pub(crate) fn into_raw<T: Handle>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Frees a handle made by `into_raw`. NULL does nothing; a pointer that is not a live handle
/// of this kind is left alone (a leak is better than a double free) and noted in the thread's
/// last error.
///
/// # Safety
/// `p` is NULL or a handle this library returned that no other call is using.
pub(crate) unsafe fn free<T: Handle>(p: *mut T) {
    errors::guard_void(|| {
        if p.is_null() {
            return Ok(());
        }
        if (*p).tag() != T::TAG {
            return Err(Failure::invalid("handle", format!("is not a live {}; not freed", T::NAME)));
        }
        (*p).clear_tag();
        drop(Box::from_raw(p));
        Ok(())
    });
}

/// Handles move between threads, and contexts and models are shared by sessions on several
/// threads: the types must allow it.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    const fn send<T: Send>() {}
    send_sync::<mw_context>();
    send_sync::<model::LoadedModel>();
    send::<session::SessionState>();
};
