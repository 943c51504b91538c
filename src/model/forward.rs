//! The forward pass, as a flat list of op calls per layer (Gu & Dao 2023, Mamba block):
//!
//!   residual = embedding[ids]
//!   per layer:  u  = RMSNorm(residual += mixer_out)        (no add before the first layer)
//!               proj = in_proj(u)                            x | z halves
//!               x  = silu(conv1d(x))                         causal, depthwise, continues the conv state
//!               x_dbl = x_proj(x)                            dt_low | B | C
//!               (FalconMamba: dt_low, B and C each RMS-normalized without a weight)
//!               dt = softplus(dt_proj(dt_low) + bias)
//!               y  = scan(x, dt, B, C; A, D) * silu(z)       continues the SSM state
//!               mixer_out = out_proj(y)
//!   logits = lm_head(RMSNorm_f(residual += mixer_out))
//!
//! Mamba-2 (Dao & Gu 2024) replaces the middle of the layer (`record_ssd`):
//!               proj = in_proj(u)                            z | xBC | dt
//!               xBC = silu(conv1d(xBC))                      x | B | C, B and C in G groups
//!               y  = ssd(x, dt, B, C; A, D)                  one scalar A per head, SSD chunks
//!               y  = RMSNorm_per_group(y * silu(z)) * w      the gated norm
//!
//! Where the matvec takes the rows (at most 8: a decode step, a short prompt) the norms run
//! inside the matvecs as they load their input (in_proj the layer's, the LM head the final one)
//! and out_proj adds into the residual itself. A decode step (one token per sequence) also runs
//! the conv inside in_proj's kernel, in place over in_proj's conv columns, and what follows the
//! conv in one kernel: Mamba-1 / FalconMamba's fused scan step (x_proj, norms, dt, scan), or
//! Mamba-2's SSD step with the gate, whose group norm out_proj applies on load. Three dispatches
//! per layer, plus the embedding and the LM head.
//!
//! Buffers are allocated once per session for at most `max_rows` = batch x chunk tokens.

use super::config::SsdShape;
use super::gpu_weights::Model;
use super::weights::SsmWeights;
use crate::error::Result;
use crate::gpu::kernels::{MATVEC_MAX_GROUPS, MATVEC_MAX_M, SSD_CHUNK};
use crate::gpu::tensor::{storage, TensorView};
use crate::gpu::{GpuContext, Recorder};
use crate::ops::conv1d::Conv1d;
use crate::ops::embedding::embedding;
use crate::ops::group_norm::{group_rms_norm, GroupRmsNorm};
use crate::ops::linear::{linear, linear_conv_step, Activation, InputNorm, Linear};
use crate::ops::norm::{add_rms_norm, AddRmsNorm};
use crate::ops::scan::{scan_step_dt, scan_step_fused, scan_step_fused_fits, selective_scan, Scan, ScanKind, ScanStepDt, ScanStepFused};
use crate::ops::ssd::{chunk_buffer_elements, ssd_scan, Ssd, SsdKind};

/// The recurrent state of `batch` sequences, one pair of buffers per layer (a 7B model's
/// state is hundreds of MB: split by layer, each buffer stays within one storage binding).
pub struct StateBuffers {
    pub conv: Vec<wgpu::Buffer>, // per layer (batch, conv_channels, d_conv), newest input last
    pub ssm: Vec<wgpu::Buffer>,  // per layer (batch, d_inner, d_state); Mamba-2: (batch, H, P, N), the same size
}

