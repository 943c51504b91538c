//! GGUF's block formats: weights stored as blocks of small integers with a shared scale, the
//! layouts llama.cpp defines (ggml-common.h). Each block holds `block_elements` consecutive
//! values of a row; a row is a whole number of blocks.
//!
//! | format | elements | bytes | value of element i                                   |
//! |--------|----------|-------|------------------------------------------------------|
//! | Q8_0   | 32       | 34    | d * qs[i]                 (qs: int8)                  |
//! | Q4_0   | 32       | 18    | d * (q_i - 8)             (q: 4 bits)                 |
//! | Q4_K   | 256      | 144   | d * sc_j * q_i - dmin * m_j   (8 sub-blocks j of 32, 6-bit sc, m) |
//! | Q5_K   | 256      | 176   | as Q4_K with 5-bit q                                 |
//! | Q6_K   | 256      | 210   | d * sc_j * (q_i - 32)     (16 sub-blocks of 16, int8 sc) |
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
}

impl BlockFormat {
    pub const ALL: [BlockFormat; 5] = [BlockFormat::Q8_0, BlockFormat::Q4_0, BlockFormat::Q4K, BlockFormat::Q5K, BlockFormat::Q6K];

    /// Values per block.
    pub fn block_elements(self) -> usize {
        match self {
            BlockFormat::Q8_0 | BlockFormat::Q4_0 => 32,
            BlockFormat::Q4K | BlockFormat::Q5K | BlockFormat::Q6K => 256,
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
        }
    }

    /// 4-byte words per block on the GPU (`gpu_block`): Q8_0 and Q4_0 move their f16 scale
    /// after the quants and pad it to a word, Q6_K pads its trailing f16 scale; the K formats'
    /// other fields are already word-aligned.
    pub fn gpu_block_words(self) -> usize {
        match self {
            BlockFormat::Q8_0 => 9,
            BlockFormat::Q4_0 => 5,
            BlockFormat::Q4K => 36,
            BlockFormat::Q5K => 44,
            BlockFormat::Q6K => 53,
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
