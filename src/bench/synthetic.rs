//! Synthetic models with the exact shapes of the released Mamba-1, Mamba-2 and FalconMamba
//! checkpoints and random weights generated in memory, one tensor at a time, so benchmarks need
//! no download.

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::model::checkpoint::{f16_bits, StoredDtype, TensorBytes, TensorSource};
use crate::model::config::{Family, MambaConfig, Naming, SsdShape};
use crate::model::weight_mix::{MatrixRole, WeightMix};
use crate::quant::{self, BlockFormat};
use crate::WeightDtype;

/// (name, family, d_model, n_layer) of state-spaces/mamba-{130m,...,2.8b},
/// state-spaces/mamba2-{130m,...,2.7b} and tiiuae/falcon-mamba-7b.
pub const SHAPES: &[(&str, Family, usize, usize)] = &[
    ("mamba-130m", Family::Mamba1, 768, 24),
    ("mamba-370m", Family::Mamba1, 1024, 48),
    ("mamba-790m", Family::Mamba1, 1536, 48),
    ("mamba-1.4b", Family::Mamba1, 2048, 48),
    ("mamba-2.8b", Family::Mamba1, 2560, 64),
    ("mamba2-130m", Family::Mamba2, 768, 24),
    ("mamba2-370m", Family::Mamba2, 1024, 48),
    ("mamba2-780m", Family::Mamba2, 1536, 48),
    ("mamba2-1.3b", Family::Mamba2, 2048, 48),
    ("mamba2-2.7b", Family::Mamba2, 2560, 64),
    ("falcon-mamba-7b", Family::FalconMamba, 4096, 64),
];

/// Shapes too large for the default set: run them by name.
pub const LARGE: &[&str] = &["falcon-mamba-7b"];

pub fn config_for(name: &str) -> Result<MambaConfig> {
    let &(_, family, d_model, n_layer) = SHAPES
        .iter()
        .find(|s| s.0 == name)
        .ok_or_else(|| Error::invalid("shape", format!("`{name}` is not one of {:?}", SHAPES.iter().map(|s| s.0).collect::<Vec<_>>())))?;
    let d_inner = 2 * d_model;
    let mut config = MambaConfig {
        family,
        vocab_size: 50280,
        d_model,
        n_layer,
        d_state: 16,
        d_conv: 4,
        d_inner,
        dt_rank: d_model.div_ceil(16),
        mixer_rms_eps: None,
        ssd: None,
        proj_bias: false,
        conv_bias: true,
        tie_embeddings: true,
        norm_eps: 1e-5,
        eos_token_id: vec![0],
        naming: Naming::HuggingFace,
    };
    match family {
        Family::Mamba1 => {}
        Family::FalconMamba => {
            (config.vocab_size, config.mixer_rms_eps, config.tie_embeddings) = (65024, Some(1e-6), false);
        }
        Family::Mamba2 => {
            (config.vocab_size, config.d_state, config.dt_rank) = (50288, 128, 0);
            config.ssd = Some(SsdShape { n_heads: d_inner / 64, head_dim: 64, n_groups: 1, dt_min: 0.0, dt_max: f32::INFINITY });
        }
    }
    Ok(config)
}

/// Random weights at the scale of a trained model (so activations stay finite): matrices
/// ~U(-0.05, 0.05), norms 1, A_log = log(1..N) (Mamba-2: log(1..16) over the heads), D = 1,
/// dt bias = softplus^-1(0.01).
pub struct SyntheticModel {
    pub config: MambaConfig,
    pub name: String,
    pub dtype: WeightDtype,
}

impl TensorSource for SyntheticModel {
    fn config(&self) -> &MambaConfig {
        &self.config
    }

    fn source_name(&self) -> &str {
        &self.name
    }

    /// Every tensor the config implies: no projection biases, an LM head where it is untied
    /// (FalconMamba-7B).
    fn contains(&self, name: &str) -> bool {
        (!name.starts_with("lm_head") || !self.config.tie_embeddings) && !name.ends_with("proj.bias")
    }

    fn tensor<'a>(&'a self, name: &'a str, shape: &[usize]) -> Result<TensorBytes<'a>> {
        let n: usize = shape.iter().product();
        let seed = name.bytes().fold(0x9E37_79B9_7F4A_7C15u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01B3));
        let values: Vec<f32> = if name.ends_with("norm.weight") || name.ends_with("norm_f.weight") || name.ends_with(".D") {
            vec![1.0; n]
        } else if name.ends_with("A_log") {
            let period = if self.config.ssd.is_some() { 16 } else { self.config.d_state };
            (0..n).map(|i| ((i % period) as f32 + 1.0).ln()).collect()
        } else if name.ends_with("dt_proj.bias") || name.ends_with("dt_bias") {
            vec![(0.01f32.exp() - 1.0).ln(); n]
        } else {
            uniform(seed, n, 0.05)
        };
        let matrix = shape.len() == 2 && !name.ends_with("A_log");
        // A matrix comes in the storage the loader's mix gives it, so that loading converts
        // nothing (quantizing billions of values would dominate the benchmark's time).
        let role = match name {
            _ if name.contains("embedding") && self.config.tie_embeddings => MatrixRole::TiedEmbedding,
            _ if name.contains("embedding") => MatrixRole::Embedding,
            _ if name.starts_with("lm_head") => MatrixRole::LmHead,
            _ => MatrixRole::Mixer,
        };
        let storage = if matrix { WeightMix::new(self.dtype).storage(role, shape[1]) } else { WeightDtype::F32 };
        let (dtype, bytes) = match storage {
            WeightDtype::F16 => (StoredDtype::F16, bytemuck::cast_slice(&f16_bits(&values)).to_vec()),
            WeightDtype::F32 => (StoredDtype::F32, bytemuck::cast_slice(&values).to_vec()),
            WeightDtype::Block(f) => (StoredDtype::Block(f), tiled_blocks(f, seed, n)),
        };
        Ok(TensorBytes { name, dtype, shape: shape.to_vec(), bytes: Cow::Owned(bytes) })
    }
}

/// `n` values of format `f` at the matrices' scale: 64 blocks quantized from ~U(-0.05, 0.05),
/// repeated in an order drawn from `seed` (quantizing every block would take minutes for the
/// larger shapes; the kernels' work does not depend on the values).
fn tiled_blocks(f: BlockFormat, seed: u64, n: usize) -> Vec<u8> {
    let templates = quant::quantize(f, &uniform(seed, 64 * f.block_elements(), 0.05));
    let picks = uniform(seed ^ 0x5DEE_CE66, n / f.block_elements(), 1.0);
    let mut bytes = Vec::with_capacity(n / f.block_elements() * f.block_bytes());
    for pick in picks {
        let i = ((pick + 1.0) * 32.0) as usize % 64;
        bytes.extend_from_slice(&templates[i * f.block_bytes()..(i + 1) * f.block_bytes()]);
    }
    bytes
}

fn uniform(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            // xorshift64*: fast enough for billions of values
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let bits = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
            (bits as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}
