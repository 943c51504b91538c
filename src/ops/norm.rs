//! Residual add + RMSNorm (shaders/add_rms_norm.wgsl), one workgroup per output row:
//!   residual += delta;  out = residual / sqrt(mean(residual^2) + eps) * weight
//! (`* weight` only where a weight is given). A run the matvec takes (at most 8 rows) needs none:
//! its matvecs normalize their input as they load it (ops::linear::InputNorm).

use super::optional_vector;
use crate::error::Result;
use crate::gpu::params::NormParams;
use crate::gpu::tensor::{ElementType, TensorView};
use crate::gpu::{Kernel, Recorder};

pub struct AddRmsNorm<'a> {
    pub residual: TensorView<'a>,       // (batch * t_len, d), updated in place when delta is given
    pub delta: Option<TensorView<'a>>,  // (batch * t_len, d)
    pub weight: Option<TensorView<'a>>, // (d)
    pub out: TensorView<'a>,            // (batch * t_len, d), or (batch, d) with last_only
    pub batch: u32,
    pub t_len: u32,
    /// Only the last position of each sequence (out has `batch` rows), for the final norm
    /// when only the next token's logits are needed.
    pub last_only: bool,
    pub eps: f32,
}

pub fn add_rms_norm(rec: &mut Recorder, op: &AddRmsNorm) -> Result<()> {
    let d = op.residual.cols;
    let all_rows = op.batch * op.t_len;
    let (rows, in_step, in_offset) = if op.last_only { (op.batch, op.t_len, op.t_len - 1) } else { (all_rows, 1, 0) };
    op.residual.expect_dense("add_rms_norm", "residual", ElementType::F32, all_rows, d)?;
    op.out.expect_dense("add_rms_norm", "out", ElementType::F32, rows, d)?;
    if let Some(delta) = op.delta {
        delta.expect_dense("add_rms_norm", "delta", ElementType::F32, all_rows, d)?;
    }
    let weight = optional_vector(rec, "add_rms_norm", "weight", op.weight, d)?;
    let delta = op.delta.map_or_else(|| rec.ctx().placeholder.clone(), |v| v.buffer.clone());
    let params =
        NormParams { rows, d, in_step, in_offset, add: op.delta.is_some() as u32, eps: op.eps, has_weight: op.weight.is_some() as u32, _pad: 0 };
    rec.dispatch(Kernel::AddRmsNorm, &params, &[op.residual.buffer, &delta, &weight, op.out.buffer], [rows, 1, 1])
}
