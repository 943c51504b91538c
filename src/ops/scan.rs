//! The selective scan  h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t,  y_t = (C_t . h_t + D x_t) * silu(z_t):
//! shaders/scan_chunked.wgsl (parallel over time, prefill) or shaders/scan_step.wgsl
//! (sequential in time: the scan the chunked one is checked against, and a decode step; its
//! step_dt_states entry point is a decode step with the dt projection fused in), and
//! shaders/scan_step_fused.wgsl, a decode step with x_proj, FalconMamba's norms and the dt
//! projection fused in.

use super::groups;
use crate::error::{Error, Result};
use crate::gpu::kernels::{
    MATVEC_MAX_M, SCAN_CHANNELS_PER_WG, SCAN_FUSED_CHANNELS, SCAN_FUSED_MAX_XDBL, SCAN_MAX_STATE, SCAN_STEP_STATE_CHANNELS, WG_64,
};
use crate::gpu::params::{ScanParams, ScanStepFusedParams};
use crate::gpu::tensor::{ElementType, TensorView};
use crate::gpu::{GpuWeight, Kernel, Recorder};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanKind {
    /// Chunked work-efficient parallel scan in workgroup memory.
    Chunked,
    /// One invocation per (sequence, channel) walking time in order.
    Sequential,
}

/// The scan's operands. d_inner is x's width, d_state A's, dt_rank what is left of x_proj's
/// output row before B and C.
pub struct Scan<'a> {
    pub x: TensorView<'a>,      // (batch * t_len, d_inner) conv output
    pub dt: TensorView<'a>,     // (batch * t_len, d_inner) after softplus
    pub xdbl: TensorView<'a>,   // (batch * t_len, dt_rank + 2 d_state): dt_low | B | C
    pub z: TensorView<'a>,      // (batch * t_len, d_inner): the second half of in_proj's output
    pub a: TensorView<'a>,      // (d_inner, d_state): A = -exp(A_log)
    pub d_skip: TensorView<'a>, // (d_inner)
    pub h: TensorView<'a>,      // (batch * d_inner, d_state), read then updated
    pub y: TensorView<'a>,      // (batch * t_len, d_inner)
    pub batch: u32,
    pub t_len: u32,
}

impl Scan<'_> {
    /// Checks every operand against the shapes x, A and x_proj's output imply; returns the
    /// parameters of the scan shaders.
    pub fn params(&self) -> Result<ScanParams> {
        let (b, t) = (self.batch, self.t_len);
        let (di, n) = (self.x.cols, self.a.cols);
        let xdbl_stride = self.xdbl.cols;
        if xdbl_stride < 2 * n {
            return Err(Error::invalid("selective_scan.xdbl", format!("{xdbl_stride} columns cannot hold B and C of d_state {n}")));
        }
        let f = ElementType::F32;
        self.x.expect_dense("selective_scan", "x", f, b * t, di)?;
        self.dt.expect_dense("selective_scan", "dt", f, b * t, di)?;
        self.xdbl.expect_dense("selective_scan", "xdbl", f, b * t, xdbl_stride)?;
        self.z.expect("selective_scan", "z", f, b * t, di)?;
        self.a.expect_dense("selective_scan", "a", f, di, n)?;
        self.d_skip.expect_dense("selective_scan", "d_skip", f, 1, di)?;
        self.h.expect_dense("selective_scan", "h", f, b * di, n)?;
        self.y.expect_dense("selective_scan", "y", f, b * t, di)?;
        Ok(scan_params(b, t, di, n, xdbl_stride - 2 * n, &self.z))
    }
}

pub fn selective_scan(rec: &mut Recorder, op: &Scan, kind: ScanKind) -> Result<()> {
    let params = op.params()?;
    let buffers = [op.x.buffer, op.dt.buffer, op.xdbl.buffer, op.z.buffer, op.a.buffer, op.d_skip.buffer, op.h.buffer, op.y.buffer];
    match kind {
        ScanKind::Chunked => {
            if params.d_state > SCAN_MAX_STATE {
                return Err(Error::Limit(format!("d_state {} exceeds the chunked scan's {SCAN_MAX_STATE}", params.d_state)));
            }
            rec.dispatch(Kernel::ScanChunked, &params, &buffers, [groups(params.d_inner, SCAN_CHANNELS_PER_WG), op.batch, 1])
        }
        ScanKind::Sequential => rec.dispatch(Kernel::ScanSequential, &params, &buffers, [groups(params.d_inner, WG_64), op.batch, 1]),
    }
}

