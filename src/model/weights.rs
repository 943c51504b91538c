//! The tensors of a Mamba model (Mamba-1, FalconMamba, Mamba-2), their names in each
//! checkpoint naming (Hugging Face, state-spaces, GGUF) and the shapes the config implies. `ModelWeights<M, V>` is generic over where matrices (M) and vectors (V)
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

/// A tensor of the model, named per checkpoint naming (`Part::field`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Embedding,
    NormF,
    LmHead,
    Norm,
    InProj,
    InProjBias,
    Conv,
    ConvBias,
    XProj,
    DtProj,
    /// Mamba-1's dt_proj bias.
    DtProjBias,
    /// Mamba-2's dt bias per head.
    DtBias,
    A,
    D,
    OutProj,
    OutProjBias,
    /// Mamba-2's gated RMSNorm.
    GatedNorm,
}

impl Part {
    const MODEL: [Part; 3] = [Part::Embedding, Part::NormF, Part::LmHead];
    const SELECTIVE: [Part; 12] = [
        Part::Norm,
        Part::InProj,
        Part::InProjBias,
        Part::Conv,
        Part::ConvBias,
        Part::XProj,
        Part::DtProj,
        Part::DtProjBias,
        Part::A,
        Part::D,
        Part::OutProj,
        Part::OutProjBias,
    ];
    const SSD: [Part; 11] = [
        Part::Norm,
        Part::InProj,
        Part::InProjBias,
        Part::Conv,
        Part::ConvBias,
        Part::DtBias,
        Part::A,
        Part::D,
        Part::OutProj,
        Part::OutProjBias,
        Part::GatedNorm,
    ];

    /// The full name of a model-level part; a layer part's name after its layer's prefix.
    fn field(self, naming: Naming) -> &'static str {
        if naming == Naming::Gguf {
            return match self {
                Part::Embedding => "token_embd.weight",
                Part::NormF => "output_norm.weight",
                Part::LmHead => "output.weight",
                Part::Norm => "attn_norm.weight",
                Part::InProj => "ssm_in.weight",
                Part::InProjBias => "ssm_in.bias",
                Part::Conv => "ssm_conv1d.weight",
                Part::ConvBias => "ssm_conv1d.bias",
                Part::XProj => "ssm_x.weight",
                Part::DtProj => "ssm_dt.weight",
                Part::DtProjBias | Part::DtBias => "ssm_dt.bias",
                Part::A => "ssm_a",
                Part::D => "ssm_d",
                Part::OutProj => "ssm_out.weight",
                Part::OutProjBias => "ssm_out.bias",
                Part::GatedNorm => "ssm_norm.weight",
            };
        }
        match self {
            Part::Embedding if naming == Naming::StateSpaces => "backbone.embedding.weight",
            Part::Embedding => "backbone.embeddings.weight",
            Part::NormF => "backbone.norm_f.weight",
            Part::LmHead => "lm_head.weight",
            Part::Norm => "norm.weight",
            Part::InProj => "mixer.in_proj.weight",
            Part::InProjBias => "mixer.in_proj.bias",
            Part::Conv => "mixer.conv1d.weight",
            Part::ConvBias => "mixer.conv1d.bias",
            Part::XProj => "mixer.x_proj.weight",
            Part::DtProj => "mixer.dt_proj.weight",
            Part::DtProjBias => "mixer.dt_proj.bias",
            Part::DtBias => "mixer.dt_bias",
            Part::A => "mixer.A_log",
            Part::D => "mixer.D",
            Part::OutProj => "mixer.out_proj.weight",
            Part::OutProjBias => "mixer.out_proj.bias",
            Part::GatedNorm => "mixer.norm.weight",
        }
    }

    /// What precedes a layer's index in its tensors' names.
    fn layer_prefix(naming: Naming) -> &'static str {
        match naming {
            Naming::Gguf => "blk.",
            Naming::HuggingFace | Naming::StateSpaces => "backbone.layers.",
        }
    }

    /// The name of this part of layer `layer`.
    fn in_layer(self, naming: Naming, layer: usize) -> String {
        format!("{}{layer}.{}", Self::layer_prefix(naming), self.field(naming))
    }
}

/// Reads every tensor of the model into `sink`, checking names and shapes against the config.
/// One tensor at a time, so a sink can upload and drop each before reading the next.
pub fn load_weights<S: TensorSink>(ckpt: &impl TensorSource, sink: &mut S) -> Result<ModelWeights<S::Matrix, S::Vector>> {
    let c = ckpt.config();
    check_no_unknown_tensors(ckpt)?;
    let embedding_role = if c.tie_embeddings { MatrixRole::TiedEmbedding } else { MatrixRole::Embedding };
    let embedding = sink.matrix(ckpt.tensor(Part::Embedding.field(c.naming), &[c.vocab_size, c.d_model])?, embedding_role)?;
    // Grown as layers load, not reserved: a file may claim millions of layers it lacks.
    let layers = (0..c.n_layer).map(|i| load_layer(ckpt, c, i, sink)).collect::<Result<Vec<_>>>()?;
    let norm_f = sink.vector(ckpt.tensor(Part::NormF.field(c.naming), &[c.d_model])?)?;
    // Tied checkpoints usually omit lm_head.weight; the state-spaces ones may store a copy.
    let head = Part::LmHead.field(c.naming);
    let lm_head = if c.tie_embeddings {
        None
    } else if ckpt.contains(head) {
        Some(sink.matrix(ckpt.tensor(head, &[c.vocab_size, c.d_model])?, MatrixRole::LmHead)?)
    } else {
        return Err(Error::tensor(head, format!("missing in {} (tie_word_embeddings is false)", ckpt.source_name())));
    };
    Ok(ModelWeights { embedding, layers, norm_f, lm_head })
}

