//! The forward pass, as a flat list of op calls per layer (Gu & Dao 2023, Mamba block):
//!
//!   residual = embedding[ids]
//!   per layer:  u  = RMSNorm(residual += mixer_out)        (no add before the first layer)
//!               xz = in_proj(u)                              x | z halves
//!               x  = silu(conv1d(x))                         causal, depthwise, continues the conv state
//!               x_dbl = x_proj(x)                            dt_low | B | C
//!               dt = softplus(dt_proj(dt_low) + bias)        (inside the scan step when decoding)
//!               y  = scan(x, dt, B, C; A, D) * silu(z)       continues the SSM state
//!               mixer_out = out_proj(y)
//!   logits = lm_head(RMSNorm_f(residual += mixer_out))
//!
//! Where the matvec takes the rows (a decode step) the norm runs inside in_proj, whose columns
//! hold the norm's weight, and out_proj adds into the residual itself (`fused_norms` below).
//!
//! Buffers are allocated once per session for at most `max_rows` = batch x chunk tokens.

use super::gpu_weights::Model;
use crate::error::Result;
use crate::gpu::kernels::MATVEC_MAX_M;
use crate::gpu::tensor::storage;
use crate::gpu::{GpuContext, Recorder};
use crate::ops::conv1d::Conv1d;
use crate::ops::embedding::embedding;
use crate::ops::linear::{linear, linear_conv_step, Activation, Linear};
use crate::ops::norm::{add_rms_norm, AddRmsNorm};
use crate::ops::scan::{scan_step_dt, selective_scan, Scan, ScanKind, ScanStepDt};

/// The recurrent state of `batch` sequences, one pair of buffers per layer.
pub struct StateBuffers {
    pub conv: Vec<wgpu::Buffer>, // per layer (batch, d_inner, d_conv), newest input last
    pub ssm: Vec<wgpu::Buffer>,  // per layer (batch, d_inner, d_state)
}

impl StateBuffers {
    pub fn new(ctx: &GpuContext, m: &Model, batch: usize) -> Self {
        let c = &m.config;
        StateBuffers {
            conv: (0..c.n_layer).map(|i| storage(ctx, &format!("conv_state.{i}"), batch * c.d_inner * c.d_conv)).collect(),
            ssm: (0..c.n_layer).map(|i| storage(ctx, &format!("ssm_state.{i}"), batch * c.d_inner * c.d_state)).collect(),
        }
    }

    pub fn size_bytes(&self) -> u64 {
        self.conv.iter().chain(&self.ssm).map(|b| b.size()).sum()
    }
}

/// Activations for up to `max_rows` tokens (batch x chunk).
pub struct Scratch {
    pub max_rows: usize,
    pub ids: wgpu::Buffer,       // (rows) u32
    pub residual: wgpu::Buffer,  // (rows, d_model)
    pub normed: wgpu::Buffer,    // (rows, d_model)
    pub xz: wgpu::Buffer,        // (rows, 2 d_inner)
    pub x_conv: wgpu::Buffer,    // (rows, d_inner)
    pub x_dbl: wgpu::Buffer,     // (rows, dt_rank + 2 d_state)
    pub dt: wgpu::Buffer,        // (rows, d_inner)
    pub y: wgpu::Buffer,         // (rows, d_inner)
    pub mixer_out: wgpu::Buffer, // (rows, d_model)
    pub logits: wgpu::Buffer,    // (batch, vocab): last position of each sequence
    pub next_ids: wgpu::Buffer,  // (batch) u32: argmax of logits
}

impl Scratch {
    pub fn new(ctx: &GpuContext, m: &Model, batch: usize, max_rows: usize) -> Self {
        let c = &m.config;
        let buf = |label: &str, elements: usize| storage(ctx, label, elements);
        Scratch {
            max_rows,
            ids: buf("ids", max_rows),
            residual: buf("residual", max_rows * c.d_model),
            normed: buf("normed", max_rows * c.d_model),
            xz: buf("xz", max_rows * 2 * c.d_inner),
            x_conv: buf("x_conv", max_rows * c.d_inner),
            x_dbl: buf("x_dbl", max_rows * c.x_proj_width()),
            dt: buf("dt", max_rows * c.d_inner),
            y: buf("y", max_rows * c.d_inner),
            mixer_out: buf("mixer_out", max_rows * c.d_model),
            logits: buf("logits", batch * c.vocab_size),
            next_ids: buf("next_ids", batch),
        }
    }

