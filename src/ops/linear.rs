//! y = act(x . W^T + bias), PyTorch's nn.Linear: shaders/matvec.wgsl for a few rows (decode,
//! bandwidth bound), shaders/matmul.wgsl otherwise (prefill, tiled). A weight split into parts
//! is one dispatch per part, each writing its slice of output columns.

use super::conv1d::{self, conv1d_silu, Conv1d};
use super::{groups, optional_vector};
use crate::error::{Error, Result};
use crate::gpu::kernels::{MATMUL_TILE, MATVEC_MAX_M, MATVEC_ROWS_PER_WG};
use crate::gpu::params::LinearParams;
use crate::gpu::tensor::{ElementType, TensorView};
use crate::gpu::{GpuWeight, Kernel, Recorder};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    None,
    /// log(1 + exp(v)): dt = softplus(dt_proj(dt_low) + bias)
    Softplus,
}

/// y = act(x . W^T + bias) over the rows of x. With `rms_norm_eps`, x's rows are
/// RMS-normalized first (without a weight: the loader folds the norm's weight into `weight`'s
/// columns, TensorSink::in_proj_with_norm):
///   y = act(x / sqrt(mean(x^2) + eps) . W^T + bias);
/// with `accumulate`, y += that instead of y = that (the residual stream). Both need the
/// matvec (at most MATVEC_MAX_M rows): they let a decode step skip the norm's own dispatch.
pub struct Linear<'a> {
    pub x: TensorView<'a>,            // (rows, k), may be a column slice of a wider matrix
    pub weight: &'a GpuWeight,        // (n, k)
    pub bias: Option<TensorView<'a>>, // (n)
    pub y: TensorView<'a>,            // (rows, n), may be a column slice of a wider matrix
    pub activation: Activation,
    pub rms_norm_eps: Option<f32>,
    pub accumulate: bool,
}

impl<'a> Linear<'a> {
    /// y = x . W^T, no bias, no activation.
    pub fn new(x: TensorView<'a>, weight: &'a GpuWeight, y: TensorView<'a>) -> Self {
        Linear { x, weight, bias: None, y, activation: Activation::None, rms_norm_eps: None, accumulate: false }
    }
}

pub fn linear(rec: &mut Recorder, op: &Linear) -> Result<()> {
    dispatch(rec, op, None)
}

/// in_proj, then the decode conv step (`conv.t_len` = 1) on its x half, which `conv.x` reads
/// from `op.y`. With at most 8 rows and d_conv = 4 (every Mamba release) this is one dispatch
/// (shaders/matvec.wgsl, main_conv; the conv's output and state are written, in_proj's x half
/// is not); otherwise `linear`, then `conv1d_silu`.
pub fn linear_conv_step(rec: &mut Recorder, op: &Linear, conv: &Conv1d) -> Result<()> {
    let fused = op.x.rows <= MATVEC_MAX_M
        && conv.t_len == 1
        && conv.k() == 4
        && conv.batch == op.x.rows
        && conv.x.buffer == op.y.buffer
        && (conv.x.row_stride, conv.x.offset, op.y.offset) == (op.y.row_stride, 0, 0)
        && op.activation == Activation::None
        && !op.accumulate
        && conv.channels() <= op.weight.rows;
    if !fused {
        linear(rec, op)?;
        return conv1d_silu(rec, conv);
    }
    let (_, conv_bias) = conv1d::checked(rec, conv)?;
    dispatch(rec, op, Some((conv, &conv_bias)))
}

/// `conv`: the conv step to fuse, with the bias buffer to bind (linear_conv_step).
fn dispatch(rec: &mut Recorder, op: &Linear, conv: Option<(&Conv1d, &wgpu::Buffer)>) -> Result<()> {
    let (n, k, m) = (op.weight.rows, op.weight.cols, op.x.rows);
    op.x.expect("linear", "x", ElementType::F32, m, k)?;
    op.y.expect("linear", "y", ElementType::F32, m, n)?;
    if (op.rms_norm_eps.is_some() || op.accumulate) && m > MATVEC_MAX_M {
        return Err(Error::invalid("linear", format!("rms_norm and accumulate need the matvec (at most {MATVEC_MAX_M} rows), got {m} rows")));
    }
    if m == 0 {
        return Ok(());
    }
    let bias = &optional_vector(rec, "linear", "bias", op.bias, n)?;
    let f16 = op.weight.dtype.is_f16();
    // The matvec loads X 16 bytes at a time when its rows are aligned and k fills whole units
    // of W.
    let wide = k.is_multiple_of(op.weight.dtype.elements_per_unit() as u32) && op.x.row_stride.is_multiple_of(4) && op.x.offset.is_multiple_of(4);
    for part in &op.weight.parts {
        let params = LinearParams {
            m,
            n: part.rows,
            k,
            x_stride: op.x.row_stride,
            x_offset: op.x.offset,
            y_stride: op.y.row_stride,
            y_offset: op.y.offset + part.first_row,
            bias_offset: part.first_row,
            has_bias: op.bias.is_some() as u32,
            activation: (op.activation == Activation::Softplus) as u32,
            wide: wide as u32,
            conv_channels: conv.map_or(0, |(c, _)| c.channels()),
            conv_has_bias: conv.is_some_and(|(c, _)| c.bias.is_some()) as u32,
            rms_norm: op.rms_norm_eps.is_some() as u32,
            norm_eps: op.rms_norm_eps.unwrap_or(0.0),
            accumulate: op.accumulate as u32,
            _pad: [0; 4],
        };
        let batch = m as u8;
        if let Some((conv, conv_bias)) = conv {
            let buffers = [op.x.buffer, &part.buffer, bias, op.y.buffer, conv.weight.buffer, conv_bias, conv.state.buffer, conv.out.buffer];
            rec.dispatch(Kernel::MatvecConv { f16, batch }, &params, &buffers, [groups(part.rows, MATVEC_ROWS_PER_WG), 1, 1])?;
            continue;
        }
        let buffers = [op.x.buffer, &part.buffer, bias, op.y.buffer];
        let (kernel, workgroups) = if m <= MATVEC_MAX_M {
            (Kernel::Matvec { f16, batch }, [groups(part.rows, MATVEC_ROWS_PER_WG), 1, 1])
        } else {
            (Kernel::Matmul { f16 }, [groups(part.rows, MATMUL_TILE), groups(m, MATMUL_TILE), 1])
        };
        rec.dispatch(kernel, &params, &buffers, workgroups)?;
    }
    Ok(())
}
