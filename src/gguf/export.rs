//! A model as a GGUF file with llama.cpp's conventions (what convert_hf_to_gguf.py writes,
//! then llama-quantize): `{arch}.*` metadata, llama.cpp's tensor names and shapes
//! (`ssm_a` = A = -exp(A_log), the conv weight in two dimensions, Mamba-2's A and D as
//! (n_heads, 1) and its norm as (n_groups, d_inner / n_groups)), the matrices in the storage a
//! `WeightMix` gives them (quantized here, one tensor at a time), every vector f32, and the
//! tokenizer as `tokenizer.ggml.*` (GPT-2 style BPE).

use std::io::Write;

use super::header::{GGML_TYPE_F16, GGML_TYPE_F32};
use super::writer::{GgufWriter, TensorStream};
use crate::error::{Error, Result};
use crate::gpu::WeightDtype;
use crate::model::checkpoint::{TensorBytes, TensorSource};
use crate::model::config::MambaConfig;
use crate::model::weight_mix::{MatrixRole, WeightMix};
use crate::model::weights::{load_weights, TensorSink};
use crate::quant::{self, BlockFormat};

/// The tokenizer to embed: a `tokenizer.json` (BPE) and the special ids of the model's config.
pub struct TokenizerExport<'a> {
    pub json: &'a str,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub pad: Option<u32>,
}

/// What to write: the storages, llama.cpp's `general.file_type` for them, the model's name.
pub struct ExportOptions<'a> {
    pub mix: WeightMix,
    pub file_type: u32,
    pub name: &'a str,
    pub tokenizer: Option<TokenizerExport<'a>>,
}

/// Writes `source` as GGUF to `out` (`path` names it in errors); `progress` gets the bytes of
/// source tensor data done.
pub fn export(source: &impl TensorSource, options: &ExportOptions, out: impl Write, path: &str, progress: &mut dyn FnMut(u64)) -> Result<()> {
    let c = source.config();
    let mut writer = GgufWriter::default();
    metadata(&mut writer, c, options)?;
    // The tensor table precedes the data: a first pass declares every tensor (nothing is
    // converted), the second converts and writes them in the same order.
    let mut plan = TablePass { writer: &mut writer, mix: options.mix, config: c };
    load_weights(source, &mut plan)?;
    let mut stream = writer.start(out, path)?;
    let mut sink = DataPass { stream: &mut stream, mix: options.mix, done: 0, progress };
    load_weights(source, &mut sink)?;
    stream.finish()
}

/// llama.cpp's name of a tensor of the Hugging Face or state-spaces naming (a GGUF source's
/// names are already its own).
pub fn gguf_name(name: &str) -> Result<String> {
    let simple = match name {
        "backbone.embeddings.weight" | "backbone.embedding.weight" => Some("token_embd.weight"),
        "lm_head.weight" => Some("output.weight"),
        "backbone.norm_f.weight" => Some("output_norm.weight"),
        _ => None,
    };
    if let Some(n) = simple {
        return Ok(n.to_string());
    }
    let Some(rest) = name.strip_prefix("backbone.layers.") else { return Ok(name.to_string()) };
    let (layer, field) = rest.split_once('.').ok_or_else(|| Error::tensor(name, "has no field after its layer"))?;
    let gguf = match field {
        "norm.weight" => "attn_norm.weight",
        "mixer.in_proj.weight" => "ssm_in.weight",
        "mixer.in_proj.bias" => "ssm_in.bias",
        "mixer.conv1d.weight" => "ssm_conv1d.weight",
        "mixer.conv1d.bias" => "ssm_conv1d.bias",
        "mixer.x_proj.weight" => "ssm_x.weight",
        "mixer.dt_proj.weight" => "ssm_dt.weight",
        "mixer.dt_proj.bias" | "mixer.dt_bias" => "ssm_dt.bias",
        "mixer.A_log" => "ssm_a",
        "mixer.D" => "ssm_d",
        "mixer.out_proj.weight" => "ssm_out.weight",
        "mixer.out_proj.bias" => "ssm_out.bias",
        "mixer.norm.weight" => "ssm_norm.weight",
        _ => return Err(Error::tensor(name, "has no GGUF name")),
    };
    Ok(format!("blk.{layer}.{gguf}"))
}

/// The row-major shape llama.cpp's converter gives a vector tensor: the conv weight without
/// its middle dimension; Mamba-2's A and D as (n_heads, 1), its norm per group.
fn vector_shape(gguf: &str, shape: &[usize], c: &MambaConfig) -> Vec<usize> {
    let n: usize = shape.iter().product();
    if gguf.ends_with("ssm_conv1d.weight") {
        vec![shape[0], n / shape[0].max(1)]
    } else if c.ssd.is_some() && (gguf.ends_with("ssm_a") || gguf.ends_with("ssm_d")) {
        vec![n, 1]
    } else if gguf.ends_with("ssm_norm.weight") {
        let groups = c.ssd.map_or(1, |s| s.n_groups);
        vec![groups, n / groups]
    } else {
        shape.to_vec()
    }
}

