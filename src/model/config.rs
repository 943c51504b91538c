//! `config.json` of a Mamba model, in either naming:
//! - Hugging Face `transformers`: `model_type` `mamba` (Mamba-1), `falcon_mamba` (FalconMamba)
//!   or `mamba2` (Mamba-2), with `hidden_size`, `num_hidden_layers`, ...
//! - the original state-spaces release (`d_model`, `n_layer`, `ssm_cfg` whose `layer` is
//!   `Mamba1` or `Mamba2`, `pad_vocab_size_multiple`).
//!
//! Fields that only affect training or initialisation are ignored. Fields with a Hugging Face
//! default may be missing; the ones that define the model's shape may not. Python writes an
//! infinite `time_step_limit` as a bare `Infinity`, which is not JSON: it is read anyway.

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Which tensor names the checkpoint uses for the embedding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// `backbone.embeddings.weight` (Hugging Face `MambaForCausalLM`)
    HuggingFace,
    /// `backbone.embedding.weight` (state-spaces `MambaLMHeadModel`)
    StateSpaces,
    /// llama.cpp's GGUF names (`token_embd.weight`, `blk.N.ssm_in.weight`, ...), with its
    /// layouts: A stored as -exp(A_log), 2-D conv weights (src/gguf/)
    Gguf,
}

/// The model family: which mixer each layer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Mamba-1: selective scan with per-channel A (d_inner, d_state) and a low-rank dt.
    Mamba1,
    /// FalconMamba: Mamba-1 with weightless RMS norms on dt_low, B and C (`mixer_rms_eps`).
    FalconMamba,
    /// Mamba-2: the SSD layer, one scalar A per head, grouped B and C, gated RMSNorm.
    Mamba2,
}

impl Family {
    /// The Hugging Face `model_type`.
    pub fn model_type(self) -> &'static str {
        match self {
            Family::Mamba1 => "mamba",
            Family::FalconMamba => "falcon_mamba",
            Family::Mamba2 => "mamba2",
        }
    }
}

/// Mamba-2's head structure (Dao & Gu 2024, the SSD layer).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SsdShape {
    /// H: heads; x splits into H heads of `head_dim` channels, H * head_dim = d_inner.
    pub n_heads: usize,
    /// P: channels per head.
    pub head_dim: usize,
    /// G: groups of B and C; head h reads group h / (H / G). Also the groups of the gated
    /// RMSNorm (d_inner / G channels each).
    pub n_groups: usize,
    /// dt = softplus(dt + dt_bias) clamped to [dt_min, dt_max] (`time_step_limit`).
    pub dt_min: f32,
    pub dt_max: f32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MambaConfig {
    pub family: Family,
    /// Rows of the embedding and of the LM head (padded vocabulary for state-spaces checkpoints).
    pub vocab_size: usize,
    /// d_model: width of the residual stream.
    pub d_model: usize,
    pub n_layer: usize,
    /// N: state size per channel.
    pub d_state: usize,
    /// K: width of the causal depthwise convolution.
    pub d_conv: usize,
    /// d_inner = expand * d_model: channels of the selective scan.
    pub d_inner: usize,
    /// R: rank of the low-rank dt projection (Mamba-1, FalconMamba; 0 for Mamba-2).
    pub dt_rank: usize,
    /// FalconMamba: epsilon of the weightless RMS norms on dt_low, B and C.
    pub mixer_rms_eps: Option<f32>,
    /// Mamba-2: heads, groups and dt's limits.
    pub ssd: Option<SsdShape>,
    /// in_proj and out_proj carry a bias.
    pub proj_bias: bool,
    /// conv1d carries a bias.
    pub conv_bias: bool,
    pub tie_embeddings: bool,
    pub norm_eps: f32,
    /// Every id that ends generation (config.json's `eos_token_id`: one id or a list).
    pub eos_token_id: Vec<u32>,
    pub naming: Naming,
}

