//! Causal depthwise conv1d + SiLU (shaders/conv1d.wgsl), continuing from and advancing the
//! conv state (batch, channels, k) that holds the last k inputs, newest last.

use super::{check_len, groups, optional_operand};
use crate::error::{Error, Result};
use crate::gpu::kernels::WG_64;
use crate::gpu::params::ConvParams;
use crate::gpu::{Kernel, Recorder};

pub struct Conv1d<'a> {
    pub x: &'a wgpu::Buffer, // (batch, t_len, x_stride): x is the first `channels` of each row
    pub x_stride: u32,
    pub weight: &'a wgpu::Buffer,       // (channels, k)
    pub bias: Option<&'a wgpu::Buffer>, // (channels)
    pub state: &'a wgpu::Buffer,        // (batch, channels, k)
    pub out: &'a wgpu::Buffer,          // (batch, t_len, channels)
    pub batch: u32,
    pub t_len: u32,
    pub channels: u32,
    pub k: u32,
}

/// Over t_len tokens: conv_prefill, then conv_state_update; on CPU devices conv_walk does both
/// where d_conv is 4 and the channels and x's rows come in fours. With t_len = 1 a single
/// fused conv_step does both (decode). (In a decode step, ops::linear::linear_conv_step runs
/// it inside in_proj's kernel instead.)
pub fn conv1d_silu(rec: &mut Recorder, op: &Conv1d) -> Result<()> {
    let (params, bias) = checked(rec, op)?;
    let (b, t, c) = (op.batch, op.t_len, op.channels);
    let buffers = [op.x, op.weight, &bias, op.state, op.out];
    if t == 1 {
        return rec.dispatch(Kernel::ConvStep, &params, &buffers, [groups(c, WG_64), b, 1]);
    }
    if !rec.ctx().gpu_kernels && op.k == 4 && c.is_multiple_of(4) && op.x_stride.is_multiple_of(4) {
        return rec.dispatch(Kernel::ConvWalk, &params, &buffers, [groups(c / 4, WG_64), b, 1]);
    }
    rec.dispatch(Kernel::ConvPrefill, &params, &buffers, [groups(c, WG_64), t, b])?;
    // conv_state_update reads only x and the state (bindings 1 and 4).
    rec.dispatch_bindings(Kernel::ConvStateUpdate, &params, &[(1, op.x), (4, op.state)], [groups(c, WG_64), b, 1])
}

/// Checks the shapes; returns the parameters and the bias to bind (a placeholder if none).
pub(crate) fn checked(rec: &Recorder, op: &Conv1d) -> Result<(ConvParams, wgpu::Buffer)> {
    let (b, t, c, k) = (op.batch, op.t_len, op.channels, op.k);
    if op.x_stride < c {
        return Err(Error::invalid("conv1d.x_stride", format!("{} is narrower than {c} channels", op.x_stride)));
    }
    check_len("conv1d", "x", op.x, b as u64 * t as u64 * op.x_stride as u64)?;
    check_len("conv1d", "weight", op.weight, c as u64 * k as u64)?;
    check_len("conv1d", "state", op.state, b as u64 * c as u64 * k as u64)?;
    check_len("conv1d", "out", op.out, b as u64 * t as u64 * c as u64)?;
    let bias = optional_operand(rec, "conv1d", "bias", op.bias, c as u64)?;
    let params = ConvParams { batch: b, t_len: t, channels: c, k, x_stride: op.x_stride, has_bias: op.bias.is_some() as u32, _pad: [0; 2] };
    Ok((params, bias))
}
