//! Plain-Rust CPU forward pass of Mamba-1, written from the equations and accumulating in f64.
//! It is the oracle every kernel test compares against; it is slow on purpose (no tricks).
//!
//! Layouts: activations are row-major `(batch, time, channels)`; the recurrent state follows the
//! Hugging Face cache: conv `(batch, d_inner, d_conv)` with the newest input last, SSM
//! `(batch, d_inner, d_state)`.

use crate::model::config::MambaConfig;
use crate::model::weights::{HostWeights, LayerWeights};

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

/// Top-k sampling's candidates as shaders/top_k.wgsl defines them: the repetition penalty on
/// the `penalized` ids (a positive logit times 1 / penalty, any other times penalty), then every
/// entry at least as large as the k-th largest (f32 total order, so ties all stay), as
/// (id, penalized logit) in id order.
pub fn top_k_candidates(logits: &[f32], penalized: &[u32], penalty: f32, k: usize) -> Vec<(u32, f32)> {
    let mut values = logits.to_vec();
    for &id in penalized {
        if let Some(x) = values.get_mut(id as usize) {
            *x = if *x > 0.0 { *x * (1.0 / penalty) } else { *x * penalty };
        }
    }
    let mut sorted = values.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let threshold = sorted[k.clamp(1, values.len()) - 1];
    values.iter().enumerate().filter(|(_, x)| x.total_cmp(&threshold).is_ge()).map(|(i, &x)| (i as u32, x)).collect()
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

/// Recurrent state of the whole model for `batch` sequences.
#[derive(Clone, Debug, PartialEq)]
pub struct RefState {
    pub conv: Vec<Vec<f32>>, // per layer (batch, d_inner, d_conv)
    pub ssm: Vec<Vec<f32>>,  // per layer (batch, d_inner, d_state)
}

impl RefState {
    pub fn zeros(c: &MambaConfig, batch: usize) -> Self {
        RefState { conv: vec![vec![0.0; batch * c.d_inner * c.d_conv]; c.n_layer], ssm: vec![vec![0.0; batch * c.d_inner * c.d_state]; c.n_layer] }
    }
}

/// The mixer of one layer on normed input u (batch, t, d_model).
fn mixer(l: &LayerWeights<Vec<f32>, Vec<f32>>, c: &MambaConfig, u: &[f32], batch: usize, conv_state: &mut [f32], ssm_state: &mut [f32]) -> Vec<f32> {
    let rows = u.len() / c.d_model;
    let (di, n, r) = (c.d_inner, c.d_state, c.dt_rank);
    let xz = matmul(u, &l.in_proj, l.in_proj_bias.as_deref(), rows, 2 * di, c.d_model);
    let x: Vec<f32> = xz.chunks_exact(2 * di).flat_map(|row| row[..di].to_vec()).collect();
    let z: Vec<f32> = xz.chunks_exact(2 * di).flat_map(|row| row[di..].to_vec()).collect();
    let x = conv1d_silu(&x, conv_state, &l.conv_weight, l.conv_bias.as_deref(), batch, di, c.d_conv);
    let x_dbl = matmul(&x, &l.x_proj, None, rows, r + 2 * n, di);
    let split = |from: usize, width: usize| -> Vec<f32> { x_dbl.chunks_exact(r + 2 * n).flat_map(|row| row[from..from + width].to_vec()).collect() };
    let (dt_low, b, cm) = (split(0, r), split(r, n), split(r + n, n));
    let dt: Vec<f32> = matmul(&dt_low, &l.dt_proj, Some(&l.dt_proj_bias), rows, di, r).into_iter().map(|v| softplus(v as f64) as f32).collect();
    let inputs = ScanInputs { x: &x, dt: &dt, b: &b, c: &cm, z: &z, a: &l.a, d_skip: &l.d_skip };
    let y = selective_scan(&inputs, ssm_state, batch, di, n);
    matmul(&y, &l.out_proj, l.out_proj_bias.as_deref(), rows, c.d_model, di)
}

/// Logits (batch, t, vocab) for token ids (batch, t), continuing from `state`.
pub fn forward(w: &HostWeights, c: &MambaConfig, ids: &[u32], batch: usize, state: &mut RefState) -> Vec<f32> {
    let d = c.d_model;
    let mut residual: Vec<f32> = ids.iter().flat_map(|&id| w.embedding[id as usize * d..][..d].to_vec()).collect();
    for (i, layer) in w.layers.iter().enumerate() {
        // A sink that folds the norm's weight into in_proj leaves no weight here.
        let ones;
        let norm = match &layer.norm {
            Some(weight) => weight,
            None => {
                ones = vec![1.0; d];
                &ones
            }
        };
        let u = rms_norm(&residual, norm, c.norm_eps);
        let out = mixer(layer, c, &u, batch, &mut state.conv[i], &mut state.ssm[i]);
        for (r, o) in residual.iter_mut().zip(out) {
            *r += o;
        }
    }
    let h = rms_norm(&residual, &w.norm_f, c.norm_eps);
    matmul(&h, w.lm_head(), None, ids.len(), c.vocab_size, d)
}