impl MambaConfig {
    /// The ids that end generation: config.json's, or where it names none the tokenizer's.
    pub fn eos_ids_or(&self, tokenizer_eos: Option<u32>) -> Vec<u32> {
        if self.eos_token_id.is_empty() {
            tokenizer_eos.into_iter().collect()
        } else {
            self.eos_token_id.clone()
        }
    }

    /// Parses config.json text; `path` is only used in error messages.
    pub fn from_json(text: &str, path: &str) -> Result<Self> {
        let err = |reason: String| Error::Config { path: path.to_string(), reason };
        let value: Value = serde_json::from_str(&quote_bare_floats(text)).map_err(|e| err(format!("not valid JSON: {e}")))?;
        let obj = value.as_object().ok_or_else(|| err("top level is not a JSON object".into()))?;
        let fields = Fields { obj, path };
        if obj.contains_key("d_model") {
            Self::from_state_spaces(&fields)
        } else {
            Self::from_hugging_face(&fields)
        }
    }

    fn from_hugging_face(f: &Fields) -> Result<Self> {
        let family = match f.obj.get("model_type").and_then(Value::as_str) {
            Some("mamba") => Family::Mamba1,
            Some("falcon_mamba") => Family::FalconMamba,
            Some("mamba2") => Family::Mamba2,
            Some(other) if HYBRIDS.contains(&other) => {
                return Err(f.error(format!("model_type `{other}` mixes attention with Mamba layers; {SUPPORTED}")))
            }
            Some(other) => return Err(f.error(format!("model_type `{other}` is not supported; {SUPPORTED}"))),
            None => return Err(f.error(format!("missing field `model_type`; {SUPPORTED}"))),
        };
        if let Some(act) = f.obj.get("hidden_act").and_then(Value::as_str) {
            if act != "silu" {
                return Err(f.error(format!("hidden_act `{act}` is not supported (only `silu`)")));
            }
        }
        let d_model = f.required_usize("hidden_size")?;
        let expand = f.optional_usize("expand")?.unwrap_or(2);
        let expanded = f.product("expand * hidden_size", expand, d_model)?;
        let mut config = MambaConfig {
            family,
            vocab_size: f.required_usize("vocab_size")?,
            d_model,
            n_layer: f.required_usize("num_hidden_layers")?,
            d_state: f.optional_usize("state_size")?.unwrap_or(if family == Family::Mamba2 { 128 } else { 16 }),
            d_conv: f.optional_usize("conv_kernel")?.unwrap_or(4),
            d_inner: f.optional_usize("intermediate_size")?.unwrap_or(expanded),
            dt_rank: 0,
            mixer_rms_eps: None,
            ssd: None,
            proj_bias: f.optional_bool("use_bias")?.unwrap_or(false),
            conv_bias: f.optional_bool("use_conv_bias")?.unwrap_or(true),
            // transformers' Mamba2Config unties by default; the Mamba-1 configs tie.
            tie_embeddings: f.optional_bool("tie_word_embeddings")?.unwrap_or(family != Family::Mamba2),
            norm_eps: f.optional_f32("layer_norm_epsilon")?.unwrap_or(1e-5),
            eos_token_id: f.eos_token_ids()?,
            naming: Naming::HuggingFace,
        };
        match family {
            Family::Mamba1 | Family::FalconMamba => {
                config.dt_rank = f.dt_rank("time_step_rank", d_model)?;
                if family == Family::FalconMamba {
                    config.mixer_rms_eps = Some(f.optional_f32("mixer_rms_eps")?.unwrap_or(1e-6));
                }
            }
            Family::Mamba2 => {
                if f.optional_bool("rms_norm")? == Some(false) {
                    return Err(f.error("`rms_norm: false` is not supported (Mamba-2 releases use the gated RMSNorm)".into()));
                }
                if config.d_inner != expanded {
                    return Err(f.error(format!("intermediate_size {} contradicts expand * hidden_size = {expanded}", config.d_inner)));
                }
                let n_heads = f.required_usize("num_heads")?;
                let head_dim = f.optional_usize("head_dim")?.unwrap_or(64);
                let (dt_min, dt_max) = f.time_step_limit("time_step_limit")?;
                // transformers' Mamba2Config defaults to 8 groups (mamba_ssm's to 1).
                let shape = SsdShape { n_heads, head_dim, n_groups: f.optional_usize("n_groups")?.unwrap_or(8), dt_min, dt_max };
                config.ssd = Some(shape.checked(f, config.d_inner, ("num_heads", "head_dim", "n_groups", "expand * hidden_size"))?);
            }
        }
        config.validate(f.path)
    }

