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
//! hold the norm's weight, and out_proj adds into the residual itself (the plan's fused_norms).
//!
//! Buffers are allocated once per session for at most `max_rows` = batch x chunk tokens.

use super::gpu_weights::Model;
use crate::error::Result;
use crate::gpu::kernels::MATVEC_MAX_M;
use crate::gpu::tensor::{storage, TensorView};
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
    let (d, di) = (c.d_model as u32, c.d_inner as u32);
    let f32_rows = |buffer, cols| TensorView::f32(buffer, rows, cols);
    let residual = f32_rows(&s.residual, d);
    let xz = f32_rows(&s.xz, 2 * di);
    let x_dbl = f32_rows(&s.x_dbl, c.x_proj_width() as u32);

    // residual = embedding[ids]
    embedding(rec, &w.embedding, TensorView::u32(&s.ids, rows, 1), residual)?;

    // Where the matvec takes the rows (a decode step, a short prompt) and the norms' weights
    // are folded into in_proj (the plan's fused_norms), in_proj normalizes its own input and
    // out_proj adds into the residual stream: no norm dispatch per layer. Otherwise
    // add_rms_norm does both, into `normed`.
    let fused_norms = model.plan.fused_norms && rows <= MATVEC_MAX_M;
    for (i, layer) in w.layers.iter().enumerate() {
        let in_proj = if fused_norms {
            // u = RMSNorm(residual), inside in_proj
            Linear { rms_norm_eps: Some(c.norm_eps), ..Linear::new(residual, &layer.in_proj, xz) }
        } else {
            // u = RMSNorm(residual += mixer_out of the previous layer)
            let normed = f32_rows(&s.normed, d);
            add_rms_norm(
                rec,
                &AddRmsNorm {
                    residual,
                    delta: (i > 0).then(|| f32_rows(&s.mixer_out, d)),
                    weight: layer.norm.as_ref().map(|n| TensorView::vector(n, d)),
                    out: normed,
                    batch,
                    t_len,
                    last_only: false,
                    eps: c.norm_eps,
                },
            )?;
            Linear::new(normed, &layer.in_proj, xz)
        };
        // xz = in_proj . u (+ bias): x = xz[:, :d_inner], z = xz[:, d_inner:]
        // x = silu(conv1d(x) + bias), continuing the conv state (one kernel when decoding)
        let in_proj = Linear { bias: layer.in_proj_bias.as_ref().map(|b| TensorView::vector(b, 2 * di)), ..in_proj };
        linear_conv_step(rec, &in_proj, &layer_conv(model, s, state, i, batch, t_len))?;
        // x_dbl = x_proj . x  ->  dt_low (R) | B (N) | C (N)
        let x_conv = f32_rows(&s.x_conv, di);
        linear(rec, &Linear::new(x_conv, &layer.x_proj, x_dbl))?;
        // y from one of the two scan paths:
        let y = if t_len == 1 && layer.dt_proj.parts.len() == 1 {
            // Decode: dt = softplus(dt_proj . dt_low + bias) inside the scan step (no dispatch
            // of its own); h = exp(dt A) h + dt B x;  y = (C . h + D x) * silu(z), over x_conv.
            scan_step_dt(rec, &layer_scan_step(model, s, state, i, batch))?;
            x_conv
        } else {
            // dt = softplus(dt_proj . dt_low + bias)
            let dt = f32_rows(&s.dt, di);
            let dt_low = x_dbl.columns(0, c.dt_rank as u32);
            let dt_bias = Some(TensorView::vector(&layer.dt_proj_bias, di));
            linear(rec, &Linear { bias: dt_bias, activation: Activation::Softplus, ..Linear::new(dt_low, &layer.dt_proj, dt) })?;
            // h_t = exp(dt A) h_{t-1} + dt B x;  y = (C . h + D x) * silu(z)
            let y = f32_rows(&s.y, di);
            let scan = Scan {
                x: x_conv,
                dt,
                xdbl: x_dbl,
                z: xz.columns(di, di),
                a: TensorView::f32(&layer.a, di, c.d_state as u32),
                d_skip: TensorView::vector(&layer.d_skip, di),
                h: TensorView::f32(&state.ssm[i], batch * di, c.d_state as u32),
                y,
                batch,
                t_len,
            };
            // The chunked scan gives a prompt parallelism along time; one token has none.
            let kind = if t_len > 1 { ScanKind::Chunked } else { ScanKind::Sequential };
            selective_scan(rec, &scan, kind)?;
            y
        };
        // mixer_out = out_proj . y (+ bias), or residual += that
        let out_proj = if fused_norms {
            Linear { accumulate: true, ..Linear::new(y, &layer.out_proj, residual) }
        } else {
            Linear::new(y, &layer.out_proj, f32_rows(&s.mixer_out, d))
        };
        linear(rec, &Linear { bias: layer.out_proj_bias.as_ref().map(|b| TensorView::vector(b, d)), ..out_proj })?;
    }

    let (target, last_only) = match out {
        LogitsOut::Skip => return Ok(()),
        LogitsOut::Last => (&s.logits, true),
        LogitsOut::All(buffer) => (buffer, false),
    };
    // logits = lm_head . RMSNorm_f(residual += mixer_out, where out_proj did not add it)
    let out_rows = if last_only { batch } else { rows };
    let normed = TensorView::f32(&s.normed, out_rows, d);
    let delta = (!fused_norms && !w.layers.is_empty()).then(|| f32_rows(&s.mixer_out, d));
    let weight = Some(TensorView::vector(&w.norm_f, d));
    add_rms_norm(rec, &AddRmsNorm { residual, delta, weight, out: normed, batch, t_len, last_only, eps: c.norm_eps })?;
    linear(rec, &Linear::new(normed, w.lm_head(), TensorView::f32(target, out_rows, c.vocab_size as u32)))
}

