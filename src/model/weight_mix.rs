//! Which storage each matrix gets when weights are (re)quantized: at load (`--dtype q4_k`) and
//! by `quantize`. The rules are llama.cpp's (llama-quant.cpp, llama_tensor_get_type) as they
//! apply to Mamba's tensors, whose only special one is the output matrix:
//! - the LM head, or the embedding when it is tied to the head, is the most sensitive matrix:
//!   Q6_K for every block format but Q8_0 (which keeps Q8_0), unless `output` says otherwise;
//! - a row that is not whole blocks of 256 falls back as llama.cpp's: Q4_K to Q5_0, Q5_K to
//!   Q5_1, Q6_K to Q8_0, then to f16 where it is not whole blocks of 32 either (dt_proj's rows
//!   of dt_rank: 48 for mamba-130m, 160 for mamba-2.8b);
//! - f32 and f16 targets apply to every matrix.
//!
//! The conv weights, norms, biases, A, D and dt's bias are vectors: always f32 (TensorSink).

use crate::gpu::WeightDtype;
use crate::quant::BlockFormat;

/// What a matrix is in the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatrixRole {
    /// The token embedding, with no LM head of its own (tied).
    TiedEmbedding,
    /// The token embedding of a model with its own LM head.
    Embedding,
    LmHead,
    /// in_proj, x_proj, dt_proj, out_proj.
    Mixer,
}

impl MatrixRole {
    /// Whether llama.cpp treats it as the output tensor.
    fn is_output(self) -> bool {
        matches!(self, MatrixRole::TiedEmbedding | MatrixRole::LmHead)
    }
}

/// The storages asked for: `matrices` for every matrix, `output` (None: llama.cpp's choice)
/// for the output matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightMix {
    pub matrices: WeightDtype,
    pub output: Option<WeightDtype>,
}

impl WeightMix {
    pub fn new(matrices: WeightDtype) -> Self {
        WeightMix { matrices, output: None }
    }

    /// The storage of a matrix of `role` with rows of `cols` values.
    pub fn storage(&self, role: MatrixRole, cols: usize) -> WeightDtype {
        let wanted = match (role.is_output(), self.output, self.matrices) {
            (true, Some(output), _) => output,
            (true, None, WeightDtype::Block(f)) if f != BlockFormat::Q8_0 => WeightDtype::Block(BlockFormat::Q6K),
            (_, _, matrices) => matrices,
        };
        fits(wanted, cols)
    }
}

/// `dtype`, or llama.cpp's fallback where a row of `cols` values is not whole blocks of it.
pub fn fits(dtype: WeightDtype, cols: usize) -> WeightDtype {
    let WeightDtype::Block(f) = dtype else { return dtype };
    if cols.is_multiple_of(f.block_elements()) {
        return dtype;
    }
    let fallback = match f {
        BlockFormat::Q4K => BlockFormat::Q5_0,
        BlockFormat::Q5K => BlockFormat::Q5_1,
        _ => BlockFormat::Q8_0,
    };
    match cols.is_multiple_of(fallback.block_elements()) {
        true => WeightDtype::Block(fallback),
        false => WeightDtype::F16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q4K: WeightDtype = WeightDtype::Block(BlockFormat::Q4K);
    const Q6K: WeightDtype = WeightDtype::Block(BlockFormat::Q6K);
    const Q8: WeightDtype = WeightDtype::Block(BlockFormat::Q8_0);

    #[test]
    fn output_matrix_takes_q6_k_as_in_llama_cpp() {
        let mix = WeightMix::new(Q4K);
        assert_eq!(mix.storage(MatrixRole::TiedEmbedding, 768), Q6K);
        assert_eq!(mix.storage(MatrixRole::LmHead, 768), Q6K);
        assert_eq!(mix.storage(MatrixRole::Embedding, 768), Q4K);
        assert_eq!(mix.storage(MatrixRole::Mixer, 768), Q4K);
        assert_eq!(WeightMix::new(Q8).storage(MatrixRole::TiedEmbedding, 768), Q8);
        assert_eq!(WeightMix { matrices: Q4K, output: Some(WeightDtype::F16) }.storage(MatrixRole::LmHead, 768), WeightDtype::F16);
    }

    #[test]
    fn rows_that_are_not_whole_blocks_fall_back() {
        let mix = WeightMix::new(Q4K);
        assert_eq!(mix.storage(MatrixRole::Mixer, 160), WeightDtype::Block(BlockFormat::Q5_0), "dt_proj of rank 160");
        assert_eq!(WeightMix::new(Q6K).storage(MatrixRole::Mixer, 160), Q8);
        assert_eq!(mix.storage(MatrixRole::Mixer, 48), WeightDtype::F16, "dt_proj of rank 48");
        assert_eq!(WeightMix::new(WeightDtype::F32).storage(MatrixRole::Mixer, 48), WeightDtype::F32);
    }
}
