//! Status codes, the thread's last error message, and the guard every entry point runs in: it
//! clears the last error, catches panics and turns a failure into a status and a message.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::Error;

/// What every call returns (`mw_status` in the header).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum mw_status {
    MW_OK = 0,
    MW_ERR_NULL_POINTER = 1,
    MW_ERR_INVALID_UTF8 = 2,
    MW_ERR_INVALID_ARGUMENT = 3,
    MW_ERR_BUFFER_TOO_SMALL = 4,
    MW_ERR_IO = 5,
    MW_ERR_MODEL = 6,
    MW_ERR_UNSUPPORTED = 7,
    MW_ERR_TOKENIZER = 8,
    MW_ERR_SNAPSHOT = 9,
    MW_ERR_NO_ADAPTER = 10,
    MW_ERR_GPU = 11,
    MW_ERR_BUSY = 12,
    MW_ERR_INTERNAL = 13,
}

use mw_status::*;

/// A failed call: its status and the message `mw_last_error` returns.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: mw_status,
    pub message: String,
}

impl Failure {
    pub fn new(status: mw_status, message: impl Into<String>) -> Self {
        Failure { status, message: message.into() }
    }
    pub fn null(name: &str) -> Self {
        Failure::new(MW_ERR_NULL_POINTER, format!("argument `{name}` is NULL"))
    }
    pub fn invalid(name: &str, reason: impl std::fmt::Display) -> Self {
        Failure::new(MW_ERR_INVALID_ARGUMENT, format!("invalid argument `{name}`: {reason}"))
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::Io { .. } => MW_ERR_IO,
            Error::Config { .. } | Error::Safetensors { .. } | Error::Gguf { .. } | Error::Tensor { .. } => MW_ERR_MODEL,
            Error::InvalidArgument { .. } => MW_ERR_INVALID_ARGUMENT,
            Error::Tokenizer { .. } => MW_ERR_TOKENIZER,
            Error::Snapshot { .. } => MW_ERR_SNAPSHOT,
            Error::NoAdapter(_) => MW_ERR_NO_ADAPTER,
            Error::Limit(_) | Error::Gpu(_) => MW_ERR_GPU,
            // No entry point sets an interrupt flag: reaching this is a bug.
            Error::Interrupted => MW_ERR_INTERNAL,
        };
        Failure { status, message: e.to_string() }
    }
}

pub(crate) type CResult<T> = std::result::Result<T, Failure>;

thread_local! {
    /// The message of this thread's last call, empty when it succeeded.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // A message never holds NUL in practice; if it does, the text stops there.
    let message = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|slot| *slot.borrow_mut() = message);
}

/// Runs one entry point: clears the thread's last error, runs `body`, and returns MW_OK or
/// the failure's status with its message stored; a panic becomes MW_ERR_INTERNAL.
pub(crate) fn guard(body: impl FnOnce() -> CResult<()>) -> mw_status {
    set_last_error("");
    let failure = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return MW_OK,
        Ok(Err(failure)) => failure,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Failure::new(MW_ERR_INTERNAL, format!("internal error in mamba-wgpu (a bug; free the handle it happened on): {what}"))
        }
    };
    set_last_error(&failure.message);
    failure.status
}

/// `guard` for a function that returns no status (the `*_free` functions): a failure or a
/// panic is only left in the thread's last error.
pub(crate) fn guard_void(body: impl FnOnce() -> CResult<()>) {
    let _ = guard(body);
}

/// The NUL-terminated string at `p` as UTF-8.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid for `'a`.
pub(crate) unsafe fn c_str<'a>(p: *const c_char, name: &str) -> CResult<&'a str> {
    if p.is_null() {
        return Err(Failure::null(name));
    }
    CStr::from_ptr(p)
        .to_str()
        .map_err(|e| Failure::new(MW_ERR_INVALID_UTF8, format!("argument `{name}` is not valid UTF-8 (invalid byte at offset {})", e.valid_up_to())))
}

/// `len` elements at `p`; NULL is allowed only when `len` is 0.
///
/// # Safety
/// `p` is NULL or points to `len` initialized elements that stay valid for `'a`.
pub(crate) unsafe fn slice<'a, T>(p: *const T, len: usize, name: &str) -> CResult<&'a [T]> {
    if p.is_null() {
        return if len == 0 { Ok(&[]) } else { Err(Failure::null(name)) };
    }
    Ok(std::slice::from_raw_parts(p, len))
}

/// Stores `value` at `out` (an output parameter that must not be NULL).
///
/// # Safety
/// `out` is NULL or valid for a write of `T`.
pub(crate) unsafe fn write<T>(out: *mut T, name: &str, value: T) -> CResult<()> {
    if out.is_null() {
        return Err(Failure::null(name));
    }
    out.write(value);
    Ok(())
}

/// Copies `bytes` into the caller's buffer `buf` of `capacity` bytes and stores how many
/// bytes there are (`extra` more are needed, e.g. 1 for a NUL) at `len`. A NULL `buf` only
/// asks for the size; a buffer too small is MW_ERR_BUFFER_TOO_SMALL and nothing is copied.
///
/// # Safety
/// `len` is NULL or writable; `buf` is NULL or valid for `capacity` bytes of writes.
pub(crate) unsafe fn copy_out(bytes: &[u8], nul: bool, buf: *mut u8, capacity: usize, len: *mut usize, name: &str) -> CResult<()> {
    write(len, "len", bytes.len())?;
    if buf.is_null() {
        return Ok(());
    }
    let needed = bytes.len() + nul as usize;
    if capacity < needed {
        return Err(Failure::new(MW_ERR_BUFFER_TOO_SMALL, format!("`{name}` holds {capacity} bytes, {needed} are needed")));
    }
    std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf, bytes.len());
    if nul {
        buf.add(bytes.len()).write(0);
    }
    Ok(())
}

/// The message of the last call made on this thread, or an empty string when it succeeded.
/// Valid until the next call on this thread; never NULL.
#[no_mangle]
pub extern "C" fn mw_last_error() -> *const c_char {
    LAST_ERROR.try_with(|slot| slot.borrow().as_ptr()).unwrap_or(c"".as_ptr())
}

/// A short, static description of a status code.
#[no_mangle]
pub extern "C" fn mw_status_string(status: i32) -> *const c_char {
    // An integer, not the enum: a value from C outside the enum is then no undefined behaviour.
    let text: &'static CStr = match status {
        0 => c"ok",
        1 => c"a required pointer is NULL",
        2 => c"a string is not valid UTF-8",
        3 => c"invalid argument",
        4 => c"the buffer is too small",
        5 => c"file or folder error",
        6 => c"bad model (config.json, weights file or tensors)",
        7 => c"not supported",
        8 => c"tokenizer error",
        9 => c"bad state snapshot",
        10 => c"no GPU adapter",
        11 => c"GPU error",
        12 => c"the session is in use by another call",
        13 => c"internal error",
        _ => c"unknown status",
    };
    text.as_ptr()
}

/// The library's version, e.g. "0.1.0"; static.
#[no_mangle]
pub extern "C" fn mw_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