fn ggml_type(dtype: WeightDtype) -> u32 {
    match dtype {
        WeightDtype::F32 => GGML_TYPE_F32,
        WeightDtype::F16 => GGML_TYPE_F16,
        WeightDtype::Block(f) => f.ggml_type(),
    }
}

/// A matrix's bytes in `dtype`.
fn matrix_bytes(t: &TensorBytes, dtype: WeightDtype) -> Vec<u8> {
    match dtype {
        WeightDtype::F32 => bytemuck::cast_slice(&t.to_f32()).to_vec(),
        WeightDtype::F16 => bytemuck::cast_slice(&t.to_f16_bits()).to_vec(),
        WeightDtype::Block(f) if t.dtype == crate::model::checkpoint::StoredDtype::Block(f) => t.bytes.to_vec(),
        WeightDtype::Block(f) => quant::quantize(f, &t.to_f32()),
    }
}

fn matrix_size(rows: usize, cols: usize, dtype: WeightDtype) -> usize {
    match dtype {
        WeightDtype::Block(f) => rows * cols / f.block_elements() * f.block_bytes(),
        other => rows * cols * other.bytes_per_value() as usize,
    }
}

/// First pass: declares each tensor.
struct TablePass<'a> {
    writer: &'a mut GgufWriter,
    mix: WeightMix,
    config: &'a MambaConfig,
}

impl TensorSink for TablePass<'_> {
    type Matrix = ();
    type Vector = ();

    fn matrix(&mut self, t: TensorBytes<'_>, role: MatrixRole) -> Result<()> {
        let (rows, cols) = (t.shape[0], t.shape[1..].iter().product());
        let dtype = self.mix.storage(role, cols);
        self.writer.tensor(&gguf_name(t.name)?, &[rows, cols], ggml_type(dtype), matrix_size(rows, cols, dtype));
        Ok(())
    }

    fn vector_mapped(&mut self, t: TensorBytes<'_>, _: fn(f32) -> f32) -> Result<()> {
        let name = gguf_name(t.name)?;
        let n: usize = t.shape.iter().product();
        self.writer.tensor(&name, &vector_shape(&name, &t.shape, self.config), GGML_TYPE_F32, 4 * n);
        Ok(())
    }
}

/// Second pass: converts each tensor and writes it.
struct DataPass<'a, 'p, W: Write> {
    stream: &'a mut TensorStream<W>,
    mix: WeightMix,
    done: u64,
    progress: &'p mut dyn FnMut(u64),
}

impl<W: Write> TensorSink for DataPass<'_, '_, W> {
    type Matrix = ();
    type Vector = ();

    fn matrix(&mut self, t: TensorBytes<'_>, role: MatrixRole) -> Result<()> {
        let cols = t.shape[1..].iter().product();
        self.stream.next(&matrix_bytes(&t, self.mix.storage(role, cols)))?;
        self.advance(&t);
        Ok(())
    }

    /// Vectors as the loader maps them: A_log becomes A = -exp(A_log), llama.cpp's ssm_a.
    fn vector_mapped(&mut self, t: TensorBytes<'_>, map: fn(f32) -> f32) -> Result<()> {
        let values: Vec<f32> = t.to_f32().into_iter().map(map).collect();
        self.stream.next(bytemuck::cast_slice(&values))?;
        self.advance(&t);
        Ok(())
    }
}

impl<W: Write> DataPass<'_, '_, W> {
    fn advance(&mut self, t: &TensorBytes) {
        self.done += t.bytes.len() as u64;
        (self.progress)(self.done);
    }
}

/// llama.cpp's metadata for the model (set_gguf_parameters of MambaModel / Mamba2Model), then
/// the tokenizer.
fn metadata(w: &mut GgufWriter, c: &MambaConfig, options: &ExportOptions) -> Result<()> {
    let arch = if c.ssd.is_some() { "mamba2" } else { "mamba" };
    w.string("general.architecture", arch);
    w.string("general.type", "model");
    w.string("general.name", options.name);
    let key = |k: &str| format!("{arch}.{k}");
    // Mamba has no context limit; the converter writes 2^20.
    w.u32(&key("context_length"), 1 << 20);
    w.u32(&key("embedding_length"), c.d_model as u32);
    w.u32(&key("feed_forward_length"), 0);
    w.u32(&key("attention.head_count"), 0);
    w.u32(&key("block_count"), c.n_layer as u32);
    w.u32(&key("ssm.conv_kernel"), c.d_conv as u32);
    w.u32(&key("ssm.inner_size"), c.d_inner as u32);
    w.u32(&key("ssm.state_size"), c.d_state as u32);
    match c.ssd {
        Some(s) => {
            w.u32(&key("ssm.time_step_rank"), s.n_heads as u32);
            w.u32(&key("ssm.group_count"), s.n_groups as u32);
            w.f32(&key("attention.layer_norm_rms_epsilon"), c.norm_eps);
        }
        None => {
            w.u32(&key("ssm.time_step_rank"), c.dt_rank as u32);
            w.f32(&key("attention.layer_norm_rms_epsilon"), c.norm_eps);
            w.bool(&key("ssm.dt_b_c_rms"), c.mixer_rms_eps.is_some());
        }
    }
    w.u32("general.file_type", options.file_type);
    w.u32("general.quantization_version", 2);
    if let Some(t) = &options.tokenizer {
        tokenizer_metadata(w, c, t)?;
    }
    Ok(())
}

