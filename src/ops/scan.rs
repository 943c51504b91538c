//! The selective scan  h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t,  y_t = (C_t . h_t + D x_t) * silu(z_t):
//! shaders/scan_chunked.wgsl (parallel over time, prefill) or shaders/scan_step.wgsl
//! (sequential in time: decode, and the scan the chunked one is checked against; its step_dt
//! entry point is a decode step with the dt projection fused in); shaders/scan_per_state.wgsl
//! is the benchmark's baseline.

use super::{check_len, groups};
use crate::error::{Error, Result};
use crate::gpu::kernels::{
    ScanLoads, SCAN_CHANNELS_PER_WG, SCAN_MAX_STATE, SCAN_SEQUENTIAL_CHANNELS, SCAN_SEQUENTIAL_STATE, SCAN_STEP_STATE_CHANNELS, WG_64,
};
use crate::gpu::params::ScanParams;
use crate::gpu::tensor::WeightLayout;
use crate::gpu::{GpuWeight, Kernel, Recorder};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanKind {
    /// Chunked work-efficient parallel scan in workgroup memory.
    Chunked,
    /// One invocation per (sequence, channel) walking time in order (on CPU devices 4 channels,
    /// and with d_state 16 their states in registers: shaders/scan_sequential_int64.wgsl).
    Sequential,
    /// One invocation per (sequence, channel, state) walking time in order, the workgroup of a
    /// channel summing C . h at every step, as llama.cpp's WebGPU backend does: what the
    /// benchmark measures the chunked scan against (`subgroups`: the sums by subgroupAdd,
    /// which needs a device with subgroups). Not used by the model.
    PerState { subgroups: bool },
}

pub struct Scan<'a> {
    pub x: &'a wgpu::Buffer,      // (batch, t_len, d_inner) conv output
    pub dt: &'a wgpu::Buffer,     // (batch, t_len, d_inner) after softplus
    pub xdbl: &'a wgpu::Buffer,   // (batch, t_len, dt_rank + 2 d_state): dt_low | B | C
    pub xz: &'a wgpu::Buffer,     // (batch, t_len, 2 d_inner): z is the second half
    pub a: &'a wgpu::Buffer,      // (d_inner, d_state): A = -exp(A_log)
    pub d_skip: &'a wgpu::Buffer, // (d_inner)
    pub h: &'a wgpu::Buffer,      // (batch, d_inner, d_state), read then updated
    pub y: &'a wgpu::Buffer,      // (batch, t_len, d_inner)
    pub batch: u32,
    pub t_len: u32,
    pub d_inner: u32,
    pub d_state: u32,
    pub dt_rank: u32,
}

pub fn selective_scan(rec: &mut Recorder, op: &Scan, kind: ScanKind) -> Result<()> {
    let (b, t, di, n) = (op.batch as u64, op.t_len as u64, op.d_inner as u64, op.d_state as u64);
    let xdbl_stride = op.dt_rank + 2 * op.d_state;
    for (what, buffer, elements) in [
        ("x", op.x, b * t * di),
        ("dt", op.dt, b * t * di),
        ("xdbl", op.xdbl, b * t * xdbl_stride as u64),
        ("xz", op.xz, b * t * 2 * di),
        ("a", op.a, di * n),
        ("d_skip", op.d_skip, di),
        ("h", op.h, b * di * n),
        ("y", op.y, b * t * di),
    ] {
        check_len("selective_scan", what, buffer, elements)?;
    }
    let params = scan_params(op.batch, op.t_len, op.d_inner, op.d_state, op.dt_rank);
    let buffers = [op.x, op.dt, op.xdbl, op.xz, op.a, op.d_skip, op.h, op.y];
    match kind {
        ScanKind::Chunked => {
            if op.d_state > SCAN_MAX_STATE {
                return Err(Error::Limit(format!("d_state {} exceeds the chunked scan's {SCAN_MAX_STATE}", op.d_state)));
            }
            rec.dispatch(Kernel::ScanChunked, &params, &buffers, [groups(op.d_inner, SCAN_CHANNELS_PER_WG), op.batch, 1])
        }
        ScanKind::Sequential => {
            let loads = state_loads(rec, op.d_state, op.dt_rank);
            if quads_of_state(loads, op.d_state, op.d_inner) {
                let workgroups = [groups(op.d_inner, WG_64 * SCAN_SEQUENTIAL_CHANNELS), op.batch, 1];
                return rec.dispatch(Kernel::ScanSequential, &params, &buffers, workgroups);
            }
            let channels = step_channels(rec);
            let kernel = Kernel::ScanStep { channels, loads };
            rec.dispatch(kernel, &params, &buffers, [groups(op.d_inner, WG_64 * channels as u32), op.batch, 1])
        }
        ScanKind::PerState { subgroups } => {
            if op.d_state > SCAN_MAX_STATE {
                return Err(Error::Limit(format!("d_state {} exceeds the per-state scan's {SCAN_MAX_STATE}", op.d_state)));
            }
            if subgroups && !rec.ctx().adapter.subgroups {
                return Err(Error::Limit(format!("{} has no subgroups for the per-state scan", rec.ctx().adapter.name)));
            }
            let kernel = Kernel::ScanPerState { subgroups, workgroup: op.d_state.next_power_of_two() as u8 };
            rec.dispatch(kernel, &params, &buffers, [op.d_inner, op.batch, 1])
        }
    }
}

