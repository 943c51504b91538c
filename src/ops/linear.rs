//! y = act(x . W^T + bias), PyTorch's nn.Linear: shaders/matvec.wgsl for a few rows (decode,
//! bandwidth bound), shaders/matmul.wgsl otherwise (prefill, tiled). A weight split into parts
//! is one dispatch per part, each writing its slice of output columns.

use super::conv1d::{self, conv1d_silu, Conv1d};
use super::{check_len, groups, optional_operand};
use crate::error::{Error, Result};
use crate::gpu::kernels::{MATMUL_DIRECT_TILE, MATMUL_SUBGROUP_TILE, MATMUL_TILE, MATVEC_MAX_M, MATVEC_ROWS_PER_WG};
use crate::gpu::params::LinearParams;
use crate::gpu::tensor::{WeightLayout, WeightPart, BLOCK_ROWS};
use crate::gpu::{GpuWeight, Kernel, Recorder};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    None,
    /// log(1 + exp(v)): dt = softplus(dt_proj(dt_low) + bias)
    Softplus,
}

/// Row m of x starts at m * x_stride + x_offset; row m of y at m * y_stride + y_offset.
/// With `rms_norm_eps`, x's rows are RMS-normalized first (without a weight: the loader folds
/// the norm's weight into `weight`'s columns, TensorSink::in_proj_with_norm):
///   y = act(x / sqrt(mean(x^2) + eps) . W^T + bias);
/// with `accumulate`, y += that instead of y = that (the residual stream). Both need the
/// matvec (at most MATVEC_MAX_M rows): they let a decode step skip the norm's own dispatch.
pub struct Linear<'a> {
    pub x: &'a wgpu::Buffer,
    pub x_stride: u32,
    pub x_offset: u32,
    pub rows: u32,
    pub weight: &'a GpuWeight,          // (n, k)
    pub bias: Option<&'a wgpu::Buffer>, // (n)
    pub y: &'a wgpu::Buffer,
    pub y_stride: u32,
    pub y_offset: u32,
    pub activation: Activation,
    pub rms_norm_eps: Option<f32>,
    pub accumulate: bool,
}

impl<'a> Linear<'a> {
    /// Dense rows in and out: x (rows, k), y (rows, n).
    pub fn dense(x: &'a wgpu::Buffer, rows: u32, weight: &'a GpuWeight, y: &'a wgpu::Buffer) -> Self {
        Linear {
            x,
            x_stride: weight.cols,
            x_offset: 0,
            rows,
            weight,
            bias: None,
            y,
            y_stride: weight.rows,
            y_offset: 0,
            activation: Activation::None,
            rms_norm_eps: None,
            accumulate: false,
        }
    }
}

pub fn linear(rec: &mut Recorder, op: &Linear) -> Result<()> {
    dispatch(rec, op, None)
}

/// in_proj, then the decode conv step (`conv.t_len` = 1) on its x half, which `conv.x` reads
/// from `op.y`. With at most 8 rows and d_conv = 4 (every Mamba release) this is one dispatch
/// (shaders/matvec.wgsl, main_conv or main_blocks_conv; the conv's output and state are
/// written, in_proj's x half is not); otherwise `linear`, then `conv1d_silu`.
pub fn linear_conv_step(rec: &mut Recorder, op: &Linear, conv: &Conv1d) -> Result<()> {
    let fused = op.rows <= MATVEC_MAX_M
        && conv.t_len == 1
        && conv.k == 4
        && conv.batch == op.rows
        && conv.x == op.y
        && (conv.x_stride, op.y_offset) == (op.y_stride, 0)
        && op.activation == Activation::None
        && !op.accumulate
        && conv.channels <= op.weight.rows;
    if !fused {
        linear(rec, op)?;
        return conv1d_silu(rec, conv);
    }
    let (_, conv_bias) = conv1d::checked(rec, conv)?;
    dispatch(rec, op, Some((conv, &conv_bias)))
}

