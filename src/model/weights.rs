//! The tensors of a Mamba model (Mamba-1, FalconMamba, Mamba-2), their names in both
//! checkpoint namings and the shapes the config implies. `ModelWeights<M, V>` is generic over where matrices (M) and vectors (V)
//! live: `Vec<f32>` for the CPU reference, GPU buffers for the engine; one loader fills either.

use super::checkpoint::{TensorBytes, TensorSource};
use super::config::{MambaConfig, Naming, SsdShape};
use super::weight_mix::MatrixRole;
use crate::error::{Error, Result};

/// Receives each tensor as it is read. Big matrices may be stored in f16 on the GPU; small
/// vectors (norms, biases, A, D, conv taps) always stay f32.
pub trait TensorSink {
    type Matrix;
    type Vector;
    /// A weight matrix; `role` says which, for the choice of its storage (weight_mix.rs).
    fn matrix(&mut self, t: TensorBytes<'_>, role: MatrixRole) -> Result<Self::Matrix>;
    /// The tensor's values as f32, each passed through `map` (the identity for most).
    fn vector_mapped(&mut self, t: TensorBytes<'_>, map: fn(f32) -> f32) -> Result<Self::Vector>;
    fn vector(&mut self, t: TensorBytes<'_>) -> Result<Self::Vector> {
        self.vector_mapped(t, |v| v)
    }
}

/// A = -exp(A_log), in f32 as transformers computes it: once at load instead of in every
/// scan step.
fn decay_rate(a_log: f32) -> f32 {
    -a_log.exp()
}

pub struct LayerWeights<M, V> {
    pub norm: V,                  // (d_model): the RMSNorm's weight before the mixer
    pub in_proj: M,               // (in_proj_width, d_model): x | z (Mamba-1), z | xBC | dt (Mamba-2)
    pub in_proj_bias: Option<V>,  // (in_proj_width)
    pub conv_weight: V,           // (conv_channels, 1, d_conv): weight[c, 0, d_conv - 1] multiplies the current token
    pub conv_bias: Option<V>,     // (conv_channels)
    pub ssm: SsmWeights<M, V>,    // what the scan needs besides the conv output
    pub out_proj: M,              // (d_model, d_inner)
    pub out_proj_bias: Option<V>, // (d_model)
}

/// The state-space part of a layer, per family.
pub enum SsmWeights<M, V> {
    /// Mamba-1 and FalconMamba: per-channel A and a low-rank, input-dependent dt.
    Selective {
        x_proj: M,  // (dt_rank + 2 * d_state, d_inner): rows dt_low | B | C
        dt_proj: M, // (d_inner, dt_rank)
        dt_bias: V, // (d_inner)
        a: V,       // (d_inner, d_state): A = -exp(A_log), negative
        d_skip: V,  // (d_inner)
    },
    /// Mamba-2: one scalar A, D and dt bias per head; dt comes from in_proj; the gated
    /// RMSNorm's weight.
    Ssd {
        dt_bias: V, // (n_heads)
        a: V,       // (n_heads): A = -exp(A_log)
        d_skip: V,  // (n_heads)
        norm: V,    // (d_inner)
    },
}

pub struct ModelWeights<M, V> {
    pub embedding: M, // (vocab, d_model)
    pub layers: Vec<LayerWeights<M, V>>,
    pub norm_f: V, // (d_model)
    /// (vocab, d_model); None when tied to the embedding.
    pub lm_head: Option<M>,
}

impl<M, V> ModelWeights<M, V> {
    /// The matrix the LM head multiplies with: its own, or the tied embedding.
    pub fn lm_head(&self) -> &M {
        self.lm_head.as_ref().unwrap_or(&self.embedding)
    }
}

/// Reads every tensor of the model into `sink`, checking names and shapes against the config.
/// One tensor at a time, so a sink can upload and drop each before reading the next.
pub fn load_weights<S: TensorSink>(ckpt: &impl TensorSource, sink: &mut S) -> Result<ModelWeights<S::Matrix, S::Vector>> {
    let c = ckpt.config();
    let embedding_name = match c.naming {
        Naming::HuggingFace => "backbone.embeddings.weight",
        Naming::StateSpaces => "backbone.embedding.weight",
    };
    check_no_unknown_tensors(ckpt, embedding_name)?;
    let embedding_role = if c.tie_embeddings { MatrixRole::TiedEmbedding } else { MatrixRole::Embedding };
    let embedding = sink.matrix(ckpt.tensor(embedding_name, &[c.vocab_size, c.d_model])?, embedding_role)?;
    let mut layers = Vec::with_capacity(c.n_layer);
    for i in 0..c.n_layer {
        layers.push(load_layer(ckpt, c, i, sink)?);
    }
    let norm_f = sink.vector(ckpt.tensor("backbone.norm_f.weight", &[c.d_model])?)?;
    // Tied checkpoints usually omit lm_head.weight; the state-spaces ones may store a copy.
    let lm_head = if c.tie_embeddings {
        None
    } else if ckpt.contains("lm_head.weight") {
        Some(sink.matrix(ckpt.tensor("lm_head.weight", &[c.vocab_size, c.d_model])?, MatrixRole::LmHead)?)
    } else {
        return Err(Error::tensor("lm_head.weight", format!("missing in {} (tie_word_embeddings is false)", ckpt.source_name())));
    };
    Ok(ModelWeights { embedding, layers, norm_f, lm_head })
}

/// Fails, before anything is uploaded, if the source holds tensors the config does not account
/// for: layers beyond `num_hidden_layers`, or names of another architecture. Loading only the
/// tensors the config names would run a different model than the checkpoint without a word.
/// Biases the config turns off, and a stored copy of a tied LM head, are accounted for (they
/// are not used, as in transformers).
fn check_no_unknown_tensors(ckpt: &impl TensorSource, embedding_name: &str) -> Result<()> {
    let Some(names) = ckpt.names() else { return Ok(()) };
    let c = ckpt.config();
    let known = |name: &str| -> bool {
        if name == embedding_name || name == "backbone.norm_f.weight" || name == "lm_head.weight" {
            return true;
        }
        let Some(rest) = name.strip_prefix("backbone.layers.") else { return false };
        let Some((index, field)) = rest.split_once('.') else { return false };
        let in_range = index.parse::<usize>().is_ok_and(|i| i < c.n_layer && index == i.to_string());
        const SHARED: [&str; 9] = [
            "norm.weight",
            "mixer.in_proj.weight",
            "mixer.in_proj.bias",
            "mixer.conv1d.weight",
            "mixer.conv1d.bias",
            "mixer.A_log",
            "mixer.D",
            "mixer.out_proj.weight",
            "mixer.out_proj.bias",
        ];
        let family_fields: &[&str] = match c.ssd {
            None => &["mixer.x_proj.weight", "mixer.dt_proj.weight", "mixer.dt_proj.bias"],
            Some(_) => &["mixer.dt_bias", "mixer.norm.weight"],
        };
        in_range && (SHARED.contains(&field) || family_fields.contains(&field))
    };
    let mut unknown: Vec<&String> = names.iter().filter(|n| !known(n)).collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort();
    let shown: Vec<&str> = unknown.iter().take(5).map(|n| n.as_str()).collect();
    let more = if unknown.len() > 5 { format!(" and {} more", unknown.len() - 5) } else { String::new() };
    Err(Error::tensor(
        shown[0],
        format!("{} holds tensors the config does not account for ({} layers): {}{more}", ckpt.source_name(), c.n_layer, shown.join(", ")),
    ))
}

fn load_layer<S: TensorSink>(ckpt: &impl TensorSource, c: &MambaConfig, i: usize, sink: &mut S) -> Result<LayerWeights<S::Matrix, S::Vector>> {
    let p = format!("backbone.layers.{i}");
    let m = format!("{p}.mixer");
    let (d, di, wide, channels, k) = (c.d_model, c.d_inner, c.in_proj_width(), c.conv_channels(), c.d_conv);
    // A bias the config announces must exist; one it turns off is not used even if stored, as
    // in transformers (`use_bias`, `use_conv_bias`).
    let mut optional = |name: String, wanted: bool, shape: &[usize]| -> Result<Option<S::Vector>> {
        if wanted {
            sink.vector(ckpt.tensor(&name, shape)?).map(Some)
        } else {
            Ok(None)
        }
    };
    let in_proj_bias = optional(format!("{m}.in_proj.bias"), c.proj_bias, &[wide])?;
    let conv_bias = optional(format!("{m}.conv1d.bias"), c.conv_bias, &[channels])?;
    let out_proj_bias = optional(format!("{m}.out_proj.bias"), c.proj_bias, &[d])?;
    let norm = sink.vector(ckpt.tensor(&format!("{p}.norm.weight"), &[d])?)?;
    let in_proj = sink.matrix(ckpt.tensor(&format!("{m}.in_proj.weight"), &[wide, d])?, MatrixRole::Mixer)?;
    let conv_weight = sink.vector(ckpt.tensor(&format!("{m}.conv1d.weight"), &[channels, 1, k])?)?;
    let ssm = match c.ssd {
        None => load_selective(ckpt, c, &m, sink)?,
        Some(shape) => load_ssd(ckpt, c, shape, &m, sink)?,
    };
    Ok(LayerWeights {
        norm,
        in_proj,
        in_proj_bias,
        conv_weight,
        conv_bias,
        ssm,
        out_proj: sink.matrix(ckpt.tensor(&format!("{m}.out_proj.weight"), &[d, di])?, MatrixRole::Mixer)?,
        out_proj_bias,
    })
}

/// Mamba-1 and FalconMamba (`m`: the layer's mixer prefix).
fn load_selective<S: TensorSink>(ckpt: &impl TensorSource, c: &MambaConfig, m: &str, sink: &mut S) -> Result<SsmWeights<S::Matrix, S::Vector>> {
    let (di, n, r) = (c.d_inner, c.d_state, c.dt_rank);
    Ok(SsmWeights::Selective {
        x_proj: sink.matrix(ckpt.tensor(&format!("{m}.x_proj.weight"), &[r + 2 * n, di])?, MatrixRole::Mixer)?,
        dt_proj: sink.matrix(ckpt.tensor(&format!("{m}.dt_proj.weight"), &[di, r])?, MatrixRole::Mixer)?,
        dt_bias: sink.vector(ckpt.tensor(&format!("{m}.dt_proj.bias"), &[di])?)?,
        a: sink.vector_mapped(ckpt.tensor(&format!("{m}.A_log"), &[di, n])?, decay_rate)?,
        d_skip: sink.vector(ckpt.tensor(&format!("{m}.D"), &[di])?)?,
    })
}

/// Mamba-2 (`m`: the layer's mixer prefix).
fn load_ssd<S: TensorSink>(
    ckpt: &impl TensorSource,
    c: &MambaConfig,
    shape: SsdShape,
    m: &str,
    sink: &mut S,
) -> Result<SsmWeights<S::Matrix, S::Vector>> {
    let h = shape.n_heads;
    Ok(SsmWeights::Ssd {
        dt_bias: sink.vector(ckpt.tensor(&format!("{m}.dt_bias"), &[h])?)?,
        a: sink.vector_mapped(ckpt.tensor(&format!("{m}.A_log"), &[h])?, decay_rate)?,
        d_skip: sink.vector(ckpt.tensor(&format!("{m}.D"), &[h])?)?,
        norm: sink.vector(ckpt.tensor(&format!("{m}.norm.weight"), &[c.d_inner])?)?,
    })
}

/// The CPU reference keeps every tensor as f32 vectors.
pub struct HostSink;

impl TensorSink for HostSink {
    type Matrix = Vec<f32>;
    type Vector = Vec<f32>;
    fn matrix(&mut self, t: TensorBytes<'_>, _: MatrixRole) -> Result<Vec<f32>> {
        Ok(t.to_f32())
    }
    fn vector_mapped(&mut self, t: TensorBytes<'_>, map: fn(f32) -> f32) -> Result<Vec<f32>> {
        Ok(t.to_f32().into_iter().map(map).collect())
    }
}

/// All weights as f32 on the host (the CPU reference's input).
pub type HostWeights = ModelWeights<Vec<f32>, Vec<f32>>;
