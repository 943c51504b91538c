//! A checkpoint on disk or in memory: `config.json` plus one or more safetensors shards.
//!
//! Natively the shards are memory-mapped, so loading never holds a second full copy of the
//! weights in RAM: each tensor is converted (if needed) and uploaded on its own. In the browser
//! the shards are byte vectors fetched by the page.

use std::borrow::Cow;
use std::collections::HashMap;

use half::{bf16, f16};
use safetensors::{tensor::TensorInfo, Dtype, SafeTensors};

use super::config::MambaConfig;
use crate::error::{Error, Result};

/// Bytes of one safetensors file.
pub enum ShardBytes {
    #[cfg(not(target_arch = "wasm32"))]
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl ShardBytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            ShardBytes::Mapped(map) => map,
            ShardBytes::Owned(bytes) => bytes,
        }
    }
}

struct Shard {
    name: String,
    bytes: ShardBytes,
    /// Offset of the tensor data area (after the 8-byte length and the JSON header).
    data_start: usize,
    tensors: HashMap<String, TensorInfo>,
}

/// Element type of a stored tensor, as far as this engine cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredDtype {
    F32,
    F16,
    BF16,
}

/// One tensor's raw little-endian bytes: borrowed from a mapped file, or generated.
pub struct TensorBytes<'a> {
    pub name: &'a str,
    pub dtype: StoredDtype,
    pub shape: Vec<usize>,
    pub bytes: Cow<'a, [u8]>,
}

/// Where a model's tensors come from: a checkpoint, or synthetic weights for benchmarks.
pub trait TensorSource {
    fn config(&self) -> &MambaConfig;
    /// Names the source in error messages (a folder, a URL, "synthetic mamba-130m").
    fn source_name(&self) -> &str;
    fn contains(&self, name: &str) -> bool;
    /// The tensor `name`, checked to have exactly `shape`.
    fn tensor<'a>(&'a self, name: &'a str, shape: &[usize]) -> Result<TensorBytes<'a>>;
}

/// `values` as IEEE half bits, rounded to nearest.
pub fn f16_bits(values: &[f32]) -> Vec<u16> {
    values.iter().map(|&v| f16::from_f32(v).to_bits()).collect()
}

impl TensorBytes<'_> {
    /// The values as f32 (exact for every stored dtype).
    pub fn to_f32(&self) -> Vec<f32> {
        match self.dtype {
            StoredDtype::F32 => self.bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            StoredDtype::F16 => self.halves().map(|h| f16::from_bits(h).to_f32()).collect(),
            StoredDtype::BF16 => self.halves().map(|h| bf16::from_bits(h).to_f32()).collect(),
        }
    }

    /// The values as IEEE half bits (rounded to nearest for f32 and bf16 sources).
    pub fn to_f16_bits(&self) -> Vec<u16> {
        match self.dtype {
            StoredDtype::F16 => self.halves().collect(),
            _ => f16_bits(&self.to_f32()),
        }
    }

    fn halves(&self) -> impl Iterator<Item = u16> + '_ {
        self.bytes.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
}

pub struct Checkpoint {
    pub config: MambaConfig,
    /// Where the files came from, for error messages.
    pub source: String,
    shards: Vec<Shard>,
}

impl Checkpoint {
    /// Builds a checkpoint from config.json text and named shard bytes (any platform).
    pub fn from_parts(source: &str, config_json: &str, shards: Vec<(String, ShardBytes)>) -> Result<Self> {
        let config = MambaConfig::from_json(config_json, &format!("{source}/config.json"))?;
        let shards = shards.into_iter().map(|(name, bytes)| Shard::parse(name, bytes)).collect::<Result<_>>()?;
        Ok(Checkpoint { config, source: source.to_string(), shards })
    }

