//! Causal depthwise conv1d + SiLU (shaders/conv1d.wgsl), continuing from and advancing the
//! conv state (batch, channels, k) that holds the last k inputs, newest last.

use super::{groups, optional_vector};
use crate::error::{Error, Result};
use crate::gpu::kernels::WG_64;
use crate::gpu::params::ConvParams;
use crate::gpu::tensor::{ElementType, TensorView};
use crate::gpu::{Kernel, Recorder};

pub struct Conv1d<'a> {
    pub x: TensorView<'a>,            // (batch * t_len, channels), may be a column slice (x half of in_proj's output)
    pub weight: TensorView<'a>,       // (channels, k)
    pub bias: Option<TensorView<'a>>, // (channels)
    pub state: TensorView<'a>,        // (batch * channels, k)
    pub out: TensorView<'a>,          // (batch * t_len, channels); or `x` itself, in place (linear_conv_step)
    pub batch: u32,
    pub t_len: u32,
}

impl Conv1d<'_> {
    pub fn channels(&self) -> u32 {
        self.weight.rows
    }
    /// d_conv, the window length.
    pub fn k(&self) -> u32 {
        self.weight.cols
    }
}

/// Over t_len tokens: conv_prefill, then conv_state_update. With t_len = 1 a single fused
/// conv_step does both (decode). (In a decode step, ops::linear::linear_conv_step runs it
/// inside in_proj's kernel, in place.) `out` is another buffer than x's: x is bound read-only.
pub fn conv1d_silu(rec: &mut Recorder, op: &Conv1d) -> Result<()> {
    let (params, bias) = checked(rec, op)?;
    let (b, t, c) = (op.batch, op.t_len, op.channels());
    op.out.expect_dense("conv1d", "out", ElementType::F32, b * t, c)?;
    if op.out.buffer == op.x.buffer {
        return Err(Error::invalid("conv1d.out", "conv1d_silu writes another buffer than its input's (in place: linear_conv_step)"));
    }
    let buffers = [op.x.buffer, op.weight.buffer, &bias, op.state.buffer, op.out.buffer];
    if t == 1 {
        return rec.dispatch(Kernel::ConvStep, &params, &buffers, [groups(c, WG_64), b, 1]);
    }
    rec.dispatch(Kernel::ConvPrefill, &params, &buffers, [groups(c, WG_64), t, b])?;
    // conv_state_update reads only x and the state (bindings 1 and 4).
    rec.dispatch_bindings(Kernel::ConvStateUpdate, &params, &[(1, op.x.buffer), (4, op.state.buffer)], [groups(c, WG_64), b, 1])
}

/// Checks the operands but `out` (its caller's); returns the parameters and the bias to bind (a
/// placeholder if none).
pub(crate) fn checked(rec: &Recorder, op: &Conv1d) -> Result<(ConvParams, wgpu::Buffer)> {
    let (b, t, c, k) = (op.batch, op.t_len, op.channels(), op.k());
    op.x.expect("conv1d", "x", ElementType::F32, b * t, c)?;
    op.weight.expect_dense("conv1d", "weight", ElementType::F32, c, k)?;
    op.state.expect_dense("conv1d", "state", ElementType::F32, b * c, k)?;
    let bias = optional_vector(rec, "conv1d", "bias", op.bias, c)?;
    let params = ConvParams {
        batch: b,
        t_len: t,
        channels: c,
        k,
        x_stride: op.x.row_stride,
        has_bias: op.bias.is_some() as u32,
        x_offset: op.x.offset,
        _pad: 0,
    };
    Ok((params, bias))
}
