//! What `--model` names: nothing (the built-in model), a folder, a GGUF file, or a Hugging Face
//! repo id found in the local Hugging Face cache (downloaded there first with the `hub` feature).

use std::path::{Path, PathBuf};

pub use mamba_wgpu::hub_cache::cache_dir as hf_cache_dir;
use mamba_wgpu::hub_cache::{cached_snapshot, is_repo_id};
use mamba_wgpu::{Error, Result};

pub enum ModelSource {
    /// Compiled into the binary (feature `embedded-model`).
    #[cfg_attr(not(feature = "embedded-model"), allow(dead_code))]
    Embedded,
    Folder(PathBuf),
    /// A GGUF file (llama.cpp's format): config, weights and usually the tokenizer in one.
    Gguf(PathBuf),
}

pub fn resolve(arg: Option<&str>) -> Result<ModelSource> {
    let Some(arg) = arg else { return default_model() };
    let path = Path::new(arg);
    if path.is_dir() {
        return Ok(ModelSource::Folder(path.to_path_buf()));
    }
    if path.exists() {
        if is_gguf(path) {
            return Ok(ModelSource::Gguf(path.to_path_buf()));
        }
        return Err(Error::io(
            arg,
            "is a file but not a GGUF file; --model takes a .gguf file or a folder with config.json and model.safetensors (or pytorch_model.bin)",
        ));
    }
    if !is_repo_id(arg) {
        return Err(Error::io(arg, "model folder not found"));
    }
    let cache = hf_cache_dir();
    if let Some(dir) = cached_snapshot(&cache, arg) {
        return Ok(ModelSource::Folder(dir));
    }
    download(&cache, arg).map(ModelSource::Folder)
}

/// A file named *.gguf, or one that starts with GGUF's magic (a malformed .gguf file is then
/// the GGUF reader's to explain).
fn is_gguf(path: &Path) -> bool {
    use std::io::Read;
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
        return true;
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && mamba_wgpu::gguf::has_magic(&magic)
}

#[cfg(feature = "embedded-model")]
fn default_model() -> Result<ModelSource> {
    Ok(ModelSource::Embedded)
}

/// A build without the embedded model still finds the repository's copy, which is what a
/// developer running `cargo run --no-default-features` wants.
#[cfg(not(feature = "embedded-model"))]
fn default_model() -> Result<ModelSource> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/shakespeare-mamba");
    if dir.join("model.safetensors").is_file() {
        return Ok(ModelSource::Folder(dir));
    }
    Err(Error::invalid(
        "--model",
        format!(
            "not given, this build has no built-in model (cargo feature `embedded-model`) and {} has no model.safetensors; \
             pass --model DIR or --model OWNER/NAME",
            dir.display()
        ),
    ))
}

#[cfg(not(feature = "hub"))]
fn download(cache: &Path, repo: &str) -> Result<PathBuf> {
    Err(Error::invalid(
        "--model",
        format!(
            "no folder `{repo}`, and model `{repo}` is not in the Hugging Face cache ({}) and this build cannot download \
             (rebuild with --features hub, or download with `huggingface-cli download {repo}`)",
            cache.display()
        ),
    ))
}

/// Fetches config.json, the safetensors weights (one file or the shards of an index) and
/// tokenizer.json (optional: id-only use works without) into the cache.
#[cfg(feature = "hub")]
fn download(cache: &Path, repo: &str) -> Result<PathBuf> {
    use std::io::IsTerminal;
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        Error::invalid("--model", format!("model `{repo}` is not in the Hugging Face cache ({}) and downloading {what} failed: {e}", cache.display()))
    };
    let api = hf_hub::api::sync::ApiBuilder::from_cache(hf_hub::Cache::new(cache.to_path_buf()))
        .with_progress(std::io::stderr().is_terminal())
        .build()
        .map_err(|e| fail("(client setup)", &e))?;
    let remote = api.model(repo.to_string());
    let config = remote.get("config.json").map_err(|e| fail("config.json", &e))?;
    // The weights: model.safetensors, its shards, or (the state-spaces releases) pytorch_model.bin.
    if remote.get("model.safetensors").is_err() && remote.get("pytorch_model.bin").is_err() {
        let index_path = remote.get("model.safetensors.index.json").map_err(|e| fail("model.safetensors (or an index, or pytorch_model.bin)", &e))?;
        let text = std::fs::read_to_string(&index_path).map_err(|e| Error::io(index_path.display(), e))?;
        let index: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::io(index_path.display(), e))?;
        let mut shards: Vec<&str> = index["weight_map"].as_object().into_iter().flat_map(|m| m.values().filter_map(|v| v.as_str())).collect();
        shards.sort_unstable();
        shards.dedup();
        for shard in shards {
            remote.get(shard).map_err(|e| fail(shard, &e))?;
        }
    }
    // Optional: the tokenizer, and its config with the chat template.
    let _ = remote.get("tokenizer.json");
    let _ = remote.get("tokenizer_config.json");
    config.parent().map(Path::to_path_buf).ok_or_else(|| Error::io(config.display(), "downloaded file has no folder"))
}

/// The files of a model folder that a run reads (configs, tokenizer, safetensors and their
/// index, pytorch_model.bin), or the GGUF file itself, for what --save-state must not overwrite.
pub fn model_files(dir: &Path) -> Vec<PathBuf> {
    if dir.is_file() {
        return vec![dir.to_path_buf()];
    }
    const NAMED: [&str; 7] = [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "special_tokens_map.json",
        "model.safetensors.index.json",
        "pytorch_model.bin",
    ];
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            NAMED.contains(&name.as_str()) || name.ends_with(".safetensors")
        })
        .collect()
}