    /// Opens a model folder: config.json and model.safetensors, or the shards listed in
    /// model.safetensors.index.json. The shards are memory-mapped, not read.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(dir: &std::path::Path) -> Result<Self> {
        let config_path = dir.join("config.json");
        let config_json = std::fs::read_to_string(&config_path).map_err(|e| Error::io(config_path.display(), e))?;
        let mut shards = Vec::new();
        for file in shard_file_names(dir)? {
            let path = dir.join(&file);
            let handle = std::fs::File::open(&path).map_err(|e| Error::io(path.display(), e))?;
            // SAFETY: the file is opened read-only and treated as immutable for the lifetime of
            // the map; a concurrent writer truncating it is outside what we can defend against.
            let map = unsafe { memmap2::Mmap::map(&handle) }.map_err(|e| Error::io(path.display(), e))?;
            shards.push((path.display().to_string(), ShardBytes::Mapped(map)));
        }
        Self::from_parts(&dir.display().to_string(), &config_json, shards)
    }

    /// Total bytes of tensor data over all shards.
    pub fn stored_bytes(&self) -> usize {
        self.shards.iter().map(|s| s.bytes.as_slice().len() - s.data_start).sum()
    }
}

impl TensorSource for Checkpoint {
    fn config(&self) -> &MambaConfig {
        &self.config
    }

    fn source_name(&self) -> &str {
        &self.source
    }

    fn contains(&self, name: &str) -> bool {
        self.shards.iter().any(|s| s.tensors.contains_key(name))
    }

    fn tensor<'a>(&'a self, name: &'a str, shape: &[usize]) -> Result<TensorBytes<'a>> {
        let (shard, info) = self
            .shards
            .iter()
            .find_map(|s| s.tensors.get(name).map(|info| (s, info)))
            .ok_or_else(|| Error::tensor(name, format!("not found in {}", self.source)))?;
        let dtype = match info.dtype {
            Dtype::F32 => StoredDtype::F32,
            Dtype::F16 => StoredDtype::F16,
            Dtype::BF16 => StoredDtype::BF16,
            other => return Err(Error::tensor(name, format!("dtype {other:?} is not supported (F32, F16 or BF16) in {}", shard.name))),
        };
        if info.shape != shape {
            return Err(Error::tensor(name, format!("shape {:?} in {}, but the config implies {:?}", info.shape, shard.name, shape)));
        }
        let (start, end) = info.data_offsets;
        let bytes = &shard.bytes.as_slice()[shard.data_start + start..shard.data_start + end];
        Ok(TensorBytes { name, dtype, shape: info.shape.clone(), bytes: Cow::Borrowed(bytes) })
    }
}

impl Shard {
    fn parse(name: String, bytes: ShardBytes) -> Result<Self> {
        // read_metadata checks that the header is well-formed and that the data area has
        // exactly the length the header promises, so a truncated file is caught here.
        let (header_len, metadata) = SafeTensors::read_metadata(bytes.as_slice())
            .map_err(|e| Error::Safetensors { path: name.clone(), reason: format!("{e} (truncated or not a safetensors file?)") })?;
        let tensors = metadata.tensors().into_iter().map(|(k, v)| (k, v.clone())).collect();
        Ok(Shard { name, bytes, data_start: 8 + header_len, tensors })
    }
}

/// model.safetensors, or every shard named in model.safetensors.index.json.
#[cfg(not(target_arch = "wasm32"))]
fn shard_file_names(dir: &std::path::Path) -> Result<Vec<String>> {
    let index_path = dir.join("model.safetensors.index.json");
    if !index_path.exists() {
        let single = dir.join("model.safetensors");
        if !single.exists() {
            return Err(Error::io(single.display(), "not found (expected model.safetensors or model.safetensors.index.json)"));
        }
        return Ok(vec!["model.safetensors".into()]);
    }
    let text = std::fs::read_to_string(&index_path).map_err(|e| Error::io(index_path.display(), e))?;
    let index: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::io(index_path.display(), e))?;
    let map = index.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| Error::io(index_path.display(), "no `weight_map` object"))?;
    let mut files: Vec<String> = map.values().filter_map(|v| v.as_str().map(String::from)).collect();
    files.sort();
    files.dedup();
    Ok(files)
}