/// `conv`: the conv step to fuse, with the bias buffer to bind (linear_conv_step).
fn dispatch(rec: &mut Recorder, op: &Linear, conv: Option<(&Conv1d, &wgpu::Buffer)>) -> Result<()> {
    let (n, k, m) = (op.weight.rows, op.weight.cols, op.rows);
    if op.x_offset + k > op.x_stride || op.y_offset + n > op.y_stride {
        return Err(Error::invalid(
            "linear",
            format!(
                "a row of {k} inputs at offset {} or {n} outputs at offset {} does not fit strides {} / {}",
                op.x_offset, op.y_offset, op.x_stride, op.y_stride
            ),
        ));
    }
    if (op.rms_norm_eps.is_some() || op.accumulate) && m > MATVEC_MAX_M {
        return Err(Error::invalid("linear", format!("rms_norm and accumulate need the matvec (at most {MATVEC_MAX_M} rows), got {m} rows")));
    }
    if m == 0 {
        return Ok(());
    }
    check_len("linear", "x", op.x, (m as u64 - 1) * op.x_stride as u64 + op.x_offset as u64 + k as u64)?;
    check_len("linear", "y", op.y, (m as u64 - 1) * op.y_stride as u64 + op.y_offset as u64 + n as u64)?;
    let bias = &optional_operand(rec, "linear", "bias", op.bias, n as u64)?;
    let f16 = op.weight.dtype.is_f16();
    // matvec and main_direct load X 16 bytes at a time when its rows are aligned and k fills
    // whole units of W.
    let wide = k.is_multiple_of(op.weight.dtype.elements_per_unit() as u32) && op.x_stride.is_multiple_of(4) && op.x_offset.is_multiple_of(4);
    for part in &op.weight.parts {
        let params = LinearParams {
            m,
            n: part.rows,
            k,
            x_stride: op.x_stride,
            x_offset: op.x_offset,
            y_stride: op.y_stride,
            y_offset: op.y_offset + part.first_row,
            bias_offset: part.first_row,
            has_bias: op.bias.is_some() as u32,
            activation: (op.activation == Activation::Softplus) as u32,
            wide: wide as u32,
            conv_channels: conv.map_or(0, |(c, _)| c.channels),
            conv_has_bias: conv.is_some_and(|(c, _)| c.bias.is_some()) as u32,
            rms_norm: op.rms_norm_eps.is_some() as u32,
            norm_eps: op.rms_norm_eps.unwrap_or(0.0),
            accumulate: op.accumulate as u32,
            _pad: [0; 4],
        };
        let batch = m as u8;
        let int64 = rec.ctx().int64_loads;
        // The u64 matvec loads rows in pairs (shaders/weight_pairs_int64.wgsl): a part of an odd
        // number of rows, whose blocks are not all even, takes the u32 one.
        let int64_matvec = int64 && part.rows.is_multiple_of(2);
        let shared_x = int64_matvec && rec.ctx().shared_x;
        if let Some((conv, conv_bias)) = conv {
            let buffers = [op.x, &part.buffer, bias, op.y, conv.weight, conv_bias, conv.state, conv.out];
            let (kernel, workgroups) = match op.weight.layout {
                WeightLayout::RowMajor => (Kernel::MatvecConv { f16, batch }, groups(part.rows, MATVEC_ROWS_PER_WG)),
                WeightLayout::RowBlocks => {
                    (Kernel::MatvecBlocksConv { f16, batch, int64: int64_matvec, shared_x }, groups(part.rows, BLOCK_ROWS as u32))
                }
            };
            rec.dispatch(kernel, &params, &buffers, [workgroups, 1, 1])?;
            continue;
        }
        let buffers = [op.x, &part.buffer, bias, op.y];
        let (kernel, workgroups) = match (m <= MATVEC_MAX_M, op.weight.layout) {
            (true, WeightLayout::RowMajor) => (Kernel::Matvec { f16, batch }, [groups(part.rows, MATVEC_ROWS_PER_WG), 1, 1]),
            (true, WeightLayout::RowBlocks) => {
                (Kernel::MatvecBlocks { f16, batch, int64: int64_matvec, shared_x }, [groups(part.rows, BLOCK_ROWS as u32), 1, 1])
            }
            (false, WeightLayout::RowMajor) => (Kernel::Matmul { f16 }, [groups(part.rows, MATMUL_TILE), groups(m, MATMUL_TILE), 1]),
            (false, WeightLayout::RowBlocks) if subgroup_matmul(rec, op, part) => {
                let [cols, rows] = MATMUL_SUBGROUP_TILE;
                let softplus = op.activation == Activation::Softplus;
                (Kernel::MatmulSubgroup { f16, softplus }, [groups(part.rows, cols), groups(m, rows), 1])
            }
            (false, WeightLayout::RowBlocks) => {
                (Kernel::MatmulDirect { f16, int64 }, [groups(part.rows, MATMUL_DIRECT_TILE), groups(m, MATMUL_DIRECT_TILE), 1])
            }
        };
        rec.dispatch(kernel, &params, &buffers, workgroups)?;
    }
    Ok(())
}

/// Whether `part` of op's weight takes the CPU-device matmul that shares X through subgroups
/// (shaders/matmul_subgroup.wgsl): X's rows loaded 8 values at a time, a lane's 4 columns
/// loaded two rows' units per load and stored as one vec4.
fn subgroup_matmul(rec: &Recorder, op: &Linear, part: &WeightPart) -> bool {
    let ctx = rec.ctx();
    ctx.int64_loads
        && ctx.shared_x
        && op.weight.cols.is_multiple_of(8)
        && op.x_stride.is_multiple_of(8)
        && op.x_offset.is_multiple_of(8)
        && part.rows.is_multiple_of(4)
        && op.y_stride.is_multiple_of(4)
        && (op.y_offset + part.first_row).is_multiple_of(4)
}
