//! `config.json` of a Mamba-1 checkpoint, in either naming:
//! - Hugging Face `transformers` (`model_type: "mamba"`, `hidden_size`, `num_hidden_layers`, ...)
//! - the original state-spaces release (`d_model`, `n_layer`, `ssm_cfg`, `pad_vocab_size_multiple`).
//!
//! Fields that only affect training or initialisation are ignored. Fields with a Hugging Face
//! default may be missing; the ones that define the model's shape may not.

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Which tensor names the checkpoint uses for the embedding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// `backbone.embeddings.weight` (Hugging Face `MambaForCausalLM`)
    HuggingFace,
    /// `backbone.embedding.weight` (state-spaces `MambaLMHeadModel`)
    StateSpaces,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MambaConfig {
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
    /// R: rank of the low-rank dt projection.
    pub dt_rank: usize,
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
        let value: Value = serde_json::from_str(text).map_err(|e| err(format!("not valid JSON: {e}")))?;
        let obj = value.as_object().ok_or_else(|| err("top level is not a JSON object".into()))?;
        let fields = Fields { obj, path };
        if obj.contains_key("d_model") {
            Self::from_state_spaces(&fields)
        } else {
            Self::from_hugging_face(&fields)
        }
    }

    fn from_hugging_face(f: &Fields) -> Result<Self> {
        match f.obj.get("model_type").and_then(Value::as_str) {
            Some("mamba") => {}
            Some(other) => return Err(f.error(format!("model_type `{other}` is not supported (this engine runs Mamba-1: model_type `mamba`)"))),
            None => return Err(f.error("missing field `model_type` (expected `mamba`)".into())),
        }
        if let Some(act) = f.obj.get("hidden_act").and_then(Value::as_str) {
            if act != "silu" {
                return Err(f.error(format!("hidden_act `{act}` is not supported (only `silu`)")));
            }
        }
        let d_model = f.required_usize("hidden_size")?;
        let expand = f.optional_usize("expand")?.unwrap_or(2);
        let config = MambaConfig {
            vocab_size: f.required_usize("vocab_size")?,
            d_model,
            n_layer: f.required_usize("num_hidden_layers")?,
            d_state: f.optional_usize("state_size")?.unwrap_or(16),
            d_conv: f.optional_usize("conv_kernel")?.unwrap_or(4),
            d_inner: match f.optional_usize("intermediate_size")? {
                Some(d) => d,
                None => f.product("expand * hidden_size", expand, d_model)?,
            },
            dt_rank: f.dt_rank("time_step_rank", d_model)?,
            proj_bias: f.optional_bool("use_bias")?.unwrap_or(false),
            conv_bias: f.optional_bool("use_conv_bias")?.unwrap_or(true),
            tie_embeddings: f.optional_bool("tie_word_embeddings")?.unwrap_or(true),
            norm_eps: f.optional_f32("layer_norm_epsilon")?.unwrap_or(1e-5),
            eos_token_id: f.eos_token_ids()?,
            naming: Naming::HuggingFace,
        };
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
        let ssm_fields = Fields { obj: ssm, path: f.path };
        if let Some(layer) = ssm.get("layer").and_then(Value::as_str) {
            if layer != "Mamba1" {
                return Err(f.error(format!("ssm_cfg.layer `{layer}` is not supported (only Mamba1)")));
            }
        }
        let raw_vocab = f.required_usize("vocab_size")?;
        let multiple = f.optional_usize("pad_vocab_size_multiple")?.unwrap_or(8).max(1);
        let expand = ssm_fields.optional_usize("expand")?.unwrap_or(2);
        let config = MambaConfig {
            // The released checkpoints pad the vocabulary rows up to a multiple (50277 -> 50280).
            vocab_size: f.product("padded vocab_size", raw_vocab.div_ceil(multiple), multiple)?,
            d_model,
            n_layer: f.required_usize("n_layer")?,
            d_state: ssm_fields.optional_usize("d_state")?.unwrap_or(16),
            d_conv: ssm_fields.optional_usize("d_conv")?.unwrap_or(4),
            d_inner: f.product("expand * d_model", expand, d_model)?,
            dt_rank: ssm_fields.dt_rank("dt_rank", d_model)?,
            proj_bias: ssm_fields.optional_bool("bias")?.unwrap_or(false),
            conv_bias: ssm_fields.optional_bool("conv_bias")?.unwrap_or(true),
            tie_embeddings: f.optional_bool("tie_embeddings")?.unwrap_or(true),
            norm_eps: f.optional_f32("norm_epsilon")?.unwrap_or(1e-5),
            eos_token_id: Vec::new(),
            naming: Naming::StateSpaces,
        };
        config.validate(f.path)
    }

    fn validate(self, path: &str) -> Result<Self> {
        let checks = [
            ("vocab_size", self.vocab_size),
            ("hidden size", self.d_model),
            ("layer count", self.n_layer),
            ("state size", self.d_state),
            ("conv kernel", self.d_conv),
            ("intermediate size", self.d_inner),
            ("time step rank", self.dt_rank),
        ];
        for (what, value) in checks {
            if value == 0 || value > (1 << 24) {
                return Err(Error::Config { path: path.into(), reason: format!("{what} {value} is out of range (1 to 16777216)") });
            }
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return Err(Error::Config { path: path.into(), reason: "layer_norm_epsilon must be > 0".into() });
        }
        Ok(self)
    }

    /// Width of x_proj's output: dt_low (R) then B (N) then C (N).
    pub fn x_proj_width(&self) -> usize {
        self.dt_rank + 2 * self.d_state
    }

    /// Floats of recurrent state per sequence: conv window plus SSM state, every layer.
    pub fn state_floats_per_sequence(&self) -> usize {
        self.n_layer.saturating_mul(self.d_inner).saturating_mul(self.d_conv + self.d_state)
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
        let text = r#"{"model_type": "mamba2", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 2}"#;
        let err = MambaConfig::from_json(text, "config.json").unwrap_err().to_string();
        assert!(err.contains("mamba2"), "{err}");
    }
}
