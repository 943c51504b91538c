//! GGUF's block formats: weights stored as blocks of small integers with a shared scale, the
//! layouts llama.cpp defines (ggml-common.h). Each block holds `block_elements` consecutive
//! values of a row; a row is a whole number of blocks.
//!
//! | format | elements | bytes | value of element i                                   |
//! |--------|----------|-------|------------------------------------------------------|
//! | Q8_0   | 32       | 34    | d * qs_i                  (qs: int8)                  |
//! | Q4_0   | 32       | 18    | d * (q_i - 8)             (q: 4 bits)                 |
//! | Q4_K   | 256      | 144   | d * sc_j * q_i - dmin * m_j   (8 sub-blocks j of 32, 6-bit sc, m) |
//! | Q5_K   | 256      | 176   | as Q4_K with 5-bit q                                 |
//! | Q6_K   | 256      | 210   | d * sc_j * (q_i - 32)     (16 sub-blocks of 16, int8 sc) |
//! | Q5_0   | 32       | 22    | d * (q_i - 16)            (q: 4 bits + a fifth in qh)  |
//! | Q5_1   | 32       | 24    | d * q_i + m                                          |
//! | Q4_1   | 32       | 20    | d * q_i + m                                          |
//!
//! The last three are what llama.cpp's K mixes fall back to for rows that are not whole
//! blocks of 256 (Q5_0 for Q4_K, Q5_1 for Q5_K): its Q4_K_M files of most Mamba models hold a
//! Q5_0 ssm_dt.
//!
//! `blocks.rs` dequantizes and quantizes on the CPU (the reference for the kernels, and
//! `quantize`); `gpu_layout` gives the layout the kernels read, each block's fields aligned to
//! 4-byte words (WGSL has no 8- or 16-bit storage).

mod blocks;
mod k_quants;

pub use blocks::{dequantize, quantize};

use crate::error::{Error, Result};

/// A GGUF block format the engine reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockFormat {
    Q8_0,
    Q4_0,
    Q4K,
    Q5K,
    Q6K,
    Q5_0,
    Q5_1,
    Q4_1,
}

impl BlockFormat {
    pub const ALL: [BlockFormat; 8] = [
        BlockFormat::Q8_0,
        BlockFormat::Q4_0,
        BlockFormat::Q4K,
        BlockFormat::Q5K,
        BlockFormat::Q6K,
        BlockFormat::Q5_0,
        BlockFormat::Q5_1,
        BlockFormat::Q4_1,
    ];

    /// Values per block.
    pub fn block_elements(self) -> usize {
        match self {
            BlockFormat::Q4K | BlockFormat::Q5K | BlockFormat::Q6K => 256,
            _ => 32,
        }
    }

    /// Bytes per block in a GGUF file.
    pub fn block_bytes(self) -> usize {
        match self {
            BlockFormat::Q8_0 => 34,
            BlockFormat::Q4_0 => 18,
            BlockFormat::Q4K => 144,
            BlockFormat::Q5K => 176,
            BlockFormat::Q6K => 210,
            BlockFormat::Q5_0 => 22,
            BlockFormat::Q5_1 => 24,
            BlockFormat::Q4_1 => 20,
        }
    }

    /// 4-byte words per block on the GPU (`gpu_block`): the 32-value formats move their
    /// quants to the front (then Q5's fifth bits, then the f16 scale and minimum, padded to a
    /// word), Q6_K pads its trailing f16 scale; the other K formats are word-aligned as stored.
    pub fn gpu_block_words(self) -> usize {
        match self {
            BlockFormat::Q8_0 => 9,
            BlockFormat::Q4_0 => 5,
            BlockFormat::Q4K => 36,
            BlockFormat::Q5K => 44,
            BlockFormat::Q6K => 53,
            BlockFormat::Q5_0 | BlockFormat::Q5_1 => 6,
            BlockFormat::Q4_1 => 5,
        }
    }

    /// ggml's type id (GGUF's tensor type field).
    pub fn ggml_type(self) -> u32 {
        match self {
            BlockFormat::Q4_0 => 2,
            BlockFormat::Q8_0 => 8,
            BlockFormat::Q4K => 12,
            BlockFormat::Q5K => 13,
            BlockFormat::Q6K => 14,
            BlockFormat::Q4_1 => 3,
            BlockFormat::Q5_0 => 6,
            BlockFormat::Q5_1 => 7,
        }
    }

