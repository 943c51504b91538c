//! Mamba-2's scan (shaders/ssd.wgsl), per head h with group g = h / (H / G):
//!   dt = clamp(softplus(dt_raw + dt_bias), dt_min, dt_max)
//!   S_t = exp(dt_t A_h) S_{t-1} + dt_t x_t B_t^T,   y_t = S_t C_t + D_h x_t
//! `Chunked`: the SSD algorithm over chunks in workgroup memory (prefill), in three passes:
//! every chunk's own state, the states passed between chunks, every chunk's outputs;
//! `Sequential`: one step after another (a decode step, and the baseline the chunked one is
//! measured against); it may apply the gated norm's gate, y * silu(z) (`gate`).

use super::groups;
use crate::error::{Error, Result};
use crate::gpu::kernels::{SSD_CHANNELS_PER_WG, SSD_CHUNK, SSD_MAX_STATE, SSD_SEQUENTIAL_CHANNELS, WG_256};
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
    pub xbc: TensorView<'a>,     // (batch * t_len, H P + 2 G N): conv output x | B | C, may be a column slice
    pub dt_raw: TensorView<'a>,  // (batch * t_len, H): in_proj's dt columns
    pub dt_bias: TensorView<'a>, // (H)
    pub a: TensorView<'a>,       // (H): A = -exp(A_log)
    pub d_skip: TensorView<'a>,  // (H)
    pub h: TensorView<'a>,       // (batch * H * P, N), read then updated
    pub y: TensorView<'a>,       // (batch * t_len, H P)
    /// Sequential only: (batch * t_len, H P), z; y is then y * silu(z).
    pub gate: Option<TensorView<'a>>,
    /// Chunked only: (batch * chunks * H * P, N), each chunk's state (chunks = t_len / SSD_CHUNK
    /// rounded up), and (batch * chunks, H), each chunk's decay.
    pub chunk_state: Option<TensorView<'a>>,
    pub chunk_decay: Option<TensorView<'a>>,
    pub batch: u32,
    pub t_len: u32,
}

/// Elements of the chunked scan's (chunk_state, chunk_decay) for `rows` rows of `batch`
/// sequences: at most rows / SSD_CHUNK chunks plus a partial one per sequence.
pub fn chunk_buffer_elements(rows: usize, batch: usize, shape: &SsdShape, d_state: usize) -> (usize, usize) {
    let chunks = rows.div_ceil(SSD_CHUNK as usize) + batch;
    (chunks * shape.n_heads * shape.head_dim * d_state, chunks * shape.n_heads)
}

pub fn ssd_scan(rec: &mut Recorder, op: &Ssd, kind: SsdKind) -> Result<()> {
    let s = &op.shape;
    let (b, t, n) = (op.batch, op.t_len, op.d_state);
    let (heads, head_dim, groups_bc) = (s.n_heads as u32, s.head_dim as u32, s.n_groups as u32);
    let d_inner = heads * head_dim;
    let f = ElementType::F32;
    op.xbc.expect("ssd", "xbc", f, b * t, d_inner + 2 * groups_bc * n)?;
    if let Some(z) = op.gate {
        z.expect("ssd", "gate", f, b * t, d_inner)?;
        if kind == SsdKind::Chunked {
            return Err(Error::invalid("ssd.gate", "only the sequential scan applies the gate"));
        }
    }
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
        xbc_offset: op.xbc.offset,
        gated: op.gate.is_some() as u32,
        z_stride: op.gate.map_or(0, |z| z.row_stride),
        z_offset: op.gate.map_or(0, |z| z.offset),
    };
    let buffers = [op.xbc.buffer, op.dt_raw.buffer, op.dt_bias.buffer, op.a.buffer, op.d_skip.buffer, op.h.buffer, op.y.buffer];
    if kind == SsdKind::Sequential {
        let z = op.gate.map_or_else(|| rec.ctx().placeholder.clone(), |z| z.buffer.clone());
        let mut bindings: Vec<(u32, &wgpu::Buffer)> = buffers.iter().enumerate().map(|(i, &buffer)| (i as u32 + 1, buffer)).collect();
        bindings.push((10, &z));
        return rec.dispatch_bindings(Kernel::SsdSequential, &params, &bindings, [groups(head_dim, SSD_SEQUENTIAL_CHANNELS), heads, b]);
    }
    let (Some(state), Some(decay)) = (op.chunk_state, op.chunk_decay) else {
        return Err(Error::invalid("ssd", "the chunked scan needs its chunk_state and chunk_decay buffers"));
    };
    let chunks = b * t.div_ceil(SSD_CHUNK);
    state.expect_dense("ssd", "chunk_state", f, chunks * d_inner, n)?;
    decay.expect_dense("ssd", "chunk_decay", f, chunks, heads)?;
    let all = [&buffers[..], &[state.buffer, decay.buffer]].concat();
    let bind = |numbers: &[u32]| -> Vec<(u32, &wgpu::Buffer)> { numbers.iter().map(|&i| (i, all[i as usize - 1])).collect() };
    let tiles = [groups(head_dim, SSD_CHANNELS_PER_WG), heads, chunks];
    // 1. every chunk's own state and decay (xbc, dt_raw, dt_bias, a; chunk_state, chunk_decay)
    rec.dispatch_bindings(Kernel::SsdChunkStates, &params, &bind(&[1, 2, 3, 4, 8, 9]), tiles)?;
    // 2. the states passed from chunk to chunk, and the final state (h, chunk_state, chunk_decay)
    rec.dispatch_bindings(Kernel::SsdPassStates, &params, &bind(&[6, 8, 9]), [groups(d_inner * n, WG_256), b, 1])?;
    // 3. every chunk's outputs (xbc, dt_raw, dt_bias, a, d_skip; y, chunk_state)
    rec.dispatch_bindings(Kernel::SsdChunkOutputs, &params, &bind(&[1, 2, 3, 4, 5, 7, 8]), tiles)
}
