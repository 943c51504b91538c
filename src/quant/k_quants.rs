//! The K formats: super-blocks of 256 values in sub-blocks that have their own scale (and, for
//! Q4_K / Q5_K, their own minimum), the scales themselves quantized against one f16 scale.
//! Layouts and reference quantizers as llama.cpp's (ggml-common.h, ggml-quants.c).

use super::blocks::{half_at, push_half};
use super::nearest_int;

const QK_K: usize = 256;
/// Below this a group is treated as all zeros (ggml's GROUP_MAX_EPS).
const GROUP_MAX_EPS: f32 = 1e-15;

/// Sub-block j's 6-bit scale and minimum from the 12 packed bytes of Q4_K / Q5_K: j < 4 in the
/// low 6 bits of bytes j and j + 4; j >= 4 in the nibbles of byte j + 4 and the top 2 bits of
/// bytes j - 4 and j.
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Q4_K (144 bytes): d: f16, dmin: f16, scales: 12 bytes, qs: 128 bytes. Elements 64c .. 64c+31
/// are the low nibbles of qs[32c .. 32c+32] (sub-block 2c), 64c+32 .. 64c+63 the high nibbles
/// (sub-block 2c+1): value = d * sc * q - dmin * m.
pub(super) fn dequantize_q4_k(block: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (half_at(block, 0), half_at(block, 2));
    let (scales, qs) = (&block[4..16], &block[16..144]);
    for c in 0..4 {
        for (half, shift) in [(0, 0), (1, 4)] {
            let (sc, m) = scale_min_k4(2 * c + half, scales);
            let (d1, m1) = (d * sc as f32, dmin * m as f32);
            out.extend(qs[32 * c..32 * c + 32].iter().map(|&q| d1 * ((q >> shift) & 0xF) as f32 - m1));
        }
    }
}

/// Q5_K (176 bytes): d, dmin, scales[12], qh[32], qs[128]: Q4_K's nibbles plus a fifth bit,
/// bit 2c (low nibbles) or 2c + 1 (high nibbles) of qh[l] for element l of chunk c.
pub(super) fn dequantize_q5_k(block: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (half_at(block, 0), half_at(block, 2));
    let (scales, qh, qs) = (&block[4..16], &block[16..48], &block[48..176]);
    for c in 0..4 {
        for (half, shift) in [(0, 0), (1, 4)] {
            let (sc, m) = scale_min_k4(2 * c + half, scales);
            let (d1, m1) = (d * sc as f32, dmin * m as f32);
            let bit = 2 * c + half;
            out.extend((0..32).map(|l| {
                let q = ((qs[32 * c + l] >> shift) & 0xF) as u32 | (((qh[l] >> bit) & 1) as u32) << 4;
                d1 * q as f32 - m1
            }));
        }
    }
}

/// Q6_K (210 bytes): ql[128], qh[64], scales[16] (int8), d: f16. In each half of 128 values
/// (ql += 64, qh += 32, scales += 8 per half), element l + 32g (g = 0..4, l < 32) has its low
/// 4 bits in ql[l] (g = 0), ql[l + 32] (g = 1), their high nibbles (g = 2, 3), its top 2 bits
/// at bit 2g of qh[l]: value = d * scales[l / 16 + 2g] * (q - 32).
pub(super) fn dequantize_q6_k(block: &[u8], out: &mut Vec<f32>) {
    let d = half_at(block, 208);
    for half in 0..2 {
        let ql = &block[64 * half..64 * half + 64];
        let qh = &block[128 + 32 * half..128 + 32 * half + 32];
        let sc = &block[192 + 8 * half..192 + 8 * half + 8];
        for g in 0..4 {
            out.extend((0..32).map(|l| {
                let low = ql[l + 32 * (g % 2)] >> (4 * (g / 2)) & 0xF;
                let q = (low | ((qh[l] >> (2 * g)) & 3) << 4) as i32 - 32;
                d * sc[l / 16 + 2 * g] as i8 as f32 * q as f32
            }));
        }
    }
}

