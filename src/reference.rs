//! Plain-Rust CPU forward pass of Mamba-1, FalconMamba and Mamba-2, written from the equations
//! and accumulating in f64. It is the oracle every kernel test compares against; it is slow on
//! purpose (no tricks).
//!
//! Layouts: activations are row-major `(batch, time, channels)`; the recurrent state follows the
//! Hugging Face cache: conv `(batch, conv_channels, d_conv)` with the newest input last, SSM
//! `(batch, d_inner, d_state)` (Mamba-2's `(batch, heads, head_dim, d_state)` is the same
//! memory: channel = head * head_dim + p).

use crate::model::config::{MambaConfig, SsdShape};
use crate::model::weights::{HostWeights, LayerWeights, SsmWeights};

pub fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// log(1 + exp(x)), returning x itself above 20 as PyTorch does.
pub fn softplus(x: f64) -> f64 {
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

/// y = x / sqrt(mean(x^2) + eps) * w, per row of width w.len().
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let d = w.len();
    let mut out = vec![0.0; x.len()];
    for (row, out_row) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let mean_sq = row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / d as f64;
        let scale = 1.0 / (mean_sq + eps as f64).sqrt();
        for ((o, &v), &g) in out_row.iter_mut().zip(row).zip(w) {
            *o = (v as f64 * scale * g as f64) as f32;
        }
    }
    out
}

/// y (m, n) = x (m, k) . w (n, k)^T + bias (n): PyTorch's nn.Linear.
pub fn matmul(x: &[f32], w: &[f32], bias: Option<&[f32]>, m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut y = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k).map(|p| x[i * k + p] as f64 * w[j * k + p] as f64).sum();
            y[i * n + j] = (dot + bias.map_or(0.0, |b| b[j] as f64)) as f32;
        }
    }
    y
}

/// Causal depthwise conv1d + SiLU over x (batch, t, d), continuing from `state` (batch, d, k),
/// which it then advances to hold the last k inputs:
/// out_t[c] = silu(bias[c] + sum_j w[c, j] * x_{t-k+1+j}[c]), with x before the prompt read
/// from the state.
pub fn conv1d_silu(x: &[f32], state: &mut [f32], w: &[f32], bias: Option<&[f32]>, batch: usize, d: usize, k: usize) -> Vec<f32> {
    let t_len = x.len() / (batch * d);
    let mut out = vec![0.0; x.len()];
    for b in 0..batch {
        for c in 0..d {
            // The window of inputs: k-1 from the state (oldest first) then the new ones.
            let st = &mut state[(b * d + c) * k..(b * d + c + 1) * k];
            let mut window: Vec<f64> = st[1..].iter().map(|&v| v as f64).collect();
            window.extend((0..t_len).map(|t| x[(b * t_len + t) * d + c] as f64));
            for t in 0..t_len {
                let acc: f64 = (0..k).map(|j| w[c * k + j] as f64 * window[t + j]).sum::<f64>() + bias.map_or(0.0, |bv| bv[c] as f64);
                out[(b * t_len + t) * d + c] = silu(acc) as f32;
            }
            // New state: the last k inputs, where position -k of the full window is the old state's
            // first entry when fewer than k tokens arrived.
            let mut full: Vec<f64> = vec![st[0] as f64];
            full.extend(window);
            let tail = &full[full.len() - k..];
            for (s, &v) in st.iter_mut().zip(tail) {
                *s = v as f32;
            }
        }
    }
    out
}

/// Inputs of the selective scan for one layer, all row-major.
pub struct ScanInputs<'a> {
    pub x: &'a [f32],      // (batch, t, d_inner): conv output
    pub dt: &'a [f32],     // (batch, t, d_inner): after softplus
    pub b: &'a [f32],      // (batch, t, d_state)
    pub c: &'a [f32],      // (batch, t, d_state)
    pub z: &'a [f32],      // (batch, t, d_inner): gate
    pub a: &'a [f32],      // (d_inner, d_state): A = -exp(A_log)
    pub d_skip: &'a [f32], // (d_inner)
}