/// One decode step (t = 1) with the dt projection fused in: dt = softplus(dt_proj . dt_low +
/// dt_bias) per channel, then the scan step; y overwrites the conv output in `x_y`.
pub struct ScanStepDt<'a> {
    pub x_y: TensorView<'a>,     // (batch, d_inner): conv output in, y out
    pub xdbl: TensorView<'a>,    // (batch, dt_rank + 2 d_state): dt_low | B | C
    pub z: TensorView<'a>,       // (batch, d_inner): the second half of in_proj's output
    pub a: TensorView<'a>,       // (d_inner, d_state): A = -exp(A_log)
    pub d_skip: TensorView<'a>,  // (d_inner)
    pub h: TensorView<'a>,       // (batch * d_inner, d_state), read then updated
    pub dt_proj: &'a GpuWeight,  // (d_inner, dt_rank), in one part
    pub dt_bias: TensorView<'a>, // (d_inner)
    pub batch: u32,
}

pub fn scan_step_dt(rec: &mut Recorder, op: &ScanStepDt) -> Result<()> {
    let (b, di, n) = (op.batch, op.x_y.cols, op.a.cols);
    let xdbl_stride = op.xdbl.cols;
    let dt_rank = xdbl_stride.saturating_sub(2 * n);
    let w = op.dt_proj;
    if (w.rows, w.cols) != (di, dt_rank) || w.parts.len() != 1 || dt_rank == 0 {
        return Err(Error::invalid(
            "scan_step_dt.dt_proj",
            format!("needs one part of ({di}, {dt_rank}), got {} part(s) of ({}, {})", w.parts.len(), w.rows, w.cols),
        ));
    }
    if !w.dtype.is_float() {
        return Err(Error::invalid("scan_step_dt.dt_proj", format!("is {}, the kernel reads f32 or f16", w.dtype)));
    }
    let f = ElementType::F32;
    op.x_y.expect_dense("scan_step_dt", "x_y", f, b, di)?;
    op.xdbl.expect_dense("scan_step_dt", "xdbl", f, b, xdbl_stride)?;
    op.z.expect("scan_step_dt", "z", f, b, di)?;
    op.a.expect_dense("scan_step_dt", "a", f, di, n)?;
    op.d_skip.expect_dense("scan_step_dt", "d_skip", f, 1, di)?;
    op.h.expect_dense("scan_step_dt", "h", f, b * di, n)?;
    op.dt_bias.expect_dense("scan_step_dt", "dt_bias", f, 1, di)?;
    let params = scan_params(b, 1, di, n, dt_rank, &op.z);
    let bindings = [
        (3, op.xdbl.buffer),
        (4, op.z.buffer),
        (5, op.a.buffer),
        (6, op.d_skip.buffer),
        (7, op.h.buffer),
        (9, op.x_y.buffer),
        (10, &w.parts[0].buffer),
        (11, op.dt_bias.buffer),
    ];
    // Each channel is spread over 16 invocations: parallelism and short load chains for a
    // latency-bound kernel.
    let kernel = Kernel::ScanStepStates { f16: w.dtype.is_f16() };
    rec.dispatch_bindings(kernel, &params, &bindings, [groups(di, SCAN_STEP_STATE_CHANNELS), b, 1])
}

/// The scan shaders' parameters: x_proj's output rows are dt_low | B | C; z is read through
/// its view's stride and offset.
fn scan_params(batch: u32, t_len: u32, d_inner: u32, d_state: u32, dt_rank: u32, z: &TensorView) -> ScanParams {
    ScanParams { batch, t_len, d_inner, d_state, dt_rank, xdbl_stride: dt_rank + 2 * d_state, z_stride: z.row_stride, z_offset: z.offset }
}

/// One decode step (t = 1) of `batch` sequences with everything after the conv fused in
/// (shaders/scan_step_fused.wgsl):
///   x_dbl = x_proj . x -> dt_low | B | C   (FalconMamba: each RMS-normalized, `mixer_norm_eps`)
///   dt = softplus(dt_proj . dt_low + dt_bias);  h = exp(dt A) h + dt B x;  y = (C . h + D x) * silu(z)
/// x and z are columns of in_proj's output rows (as in_proj's kernel leaves them in a decode
/// step); y overwrites z. `scan_step_fused_fits` says where it applies.
pub struct ScanStepFused<'a> {
    pub x: TensorView<'a>,       // (batch, d_inner): the conv output, columns of in_proj's output
    pub z_y: TensorView<'a>,     // (batch, d_inner): z in, y out; the same buffer and rows as x
    pub x_proj: &'a GpuWeight,   // (dt_rank + 2 d_state, d_inner), in one part
    pub dt_proj: &'a GpuWeight,  // (d_inner, dt_rank), in one part, the same storage as x_proj
    pub dt_bias: TensorView<'a>, // (d_inner)
    pub a: TensorView<'a>,       // (d_inner, d_state): A = -exp(A_log)
    pub d_skip: TensorView<'a>,  // (d_inner)
    pub h: TensorView<'a>,       // (batch * d_inner, d_state), read then updated
    /// FalconMamba's norms of dt_low, B and C.
    pub mixer_norm_eps: Option<f32>,
    pub batch: u32,
}

