//! Mamba-2's scan (shaders/ssd.wgsl), per head h with group g = h / (H / G):
//!   dt = clamp(softplus(dt_raw + dt_bias), dt_min, dt_max)
//!   S_t = exp(dt_t A_h) S_{t-1} + dt_t x_t B_t^T,   y_t = S_t C_t + D_h x_t
//! `chunked`: the SSD algorithm over chunks in workgroup memory (prefill); `sequential`: one
//! step after another (a decode step, and the baseline the chunked one is measured against).

use super::groups;
use crate::error::{Error, Result};
use crate::gpu::kernels::{SSD_CHANNELS_PER_WG, SSD_MAX_STATE, SSD_SEQUENTIAL_CHANNELS};
use crate::gpu::params::SsdParams;
use crate::gpu::tensor::{ElementType, TensorView};
use crate::gpu::{Kernel, Recorder};
use crate::model::config::SsdShape;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SsdKind {
    Chunked,
    Sequential,
}

pub struct Ssd<'a> {
    pub shape: SsdShape,
    pub d_state: u32,
    pub xbc: TensorView<'a>,     // (batch * t_len, H P + 2 G N): conv output x | B | C
    pub dt_raw: TensorView<'a>,  // (batch * t_len, H): in_proj's dt columns
    pub dt_bias: TensorView<'a>, // (H)
    pub a: TensorView<'a>,       // (H): A = -exp(A_log)
    pub d_skip: TensorView<'a>,  // (H)
    pub h: TensorView<'a>,       // (batch * H * P, N), read then updated
    pub y: TensorView<'a>,       // (batch * t_len, H P)
    pub batch: u32,
    pub t_len: u32,
}

pub fn ssd_scan(rec: &mut Recorder, op: &Ssd, kind: SsdKind) -> Result<()> {
    let s = &op.shape;
    let (b, t, n) = (op.batch, op.t_len, op.d_state);
    let (heads, head_dim, groups_bc) = (s.n_heads as u32, s.head_dim as u32, s.n_groups as u32);
    let d_inner = heads * head_dim;
    let f = ElementType::F32;
    op.xbc.expect_dense("ssd", "xbc", f, b * t, d_inner + 2 * groups_bc * n)?;
    op.dt_raw.expect("ssd", "dt_raw", f, b * t, heads)?;
    for (what, v) in [("dt_bias", op.dt_bias), ("a", op.a), ("d_skip", op.d_skip)] {
        v.expect_dense("ssd", what, f, 1, heads)?;
    }
    op.h.expect_dense("ssd", "h", f, b * d_inner, n)?;
    op.y.expect_dense("ssd", "y", f, b * t, d_inner)?;
    if kind == SsdKind::Sequential && n > SSD_MAX_STATE {
        return Err(Error::Limit(format!("d_state {n} exceeds the {SSD_MAX_STATE} states the sequential SSD scan keeps in registers")));
    }
    let params = SsdParams {
        batch: b,
        t_len: t,
        n_heads: heads,
        head_dim,
        d_state: n,
        heads_per_group: heads / groups_bc,
        xbc_stride: op.xbc.row_stride,
        c_offset: d_inner + groups_bc * n,
        dt_stride: op.dt_raw.row_stride,
        dt_offset: op.dt_raw.offset,
        dt_min: s.dt_min,
        // An infinite bound is f32::MAX: the same clamp, and no infinity for fast-math compilers.
        dt_max: s.dt_max.min(f32::MAX),
    };
    let buffers = [op.xbc.buffer, op.dt_raw.buffer, op.dt_bias.buffer, op.a.buffer, op.d_skip.buffer, op.h.buffer, op.y.buffer];
    let (kernel, per_group) = match kind {
        SsdKind::Chunked => (Kernel::SsdChunked, SSD_CHANNELS_PER_WG),
        SsdKind::Sequential => (Kernel::SsdSequential, SSD_SEQUENTIAL_CHANNELS),
    };
    rec.dispatch(kernel, &params, &buffers, [groups(head_dim, per_group), heads, b])
}