/// h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t;  y_t = (C_t . h_t + D x_t) * silu(z_t).
/// `h` (batch, d_inner, d_state) holds the state before and is left holding the state after.
pub fn selective_scan(inp: &ScanInputs, h: &mut [f32], batch: usize, d_inner: usize, d_state: usize) -> Vec<f32> {
    let t_len = inp.x.len() / (batch * d_inner);
    let mut y = vec![0.0; inp.x.len()];
    for b in 0..batch {
        for ch in 0..d_inner {
            let mut state: Vec<f64> = h[(b * d_inner + ch) * d_state..][..d_state].iter().map(|&v| v as f64).collect();
            for t in 0..t_len {
                let row = b * t_len + t;
                let (x, dt) = (inp.x[row * d_inner + ch] as f64, inp.dt[row * d_inner + ch] as f64);
                let mut acc = 0.0;
                for (n, s) in state.iter_mut().enumerate() {
                    let a = inp.a[ch * d_state + n] as f64;
                    *s = (dt * a).exp() * *s + dt * inp.b[row * d_state + n] as f64 * x;
                    acc += *s * inp.c[row * d_state + n] as f64;
                }
                let out = acc + inp.d_skip[ch] as f64 * x;
                y[row * d_inner + ch] = (out * silu(inp.z[row * d_inner + ch] as f64)) as f32;
            }
            for (dst, s) in h[(b * d_inner + ch) * d_state..][..d_state].iter_mut().zip(&state) {
                *dst = *s as f32;
            }
        }
    }
    y
}

/// Inputs of Mamba-2's scan for one layer, all row-major.
pub struct SsdInputs<'a> {
    pub xbc: &'a [f32],     // (batch, t, d_inner + 2 G N): conv output x | B | C
    pub dt_raw: &'a [f32],  // (batch, t, n_heads): in_proj's dt columns, before the bias
    pub dt_bias: &'a [f32], // (n_heads)
    pub a: &'a [f32],       // (n_heads): A = -exp(A_log)
    pub d_skip: &'a [f32],  // (n_heads)
}

/// Mamba-2's recurrence, per head h (group g = h / (H / G)) and channel p of the head:
///   dt_t = clamp(softplus(dt_raw_t + dt_bias), dt_min, dt_max)
///   s_t = exp(dt_t A) s_{t-1} + dt_t x_t B_t^T;   y_t = s_t C_t + D x_t    (no gate here)
/// `h` (batch, H, P, N) holds the state before and is left holding the state after.
pub fn ssd_scan(inp: &SsdInputs, shape: &SsdShape, h: &mut [f32], batch: usize, d_state: usize) -> Vec<f32> {
    let (heads, p_dim, n) = (shape.n_heads, shape.head_dim, d_state);
    let d_inner = heads * p_dim;
    let width = d_inner + 2 * shape.n_groups * n;
    let t_len = inp.xbc.len() / (batch * width);
    let mut y = vec![0.0; batch * t_len * d_inner];
    for b in 0..batch {
        for head in 0..heads {
            let g = head / (heads / shape.n_groups);
            let (b_col, c_col) = (d_inner + g * n, d_inner + (shape.n_groups + g) * n);
            for p in 0..p_dim {
                let ch = head * p_dim + p;
                let slot = &mut h[(b * d_inner + ch) * n..][..n];
                let mut state: Vec<f64> = slot.iter().map(|&v| v as f64).collect();
                for t in 0..t_len {
                    let row = b * t_len + t;
                    let xbc = &inp.xbc[row * width..][..width];
                    let dt =
                        softplus(inp.dt_raw[row * heads + head] as f64 + inp.dt_bias[head] as f64).clamp(shape.dt_min as f64, shape.dt_max as f64);
                    let (decay, x) = ((dt * inp.a[head] as f64).exp(), xbc[ch] as f64);
                    let mut acc = 0.0;
                    for (j, s) in state.iter_mut().enumerate() {
                        *s = decay * *s + dt * x * xbc[b_col + j] as f64;
                        acc += *s * xbc[c_col + j] as f64;
                    }
                    y[row * d_inner + ch] = (acc + inp.d_skip[head] as f64 * x) as f32;
                }
                for (dst, s) in slot.iter_mut().zip(&state) {
                    *dst = *s as f32;
                }
            }
        }
    }
    y
}

/// Mamba-2's gated RMSNorm (mamba_ssm's RMSNormGated, norm_before_gate false), per row of y:
/// v = y * silu(z), then each group of d_inner / G channels v / sqrt(mean(v^2) + eps) * w.
pub fn gated_group_rms_norm(y: &[f32], z: &[f32], w: &[f32], groups: usize, eps: f32) -> Vec<f32> {
    let gated: Vec<f32> = y.iter().zip(z).map(|(&y, &z)| (y as f64 * silu(z as f64)) as f32).collect();
    let width = w.len() / groups;
    let mut out = Vec::with_capacity(y.len());
    for group in gated.chunks_exact(width) {
        let g = (out.len() % w.len()) / width;
        out.extend(rms_norm(group, &w[g * width..][..width], eps));
    }
    out
}

/// Recurrent state of the whole model for `batch` sequences.
#[derive(Clone, Debug, PartialEq)]
pub struct RefState {
    pub conv: Vec<Vec<f32>>, // per layer (batch, conv_channels, d_conv)
    pub ssm: Vec<Vec<f32>>,  // per layer (batch, d_inner, d_state)
}