/// Whether the fused decode step takes a layer with these weights for `batch` sequences: at
/// most MATVEC_MAX_M of them, x_proj and dt_proj each in one part of one float storage (f32 or
/// f16: the kernel reads them itself; block formats go through the matvec), and x_proj's
/// output for every sequence within the workgroup memory it is computed into.
pub fn scan_step_fused_fits(x_proj: &GpuWeight, dt_proj: &GpuWeight, batch: u32) -> bool {
    (1..=MATVEC_MAX_M).contains(&batch)
        && x_proj.parts.len() == 1
        && dt_proj.parts.len() == 1
        && x_proj.dtype == dt_proj.dtype
        && x_proj.dtype.is_float()
        && batch * x_proj.rows <= SCAN_FUSED_MAX_XDBL
}

pub fn scan_step_fused(rec: &mut Recorder, op: &ScanStepFused) -> Result<()> {
    let (b, di, n) = (op.batch, op.x.cols, op.a.cols);
    let (x_proj, dt_proj) = (op.x_proj, op.dt_proj);
    let dt_rank = x_proj.rows.saturating_sub(2 * n);
    if (x_proj.cols, dt_proj.rows, dt_proj.cols) != (di, di, dt_rank) || dt_rank == 0 {
        return Err(Error::invalid(
            "scan_step_fused",
            format!(
                "x_proj ({}, {}) and dt_proj ({}, {}) do not fit d_inner {di}, d_state {n}",
                x_proj.rows, x_proj.cols, dt_proj.rows, dt_proj.cols
            ),
        ));
    }
    if !scan_step_fused_fits(x_proj, dt_proj, b) {
        return Err(Error::invalid(
            "scan_step_fused",
            format!(
                "needs 1..={MATVEC_MAX_M} sequences, x_proj and dt_proj in one part each of one storage, and batch x {} values within {SCAN_FUSED_MAX_XDBL}",
                x_proj.rows
            ),
        ));
    }
    let f = ElementType::F32;
    op.x.expect("scan_step_fused", "x", f, b, di)?;
    op.z_y.expect("scan_step_fused", "z_y", f, b, di)?;
    if op.z_y.buffer != op.x.buffer || op.z_y.row_stride != op.x.row_stride {
        return Err(Error::invalid("scan_step_fused.z_y", "x and z are columns of the same rows (in_proj's output)"));
    }
    op.a.expect_dense("scan_step_fused", "a", f, di, n)?;
    op.d_skip.expect_dense("scan_step_fused", "d_skip", f, 1, di)?;
    op.h.expect_dense("scan_step_fused", "h", f, b * di, n)?;
    op.dt_bias.expect_dense("scan_step_fused", "dt_bias", f, 1, di)?;
    let stride = op.x.row_stride;
    let wide = di.is_multiple_of(x_proj.dtype.elements_per_unit() as u32) && stride.is_multiple_of(4) && op.x.offset.is_multiple_of(4);
    let params = ScanStepFusedParams {
        batch: b,
        d_inner: di,
        d_state: n,
        dt_rank,
        proj_stride: stride,
        x_offset: op.x.offset,
        z_offset: op.z_y.offset,
        wide: wide as u32,
        mixer_norm: op.mixer_norm_eps.is_some() as u32,
        norm_eps: op.mixer_norm_eps.unwrap_or(0.0),
        _pad: [0; 2],
    };
    let buffers = [op.x.buffer, &x_proj.parts[0].buffer, op.a.buffer, op.d_skip.buffer, op.h.buffer, &dt_proj.parts[0].buffer, op.dt_bias.buffer];
    // Every workgroup computes x_proj's output itself: few workgroups of many channels.
    let kernel = Kernel::ScanStepFused { f16: x_proj.dtype.is_f16(), batch: b as u8 };
    rec.dispatch(kernel, &params, &buffers, [groups(di, SCAN_FUSED_CHANNELS), 1, 1])
}