    pub fn size_bytes(&self) -> u64 {
        [
            &self.ids,
            &self.residual,
            &self.normed,
            &self.xz,
            &self.x_conv,
            &self.x_dbl,
            &self.dt,
            &self.y,
            &self.mixer_out,
            &self.logits,
            &self.next_ids,
        ]
        .iter()
        .map(|b| b.size())
        .sum()
    }
}

/// Which logits a run produces.
#[derive(Clone, Copy, Debug)]
pub enum LogitsOut<'a> {
    /// None: a prompt chunk that is not the last.
    Skip,
    /// The last position of each sequence, into `scratch.logits` (batch, vocab).
    Last,
    /// Every position, into the given buffer (batch * t, vocab).
    All(&'a wgpu::Buffer),
}

/// Records the forward pass over `t_len` tokens of `batch` sequences whose ids are already
/// in `scratch.ids`.
pub fn record_forward(
    rec: &mut Recorder,
    model: &Model,
    scratch: &Scratch,
    state: &StateBuffers,
    batch: u32,
    t_len: u32,
    out: LogitsOut,
) -> Result<()> {
    let c = &model.config;
    let w = &model.weights;
    let s = scratch;
    let rows = batch * t_len;
    let (d, di, n, r) = (c.d_model as u32, c.d_inner as u32, c.d_state as u32, c.dt_rank as u32);
    let xdbl_width = r + 2 * n;

    // residual = embedding[ids]
    embedding(rec, &w.embedding, &s.ids, rows, &s.residual)?;

    // Where the matvec takes the rows (a decode step, a short prompt) and the norms' weights
    // are folded into in_proj (TensorSink::in_proj_with_norm), in_proj normalizes its own input and
    // out_proj adds into the residual stream: no norm dispatch per layer. Otherwise
    // add_rms_norm does both, into `normed` (also where GpuContext::fused_norms is off).
    let fused_norms = rec.ctx().fused_norms && rows <= MATVEC_MAX_M && w.layers.iter().all(|l| l.norm.is_none());
    for (i, layer) in w.layers.iter().enumerate() {
        let in_proj = if fused_norms {
            // u = RMSNorm(residual), inside in_proj
            Linear { rms_norm_eps: Some(c.norm_eps), ..Linear::dense(&s.residual, rows, &layer.in_proj, &s.xz) }
        } else {
            // u = RMSNorm(residual += mixer_out of the previous layer)
            let delta = (i > 0).then_some(&s.mixer_out);
            add_rms_norm(
                rec,
                &AddRmsNorm {
                    residual: &s.residual,
                    delta,
                    weight: layer.norm.as_ref(),
                    out: &s.normed,
                    d,
                    batch,
                    t_len,
                    last_only: false,
                    eps: c.norm_eps,
                },
            )?;
            Linear::dense(&s.normed, rows, &layer.in_proj, &s.xz)
        };
        // xz = in_proj . u (+ bias): x = xz[:, :d_inner], z = xz[:, d_inner:]
        // x = silu(conv1d(x) + bias), continuing the conv state (one kernel when decoding)
        linear_conv_step(rec, &Linear { bias: layer.in_proj_bias.as_ref(), ..in_proj }, &layer_conv(model, s, state, i, batch, t_len))?;
        // x_dbl = x_proj . x  ->  dt_low (R) | B (N) | C (N)
        linear(rec, &Linear::dense(&s.x_conv, rows, &layer.x_proj, &s.x_dbl))?;
        // y from one of the two scan paths:
        let y = if t_len == 1 && layer.dt_proj.parts.len() == 1 {
            // Decode: dt = softplus(dt_proj . dt_low + bias) inside the scan step (no dispatch
            // of its own); h = exp(dt A) h + dt B x;  y = (C . h + D x) * silu(z), over x_conv.
            scan_step_dt(rec, &layer_scan_step(model, s, state, i, batch))?;
            &s.x_conv
        } else {
            // dt = softplus(dt_proj . dt_low + bias)
            linear(
                rec,
                &Linear {
                    x: &s.x_dbl,
                    x_stride: xdbl_width,
                    x_offset: 0,
                    bias: Some(&layer.dt_proj_bias),
                    activation: Activation::Softplus,
                    ..Linear::dense(&s.x_dbl, rows, &layer.dt_proj, &s.dt)
                },
            )?;
            // h_t = exp(dt A) h_{t-1} + dt B x;  y = (C . h + D x) * silu(z)
            let scan = Scan {
                x: &s.x_conv,
                dt: &s.dt,
                xdbl: &s.x_dbl,
                xz: &s.xz,
                a: &layer.a,
                d_skip: &layer.d_skip,
                h: &state.ssm[i],
                y: &s.y,
                batch,
                t_len,
                d_inner: di,
                d_state: n,
                dt_rank: r,
            };
            // The chunked scan gives a GPU parallelism along time; a CPU device has none to
            // spare, and there the sequential scan is 4-5x faster (BENCHMARKS.md).
            let kind = if t_len > 1 && rec.ctx().gpu_kernels { ScanKind::Chunked } else { ScanKind::Sequential };
            selective_scan(rec, &scan, kind)?;
            &s.y
        };
        // mixer_out = out_proj . y (+ bias), or residual += that
        let out_proj = if fused_norms {
            Linear { accumulate: true, ..Linear::dense(y, rows, &layer.out_proj, &s.residual) }
        } else {
            Linear::dense(y, rows, &layer.out_proj, &s.mixer_out)
        };
        linear(rec, &Linear { bias: layer.out_proj_bias.as_ref(), ..out_proj })?;
    }

    let (target, last_only) = match out {
        LogitsOut::Skip => return Ok(()),
        LogitsOut::Last => (&s.logits, true),
        LogitsOut::All(buffer) => (buffer, false),
    };
    // logits = lm_head . RMSNorm_f(residual += mixer_out, where out_proj did not add it)
    let delta = (!fused_norms && !w.layers.is_empty()).then_some(&s.mixer_out);
    add_rms_norm(
        rec,
        &AddRmsNorm { residual: &s.residual, delta, weight: Some(&w.norm_f), out: &s.normed, d, batch, t_len, last_only, eps: c.norm_eps },
    )?;
    let out_rows = if last_only { batch } else { rows };
    linear(rec, &Linear::dense(&s.normed, out_rows, w.lm_head(), target))
}

