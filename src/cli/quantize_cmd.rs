//! `mamba-wgpu quantize`: a model (folder or the built-in one) written as a GGUF file with
//! llama.cpp's names and layouts, its matrices in a block format or f16/f32 (src/gguf/export.rs),
//! the tokenizer embedded.

use std::path::Path;

use mamba_wgpu::gguf::export::{export, file_type, ExportOptions, TokenizerExport};
use mamba_wgpu::gguf::{tokenizer_from_header, GgufCheckpoint};
use mamba_wgpu::model::weight_mix::WeightMix;
use mamba_wgpu::{Error, Result, TensorSource, WeightDtype};

use super::args::{QuantizeArgs, QuantizeType};
use super::load::{embedded, open_checkpoint};
use super::model_path::{self, ModelSource};

pub fn run(args: &QuantizeArgs) -> Result<()> {
    let source = model_path::resolve(args.model.as_deref())?;
    let override_json = args.tokenizer.as_deref().map(read_text).transpose()?;
    match &source {
        ModelSource::Gguf(path) => {
            let gguf = GgufCheckpoint::open(path)?;
            let name = file_stem(path);
            let header = &gguf.header;
            let json = match override_json {
                Some(json) => Some(json),
                None => tokenizer_from_header(header, &path.display().to_string(), gguf.config.vocab_size).ok().map(|t| t.to_json()).transpose()?,
            };
            let id = |key: &str| header.get(&format!("tokenizer.ggml.{key}_token_id")).and_then(|v| v.as_u64()).and_then(|v| u32::try_from(v).ok());
            let ids = SpecialIds { bos: id("bos"), eos: id("eos"), pad: id("padding") };
            write(args, &gguf, gguf.stored_bytes(), &name, json, ids)
        }
        _ => {
            let checkpoint = open_checkpoint(&source)?;
            let (json, config, name) = match &source {
                ModelSource::Folder(dir) => {
                    let own = dir.join("tokenizer.json");
                    let json = match override_json {
                        Some(json) => Some(json),
                        None => own.is_file().then(|| read_text(&own)).transpose()?,
                    };
                    (json, read_text(&dir.join("config.json"))?, file_stem(dir))
                }
                _ => {
                    let (tokenizer, config) = embedded::files();
                    (
                        override_json.or_else(|| Some(String::from_utf8_lossy(tokenizer).into_owned())),
                        config.to_string(),
                        "shakespeare-mamba".to_string(),
                    )
                }
            };
            write(args, &checkpoint, checkpoint.stored_bytes() as u64, &name, json, SpecialIds::from_config(&config))
        }
    }
}

/// Writes `source` as `args` asks, through a file beside the target renamed at the end (a
/// failed run leaves no half-written file).
fn write(args: &QuantizeArgs, source: &impl TensorSource, stored_bytes: u64, name: &str, tokenizer: Option<String>, ids: SpecialIds) -> Result<()> {
    if tokenizer.is_none() {
        super::print_err("warning: no tokenizer: the GGUF file will have none (runs need --prompt-ids or --tokenizer)");
    }
    let (matrices, medium) = args.kind.storage();
    let options = ExportOptions {
        mix: WeightMix { matrices, output: args.output_type.map(|t| t.storage().0) },
        file_type: file_type(matrices, medium),
        name,
        tokenizer: tokenizer.as_deref().map(|json| TokenizerExport { json, bos: ids.bos, eos: ids.eos, pad: ids.pad }),
    };
    let out_path = args.out.display().to_string();
    let partial = args.out.with_extension("gguf.partial");
    let file = std::fs::File::create(&partial).map_err(|e| Error::io(partial.display(), e))?;
    let bar = super::progress_bar(stored_bytes, "quantizing [{bar:32}] {bytes}/{total_bytes} {eta}");
    let result = export(source, &options, std::io::BufWriter::new(file), &out_path, &mut |done| bar.set_position(done));
    bar.finish_and_clear();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, &args.out).map_err(|e| Error::io(&out_path, e))?;
    let bytes = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    println!("{out_path}: {} ({}), {:.1} MB", args.kind.name(), source.source_name(), bytes as f64 / 1e6);
    Ok(())
}

/// The name of a model file or folder, for `general.name`.
fn file_stem(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    path.file_stem().map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned())
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path.display(), e))
}

/// config.json's special token ids, which llama.cpp's converter writes beside the tokenizer.
struct SpecialIds {
    bos: Option<u32>,
    eos: Option<u32>,
    pad: Option<u32>,
}

impl SpecialIds {
    fn from_config(json: &str) -> Self {
        let value: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
        // An id, or the first of a list (eos_token_id may be one).
        let id = |key: &str| {
            let v = &value[key];
            v.as_u64().or_else(|| v.as_array().and_then(|a| a.first()).and_then(|f| f.as_u64())).and_then(|id| u32::try_from(id).ok())
        };
        SpecialIds { bos: id("bos_token_id"), eos: id("eos_token_id"), pad: id("pad_token_id") }
    }
}

impl QuantizeType {
    /// The matrices' storage, and whether it is a "medium" K mix (llama.cpp's _M file types).
    pub fn storage(self) -> (WeightDtype, bool) {
        use mamba_wgpu::quant::BlockFormat::*;
        match self {
            QuantizeType::F32 => (WeightDtype::F32, false),
            QuantizeType::F16 => (WeightDtype::F16, false),
            QuantizeType::Q8_0 => (WeightDtype::Block(Q8_0), false),
            QuantizeType::Q4_0 => (WeightDtype::Block(Q4_0), false),
            QuantizeType::Q4K => (WeightDtype::Block(Q4K), false),
            QuantizeType::Q4KM => (WeightDtype::Block(Q4K), true),
            QuantizeType::Q5K => (WeightDtype::Block(Q5K), false),
            QuantizeType::Q5KM => (WeightDtype::Block(Q5K), true),
            QuantizeType::Q6K => (WeightDtype::Block(Q6K), false),
        }
    }

    fn name(self) -> String {
        use clap::ValueEnum;
        self.to_possible_value().map_or_else(|| "?".into(), |v| v.get_name().to_string())
    }
}
