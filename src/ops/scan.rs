//! The selective scan  h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t,  y_t = (C_t . h_t + D x_t) * silu(z_t):
//! shaders/scan_chunked.wgsl (parallel over time, prefill) or shaders/scan_step.wgsl
//! (sequential in time: decode, and the baseline the chunked scan is checked against).

use super::{check_len, groups};
use crate::error::{Error, Result};
use crate::gpu::kernels::{SCAN_CHANNELS_PER_WG, SCAN_MAX_STATE, WG_64};
use crate::gpu::params::ScanParams;
use crate::gpu::{Kernel, Recorder};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanKind {
    /// Chunked work-efficient parallel scan in workgroup memory.
    Chunked,
    /// One invocation per (sequence, channel) walking time in order.
    Sequential,
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
    let params = ScanParams {
        batch: op.batch,
        t_len: op.t_len,
        d_inner: op.d_inner,
        d_state: op.d_state,
        dt_rank: op.dt_rank,
        xdbl_stride,
        z_stride: 2 * op.d_inner,
        _pad: 0,
    };
    let buffers = [op.x, op.dt, op.xdbl, op.xz, op.a, op.d_skip, op.h, op.y];
    match kind {
        ScanKind::Chunked => {
            if op.d_state > SCAN_MAX_STATE {
                return Err(Error::Limit(format!("d_state {} exceeds the chunked scan's {SCAN_MAX_STATE}", op.d_state)));
            }
            rec.dispatch(Kernel::ScanChunked, &params, &buffers, [groups(op.d_inner, SCAN_CHANNELS_PER_WG), op.batch, 1])
        }
        ScanKind::Sequential => {
            let channels = if rec.ctx().gpu_kernels { 1 } else { 4 };
            let kernel = Kernel::ScanStep { channels };
            rec.dispatch(kernel, &params, &buffers, [groups(op.d_inner, WG_64 * channels as u32), op.batch, 1])
        }
    }
}