/// Layer i's causal conv1d + SiLU over the x half of in_proj's output, continuing its conv
/// state (a decode step runs it inside in_proj's kernel where it can: `linear_conv_step`).
pub fn layer_conv<'a>(model: &'a Model, s: &'a Scratch, state: &'a StateBuffers, i: usize, batch: u32, t_len: u32) -> Conv1d<'a> {
    let (c, layer) = (&model.config, &model.weights.layers[i]);
    Conv1d {
        x: &s.xz,
        x_stride: 2 * c.d_inner as u32,
        weight: &layer.conv_weight,
        bias: layer.conv_bias.as_ref(),
        state: &state.conv[i],
        out: &s.x_conv,
        batch,
        t_len,
        channels: c.d_inner as u32,
        k: c.d_conv as u32,
    }
}

/// Layer i's decode scan step (one token per sequence) with the dt projection fused in; y
/// overwrites the conv output in `x_conv`.
pub fn layer_scan_step<'a>(model: &'a Model, s: &'a Scratch, state: &'a StateBuffers, i: usize, batch: u32) -> ScanStepDt<'a> {
    let (c, layer) = (&model.config, &model.weights.layers[i]);
    ScanStepDt {
        x_y: &s.x_conv,
        xdbl: &s.x_dbl,
        xz: &s.xz,
        a: &layer.a,
        d_skip: &layer.d_skip,
        h: &state.ssm[i],
        dt_proj: &layer.dt_proj,
        dt_bias: &layer.dt_proj_bias,
        batch,
        d_inner: c.d_inner as u32,
        d_state: c.d_state as u32,
        dt_rank: c.dt_rank as u32,
    }
}