/// `tokenizer.ggml.*` as llama.cpp's `_set_vocab_gpt2` writes them: every id up to the
/// vocabulary (rounded up to a multiple of 8, Mamba-2: 16) with its token and type (1 normal,
/// 3 control, 4 user-defined, 5 unused padding), the merges, the special ids.
fn tokenizer_metadata(w: &mut GgufWriter, c: &MambaConfig, t: &TokenizerExport) -> Result<()> {
    let bad = |reason: String| Error::Tokenizer { path: "tokenizer.json".into(), reason };
    let json: serde_json::Value = serde_json::from_str(t.json).map_err(|e| bad(e.to_string()))?;
    let model = &json["model"];
    if model["type"] != "BPE" {
        return Err(bad(format!("model type {} cannot be written as GGUF's gpt2 tokenizer (BPE only)", model["type"])));
    }
    let multiple = if c.ssd.is_some() { 16 } else { 8 };
    let size = c.vocab_size.next_multiple_of(multiple);
    let mut tokens: Vec<Option<(String, i32)>> = vec![None; size];
    let mut place = |token: &str, id: u64, kind: i32| -> Result<()> {
        let slot = tokens.get_mut(id as usize).ok_or_else(|| bad(format!("token {token:?} has id {id}, beyond the model's {size}")))?;
        *slot = Some((token.to_string(), kind));
        Ok(())
    };
    for (token, id) in model["vocab"].as_object().ok_or_else(|| bad("model.vocab is not a map".into()))? {
        place(token, id.as_u64().ok_or_else(|| bad(format!("token {token:?} has no integer id")))?, 1)?;
    }
    for added in json["added_tokens"].as_array().into_iter().flatten() {
        let (Some(content), Some(id)) = (added["content"].as_str(), added["id"].as_u64()) else { continue };
        let special = added["special"].as_bool().unwrap_or(false) || looks_special(content);
        place(&if special { content.to_string() } else { content.replace('\u{2581}', " ") }, id, if special { 3 } else { 4 })?;
    }
    let (names, kinds): (Vec<String>, Vec<i32>) = tokens.into_iter().enumerate().map(|(i, t)| t.unwrap_or_else(|| (format!("[PAD{i}]"), 5))).unzip();
    let merges: Vec<String> = model["merges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| match m {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(pair) => Some(format!("{} {}", pair.first()?.as_str()?, pair.get(1)?.as_str()?)),
            _ => None,
        })
        .collect::<Option<_>>()
        .ok_or_else(|| bad("model.merges holds neither \"a b\" strings nor pairs".into()))?;
    w.string("tokenizer.ggml.model", "gpt2");
    w.string("tokenizer.ggml.pre", "gpt-2");
    w.strings("tokenizer.ggml.tokens", &names);
    w.i32s("tokenizer.ggml.token_type", &kinds);
    w.strings("tokenizer.ggml.merges", &merges);
    for (key, id) in [("bos", t.bos), ("eos", t.eos), ("padding", t.pad)] {
        if let Some(id) = id {
            w.u32(&format!("tokenizer.ggml.{key}_token_id"), id);
        }
    }
    Ok(())
}

/// llama.cpp's TextModel.does_token_look_special.
fn looks_special(token: &str) -> bool {
    matches!(token, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (token.starts_with("<|") && token.ends_with("|>"))
        || (token.starts_with("<\u{ff5c}") && token.ends_with("\u{ff5c}>"))
        || (token.starts_with("<unused") && token.ends_with('>'))
}

/// llama.cpp's `general.file_type` (LLAMA_FTYPE_*) of a `quantize --type`.
pub fn file_type(matrices: WeightDtype, medium_mix: bool) -> u32 {
    match matrices {
        WeightDtype::F32 => 0,
        WeightDtype::F16 => 1,
        WeightDtype::Block(BlockFormat::Q4_0) => 2,
        WeightDtype::Block(BlockFormat::Q8_0) => 7,
        WeightDtype::Block(BlockFormat::Q4K) => 14 + medium_mix as u32,
        WeightDtype::Block(BlockFormat::Q5K) => 16 + medium_mix as u32,
        WeightDtype::Block(BlockFormat::Q6K) => 18,
        WeightDtype::Block(BlockFormat::Q4_1) => 3,
        WeightDtype::Block(BlockFormat::Q5_0) => 8,
        WeightDtype::Block(BlockFormat::Q5_1) => 9,
    }
}