impl StateBuffers {
    pub fn new(ctx: &GpuContext, m: &Model, batch: usize) -> Self {
        let c = &m.config;
        StateBuffers {
            conv: (0..c.n_layer).map(|i| storage(ctx, &format!("conv_state.{i}"), batch * c.conv_channels() * c.d_conv)).collect(),
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
    pub ids: wgpu::Buffer,         // (rows) u32
    pub residual: wgpu::Buffer,    // (rows, d_model)
    pub normed: wgpu::Buffer,      // (rows, d_model)
    pub proj: wgpu::Buffer,        // (rows, in_proj_width): x | z, or Mamba-2's z | xBC | dt
    pub x_conv: wgpu::Buffer,      // (rows, conv_channels)
    pub x_dbl: wgpu::Buffer,       // (rows, dt_rank + 2 d_state); Mamba-1 and FalconMamba only
    pub dt: wgpu::Buffer,          // (rows, d_inner); Mamba-1 and FalconMamba only
    pub chunk_state: wgpu::Buffer, // Mamba-2's chunked scan: each chunk's state (ops::ssd)
    pub chunk_decay: wgpu::Buffer, // and decay
    pub y: wgpu::Buffer,           // (rows, d_inner)
    pub mixer_out: wgpu::Buffer,   // (rows, d_model)
    pub logits: wgpu::Buffer,      // (batch, vocab): last position of each sequence
    pub next_ids: wgpu::Buffer,    // (batch) u32: argmax of logits
}

impl Scratch {
    pub fn new(ctx: &GpuContext, m: &Model, batch: usize, max_rows: usize) -> Self {
        let c = &m.config;
        let buf = |label: &str, elements: usize| storage(ctx, label, elements);
        let selective = c.ssd.is_none() as usize;
        // Mamba-2's chunk states; one token per sequence (the sequential scan) needs none.
        let chunked = max_rows > batch;
        let chunk_elements = c.ssd.filter(|_| chunked).map_or((0, 0), |shape| chunk_buffer_elements(max_rows, batch, &shape, c.d_state));
        Scratch {
            max_rows,
            ids: buf("ids", max_rows),
            residual: buf("residual", max_rows * c.d_model),
            normed: buf("normed", max_rows * c.d_model),
            proj: buf("proj", max_rows * c.in_proj_width()),
            x_conv: buf("x_conv", max_rows * c.conv_channels()),
            x_dbl: buf("x_dbl", selective * max_rows * c.x_proj_width()),
            dt: buf("dt", selective * max_rows * c.d_inner),
            chunk_state: buf("chunk_state", chunk_elements.0),
            chunk_decay: buf("chunk_decay", chunk_elements.1),
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
            &self.proj,
            &self.x_conv,
            &self.x_dbl,
            &self.dt,
            &self.chunk_state,
            &self.chunk_decay,
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
    let d = c.d_model as u32;
    let f32_rows = |buffer, cols| TensorView::f32(buffer, rows, cols);
    let residual = f32_rows(&s.residual, d);
    let proj = f32_rows(&s.proj, c.in_proj_width() as u32);

    // residual = embedding[ids]
    embedding(rec, &w.embedding, TensorView::u32(&s.ids, rows, 1), residual)?;

    // Where the matvec takes the rows (a decode step, a short prompt), in_proj normalizes its
    // own input (the RMSNorm, its weight applied as it loads the residual) and out_proj adds
    // into the residual stream: no norm dispatch per layer. Otherwise add_rms_norm does both,
    // into `normed`.
    let matvec = rows <= MATVEC_MAX_M;
    for (i, layer) in w.layers.iter().enumerate() {
        let norm = TensorView::vector(&layer.norm, d);
        let in_proj = if matvec {
            // u = RMSNorm(residual), inside in_proj
            Linear { norm: Some(InputNorm::rows(c.norm_eps, Some(norm))), ..Linear::new(residual, &layer.in_proj, proj) }
        } else {
            // u = RMSNorm(residual += mixer_out of the previous layer)
            let normed = f32_rows(&s.normed, d);
            add_rms_norm(
                rec,
                &AddRmsNorm {
                    residual,
                    delta: (i > 0).then(|| f32_rows(&s.mixer_out, d)),
                    weight: Some(norm),
                    out: normed,
                    batch,
                    t_len,
                    last_only: false,
                    eps: c.norm_eps,
                },
            )?;
            Linear::new(normed, &layer.in_proj, proj)
        };
        // proj = in_proj . u (+ bias); the conv (and SiLU) on its x (or xBC) columns, continuing
        // the conv state: in a decode step inside in_proj's kernel, over those columns.
        let in_proj = Linear { bias: layer.in_proj_bias.as_ref().map(|b| TensorView::vector(b, c.in_proj_width() as u32)), ..in_proj };
        let decode = decode_kernels(model, i, batch, t_len);
        let conv = layer_conv(model, s, state, i, batch, t_len, decode);
        linear_conv_step(rec, &in_proj, &conv)?;
        let (y, y_norm) = match (&layer.ssm, &c.ssd) {
            (SsmWeights::Selective { .. }, _) => (record_selective(rec, model, s, state, i, batch, t_len, conv.out, decode)?, None),
            (SsmWeights::Ssd { .. }, Some(shape)) => record_ssd(rec, model, *shape, s, state, i, batch, t_len, conv.out, decode)?,
            (SsmWeights::Ssd { .. }, None) => return Err(crate::Error::invalid("model", "Mamba-2 weights with a Mamba-1 config")),
        };
        // mixer_out = out_proj . y (+ bias), or residual += that (Mamba-2's decode step: y's
        // gated norm inside, as out_proj loads y)
        let out_proj = if matvec {
            Linear { accumulate: true, norm: y_norm, ..Linear::new(y, &layer.out_proj, residual) }
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
    let out_rows = if last_only { batch } else { rows };
    let logits = TensorView::f32(target, out_rows, c.vocab_size as u32);
    let norm_f = Some(TensorView::vector(&w.norm_f, d));
    if matvec {
        // logits = lm_head . RMSNorm_f(residual), the norm inside the LM head, which is often
        // the embedding itself and so cannot hold the norm's weight: it is applied on load.
        // The last position of each sequence: rows t - 1, 2 t - 1, ... of the residual.
        let x = if last_only { TensorView { offset: (t_len - 1) * d, row_stride: t_len * d, rows: batch, ..residual } } else { residual };
        return linear(rec, &Linear { norm: Some(InputNorm::rows(c.norm_eps, norm_f)), ..Linear::new(x, w.lm_head(), logits) });
    }
    // logits = lm_head . RMSNorm_f(residual += mixer_out)
    let normed = TensorView::f32(&s.normed, out_rows, d);
    let delta = (!w.layers.is_empty()).then(|| f32_rows(&s.mixer_out, d));
    add_rms_norm(rec, &AddRmsNorm { residual, delta, weight: norm_f, out: normed, batch, t_len, last_only, eps: c.norm_eps })?;
    linear(rec, &Linear::new(normed, w.lm_head(), logits))
}

/// Whether layer i of a run of `t_len` tokens of `batch` sequences takes the decode kernels:
/// one token per sequence, at most MATVEC_MAX_M sequences, and (Mamba-1, FalconMamba) weights
/// the fused scan step takes. They read the conv's output where in_proj's kernel leaves it, in
/// in_proj's output rows; the other paths read it from `x_conv`.
pub fn decode_kernels(model: &Model, i: usize, batch: u32, t_len: u32) -> bool {
    let one_token = t_len == 1 && batch <= MATVEC_MAX_M;
    match &model.weights.layers[i].ssm {
        SsmWeights::Selective { x_proj, dt_proj, .. } => one_token && scan_step_fused_fits(x_proj, dt_proj, batch),
        SsmWeights::Ssd { .. } => one_token,
    }
}

/// Mamba-1 and FalconMamba after the conv, whose output is `x_conv`: x_proj, dt, the selective
/// scan with the gate. Returns y (rows, d_inner).
#[allow(clippy::too_many_arguments)]
fn record_selective<'a>(
    rec: &mut Recorder,
    model: &Model,
    s: &'a Scratch,
    state: &StateBuffers,
    i: usize,
    batch: u32,
    t_len: u32,
    x_conv: TensorView<'a>,
    decode: bool,
) -> Result<TensorView<'a>> {
    let c = &model.config;
    let layer = &model.weights.layers[i];
    let SsmWeights::Selective { x_proj, dt_proj, dt_bias, a, d_skip } = &layer.ssm else {
        return Err(crate::Error::invalid("model", "a Mamba-1 layer without x_proj"));
    };
    let rows = batch * t_len;
    let di = c.d_inner as u32;
    let (n, r) = (c.d_state as u32, c.dt_rank as u32);
    let z = TensorView::f32(&s.proj, rows, 2 * di).columns(di, di);
    let (a, d_skip, h) = (TensorView::f32(a, di, n), TensorView::vector(d_skip, di), TensorView::f32(&state.ssm[i], batch * di, n));
    let dt_bias = TensorView::vector(dt_bias, di);
    if decode {
        // x_dbl = x_proj . x (FalconMamba: normalized); dt = softplus(dt_proj . dt_low + bias);
        // h = exp(dt A) h + dt B x;  y = (C . h + D x) * silu(z), over z: one kernel.
        let step = ScanStepFused { x: x_conv, z_y: z, x_proj, dt_proj, dt_bias, a, d_skip, h, mixer_norm_eps: c.mixer_rms_eps, batch };
        scan_step_fused(rec, &step)?;
        return Ok(z);
    }
    let x_dbl = TensorView::f32(&s.x_dbl, rows, c.x_proj_width() as u32);
    // x_dbl = x_proj . x  ->  dt_low (R) | B (N) | C (N)
    linear(rec, &Linear::new(x_conv, x_proj, x_dbl))?;
    if let Some(eps) = c.mixer_rms_eps {
        // FalconMamba: dt_low, B and C each RMS-normalized without a weight, in place.
        group_rms_norm(rec, &GroupRmsNorm { x: x_dbl, first_width: r, width: n, gate: None, weight: None, eps })?;
    }
    if t_len == 1 && dt_proj.parts.len() == 1 && dt_proj.dtype.is_float() {
        // A step the fused kernel does not take (x_proj or dt_proj split into parts, or in a
        // block format, more than 8 sequences): dt = softplus(dt_proj . dt_low + bias) inside the scan step;
        // h = exp(dt A) h + dt B x;  y = (C . h + D x) * silu(z), over x_conv.
        let step = ScanStepDt { x_y: x_conv, xdbl: x_dbl, z, a, d_skip, h, dt_proj, dt_bias, batch };
        scan_step_dt(rec, &step)?;
        return Ok(x_conv);
    }
    // dt = softplus(dt_proj . dt_low + bias)
    let dt = TensorView::f32(&s.dt, rows, di);
    let dt_low = x_dbl.columns(0, r);
    linear(rec, &Linear { bias: Some(dt_bias), activation: Activation::Softplus, ..Linear::new(dt_low, dt_proj, dt) })?;
    // h_t = exp(dt A) h_{t-1} + dt B x;  y = (C . h + D x) * silu(z)
    let y = TensorView::f32(&s.y, rows, di);
    let scan = Scan { x: x_conv, dt, xdbl: x_dbl, z, a, d_skip, h, y, batch, t_len };
    // The chunked scan gives a prompt parallelism along time; one token has none.
    let kind = if t_len > 1 { ScanKind::Chunked } else { ScanKind::Sequential };
    selective_scan(rec, &scan, kind)?;
    Ok(y)
}

/// Mamba-2 after the conv, whose output is `xbc`: the SSD scan, then the gated RMSNorm.
/// Returns y (rows, d_inner) and, where out_proj is to apply the norm as it loads y (a decode
/// step), that norm.
#[allow(clippy::too_many_arguments)]
fn record_ssd<'a>(
    rec: &mut Recorder,
    model: &'a Model,
    shape: SsdShape,
    s: &'a Scratch,
    state: &StateBuffers,
    i: usize,
    batch: u32,
    t_len: u32,
    xbc: TensorView<'a>,
    decode: bool,
) -> Result<(TensorView<'a>, Option<InputNorm<'a>>)> {
    let c = &model.config;
    let SsmWeights::Ssd { dt_bias, a, d_skip, norm } = &model.weights.layers[i].ssm else {
        return Err(crate::Error::invalid("model", "a Mamba-2 layer without its SSD weights"));
    };
    let rows = batch * t_len;
    let (di, n, heads) = (c.d_inner as u32, c.d_state as u32, shape.n_heads as u32);
    let proj = TensorView::f32(&s.proj, rows, c.in_proj_width() as u32);
    let channels = c.conv_channels() as u32;
    let y = TensorView::f32(&s.y, rows, di);
    let z = proj.columns(0, di);
    let norm = TensorView::vector(norm, di);
    let groups = shape.n_groups as u32;
    // y = ssd(x, dt, B, C; A, D), continuing the SSM state (batch, H, P, N); a decode step
    // gates it there: y * silu(z)
    let ssd = Ssd {
        shape,
        d_state: n,
        xbc,
        dt_raw: proj.columns(di + channels, heads),
        dt_bias: TensorView::vector(dt_bias, heads),
        a: TensorView::vector(a, heads),
        d_skip: TensorView::vector(d_skip, heads),
        h: TensorView::f32(&state.ssm[i], batch * di, n),
        y,
        gate: decode.then_some(z),
        chunk_state: Some(TensorView::f32(&s.chunk_state, batch * t_len.div_ceil(SSD_CHUNK) * di, n)),
        chunk_decay: Some(TensorView::f32(&s.chunk_decay, batch * t_len.div_ceil(SSD_CHUNK), heads)),
        batch,
        t_len,
    };
    // The chunks give a prompt parallelism along time; one token has none.
    let kind = if t_len > 1 { SsdKind::Chunked } else { SsdKind::Sequential };
    ssd_scan(rec, &ssd, kind)?;
    // y = RMSNorm(y * silu(z)) per group of d_inner / G channels, times the norm's weight: in a
    // decode step inside out_proj (up to MATVEC_MAX_GROUPS groups), else a dispatch of its own.
    if decode && groups <= MATVEC_MAX_GROUPS {
        return Ok((y, Some(InputNorm { eps: c.norm_eps, groups, weight: Some(norm) })));
    }
    let width = di / groups;
    let gate = (!decode).then_some(z);
    group_rms_norm(rec, &GroupRmsNorm { x: y, first_width: width, width, gate, weight: Some(norm), eps: c.norm_eps })?;
    Ok((y, None))
}

/// Layer i's causal conv1d + SiLU over the x columns of in_proj's output (Mamba-2: xBC),
/// continuing its conv state. With `in_place` (a decode step, `decode_kernels`) its output
/// overwrites those columns, inside in_proj's kernel (`linear_conv_step`); otherwise it goes to
/// `x_conv`.
pub fn layer_conv<'a>(model: &'a Model, s: &'a Scratch, state: &'a StateBuffers, i: usize, batch: u32, t_len: u32, in_place: bool) -> Conv1d<'a> {
    let (c, layer) = (&model.config, &model.weights.layers[i]);
    let (channels, k, rows) = (c.conv_channels() as u32, c.d_conv as u32, batch * t_len);
    // Mamba-1: x is the first d_inner columns; Mamba-2: xBC follows z.
    let first = if c.ssd.is_some() { c.d_inner as u32 } else { 0 };
    let x = TensorView::f32(&s.proj, rows, c.in_proj_width() as u32).columns(first, channels);
    Conv1d {
        x,
        weight: TensorView::f32(&layer.conv_weight, channels, k),
        bias: layer.conv_bias.as_ref().map(|b| TensorView::vector(b, channels)),
        state: TensorView::f32(&state.conv[i], batch * channels, k),
        out: if in_place { x } else { TensorView::f32(&s.x_conv, rows, channels) },
        batch,
        t_len,
    }
}
