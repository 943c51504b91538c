//! A `MambaConfig` from a GGUF header: llama.cpp's `{arch}.*` keys (what its converter writes
//! for arch `mamba`, FalconMamba included, and `mamba2`), plus what the tensor table shows:
//! the vocabulary (token_embd's rows), a tied LM head (no `output.weight`) and the biases.
//!
//! What GGUF does not carry takes llama.cpp's behaviour: FalconMamba's dt/B/C norms use
//! `attention.layer_norm_rms_epsilon` (the checkpoint's `mixer_rms_eps` is not in the file), and
//! Mamba-2's dt is not clamped (`time_step_limit` (0, inf)).

use super::header::{gguf_error, GgufHeader};
use crate::error::Result;
use crate::model::config::{Family, MambaConfig, Naming, SsdShape};

/// llama.cpp architectures that mix Mamba layers with attention or MLPs, for a clearer refusal.
const HYBRIDS: [&str; 7] = ["jamba", "falcon-h1", "nemotron_h", "granitehybrid", "plamo2", "lfm2", "qwen3next"];

/// The config of the GGUF file `name` (used in errors).
pub fn config_from_header(h: &GgufHeader, name: &str) -> Result<MambaConfig> {
    let err = |reason: String| gguf_error(name, reason);
    let arch = h
        .get("general.architecture")
        .ok_or_else(|| err("no `general.architecture`".into()))?
        .as_str()
        .ok_or_else(|| err("`general.architecture` is not a string".into()))?;
    let family = match arch {
        "mamba" => match h.get("mamba.ssm.dt_b_c_rms") {
            None => Family::Mamba1,
            Some(v) => match v.as_bool() {
                Some(true) => Family::FalconMamba,
                Some(false) => Family::Mamba1,
                None => return Err(err(format!("`mamba.ssm.dt_b_c_rms` is {v:?}, not a BOOL"))),
            },
        },
        "mamba2" => Family::Mamba2,
        other if HYBRIDS.contains(&other) => {
            return Err(err(format!("architecture `{other}` mixes attention or MLP layers with Mamba layers; {SUPPORTED}")))
        }
        other => return Err(err(format!("architecture `{other}` is not supported; {SUPPORTED}"))),
    };
    let size = |key: &str| -> Result<usize> {
        let full = format!("{arch}.{key}");
        let value = h.get(&full).ok_or_else(|| err(format!("missing `{full}`")))?;
        value.as_u64().and_then(|v| usize::try_from(v).ok()).ok_or_else(|| err(format!("`{full}` is {value:?}, not a non-negative integer")))
    };
    let eps_key = format!("{arch}.attention.layer_norm_rms_epsilon");
    let norm_eps = match h.get(&eps_key) {
        None => return Err(err(format!("missing `{eps_key}`"))),
        Some(v) => v.as_f64().ok_or_else(|| err(format!("`{eps_key}` is {v:?}, not a float")))? as f32,
    };
    let embedding = h.tensor("token_embd.weight").ok_or_else(|| err("no tensor `token_embd.weight`".into()))?;
    if embedding.dims.len() != 2 {
        return Err(err(format!("tensor `token_embd.weight` has dimensions {:?}; it must be 2-D [d_model, vocab]", embedding.dims)));
    }
    let vocab_size = usize::try_from(embedding.dims[1]).unwrap_or(usize::MAX);
    let (d_model, d_inner) = (size("embedding_length")?, size("ssm.inner_size")?);
    let mut config = MambaConfig {
        family,
        vocab_size,
        d_model,
        n_layer: size("block_count")?,
        d_state: size("ssm.state_size")?,
        d_conv: size("ssm.conv_kernel")?,
        d_inner,
        dt_rank: 0,
        mixer_rms_eps: (family == Family::FalconMamba).then_some(norm_eps),
        ssd: None,
        proj_bias: h.tensor("blk.0.ssm_in.bias").is_some() || h.tensor("blk.0.ssm_out.bias").is_some(),
        conv_bias: h.tensor("blk.0.ssm_conv1d.bias").is_some(),
        tie_embeddings: h.tensor("output.weight").is_none(),
        norm_eps,
        eos_token_id: match h.get("tokenizer.ggml.eos_token_id") {
            None => Vec::new(),
            Some(v) => {
                vec![v.as_u64().and_then(|id| u32::try_from(id).ok()).ok_or_else(|| err(format!("`tokenizer.ggml.eos_token_id` is {v:?}")))?]
            }
        },
        naming: Naming::Gguf,
    };
    match family {
        Family::Mamba1 | Family::FalconMamba => config.dt_rank = size("ssm.time_step_rank")?,
        Family::Mamba2 => {
            // llama.cpp stores the head count as the time step rank.
            let n_heads = size("ssm.time_step_rank")?;
            let n_groups = size("ssm.group_count")?;
            if n_heads == 0 || d_inner % n_heads != 0 {
                return Err(err(format!("`mamba2.ssm.time_step_rank` (heads) {n_heads} does not divide `mamba2.ssm.inner_size` {d_inner}")));
            }
            if n_groups == 0 || n_heads % n_groups != 0 {
                return Err(err(format!("`mamba2.ssm.group_count` {n_groups} does not divide the {n_heads} heads")));
            }
            config.ssd = Some(SsdShape { n_heads, head_dim: d_inner / n_heads, n_groups, dt_min: 0.0, dt_max: f32::INFINITY });
        }
    }
    config.validate(name)
}

const SUPPORTED: &str = "this engine runs `mamba` (Mamba-1 and FalconMamba) and `mamba2`";