/// A scale and minimum for `x` (values q in 0..=nmax, x ~ scale * q - the_min) minimizing the
/// `weights`-weighted squared error over a small search of scales (llama.cpp's
/// make_qkx2_quants, use_mad = false). Returns (scale, the_min) and writes q into `l`.
fn make_qkx2_quants(nmax: i32, x: &[f32], weights: &[f32], l: &mut [u8], rmin: f32, rdelta: f32, nstep: i32) -> (f32, f32) {
    let n = x.len();
    let mut min = x.iter().copied().fold(x[0], f32::min);
    let max = x.iter().copied().fold(x[0], f32::max);
    let sum_w: f32 = weights.iter().sum();
    let sum_x: f32 = weights.iter().zip(x).map(|(w, v)| w * v).sum();
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.fill(0);
        return (0.0, -min);
    }
    let quant = |iscale: f32, min: f32, i: usize| nearest_int(iscale * (x[i] - min)).clamp(0, nmax) as u8;
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best = 0.0;
    for i in 0..n {
        l[i] = quant(iscale, min, i);
        let diff = scale * l[i] as f32 + min - x[i];
        best += weights[i] * diff * diff;
    }
    let mut aux = vec![0u8; n];
    for step in 0..=nstep {
        iscale = (rmin + rdelta * step as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0, 0.0, 0.0);
        for i in 0..n {
            aux[i] = quant(iscale, min, i);
            let (w, q) = (weights[i], aux[i] as f32);
            sum_l += w * q;
            sum_l2 += w * q * q;
            sum_xl += w * q * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let err: f32 = (0..n)
                .map(|i| {
                    let diff = this_scale * aux[i] as f32 + this_min - x[i];
                    weights[i] * diff * diff
                })
                .sum();
            if err < best {
                l.copy_from_slice(&aux);
                best = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Q4_K and Q5_K share everything but the bits of q: 8 sub-blocks of 32 with a scale and a
/// minimum each (weights |x| + rms, as llama.cpp), both quantized to 6 bits against d and
/// dmin; then q recomputed against the quantized scales. Returns (d, dmin, scales[12], q).
fn quantize_scaled_min(x: &[f32], nmax: i32, rmin: f32, nstep: i32) -> (f32, f32, [u8; 12], [u8; QK_K]) {
    let mut l = [0u8; QK_K];
    let (mut scales, mut mins) = ([0f32; 8], [0f32; 8]);
    for j in 0..8 {
        let sub = &x[32 * j..32 * j + 32];
        let av_x = (sub.iter().map(|v| v * v).sum::<f32>() / 32.0).sqrt();
        let weights: Vec<f32> = sub.iter().map(|v| av_x + v.abs()).collect();
        (scales[j], mins[j]) = make_qkx2_quants(nmax, sub, &weights, &mut l[32 * j..32 * j + 32], rmin, 0.1, nstep);
    }
    let max_scale = scales.iter().copied().fold(0.0, f32::max);
    let max_min = mins.iter().copied().fold(0.0, f32::max);
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut packed = [0u8; 12];
    for j in 0..8 {
        let ls = nearest_int(inv_scale * scales[j]).min(63) as u8;
        let lm = nearest_int(inv_min * mins[j]).min(63) as u8;
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    let d = half::f16::from_f32(max_scale / 63.0).to_f32();
    let dmin = half::f16::from_f32(max_min / 63.0).to_f32();
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &packed);
        let d1 = d * sc as f32;
        if d1 == 0.0 {
            continue;
        }
        let dm = dmin * m as f32;
        for i in 0..32 {
            l[32 * j + i] = nearest_int((x[32 * j + i] + dm) / d1).clamp(0, nmax) as u8;
        }
    }
    (d, dmin, packed, l)
}

pub(super) fn quantize_q4_k(x: &[f32], out: &mut Vec<u8>) {
    let (d, dmin, scales, l) = quantize_scaled_min(x, 15, -1.0, 20);
    push_half(out, d);
    push_half(out, dmin);
    out.extend_from_slice(&scales);
    for c in 0..4 {
        out.extend((0..32).map(|i| l[64 * c + i] | l[64 * c + 32 + i] << 4));
    }
}

pub(super) fn quantize_q5_k(x: &[f32], out: &mut Vec<u8>) {
    let (d, dmin, scales, l) = quantize_scaled_min(x, 31, -0.5, 15);
    push_half(out, d);
    push_half(out, dmin);
    out.extend_from_slice(&scales);
    let mut qh = [0u8; 32];
    let mut qs = [0u8; 128];
    for c in 0..4 {
        for i in 0..32 {
            let (lo, hi) = (l[64 * c + i], l[64 * c + 32 + i]);
            qh[i] |= (lo >> 4) << (2 * c) | (hi >> 4) << (2 * c + 1);
            qs[32 * c + i] = (lo & 0xF) | (hi & 0xF) << 4;
        }
    }
    out.extend_from_slice(&qh);
    out.extend_from_slice(&qs);
}

/// A symmetric scale for `x` (q in -nmax..nmax-1, x ~ scale * q), weighted by x^2 and searched
/// around nmax / max (llama.cpp's make_qx_quants, rmse_type 1). Writes q + nmax into `l`.
fn make_qx_quants(nmax: i32, x: &[f32], l: &mut [u8]) -> f32 {
    let max = x.iter().copied().fold(0f32, |m, v| if v.abs() > m.abs() { v } else { m });
    if max.abs() < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let sums = |iscale: f32| {
        x.iter().fold((0f32, 0f32), |(sum_lx, sum_l2), &v| {
            let q = nearest_int(iscale * v).clamp(-nmax, nmax - 1) as f32;
            let w = v * v;
            (sum_lx + w * v * q, sum_l2 + w * q * q)
        })
    };
    let fill = |iscale: f32, l: &mut [u8]| {
        for (q, &v) in l.iter_mut().zip(x) {
            *q = (nmax + nearest_int(iscale * v).clamp(-nmax, nmax - 1)) as u8;
        }
    };
    let iscale = -(nmax as f32) / max;
    fill(iscale, l);
    let (sum_lx, sum_l2) = sums(iscale);
    let mut scale = if sum_l2 > 0.0 { sum_lx / sum_l2 } else { 0.0 };
    let mut best = scale * sum_lx;
    for step in (-9..=9).filter(|&s| s != 0) {
        let iscale = -(nmax as f32 + 0.1 * step as f32) / max;
        let (sum_lx, sum_l2) = sums(iscale);
        if sum_l2 > 0.0 && sum_lx * sum_lx > best * sum_l2 {
            fill(iscale, l);
            scale = sum_lx / sum_l2;
            best = scale * sum_lx;
        }
    }
    scale
}

pub(super) fn quantize_q6_k(x: &[f32], out: &mut Vec<u8>) {
    let mut l = [0u8; QK_K];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut max_abs) = (0f32, 0f32);
    for j in 0..16 {
        scales[j] = make_qx_quants(32, &x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16]);
        if scales[j].abs() > max_abs {
            max_abs = scales[j].abs();
            max_scale = scales[j];
        }
    }
    if max_abs < GROUP_MAX_EPS {
        out.extend(std::iter::repeat_n(0u8, 210));
        return;
    }
    let iscale = -128.0 / max_scale;
    let d = half::f16::from_f32(1.0 / iscale).to_f32();
    let sc: Vec<i8> = scales.iter().map(|s| nearest_int(iscale * s).min(127) as i8).collect();
    for j in 0..16 {
        let dj = d * sc[j] as f32;
        if dj == 0.0 {
            continue;
        }
        for i in 0..16 {
            l[16 * j + i] = (nearest_int(x[16 * j + i] / dj).clamp(-32, 31) + 32) as u8;
        }
    }
    let (mut ql, mut qh) = ([0u8; 128], [0u8; 64]);
    for half in 0..2 {
        let q = &l[128 * half..128 * half + 128];
        for i in 0..32 {
            ql[64 * half + i] = (q[i] & 0xF) | (q[i + 64] & 0xF) << 4;
            ql[64 * half + i + 32] = (q[i + 32] & 0xF) | (q[i + 96] & 0xF) << 4;
            qh[32 * half + i] = (q[i] >> 4) | (q[i + 32] >> 4) << 2 | (q[i + 64] >> 4) << 4 | (q[i + 96] >> 4) << 6;
        }
    }
    out.extend_from_slice(&ql);
    out.extend_from_slice(&qh);
    out.extend(sc.iter().map(|&s| s as u8));
    push_half(out, d);
}
