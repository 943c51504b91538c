//! RMSNorm over segments of a row, in place (shaders/group_rms_norm.wgsl):
//!   v = x * silu(z) (gated) or x;  x = v / sqrt(mean(v^2) + eps) * weight (where given)
//! with the mean over each segment: Mamba-2's gated RMSNorm (segments = the G groups of
//! d_inner) and FalconMamba's weightless norms of dt_low, B and C in x_proj's output.

use super::optional_vector;
use crate::error::{Error, Result};
use crate::gpu::params::GroupNormParams;
use crate::gpu::tensor::{ElementType, TensorView};
use crate::gpu::{Kernel, Recorder};

pub struct GroupRmsNorm<'a> {
    /// (rows, first_width + (segments - 1) * width), normalized in place; may be a column slice.
    pub x: TensorView<'a>,
    /// Width of the first segment; the others are `width` wide.
    pub first_width: u32,
    pub width: u32,
    /// (rows, x.cols): x is multiplied by silu(z) before the norm.
    pub gate: Option<TensorView<'a>>,
    /// (x.cols)
    pub weight: Option<TensorView<'a>>,
    pub eps: f32,
}

pub fn group_rms_norm(rec: &mut Recorder, op: &GroupRmsNorm) -> Result<()> {
    let (rows, cols) = (op.x.rows, op.x.cols);
    let rest = cols.checked_sub(op.first_width).filter(|_| op.first_width > 0 && op.width > 0);
    let Some(rest) = rest.filter(|r| r.is_multiple_of(op.width)) else {
        return Err(Error::invalid("group_rms_norm", format!("{cols} columns are not {} then segments of {}", op.first_width, op.width)));
    };
    op.x.expect("group_rms_norm", "x", ElementType::F32, rows, cols)?;
    if let Some(z) = op.gate {
        z.expect("group_rms_norm", "gate", ElementType::F32, rows, cols)?;
    }
    let weight = optional_vector(rec, "group_rms_norm", "weight", op.weight, cols)?;
    let z = op.gate.map_or_else(|| rec.ctx().placeholder.clone(), |v| v.buffer.clone());
    let params = GroupNormParams {
        rows,
        x_stride: op.x.row_stride,
        x_offset: op.x.offset,
        first_width: op.first_width,
        width: op.width,
        gated: op.gate.is_some() as u32,
        z_stride: op.gate.map_or(0, |z| z.row_stride),
        z_offset: op.gate.map_or(0, |z| z.offset),
        has_weight: op.weight.is_some() as u32,
        eps: op.eps,
        _pad: [0; 2],
    };
    if rows == 0 {
        return Ok(());
    }
    rec.dispatch(Kernel::GroupRmsNorm, &params, &[op.x.buffer, &z, &weight], [rows, 1 + rest / op.width, 1])
}