    fn from_state_spaces(f: &Fields) -> Result<Self> {
        let d_model = f.required_usize("d_model")?;
        let empty = Map::new();
        let ssm = match f.obj.get("ssm_cfg") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(map)) => map,
            Some(_) => return Err(f.error("field `ssm_cfg` is not an object".into())),
        };
        let s = Fields { obj: ssm, path: f.path };
        let family = match ssm.get("layer").and_then(Value::as_str) {
            None | Some("Mamba1") => Family::Mamba1,
            Some("Mamba2") => Family::Mamba2,
            Some(layer) => return Err(f.error(format!("ssm_cfg.layer `{layer}` is not supported (Mamba1 or Mamba2)"))),
        };
        // mamba_ssm's hybrids: attention layers, or an MLP after every mixer.
        if f.obj.get("attn_layer_idx").and_then(Value::as_array).is_some_and(|l| !l.is_empty()) {
            return Err(f.error(format!("`attn_layer_idx` names attention layers: a hybrid model; {SUPPORTED}")));
        }
        if f.optional_usize("d_intermediate")?.unwrap_or(0) != 0 {
            return Err(f.error("`d_intermediate` is not 0: layers with an MLP are not supported".into()));
        }
        let raw_vocab = f.required_usize("vocab_size")?;
        let multiple = f.optional_usize("pad_vocab_size_multiple")?.unwrap_or(8).max(1);
        let expand = s.optional_usize("expand")?.unwrap_or(2);
        let d_inner = f.product("expand * d_model", expand, d_model)?;
        let mut config = MambaConfig {
            family,
            // The released checkpoints pad the vocabulary rows up to a multiple (50277 -> 50280).
            vocab_size: f.product("padded vocab_size", raw_vocab.div_ceil(multiple), multiple)?,
            d_model,
            n_layer: f.required_usize("n_layer")?,
            d_state: s.optional_usize("d_state")?.unwrap_or(if family == Family::Mamba2 { 128 } else { 16 }),
            d_conv: s.optional_usize("d_conv")?.unwrap_or(4),
            d_inner,
            dt_rank: 0,
            mixer_rms_eps: None,
            ssd: None,
            proj_bias: s.optional_bool("bias")?.unwrap_or(false),
            conv_bias: s.optional_bool("conv_bias")?.unwrap_or(true),
            tie_embeddings: f.optional_bool("tie_embeddings")?.unwrap_or(true),
            norm_eps: f.optional_f32("norm_epsilon")?.unwrap_or(1e-5),
            eos_token_id: Vec::new(),
            naming: Naming::StateSpaces,
        };
        match family {
            Family::Mamba1 | Family::FalconMamba => config.dt_rank = s.dt_rank("dt_rank", d_model)?,
            Family::Mamba2 => {
                if s.optional_bool("norm_before_gate")? == Some(true) || s.optional_bool("rmsnorm")? == Some(false) {
                    return Err(f.error("ssm_cfg: only the gated RMSNorm after the gate (rmsnorm true, norm_before_gate false) is supported".into()));
                }
                if s.optional_usize("d_ssm")?.is_some_and(|d| d != d_inner) {
                    return Err(f.error("ssm_cfg.d_ssm differs from expand * d_model: layers with an MLP part are not supported".into()));
                }
                let head_dim = s.optional_usize("headdim")?.unwrap_or(64);
                let (dt_min, dt_max) = s.time_step_limit("dt_limit")?;
                let n_heads = if head_dim == 0 { 0 } else { d_inner / head_dim };
                let shape = SsdShape { n_heads, head_dim, n_groups: s.optional_usize("ngroups")?.unwrap_or(1), dt_min, dt_max };
                config.ssd = Some(shape.checked(f, d_inner, ("d_inner / headdim", "headdim", "ngroups", "expand * d_model"))?);
            }
        }
        config.validate(f.path)
    }

    /// Checks the sizes and epsilons every family needs (also of configs built from GGUF
    /// metadata).
    pub(crate) fn validate(self, path: &str) -> Result<Self> {
        let checks = [
            ("vocab_size", self.vocab_size),
            ("hidden size", self.d_model),
            ("layer count", self.n_layer),
            ("state size", self.d_state),
            ("conv kernel", self.d_conv),
            ("intermediate size", self.d_inner),
        ];
        for (what, value) in checks {
            if value == 0 || value > (1 << 24) {
                return Err(Error::Config { path: path.into(), reason: format!("{what} {value} is out of range (1 to 16777216)") });
            }
        }
        if self.ssd.is_none() && (self.dt_rank == 0 || self.dt_rank > (1 << 24)) {
            return Err(Error::Config { path: path.into(), reason: format!("time step rank {} is out of range (1 to 16777216)", self.dt_rank) });
        }
        let positive = |eps: f32| eps.is_finite() && eps > 0.0;
        if !positive(self.norm_eps) {
            return Err(Error::Config { path: path.into(), reason: "layer_norm_epsilon must be > 0".into() });
        }
        if self.mixer_rms_eps.is_some_and(|eps| !positive(eps)) {
            return Err(Error::Config { path: path.into(), reason: "mixer_rms_eps must be > 0".into() });
        }
        Ok(self)
    }

    /// Channels of the causal conv: x (Mamba-1), or x | B | C (Mamba-2, d_inner + 2 G N).
    pub fn conv_channels(&self) -> usize {
        match &self.ssd {
            None => self.d_inner,
            Some(s) => self.d_inner + 2 * s.n_groups * self.d_state,
        }
    }

    /// Width of in_proj's output: x | z (Mamba-1), or z | xBC | dt (Mamba-2).
    pub fn in_proj_width(&self) -> usize {
        match &self.ssd {
            None => 2 * self.d_inner,
            Some(s) => self.d_inner + self.conv_channels() + s.n_heads,
        }
    }

    /// Width of x_proj's output: dt_low (R) then B (N) then C (N).
    pub fn x_proj_width(&self) -> usize {
        self.dt_rank + 2 * self.d_state
    }

    /// Weights of the model (every matrix and vector; the LM head counted when untied).
    pub fn parameter_count(&self) -> u64 {
        let (d, di, n) = (self.d_model as u64, self.d_inner as u64, self.d_state as u64);
        let conv = self.conv_channels() as u64 * (self.d_conv as u64 + 1);
        let ssm = match &self.ssd {
            None => self.x_proj_width() as u64 * di + di * self.dt_rank as u64 + di * (n + 2),
            Some(s) => 3 * s.n_heads as u64 + di,
        };
        let layer = d + self.in_proj_width() as u64 * d + conv + ssm + d * di;
        let heads = if self.tie_embeddings { 1 } else { 2 };
        heads * self.vocab_size as u64 * d + self.n_layer as u64 * layer + d
    }

    /// Floats of recurrent state per sequence: conv window plus SSM state, every layer. The
    /// SSM state is (d_inner, d_state) in both families: Mamba-2's (H, P, N) has H P = d_inner.
    pub fn state_floats_per_sequence(&self) -> usize {
        let per_layer = self.conv_channels().saturating_mul(self.d_conv).saturating_add(self.d_inner.saturating_mul(self.d_state));
        self.n_layer.saturating_mul(per_layer)
    }
}

