//! Residual add + RMSNorm (shaders/add_rms_norm.wgsl), one workgroup per output row:
//!   residual += delta;  out = residual / sqrt(mean(residual^2) + eps) * weight
//! (`* weight` only where a weight is given: the layers' norm weights are folded into in_proj)

use super::{check_len, optional_operand};
use crate::error::Result;
use crate::gpu::params::NormParams;
use crate::gpu::{Kernel, Recorder};

pub struct AddRmsNorm<'a> {
    pub residual: &'a wgpu::Buffer,       // (batch * t, d), updated in place when delta is given
    pub delta: Option<&'a wgpu::Buffer>,  // (batch * t, d)
    pub weight: Option<&'a wgpu::Buffer>, // (d)
    pub out: &'a wgpu::Buffer,            // (rows, d)
    pub d: u32,
    /// Rows of the residual: batch * t.
    pub batch: u32,
    pub t_len: u32,
    /// Only the last position of each sequence (out has `batch` rows), for the final norm
    /// when only the next token's logits are needed.
    pub last_only: bool,
    pub eps: f32,
}

pub fn add_rms_norm(rec: &mut Recorder, op: &AddRmsNorm) -> Result<()> {
    let all_rows = op.batch as u64 * op.t_len as u64;
    let (rows, in_step, in_offset) = if op.last_only { (op.batch, op.t_len, op.t_len - 1) } else { (op.batch * op.t_len, 1, 0) };
    check_len("add_rms_norm", "residual", op.residual, all_rows * op.d as u64)?;
    check_len("add_rms_norm", "out", op.out, rows as u64 * op.d as u64)?;
    let weight = optional_operand(rec, "add_rms_norm", "weight", op.weight, op.d as u64)?;
    let delta = optional_operand(rec, "add_rms_norm", "delta", op.delta, all_rows * op.d as u64)?;
    let params = NormParams {
        rows,
        d: op.d,
        in_step,
        in_offset,
        add: op.delta.is_some() as u32,
        eps: op.eps,
        has_weight: op.weight.is_some() as u32,
        _pad: 0,
    };
    let kernel = Kernel::AddRmsNorm { small_workgroup: !rec.ctx().gpu_kernels };
    rec.dispatch(kernel, &params, &[op.residual, &delta, &weight, op.out], [rows, 1, 1])
}