    pub fn from_ggml_type(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.ggml_type() == id)
    }

    /// The name llama.cpp prints: "q8_0", "q4_0", "q4_k", "q5_k", "q6_k".
    pub fn name(self) -> &'static str {
        match self {
            BlockFormat::Q8_0 => "q8_0",
            BlockFormat::Q4_0 => "q4_0",
            BlockFormat::Q4K => "q4_k",
            BlockFormat::Q5K => "q5_k",
            BlockFormat::Q6K => "q6_k",
            BlockFormat::Q5_0 => "q5_0",
            BlockFormat::Q5_1 => "q5_1",
            BlockFormat::Q4_1 => "q4_1",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name().eq_ignore_ascii_case(name))
    }

    /// The shader's FORMAT constant (shaders/matvec.wgsl and the other weight readers; 0 and
    /// 1 are f32 and f16).
    pub fn shader_format(self) -> u32 {
        match self {
            BlockFormat::Q8_0 => 2,
            BlockFormat::Q4_0 => 3,
            BlockFormat::Q4K => 4,
            BlockFormat::Q5K => 5,
            BlockFormat::Q6K => 6,
            BlockFormat::Q5_0 => 7,
            BlockFormat::Q5_1 => 8,
            BlockFormat::Q4_1 => 9,
        }
    }

    /// Bytes of a (rows, cols) matrix in this format, or an error naming `tensor` where a row
    /// is not a whole number of blocks.
    pub fn matrix_bytes(self, tensor: &str, rows: usize, cols: usize) -> Result<usize> {
        if !cols.is_multiple_of(self.block_elements()) {
            return Err(Error::tensor(tensor, format!("rows of {cols} values are not whole {} blocks of {}", self.name(), self.block_elements())));
        }
        Ok(rows * cols / self.block_elements() * self.block_bytes())
    }

    /// One GGUF block (`block_bytes` bytes) as the GPU reads it (`gpu_block_words` words).
    pub fn gpu_block(self, block: &[u8], out: &mut Vec<u32>) {
        let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let start = out.len();
        match self {
            // (d: f16, qs: 32 bytes) -> qs in words 0..8, d in the low half of word 8
            BlockFormat::Q8_0 | BlockFormat::Q4_0 => {
                out.extend(block[2..].chunks_exact(4).map(word));
                out.push(u16::from_le_bytes([block[0], block[1]]) as u32);
            }
            // (d: f16, qh: u32, qs: 16 bytes) -> qs, qh, d
            BlockFormat::Q5_0 => {
                out.extend(block[6..22].chunks_exact(4).map(word));
                out.push(word(&block[2..6]));
                out.push(u16::from_le_bytes([block[0], block[1]]) as u32);
            }
            // (d, m: f16, qh: u32, qs: 16 bytes) -> qs, qh, (d, m)
            BlockFormat::Q5_1 => {
                out.extend(block[8..24].chunks_exact(4).map(word));
                out.push(word(&block[4..8]));
                out.push(word(&block[0..4]));
            }
            // (d, m: f16, qs: 16 bytes) -> qs, (d, m)
            BlockFormat::Q4_1 => {
                out.extend(block[4..20].chunks_exact(4).map(word));
                out.push(word(&block[0..4]));
            }
            // 210 bytes: the last word holds d and two bytes of padding
            BlockFormat::Q6K => {
                out.extend(block[..208].chunks_exact(4).map(word));
                out.push(u16::from_le_bytes([block[208], block[209]]) as u32);
            }
            BlockFormat::Q4K | BlockFormat::Q5K => out.extend(block.chunks_exact(4).map(word)),
        }
        debug_assert_eq!(out.len() - start, self.gpu_block_words());
    }
}

impl std::fmt::Display for BlockFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// llama.cpp's nearest_int: round half to even (it adds 1.5 * 2^23).
fn nearest_int(v: f32) -> i32 {
    v.round_ties_even() as i32
}