/// One decode step (t = 1) with the dt projection fused in: dt = softplus(dt_proj . dt_low +
/// dt_bias) per channel, then the scan step; y overwrites the conv output in `x_y`.
pub struct ScanStepDt<'a> {
    pub x_y: &'a wgpu::Buffer,     // (batch, d_inner): conv output in, y out
    pub xdbl: &'a wgpu::Buffer,    // (batch, dt_rank + 2 d_state): dt_low | B | C
    pub xz: &'a wgpu::Buffer,      // (batch, 2 d_inner): z is the second half
    pub a: &'a wgpu::Buffer,       // (d_inner, d_state): A = -exp(A_log)
    pub d_skip: &'a wgpu::Buffer,  // (d_inner)
    pub h: &'a wgpu::Buffer,       // (batch, d_inner, d_state), read then updated
    pub dt_proj: &'a GpuWeight,    // (d_inner, dt_rank), in one part
    pub dt_bias: &'a wgpu::Buffer, // (d_inner)
    pub batch: u32,
    pub d_inner: u32,
    pub d_state: u32,
    pub dt_rank: u32,
}

pub fn scan_step_dt(rec: &mut Recorder, op: &ScanStepDt) -> Result<()> {
    let (b, di, n) = (op.batch as u64, op.d_inner as u64, op.d_state as u64);
    let xdbl_stride = op.dt_rank + 2 * op.d_state;
    let w = op.dt_proj;
    if (w.rows, w.cols) != (op.d_inner, op.dt_rank) || w.parts.len() != 1 || op.dt_rank == 0 {
        return Err(Error::invalid(
            "scan_step_dt.dt_proj",
            format!("needs one part of ({}, {}), got {} part(s) of ({}, {})", op.d_inner, op.dt_rank, w.parts.len(), w.rows, w.cols),
        ));
    }
    for (what, buffer, elements) in [
        ("x_y", op.x_y, b * di),
        ("xdbl", op.xdbl, b * xdbl_stride as u64),
        ("xz", op.xz, b * 2 * di),
        ("a", op.a, di * n),
        ("d_skip", op.d_skip, di),
        ("h", op.h, b * di * n),
        ("dt_bias", op.dt_bias, di),
    ] {
        check_len("scan_step_dt", what, buffer, elements)?;
    }
    let params = scan_params(op.batch, 1, op.d_inner, op.d_state, op.dt_rank);
    let bindings = [(3, op.xdbl), (4, op.xz), (5, op.a), (6, op.d_skip), (7, op.h), (9, op.x_y), (10, &w.parts[0].buffer), (11, op.dt_bias)];
    let (f16, blocks) = (w.dtype.is_f16(), w.layout == WeightLayout::RowBlocks);
    // GPUs spread each channel over 16 invocations (parallelism); CPU devices give each
    // invocation 4 channels (fewer loads).
    let loads = state_loads(rec, op.d_state, op.dt_rank);
    let (kernel, workgroups) = if rec.ctx().gpu_kernels {
        (Kernel::ScanStepStates { f16, blocks }, groups(op.d_inner, SCAN_STEP_STATE_CHANNELS))
    } else if blocks && quads_of_state(loads, op.d_state, op.d_inner) {
        (Kernel::ScanStepDtQuads { f16 }, groups(op.d_inner, WG_64 * SCAN_SEQUENTIAL_CHANNELS))
    } else {
        let channels = step_channels(rec);
        (Kernel::ScanStepDt { f16, blocks, channels, loads }, groups(op.d_inner, WG_64 * channels as u32))
    };
    rec.dispatch_bindings(kernel, &params, &bindings, [workgroups, op.batch, 1])
}

/// Both scan shaders' parameters: x_proj's output rows are dt_low | B | C, and z is the second
/// half of in_proj's output rows.
fn scan_params(batch: u32, t_len: u32, d_inner: u32, d_state: u32, dt_rank: u32) -> ScanParams {
    ScanParams { batch, t_len, d_inner, d_state, dt_rank, xdbl_stride: dt_rank + 2 * d_state, z_stride: 2 * d_inner, _pad: 0 }
}

/// Channels per invocation of shaders/scan_step.wgsl (CHANNELS there): 4 on CPU devices, where
/// each load of B, C and dt_low then serves 4 channels; 1 on GPUs, for parallelism.
fn step_channels(rec: &Recorder) -> u8 {
    if rec.ctx().gpu_kernels {
        1
    } else {
        4
    }
}

/// How the scan steps load B, C, dt_low, A and the state (ScanLoads): on CPU devices, which
/// pay per access, the widest the context allows (`GpuContext::scan_loads`) whose width
/// divides d_state and dt_rank, so that B and C start on a whole load (every Mamba release:
/// d_state 16, dt_rank ceil(d_model / 16), a multiple of 8 from 130m to 2.8b).
fn state_loads(rec: &Recorder, d_state: u32, dt_rank: u32) -> ScanLoads {
    let ctx = rec.ctx();
    let fits = |width: u32| d_state.is_multiple_of(width) && dt_rank.is_multiple_of(width);
    if ctx.gpu_kernels {
        ScanLoads::Single
    } else if ctx.scan_loads >= ScanLoads::Int64 && fits(8) {
        ScanLoads::Int64
    } else if ctx.scan_loads >= ScanLoads::Quads && fits(4) {
        ScanLoads::Quads
    } else {
        ScanLoads::Single
    }
}

/// Whether the CPU-device scan kernels that hold 4 channels' states in registers and load
/// their per-channel values as vec4s (shaders/scan_sequential_int64.wgsl) fit: u64 loads
/// (`loads`, from state_loads, is Int64 only on CPU devices, and only where d_state and
/// dt_rank are multiples of 8, which those kernels need), d_state 16, d_inner a multiple of 4.
fn quads_of_state(loads: ScanLoads, d_state: u32, d_inner: u32) -> bool {
    loads == ScanLoads::Int64 && d_state == SCAN_SEQUENTIAL_STATE && d_inner.is_multiple_of(SCAN_SEQUENTIAL_CHANNELS)
}
