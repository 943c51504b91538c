//! Dequantizing and quantizing whole rows on the CPU: Q8_0 and Q4_0 here, the K formats in
//! k_quants.rs. Quantizers follow llama.cpp's reference ones (ggml-quants.c, `*_ref`), without
//! an importance matrix.

use half::f16;

use super::{k_quants, BlockFormat};

/// Values of `bytes`, whole blocks of `format`, into `out` (one value per element).
pub fn dequantize(format: BlockFormat, bytes: &[u8], out: &mut Vec<f32>) {
    for block in bytes.chunks_exact(format.block_bytes()) {
        match format {
            BlockFormat::Q8_0 => {
                // value_i = d * qs_i
                let d = half_at(block, 0);
                out.extend(block[2..34].iter().map(|&q| d * q as i8 as f32));
            }
            BlockFormat::Q4_0 => {
                // byte j holds element j (low nibble) and element j + 16 (high nibble):
                // value = d * (q - 8)
                let d = half_at(block, 0);
                let qs = &block[2..18];
                out.extend(qs.iter().map(|&q| d * ((q & 0xF) as i32 - 8) as f32));
                out.extend(qs.iter().map(|&q| d * ((q >> 4) as i32 - 8) as f32));
            }
            BlockFormat::Q5_0 | BlockFormat::Q5_1 => {
                // (d, [m,] qh, qs): element j (< 16) is qs[j]'s low nibble with bit j of qh as
                // its fifth bit, element j + 16 the high nibble with bit j + 16:
                // Q5_0 value = d * (q - 16), Q5_1 value = d * q + m
                let q5_1 = format == BlockFormat::Q5_1;
                let d = half_at(block, 0);
                let (m, at) = if q5_1 { (half_at(block, 2), 4) } else { (-16.0 * d, 2) };
                let qh = u32::from_le_bytes([block[at], block[at + 1], block[at + 2], block[at + 3]]);
                let qs = &block[at + 4..at + 20];
                let q = |j: usize, nibble: u8| (nibble as u32 | ((qh >> j) & 1) << 4) as f32;
                out.extend(qs.iter().enumerate().map(|(j, &b)| d * q(j, b & 0xF) + m));
                out.extend(qs.iter().enumerate().map(|(j, &b)| d * q(j + 16, b >> 4) + m));
            }
            BlockFormat::Q4_1 => {
                // value = d * q + m, the nibbles laid out as Q4_0's
                let (d, m) = (half_at(block, 0), half_at(block, 2));
                let qs = &block[4..20];
                out.extend(qs.iter().map(|&q| d * (q & 0xF) as f32 + m));
                out.extend(qs.iter().map(|&q| d * (q >> 4) as f32 + m));
            }
            BlockFormat::Q4K => k_quants::dequantize_q4_k(block, out),
            BlockFormat::Q5K => k_quants::dequantize_q5_k(block, out),
            BlockFormat::Q6K => k_quants::dequantize_q6_k(block, out),
        }
    }
}

/// `values` (a whole number of blocks) as blocks of `format`.
pub fn quantize(format: BlockFormat, values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / format.block_elements() * format.block_bytes());
    for block in values.chunks_exact(format.block_elements()) {
        match format {
            BlockFormat::Q8_0 => quantize_q8_0(block, &mut out),
            BlockFormat::Q4_0 => quantize_q4_0(block, &mut out),
            BlockFormat::Q5_0 => quantize_q5_0(block, &mut out),
            BlockFormat::Q5_1 => quantize_q5_1(block, &mut out),
            BlockFormat::Q4_1 => quantize_q4_1(block, &mut out),
            BlockFormat::Q4K => k_quants::quantize_q4_k(block, &mut out),
            BlockFormat::Q5K => k_quants::quantize_q5_k(block, &mut out),
            BlockFormat::Q6K => k_quants::quantize_q6_k(block, &mut out),
        }
    }
    out
}

pub(super) fn half_at(block: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([block[at], block[at + 1]]).to_f32()
}

pub(super) fn push_half(out: &mut Vec<u8>, v: f32) {
    out.extend_from_slice(&f16::from_f32(v).to_le_bytes());
}

/// d = max |x| / 127, q_i = round(x_i / d) (half away from zero, as C's roundf).
fn quantize_q8_0(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    push_half(out, d);
    out.extend(x.iter().map(|v| (v * id).round() as i8 as u8));
}