/// The model types this engine runs, for error messages.
const SUPPORTED: &str = "this engine runs `mamba` (Mamba-1), `falcon_mamba` and `mamba2`";

/// Hugging Face model types that mix attention (or MLP experts) with Mamba layers.
const HYBRIDS: &[&str] = &["jamba", "zamba", "zamba2", "falcon_h1", "granitemoehybrid", "nemotron_h", "bamba", "plamo2", "lfm2"];

impl SsdShape {
    /// Checks the heads against d_inner and the groups against the heads; `names` are the
    /// config's names of (heads, head_dim, groups, d_inner) for the errors.
    fn checked(self, f: &Fields, d_inner: usize, names: (&str, &str, &str, &str)) -> Result<Self> {
        let (heads, head_dim, groups, inner) = names;
        if self.n_heads == 0 || self.head_dim == 0 || self.n_groups == 0 {
            return Err(f.error(format!("`{heads}`, `{head_dim}` and `{groups}` must be at least 1")));
        }
        if self.n_heads.checked_mul(self.head_dim) != Some(d_inner) {
            return Err(f.error(format!("{heads} * {head_dim} = {} * {} is not {inner} = {d_inner}", self.n_heads, self.head_dim)));
        }
        if !self.n_heads.is_multiple_of(self.n_groups) {
            return Err(f.error(format!("{heads} = {} is not a multiple of {groups} = {}", self.n_heads, self.n_groups)));
        }
        if !(self.dt_min >= 0.0 && self.dt_min <= self.dt_max) {
            return Err(f.error(format!("time step limit ({}, {}) is not an interval of non-negative numbers", self.dt_min, self.dt_max)));
        }
        Ok(self)
    }
}

