//! `mw_context`: a GPU device (wgpu adapter, device and queue), shared by the models on it.

use std::ffi::{c_char, CString};
use std::sync::Arc;

use super::errors::{c_str, copy_out, guard, write, CResult, Failure};
use super::{free, handle, into_raw, mw_status, Handle};
use crate::error::Error;
use crate::gpu::GpuContext;

/// Opaque to C.
pub struct mw_context {
    tag: u64,
    pub(crate) ctx: Arc<GpuContext>,
    /// "name (Backend, DeviceType)", as `mamba-wgpu info` prints the adapter.
    adapter: CString,
}

impl Handle for mw_context {
    const TAG: u64 = u64::from_le_bytes(*b"mw:ctx\0\0");
    const NAME: &'static str = "mw_context";
    fn tag(&self) -> u64 {
        self.tag
    }
    fn clear_tag(&mut self) {
        self.tag = 0;
    }
}

/// Opens a GPU. `adapter` NULL picks wgpu's preferred adapter; otherwise it is a number in the
/// list `mw_adapter_list` gives, or text the adapter's line there contains (case-insensitive).
///
/// # Safety
/// `adapter` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mw_context_new(adapter: *const c_char, out: *mut *mut mw_context) -> mw_status {
    guard(|| {
        write(out, "out", std::ptr::null_mut())?;
        let filter = if adapter.is_null() { None } else { Some(c_str(adapter, "adapter")?) };
        let ctx = pollster::block_on(GpuContext::new(filter)).map_err(|e| match e {
            // No adapter matching the name is "no adapter" to C, like having none at all.
            Error::InvalidArgument { name, reason } if name == "adapter" => Failure::new(mw_status::MW_ERR_NO_ADAPTER, format!("adapter: {reason}")),
            other => other.into(),
        })?;
        let adapter = CString::new(ctx.adapter.to_string().replace('\0', " ")).unwrap_or_default();
        write(out, "out", into_raw(mw_context { tag: mw_context::TAG, ctx, adapter }))
    })
}

/// The adapter's description; the string belongs to the context.
///
/// # Safety
/// `ctx` is NULL or a context handle; `name` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mw_context_adapter(ctx: *const mw_context, name: *mut *const c_char) -> mw_status {
    guard(|| {
        let ctx = handle(ctx, "ctx")?;
        write(name, "name", ctx.adapter.as_ptr())
    })
}

/// Every adapter wgpu can see, one "i: description" line each, NUL-terminated.
///
/// # Safety
/// `buf` is NULL or writable for `capacity` bytes; `len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mw_adapter_list(buf: *mut c_char, capacity: usize, len: *mut usize) -> mw_status {
    guard(|| {
        let mut text = String::new();
        for line in GpuContext::list_adapters() {
            text.push_str(&line.replace('\0', " "));
            text.push('\n');
        }
        copy_out(text.as_bytes(), true, buf.cast(), capacity, len, "buf")
    })
}

/// Releases the caller's reference; models loaded on the context keep the device alive.
///
/// # Safety
/// `ctx` is NULL or a context handle not in use by another call.
#[no_mangle]
pub unsafe extern "C" fn mw_context_free(ctx: *mut mw_context) {
    free(ctx)
}

/// The context of a handle, for loading a model.
pub(crate) unsafe fn context_of(ctx: *const mw_context) -> CResult<Arc<GpuContext>> {
    Ok(handle(ctx, "ctx")?.ctx.clone())
}
