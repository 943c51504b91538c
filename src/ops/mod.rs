//! One host function per kernel: it checks the shapes against the buffers, fills the
//! parameter block and sizes the dispatch from the same constants the shader was built with.

pub mod argmax;
pub mod conv1d;
pub mod embedding;
pub mod linear;
pub mod norm;
pub mod scan;
pub mod top_k;

use crate::error::{Error, Result};
use crate::gpu::Recorder;

/// Fails unless `buffer` holds at least `elements` 4-byte values; `what` names the operand.
pub(crate) fn check_len(op: &str, what: &str, buffer: &wgpu::Buffer, elements: u64) -> Result<()> {
    let needed = elements * 4;
    if buffer.size() < needed {
        return Err(Error::invalid(format!("{op}.{what}"), format!("buffer holds {} bytes, the shapes need {needed}", buffer.size())));
    }
    Ok(())
}

/// An optional operand to bind: `buffer`, checked as check_len does, or where it is absent
/// the context's placeholder (the kernel's parameters then say not to read it).
pub(crate) fn optional_operand(rec: &Recorder, op: &str, what: &str, buffer: Option<&wgpu::Buffer>, elements: u64) -> Result<wgpu::Buffer> {
    match buffer {
        Some(buffer) => {
            check_len(op, what, buffer, elements)?;
            Ok(buffer.clone())
        }
        None => Ok(rec.ctx().placeholder.clone()),
    }
}

/// Workgroups needed to cover `n` items with groups of `per`.
pub(crate) fn groups(n: u32, per: u32) -> u32 {
    n.div_ceil(per)
}