/// `text` with the bare `Infinity`, `-Infinity` and `NaN` Python writes outside strings
/// replaced by `{"__float__": "..."}`, the form other writers use (read by `float_value`).
fn quote_bare_floats(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("Infinity") && !text.contains("NaN") {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 32);
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(ch) = rest.chars().next() {
        if in_string {
            in_string = escaped || ch != '"';
            escaped = !escaped && ch == '\\';
        } else if ch == '"' {
            in_string = true;
        } else if let Some(token) = ["-Infinity", "Infinity", "NaN"].into_iter().find(|t| rest.starts_with(t)) {
            out.push_str(&format!("{{\"__float__\": \"{token}\"}}"));
            rest = &rest[token.len()..];
            continue;
        }
        out.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    out.into()
}

/// A number, or a float written as `{"__float__": "Infinity"}` or as a string.
fn float_value(v: &Value) -> Option<f64> {
    let text = match v {
        Value::Number(n) => return n.as_f64(),
        Value::String(s) => s.as_str(),
        Value::Object(map) => map.get("__float__")?.as_str()?,
        _ => return None,
    };
    match text {
        "Infinity" | "inf" => Some(f64::INFINITY),
        "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
        other => other.parse().ok().filter(|x: &f64| x.is_finite()),
    }
}

/// Typed access to a JSON object with errors that name the field and the file.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    path: &'a str,
}