/// d = -(the value of largest magnitude) / 8, q_i = min(15, trunc(x_i / d + 8.5)): the largest
/// value maps exactly to q = 0.
fn quantize_q4_0(x: &[f32], out: &mut Vec<u8>) {
    let max = x.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    push_half(out, d);
    let q = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
    out.extend((0..16).map(|j| q(x[j]) | q(x[j + 16]) << 4));
}

/// d = -(the value of largest magnitude) / 16, q_i = min(31, trunc(x_i / d + 16.5)): Q4_0 with
/// a fifth bit per value, kept in qh.
fn quantize_q5_0(x: &[f32], out: &mut Vec<u8>) {
    let max = x.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    let d = max / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let q: Vec<u8> = x.iter().map(|&v| ((v * id + 16.5) as i8).min(31) as u8).collect();
    push_half(out, d);
    push_q5(&q, out);
}

/// d = (max - min) / 31, m = min, q_i = round((x_i - min) / d) (half up).
fn quantize_q5_1(x: &[f32], out: &mut Vec<u8>) {
    let (d, min, q) = quantize_with_min(x, 31.0);
    push_half(out, d);
    push_half(out, min);
    push_q5(&q, out);
}

/// d = (max - min) / 15, m = min, q_i = min(15, round((x_i - min) / d)) (half up).
fn quantize_q4_1(x: &[f32], out: &mut Vec<u8>) {
    let (d, min, q) = quantize_with_min(x, 15.0);
    push_half(out, d);
    push_half(out, min);
    out.extend((0..16).map(|j| q[j].min(15) | q[j + 16].min(15) << 4));
}

/// llama.cpp's asymmetric reference quantizers: (d, min, q).
fn quantize_with_min(x: &[f32], levels: f32) -> (f32, f32, Vec<u8>) {
    let min = x.iter().copied().fold(f32::INFINITY, f32::min);
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let d = (max - min) / levels;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    (d, min, x.iter().map(|&v| ((v - min) * id + 0.5) as u8).collect())
}

/// Q5's quants: the fifth bits as qh (bit j: value j), then the low nibbles as Q4_0's.
fn push_q5(q: &[u8], out: &mut Vec<u8>) {
    let qh = q.iter().enumerate().fold(0u32, |h, (j, &v)| h | ((v as u32 >> 4) & 1) << j);
    out.extend_from_slice(&qh.to_le_bytes());
    out.extend((0..16).map(|j| (q[j] & 0xF) | (q[j + 16] & 0xF) << 4));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip_error(format: BlockFormat, values: &[f32]) -> f32 {
        let bytes = quantize(format, values);
        assert_eq!(bytes.len(), values.len() / format.block_elements() * format.block_bytes());
        let mut back = Vec::new();
        dequantize(format, &bytes, &mut back);
        values.iter().zip(&back).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
    }

    /// Each format reproduces a smooth row within its step size: max |x| / 127 for Q8_0, and
    /// a fraction of the range for the 4- to 6-bit ones.
    #[test]
    fn quantize_then_dequantize_is_close() {
        let values: Vec<f32> = (0..1024).map(|i| ((i as f32) * 0.37).sin() * (1.0 + (i % 7) as f32)).collect();
        let amax = values.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (format, bound) in [
            (BlockFormat::Q8_0, amax / 127.0),
            (BlockFormat::Q4_0, amax / 8.0),
            (BlockFormat::Q4K, amax / 7.0),
            (BlockFormat::Q5K, amax / 15.0),
            (BlockFormat::Q6K, amax / 31.0),
            (BlockFormat::Q5_0, amax / 16.0),
            (BlockFormat::Q5_1, amax / 15.0),
            (BlockFormat::Q4_1, amax / 7.0),
        ] {
            let err = round_trip_error(format, &values);
            assert!(err <= bound, "{format}: max error {err} above {bound}");
        }
    }

    #[test]
    fn zeros_stay_zeros() {
        for format in BlockFormat::ALL {
            let values = vec![0.0; 256];
            assert_eq!(round_trip_error(format, &values), 0.0, "{format}");
        }
    }

    #[test]
    fn gpu_blocks_have_their_word_count() {
        for format in BlockFormat::ALL {
            let block = vec![7u8; format.block_bytes()];
            let mut words = Vec::new();
            format.gpu_block(&block, &mut words);
            assert_eq!(words.len(), format.gpu_block_words(), "{format}");
        }
    }
}
