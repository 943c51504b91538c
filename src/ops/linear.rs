//! y = act(x . W^T + bias), PyTorch's nn.Linear: shaders/matvec.wgsl for a few rows (decode,
//! bandwidth bound), shaders/matmul.wgsl otherwise (prefill, tiled). A weight split into parts
//! is one dispatch per part, each writing its slice of output columns.

use super::conv1d::{self, conv1d_silu, Conv1d};
use super::{groups, optional_vector};
use crate::error::{Error, Result};
use crate::gpu::kernels::{MatvecNorm, MATMUL_TILE, MATVEC_MAX_GROUPS, MATVEC_MAX_M, MATVEC_ROWS_PER_WG};
use crate::gpu::params::LinearParams;
use crate::gpu::tensor::{ElementType, TensorView};
use crate::gpu::{GpuWeight, Kernel, Recorder};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    None,
    /// log(1 + exp(v)): dt = softplus(dt_proj(dt_low) + bias)
    Softplus,
}

/// An RMSNorm of x's rows applied as the matvec loads them, over `groups` equal groups of
/// columns (1: the whole row), times the norm's weight where given:
///   x'_k = x_k / sqrt(mean over k's group of x^2 + eps) * weight_k
#[derive(Clone, Copy, Debug)]
pub struct InputNorm<'a> {
    pub eps: f32,
    /// 1..=MATVEC_MAX_GROUPS, dividing x's width.
    pub groups: u32,
    /// (k)
    pub weight: Option<TensorView<'a>>,
}

impl<'a> InputNorm<'a> {
    /// The RMSNorm of whole rows, times `weight`.
    pub fn rows(eps: f32, weight: Option<TensorView<'a>>) -> Self {
        InputNorm { eps, groups: 1, weight }
    }
}

/// y = act(x' . W^T + bias) over the rows of x, x' = x or, with `norm`, x's rows normalized on
/// load (InputNorm); with `accumulate`, y += that instead of y = that (the residual stream).
/// Both need the matvec (at most MATVEC_MAX_M rows): they let a decode step skip the norms'
/// own dispatches.
pub struct Linear<'a> {
    pub x: TensorView<'a>,            // (rows, k), may be a column slice of a wider matrix
    pub weight: &'a GpuWeight,        // (n, k)
    pub bias: Option<TensorView<'a>>, // (n)
    pub y: TensorView<'a>,            // (rows, n), may be a column slice of a wider matrix
    pub activation: Activation,
    pub norm: Option<InputNorm<'a>>,
    pub accumulate: bool,
}

impl<'a> Linear<'a> {
    /// y = x . W^T, no bias, no activation.
    pub fn new(x: TensorView<'a>, weight: &'a GpuWeight, y: TensorView<'a>) -> Self {
        Linear { x, weight, bias: None, y, activation: Activation::None, norm: None, accumulate: false }
    }
}

pub fn linear(rec: &mut Recorder, op: &Linear) -> Result<()> {
    dispatch(rec, op, None)
}

/// in_proj, then the decode conv step (`conv.t_len` = 1) on its conv columns (Mamba-1's x,
/// Mamba-2's xBC), which `conv.x` reads from `op.y`.
/// - `conv.out` is `conv.x` itself (in place): one dispatch (shaders/matvec.wgsl, main_conv),
///   whose store writes the conv's output where in_proj's would have gone; needs the matvec
///   (at most 8 rows). Its output then lives in in_proj's output rows, for the next ops to read
///   through a column view.
/// - `conv.out` another buffer: `linear`, then `conv1d_silu` into it (two dispatches).
pub fn linear_conv_step(rec: &mut Recorder, op: &Linear, conv: &Conv1d) -> Result<()> {
    let same = |a: &TensorView, b: &TensorView| a.buffer == b.buffer && (a.offset, a.row_stride) == (b.offset, b.row_stride);
    if !same(&conv.out, &conv.x) {
        linear(rec, op)?;
        return conv1d_silu(rec, conv);
    }
    let m = op.x.rows;
    let first = conv.x.offset.checked_sub(op.y.offset).filter(|_| conv.x.buffer == op.y.buffer && conv.x.row_stride == op.y.row_stride);
    let Some(first) = first.filter(|f| f + conv.channels() <= op.weight.rows) else {
        return Err(Error::invalid("linear_conv_step.conv.x", "an in-place conv step reads columns of in_proj's output"));
    };
    if m > MATVEC_MAX_M || conv.t_len != 1 || conv.batch != m || op.activation != Activation::None || op.accumulate {
        return Err(Error::invalid(
            "linear_conv_step",
            format!("an in-place conv step needs the matvec: one token per sequence, at most {MATVEC_MAX_M} rows, no activation, no accumulate"),
        ));
    }
    let (_, conv_bias) = conv1d::checked(rec, conv)?;
    dispatch(rec, op, Some((conv, first, &conv_bias)))
}