/// Layer i's causal conv1d + SiLU over the x half of in_proj's output, continuing its conv
/// state (a decode step runs it inside in_proj's kernel where it can: `linear_conv_step`).
pub fn layer_conv<'a>(model: &'a Model, s: &'a Scratch, state: &'a StateBuffers, i: usize, batch: u32, t_len: u32) -> Conv1d<'a> {
    let (c, layer) = (&model.config, &model.weights.layers[i]);
    let (di, k, rows) = (c.d_inner as u32, c.d_conv as u32, batch * t_len);
    Conv1d {
        x: TensorView::f32(&s.xz, rows, 2 * di).columns(0, di),
        weight: TensorView::f32(&layer.conv_weight, di, k),
        bias: layer.conv_bias.as_ref().map(|b| TensorView::vector(b, di)),
        state: TensorView::f32(&state.conv[i], batch * di, k),
        out: TensorView::f32(&s.x_conv, rows, di),
        batch,
        t_len,
    }
}

/// Layer i's decode scan step (one token per sequence) with the dt projection fused in; y
/// overwrites the conv output in `x_conv`.
pub fn layer_scan_step<'a>(model: &'a Model, s: &'a Scratch, state: &'a StateBuffers, i: usize, batch: u32) -> ScanStepDt<'a> {
    let (c, layer) = (&model.config, &model.weights.layers[i]);
    let (di, n) = (c.d_inner as u32, c.d_state as u32);
    ScanStepDt {
        x_y: TensorView::f32(&s.x_conv, batch, di),
        xdbl: TensorView::f32(&s.x_dbl, batch, c.x_proj_width() as u32),
        z: TensorView::f32(&s.xz, batch, 2 * di).columns(di, di),
        a: TensorView::f32(&layer.a, di, n),
        d_skip: TensorView::vector(&layer.d_skip, di),
        h: TensorView::f32(&state.ssm[i], batch * di, n),
        dt_proj: &layer.dt_proj,
        dt_bias: TensorView::vector(&layer.dt_proj_bias, di),
        batch,
    }
}