/// Fails, before anything is uploaded, if the source holds tensors the config does not account
/// for: layers beyond `num_hidden_layers`, or names of another architecture. Loading only the
/// tensors the config names would run a different model than the checkpoint without a word.
/// Biases the config turns off, and a stored copy of a tied LM head, are accounted for (they
/// are not used, as in transformers).
fn check_no_unknown_tensors(ckpt: &impl TensorSource) -> Result<()> {
    let Some(names) = ckpt.names() else { return Ok(()) };
    let c = ckpt.config();
    let layer_parts: &[Part] = if c.ssd.is_some() { &Part::SSD } else { &Part::SELECTIVE };
    let known = |name: &str| -> bool {
        if Part::MODEL.iter().any(|p| p.field(c.naming) == name) {
            return true;
        }
        let Some(rest) = name.strip_prefix(Part::layer_prefix(c.naming)) else { return false };
        let Some((index, field)) = rest.split_once('.') else { return false };
        let in_range = index.parse::<usize>().is_ok_and(|i| i < c.n_layer && index == i.to_string());
        in_range && layer_parts.iter().any(|p| p.field(c.naming) == field)
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
    let name = |part: Part| part.in_layer(c.naming, i);
    let (d, di, wide, channels, k) = (c.d_model, c.d_inner, c.in_proj_width(), c.conv_channels(), c.d_conv);
    // A bias the config announces must exist; one it turns off is not used even if stored, as
    // in transformers (`use_bias`, `use_conv_bias`).
    let mut optional = |part: Part, wanted: bool, shape: &[usize]| -> Result<Option<S::Vector>> {
        if wanted {
            sink.vector(ckpt.tensor(&name(part), shape)?).map(Some)
        } else {
            Ok(None)
        }
    };
    let in_proj_bias = optional(Part::InProjBias, c.proj_bias, &[wide])?;
    let conv_bias = optional(Part::ConvBias, c.conv_bias, &[channels])?;
    let out_proj_bias = optional(Part::OutProjBias, c.proj_bias, &[d])?;
    let norm = sink.vector(ckpt.tensor(&name(Part::Norm), &[d])?)?;
    let in_proj = sink.matrix(ckpt.tensor(&name(Part::InProj), &[wide, d])?, MatrixRole::Mixer)?;
    // GGUF drops the conv weight's middle dimension of 1 (same memory).
    let conv_shape: &[usize] = if c.naming == Naming::Gguf { &[channels, k] } else { &[channels, 1, k] };
    let conv_weight = sink.vector(ckpt.tensor(&name(Part::Conv), conv_shape)?)?;
    let ssm = match c.ssd {
        None => load_selective(ckpt, c, i, sink)?,
        Some(shape) => load_ssd(ckpt, c, shape, i, sink)?,
    };
    Ok(LayerWeights {
        norm,
        in_proj,
        in_proj_bias,
        conv_weight,
        conv_bias,
        ssm,
        out_proj: sink.matrix(ckpt.tensor(&name(Part::OutProj), &[d, di])?, MatrixRole::Mixer)?,
        out_proj_bias,
    })
}

/// A as the loader keeps it: GGUF stores A itself, the other namings A_log.
fn decay_map(naming: Naming) -> fn(f32) -> f32 {
    match naming {
        Naming::Gguf => |a| a,
        Naming::HuggingFace | Naming::StateSpaces => decay_rate,
    }
}

/// Mamba-1 and FalconMamba, layer `i`.
fn load_selective<S: TensorSink>(ckpt: &impl TensorSource, c: &MambaConfig, i: usize, sink: &mut S) -> Result<SsmWeights<S::Matrix, S::Vector>> {
    let name = |part: Part| part.in_layer(c.naming, i);
    let (di, n, r) = (c.d_inner, c.d_state, c.dt_rank);
    Ok(SsmWeights::Selective {
        x_proj: sink.matrix(ckpt.tensor(&name(Part::XProj), &[r + 2 * n, di])?, MatrixRole::Mixer)?,
        dt_proj: sink.matrix(ckpt.tensor(&name(Part::DtProj), &[di, r])?, MatrixRole::Mixer)?,
        dt_bias: sink.vector(ckpt.tensor(&name(Part::DtProjBias), &[di])?)?,
        a: sink.vector_mapped(ckpt.tensor(&name(Part::A), &[di, n])?, decay_map(c.naming))?,
        d_skip: sink.vector(ckpt.tensor(&name(Part::D), &[di])?)?,
    })
}

/// Mamba-2, layer `i`. GGUF stores A and D as (n_heads, 1) and the gated norm's weight as
/// (n_groups, d_inner / n_groups), the same values in the same order.
fn load_ssd<S: TensorSink>(
    ckpt: &impl TensorSource,
    c: &MambaConfig,
    shape: SsdShape,
    i: usize,
    sink: &mut S,
) -> Result<SsmWeights<S::Matrix, S::Vector>> {
    let name = |part: Part| part.in_layer(c.naming, i);
    let (h, g) = (shape.n_heads, shape.n_groups);
    let gguf = c.naming == Naming::Gguf;
    let per_head: &[usize] = if gguf { &[h, 1] } else { &[h] };
    let norm_shape: &[usize] = if gguf { &[g, c.d_inner / g] } else { &[c.d_inner] };
    Ok(SsmWeights::Ssd {
        dt_bias: sink.vector(ckpt.tensor(&name(Part::DtBias), &[h])?)?,
        a: sink.vector_mapped(ckpt.tensor(&name(Part::A), per_head)?, decay_map(c.naming))?,
        d_skip: sink.vector(ckpt.tensor(&name(Part::D), per_head)?)?,
        norm: sink.vector(ckpt.tensor(&name(Part::GatedNorm), norm_shape)?)?,
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
