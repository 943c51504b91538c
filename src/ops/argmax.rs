//! ids (rows) = argmax over each row of logits (rows, n): shaders/argmax.wgsl.

use crate::error::Result;
use crate::gpu::params::ArgmaxParams;
use crate::gpu::tensor::{ElementType, TensorView};
use crate::gpu::{Kernel, Recorder};

/// `logits` (rows, n) f32, `ids` (rows, 1) u32, both dense.
pub fn argmax(rec: &mut Recorder, logits: TensorView, ids: TensorView) -> Result<()> {
    let (rows, n) = (logits.rows, logits.cols);
    logits.expect_dense("argmax", "logits", ElementType::F32, rows, n)?;
    ids.expect_dense("argmax", "ids", ElementType::U32, rows, 1)?;
    rec.dispatch(Kernel::Argmax, &ArgmaxParams { rows, n, _pad: [0; 2] }, &[logits.buffer, ids.buffer], [rows, 1, 1])
}