/// `conv`: the in-place conv step to fuse, its first row of in_proj and the bias buffer to bind
/// (linear_conv_step).
fn dispatch(rec: &mut Recorder, op: &Linear, conv: Option<(&Conv1d, u32, &wgpu::Buffer)>) -> Result<()> {
    let (n, k, m) = (op.weight.rows, op.weight.cols, op.x.rows);
    op.x.expect("linear", "x", ElementType::F32, m, k)?;
    op.y.expect("linear", "y", ElementType::F32, m, n)?;
    if (op.norm.is_some() || op.accumulate) && m > MATVEC_MAX_M {
        return Err(Error::invalid("linear", format!("norm and accumulate need the matvec (at most {MATVEC_MAX_M} rows), got {m} rows")));
    }
    let groups_norm = op.norm.map_or(1, |norm| norm.groups);
    if groups_norm == 0 || groups_norm > MATVEC_MAX_GROUPS || !k.is_multiple_of(groups_norm) {
        return Err(Error::invalid("linear.norm", format!("{groups_norm} groups of {k} columns (1..={MATVEC_MAX_GROUPS}, dividing them)")));
    }
    let norm_weight = op.norm.and_then(|norm| norm.weight);
    let norm = match op.norm {
        None => MatvecNorm::None,
        Some(_) if groups_norm == 1 => MatvecNorm::Row,
        Some(_) => MatvecNorm::Groups,
    };
    let norm_weight_buffer = optional_vector(rec, "linear", "norm weight", norm_weight, k)?;
    if m == 0 {
        return Ok(());
    }
    let bias = &optional_vector(rec, "linear", "bias", op.bias, n)?;
    let format = op.weight.dtype.shader_format();
    // The matvec loads X 16 bytes at a time when its rows are aligned and k fills whole units of
    // W, and so does each norm group (a unit then lies in one group).
    let unit = op.weight.dtype.elements_per_unit() as u32;
    let wide = k.is_multiple_of(unit) && (k / groups_norm).is_multiple_of(unit) && op.x.row_stride.is_multiple_of(4) && op.x.offset.is_multiple_of(4);
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
            conv_channels: conv.map_or(0, |(c, _, _)| c.channels()),
            conv_has_bias: conv.is_some_and(|(c, _, _)| c.bias.is_some()) as u32,
            _pad0: 0,
            norm_eps: op.norm.map_or(0.0, |norm| norm.eps),
            accumulate: op.accumulate as u32,
            conv_first: conv.map_or(0, |(_, first, _)| first),
            conv_k: conv.map_or(0, |(c, _, _)| c.k()),
            norm_groups: groups_norm,
            _pad1: 0,
        };
        let batch = m as u8;
        let workgroups = [groups(part.rows, MATVEC_ROWS_PER_WG), 1, 1];
        if let Some((conv, _, conv_bias)) = conv {
            let buffers = [op.x.buffer, &part.buffer, bias, op.y.buffer, &norm_weight_buffer, conv.weight.buffer, conv_bias, conv.state.buffer];
            rec.dispatch(Kernel::MatvecConv { format, batch, norm, norm_weight: norm_weight.is_some() }, &params, &buffers, workgroups)?;
        } else if m <= MATVEC_MAX_M {
            let buffers = [op.x.buffer, &part.buffer, bias, op.y.buffer, &norm_weight_buffer];
            rec.dispatch(Kernel::Matvec { format, batch, norm, norm_weight: norm_weight.is_some() }, &params, &buffers, workgroups)?;
        } else {
            let buffers = [op.x.buffer, &part.buffer, bias, op.y.buffer];
            rec.dispatch(Kernel::Matmul { format }, &params, &buffers, [groups(part.rows, MATMUL_TILE), groups(m, MATMUL_TILE), 1])?;
        }
    }
    Ok(())
}