impl Fields<'_> {
    fn error(&self, reason: String) -> Error {
        Error::Config { path: self.path.to_string(), reason }
    }

    fn required_usize(&self, key: &str) -> Result<usize> {
        self.optional_usize(key)?.ok_or_else(|| self.error(format!("missing field `{key}`")))
    }

    fn optional_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| self.error(format!("field `{key}` must be a non-negative integer, got {v}")))
            }
        }
    }

    fn optional_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| self.error(format!("field `{key}` must be a boolean, got {v}"))),
        }
    }

    fn optional_f32(&self, key: &str) -> Result<Option<f32>> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_f64().map(|x| Some(x as f32)).ok_or_else(|| self.error(format!("field `{key}` must be a number, got {v}"))),
        }
    }

    /// A (min, max) pair such as `time_step_limit`; absent means (0, infinity).
    fn time_step_limit(&self, key: &str) -> Result<(f32, f32)> {
        let pair = match self.obj.get(key) {
            None | Some(Value::Null) => return Ok((0.0, f32::INFINITY)),
            Some(Value::Array(pair)) if pair.len() == 2 => pair,
            Some(v) => return Err(self.error(format!("field `{key}` must be a pair [min, max], got {v}"))),
        };
        let bound = |v: &Value| float_value(v).ok_or_else(|| self.error(format!("field `{key}` must hold numbers, got {v}")));
        Ok((bound(&pair[0])? as f32, bound(&pair[1])? as f32))
    }

    /// a * b, or an error naming `what` when a hostile config makes it overflow.
    fn product(&self, what: &str, a: usize, b: usize) -> Result<usize> {
        a.checked_mul(b).filter(|&v| v <= u32::MAX as usize).ok_or_else(|| self.error(format!("{what} = {a} x {b} is too large")))
    }

    /// An id, or a list of ids (some configs list several EOS tokens): every one of them ends
    /// generation, as in transformers. Ids must fit a u32 token id.
    fn eos_token_ids(&self) -> Result<Vec<u32>> {
        let id = |v: &Value| -> Result<u32> {
            v.as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| self.error(format!("field `eos_token_id` must hold token ids (integers from 0 to {}), got {v}", u32::MAX)))
        };
        match self.obj.get("eos_token_id") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(ids)) => ids.iter().map(id).collect(),
            Some(v) => Ok(vec![id(v)?]),
        }
    }

    /// dt_rank is an integer or "auto" = ceil(d_model / 16), as in the Mamba paper's code.
    fn dt_rank(&self, key: &str, d_model: usize) -> Result<usize> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(d_model.div_ceil(16)),
            Some(Value::String(s)) if s == "auto" => Ok(d_model.div_ceil(16)),
            Some(_) => self.required_usize(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_spaces_naming_pads_vocab_and_reads_ssm_cfg() {
        let text = r#"{"d_model": 768, "n_layer": 24, "vocab_size": 50277, "ssm_cfg": {"d_state": 8},
                       "rms_norm": true, "residual_in_fp32": true, "pad_vocab_size_multiple": 8}"#;
        let c = MambaConfig::from_json(text, "config.json").unwrap();
        assert_eq!(c.vocab_size, 50280);
        assert_eq!(c.d_inner, 1536);
        assert_eq!(c.dt_rank, 48);
        assert_eq!(c.d_state, 8);
        assert_eq!(c.naming, Naming::StateSpaces);
    }

    #[test]
    fn missing_field_is_named() {
        let text = r#"{"model_type": "mamba", "vocab_size": 10, "num_hidden_layers": 2}"#;
        let err = MambaConfig::from_json(text, "m/config.json").unwrap_err().to_string();
        assert!(err.contains("hidden_size") && err.contains("m/config.json"), "{err}");
    }

    #[test]
    fn eos_list_keeps_every_id_and_overflow_is_an_error() {
        let text = r#"{"model_type": "mamba", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 2, "eos_token_id": [7, 9]}"#;
        assert_eq!(MambaConfig::from_json(text, "config.json").unwrap().eos_token_id, vec![7, 9]);
        let text = r#"{"model_type": "mamba", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 2, "eos_token_id": 4294967495}"#;
        let err = MambaConfig::from_json(text, "config.json").unwrap_err().to_string();
        assert!(err.contains("eos_token_id") && err.contains("4294967495"), "{err}");
        let text = r#"{"model_type": "mamba", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 2, "expand": 18446744073709551615}"#;
        let err = MambaConfig::from_json(text, "config.json").unwrap_err().to_string();
        assert!(err.contains("expand * hidden_size"), "{err}");
    }

    #[test]
    fn other_model_type_is_refused() {
        let text = r#"{"model_type": "jamba", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 2}"#;
        let err = MambaConfig::from_json(text, "config.json").unwrap_err().to_string();
        assert!(err.contains("jamba") && err.contains("attention"), "{err}");
        let text = r#"{"d_model": 8, "n_layer": 2, "vocab_size": 10, "attn_layer_idx": [1]}"#;
        let err = MambaConfig::from_json(text, "config.json").unwrap_err().to_string();
        assert!(err.contains("attn_layer_idx"), "{err}");
    }

    const MAMBA2: &str = r#"{"model_type": "mamba2", "vocab_size": 10, "hidden_size": 64, "num_hidden_layers": 2,
        "num_heads": 8, "head_dim": 16, "n_groups": 2, "state_size": 16, "time_step_limit": LIMIT}"#;

    #[test]
    fn mamba2_reads_heads_groups_and_every_form_of_time_step_limit() {
        for (limit, max) in [("[0.0, Infinity]", f32::INFINITY), (r#"[0.0, {"__float__": "Infinity"}]"#, f32::INFINITY), ("[0.0, 0.5]", 0.5)] {
            let c = MambaConfig::from_json(&MAMBA2.replace("LIMIT", limit), "config.json").unwrap();
            let s = c.ssd.unwrap();
            assert_eq!((s.n_heads, s.head_dim, s.n_groups, s.dt_min, s.dt_max), (8, 16, 2, 0.0, max), "{limit}");
            assert_eq!((c.family, c.conv_channels(), c.in_proj_width()), (Family::Mamba2, 128 + 64, 128 + 192 + 8));
        }
        let absent = MAMBA2.replace(r#", "time_step_limit": LIMIT"#, "");
        assert_eq!(MambaConfig::from_json(&absent, "config.json").unwrap().ssd.unwrap().dt_max, f32::INFINITY);
        // "Infinity" inside a string is left alone.
        let quoted = MAMBA2.replace("LIMIT", "[0.0, 1.0], \"note\": \"Infinity\"");
        assert_eq!(MambaConfig::from_json(&quoted, "config.json").unwrap().ssd.unwrap().dt_max, 1.0);
    }

    #[test]
    fn contradicting_mamba2_fields_are_named() {
        let text = MAMBA2.replace("LIMIT", "[0, 1]").replace(r#""head_dim": 16"#, r#""head_dim": 12"#);
        let err = MambaConfig::from_json(&text, "config.json").unwrap_err().to_string();
        assert!(err.contains("num_heads * head_dim") && err.contains("expand * hidden_size"), "{err}");
        let text = MAMBA2.replace("LIMIT", "[0, 1]").replace(r#""n_groups": 2"#, r#""n_groups": 3"#);
        let err = MambaConfig::from_json(&text, "config.json").unwrap_err().to_string();
        assert!(err.contains("num_heads") && err.contains("n_groups"), "{err}");
    }

    #[test]
    fn state_spaces_mamba2_and_falcon_mamba() {
        let text = r#"{"d_model": 64, "n_layer": 2, "vocab_size": 50277, "ssm_cfg": {"layer": "Mamba2", "headdim": 32, "ngroups": 2},
                       "pad_vocab_size_multiple": 16, "d_intermediate": 0, "attn_layer_idx": []}"#;
        let c = MambaConfig::from_json(text, "config.json").unwrap();
        assert_eq!((c.family, c.d_state, c.vocab_size, c.ssd.unwrap().n_heads), (Family::Mamba2, 128, 50288, 4));
        let text = r#"{"model_type": "falcon_mamba", "vocab_size": 10, "hidden_size": 64, "num_hidden_layers": 2}"#;
        let c = MambaConfig::from_json(text, "config.json").unwrap();
        assert_eq!((c.family, c.mixer_rms_eps, c.dt_rank), (Family::FalconMamba, Some(1e-6), 4));
    }
}
