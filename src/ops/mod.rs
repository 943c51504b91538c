//! One host function per kernel: it checks its operands (typed tensor views: element type,
//! shape, extent) against each other and the buffers, fills the parameter block and sizes the
//! dispatch from the same constants the shader was built with.

pub mod argmax;
pub mod conv1d;
pub mod embedding;
pub mod group_norm;
pub mod linear;
pub mod norm;
pub mod sample;
pub mod scan;
pub mod ssd;

use crate::error::Result;
use crate::gpu::tensor::{ElementType, TensorView};
use crate::gpu::Recorder;

/// An optional f32 vector operand of `len` elements, dense from its buffer's start: its buffer
/// to bind, or where it is absent the context's placeholder (the kernel's parameters then say
/// not to read it).
pub(crate) fn optional_vector(rec: &Recorder, op: &str, what: &str, view: Option<TensorView>, len: u32) -> Result<wgpu::Buffer> {
    match view {
        Some(view) => {
            view.expect_dense(op, what, ElementType::F32, 1, len)?;
            Ok(view.buffer.clone())
        }
        None => Ok(rec.ctx().placeholder.clone()),
    }
}

/// Workgroups needed to cover `n` items with groups of `per`.
pub(crate) fn groups(n: u32, per: u32) -> u32 {
    n.div_ceil(per)
}