impl RefState {
    pub fn zeros(c: &MambaConfig, batch: usize) -> Self {
        RefState {
            conv: vec![vec![0.0; batch * c.conv_channels() * c.d_conv]; c.n_layer],
            ssm: vec![vec![0.0; batch * c.d_inner * c.d_state]; c.n_layer],
        }
    }
}

/// Columns [from, from + width) of every row of a row-major matrix `row_width` wide.
fn columns(m: &[f32], row_width: usize, from: usize, width: usize) -> Vec<f32> {
    m.chunks_exact(row_width).flat_map(|row| row[from..from + width].to_vec()).collect()
}

/// The mixer of one layer on normed input u (batch, t, d_model).
fn mixer(l: &LayerWeights<Vec<f32>, Vec<f32>>, c: &MambaConfig, u: &[f32], batch: usize, conv_state: &mut [f32], ssm_state: &mut [f32]) -> Vec<f32> {
    let rows = u.len() / c.d_model;
    let (di, n, wide, channels) = (c.d_inner, c.d_state, c.in_proj_width(), c.conv_channels());
    let proj = matmul(u, &l.in_proj, l.in_proj_bias.as_deref(), rows, wide, c.d_model);
    let y = match (&l.ssm, &c.ssd) {
        (SsmWeights::Selective { x_proj, dt_proj, dt_bias, a, d_skip }, _) => {
            // x | z
            let (x, z) = (columns(&proj, wide, 0, di), columns(&proj, wide, di, di));
            let x = conv1d_silu(&x, conv_state, &l.conv_weight, l.conv_bias.as_deref(), batch, di, c.d_conv);
            // x_dbl = x_proj . x -> dt_low | B | C
            let r = c.dt_rank;
            let x_dbl = matmul(&x, x_proj, None, rows, r + 2 * n, di);
            let (mut dt_low, mut b, mut cm) =
                (columns(&x_dbl, r + 2 * n, 0, r), columns(&x_dbl, r + 2 * n, r, n), columns(&x_dbl, r + 2 * n, r + n, n));
            if let Some(eps) = c.mixer_rms_eps {
                // FalconMamba: each of dt_low, B and C RMS-normalized, without a weight.
                dt_low = rms_norm(&dt_low, &vec![1.0; r], eps);
                b = rms_norm(&b, &vec![1.0; n], eps);
                cm = rms_norm(&cm, &vec![1.0; n], eps);
            }
            let dt: Vec<f32> = matmul(&dt_low, dt_proj, Some(dt_bias), rows, di, r).into_iter().map(|v| softplus(v as f64) as f32).collect();
            let inputs = ScanInputs { x: &x, dt: &dt, b: &b, c: &cm, z: &z, a, d_skip };
            selective_scan(&inputs, ssm_state, batch, di, n)
        }
        (SsmWeights::Ssd { dt_bias, a, d_skip, norm }, Some(shape)) => {
            // z | xBC | dt
            let (z, xbc) = (columns(&proj, wide, 0, di), columns(&proj, wide, di, channels));
            let dt_raw = columns(&proj, wide, di + channels, shape.n_heads);
            let xbc = conv1d_silu(&xbc, conv_state, &l.conv_weight, l.conv_bias.as_deref(), batch, channels, c.d_conv);
            let inputs = SsdInputs { xbc: &xbc, dt_raw: &dt_raw, dt_bias, a, d_skip };
            let y = ssd_scan(&inputs, shape, ssm_state, batch, n);
            gated_group_rms_norm(&y, &z, norm, shape.n_groups, c.norm_eps)
        }
        (SsmWeights::Ssd { .. }, None) => unreachable!("Mamba-2 weights are only loaded for a Mamba-2 config"),
    };
    matmul(&y, &l.out_proj, l.out_proj_bias.as_deref(), rows, c.d_model, di)
}

/// Logits (batch, t, vocab) for token ids (batch, t), continuing from `state`.
pub fn forward(w: &HostWeights, c: &MambaConfig, ids: &[u32], batch: usize, state: &mut RefState) -> Vec<f32> {
    let d = c.d_model;
    let mut residual: Vec<f32> = ids.iter().flat_map(|&id| w.embedding[id as usize * d..][..d].to_vec()).collect();
    for (i, layer) in w.layers.iter().enumerate() {
        let u = rms_norm(&residual, &layer.norm, c.norm_eps);
        let out = mixer(layer, c, &u, batch, &mut state.conv[i], &mut state.ssm[i]);
        for (r, o) in residual.iter_mut().zip(out) {
            *r += o;
        }
    }
    let h = rms_norm(&residual, &w.norm_f, c.norm_eps);
    matmul(&h, w.lm_head(), None, ids.len(), c.vocab_size, d)
}
