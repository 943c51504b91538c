//! A checkpoint on disk or in memory: `config.json` plus one or more safetensors shards, or
//! the `pytorch_model.bin` of an original state-spaces release (read by torch_bin/).
//!
//! Natively the shards are memory-mapped, so loading never holds a second full copy of the
//! weights in RAM: each tensor is converted (if needed) and uploaded on its own. In the browser
//! the shards are byte vectors fetched by the page.

use std::borrow::Cow;
use std::collections::HashMap;

use half::{bf16, f16};
use safetensors::{tensor::TensorInfo, Dtype, SafeTensors};

use super::config::MambaConfig;
use super::torch_bin;
use crate::error::{Error, Result};
use crate::quant::{self, BlockFormat};

/// Bytes of one weights file (safetensors, or a torch.save `.bin`).
pub enum ShardBytes {
    #[cfg(not(target_arch = "wasm32"))]
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl ShardBytes {
    pub fn as_slice(&self) -> &[u8] {
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
    /// Offset of the tensor data area (after the 8-byte length and the JSON header); 0 for a
    /// `.bin`, whose tensors' offsets are file offsets.
    data_start: usize,
    /// Bytes of tensor data (for a `.bin`, of the storages, each counted once).
    data_bytes: usize,
    tensors: HashMap<String, TensorInfo>,
}

/// Element type of a stored tensor, as far as this engine cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredDtype {
    F32,
    F16,
    BF16,
    /// GGUF blocks (a GGUF file's quantized tensors)
    Block(BlockFormat),
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
    /// Every tensor name the source holds, so that the loader can refuse tensors the config
    /// does not account for; None where the source cannot list them (generated weights).
    fn names(&self) -> Option<Vec<String>> {
        None
    }
}

/// `values` as IEEE half bits, rounded to nearest.
pub fn f16_bits(values: &[f32]) -> Vec<u16> {
    values.iter().map(|&v| f16::from_f32(v).to_bits()).collect()
}

impl TensorBytes<'_> {
    /// The values as f32 (exact for every stored dtype; blocks are dequantized).
    pub fn to_f32(&self) -> Vec<f32> {
        match self.dtype {
            StoredDtype::F32 => self.bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            StoredDtype::F16 => self.halves().map(|h| f16::from_bits(h).to_f32()).collect(),
            StoredDtype::BF16 => self.halves().map(|h| bf16::from_bits(h).to_f32()).collect(),
            StoredDtype::Block(format) => {
                let mut values = Vec::with_capacity(self.shape.iter().product());
                quant::dequantize(format, &self.bytes, &mut values);
                values
            }
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
    /// model.safetensors.index.json, or (where neither is there) pytorch_model.bin. The files
    /// are memory-mapped, not read.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(dir: &std::path::Path) -> Result<Self> {
        let config_path = dir.join("config.json");
        let config_json = read_text(&config_path, MAX_CONFIG_BYTES)?;
        let mut shards = Vec::new();
        for file in shard_file_names(dir)? {
            let path = dir.join(&file);
            if path.is_dir() {
                return Err(Error::io(path.display(), "is a folder, not a weights file"));
            }
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
        self.shards.iter().map(|s| s.data_bytes).sum()
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

    fn names(&self) -> Option<Vec<String>> {
        Some(self.shards.iter().flat_map(|s| s.tensors.keys().cloned()).collect())
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
    /// A `.bin` file is read as torch.save's zip format, anything else as safetensors.
    fn parse(name: String, bytes: ShardBytes) -> Result<Self> {
        if name.ends_with(".bin") {
            let dict = torch_bin::read_state_dict(bytes.as_slice(), &name)?;
            let mut tensors = HashMap::new();
            for (tensor, t) in dict.tensors {
                let dtype = match t.dtype {
                    StoredDtype::F32 => Dtype::F32,
                    StoredDtype::F16 => Dtype::F16,
                    StoredDtype::BF16 => Dtype::BF16,
                    StoredDtype::Block(f) => return Err(Error::tensor(tensor, format!("{f} blocks in {name}, a torch file"))),
                };
                tensors.insert(tensor, TensorInfo { dtype, shape: t.shape, data_offsets: (t.bytes.start, t.bytes.end) });
            }
            return Ok(Shard { name, bytes, data_start: 0, data_bytes: dict.data_bytes, tensors });
        }
        // read_metadata checks that the header is well-formed and that the data area has
        // exactly the length the header promises, so a truncated file is caught here.
        let (header_len, metadata) = SafeTensors::read_metadata(bytes.as_slice()).map_err(|e| {
            let reason = explain_header(bytes.as_slice()).unwrap_or_else(|| format!("{e} (truncated or not a safetensors file?)"));
            Error::Safetensors { path: name.clone(), reason }
        })?;
        let tensors = metadata.tensors().into_iter().map(|(k, v)| (k, v.clone())).collect();
        let data_bytes = bytes.as_slice().len() - (8 + header_len);
        Ok(Shard { name, bytes, data_start: 8 + header_len, data_bytes, tensors })
    }
}

/// Why a header that the safetensors crate refused is wrong, naming the tensor, where it is a
/// tensor whose byte range disagrees with its dtype and shape (the crate's own message does
/// not say which).
fn explain_header(bytes: &[u8]) -> Option<String> {
    let len = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let header: serde_json::Value = serde_json::from_slice(bytes.get(8..8usize.checked_add(usize::try_from(len).ok()?)?)?).ok()?;
    for (name, info) in header.as_object()?.iter().filter(|(name, _)| *name != "__metadata__") {
        let dtype = info.get("dtype")?.as_str()?;
        let width: u64 = match dtype {
            "F64" | "I64" | "U64" => 8,
            "F32" | "I32" | "U32" => 4,
            "F16" | "BF16" | "I16" | "U16" => 2,
            "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
            _ => continue,
        };
        let shape: Option<Vec<u64>> = info.get("shape")?.as_array()?.iter().map(|d| d.as_u64()).collect();
        let offsets: Option<Vec<u64>> = info.get("data_offsets")?.as_array()?.iter().map(|d| d.as_u64()).collect();
        let (Some(shape), Some(offsets)) = (shape, offsets) else { continue };
        let needed = shape.iter().try_fold(width, |acc, &d| acc.checked_mul(d));
        if let ([start, end], Some(needed)) = (offsets.as_slice(), needed) {
            if end.checked_sub(*start) != Some(needed) {
                return Some(format!(
                    "tensor `{name}`: {dtype} {shape:?} takes {needed} bytes, but its data_offsets [{start}, {end}] hold a different count"
                ));
            }
        }
    }
    None
}

/// model.safetensors, or every shard named in model.safetensors.index.json, or where neither
/// exists pytorch_model.bin (the original state-spaces releases).
#[cfg(not(target_arch = "wasm32"))]
fn shard_file_names(dir: &std::path::Path) -> Result<Vec<String>> {
    let index_path = dir.join("model.safetensors.index.json");
    if !index_path.exists() {
        let single = dir.join("model.safetensors");
        if !single.exists() {
            if dir.join(TORCH_BIN).exists() {
                return Ok(vec![TORCH_BIN.into()]);
            }
            return Err(Error::io(single.display(), "not found (expected model.safetensors, model.safetensors.index.json or pytorch_model.bin)"));
        }
        if single.is_dir() {
            return Err(Error::io(single.display(), "is a folder, not a safetensors file"));
        }
        return Ok(vec!["model.safetensors".into()]);
    }
    let text = read_text(&index_path, MAX_INDEX_BYTES)?;
    parse_shard_index(&text, &index_path.display().to_string())
}

/// The weights file of a state-spaces (mamba_ssm) release.
#[cfg(not(target_arch = "wasm32"))]
const TORCH_BIN: &str = "pytorch_model.bin";

/// Most bytes of a config.json: a few KiB in every release.
#[cfg(not(target_arch = "wasm32"))]
const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Most bytes of a shard index (model.safetensors.index.json): a few hundred KiB for the
/// largest released models.
#[cfg(not(target_arch = "wasm32"))]
const MAX_INDEX_BYTES: u64 = 16 << 20;

/// A text file of at most `limit` bytes (config.json, the shard index).
#[cfg(not(target_arch = "wasm32"))]
fn read_text(path: &std::path::Path, limit: u64) -> Result<String> {
    String::from_utf8(read_limited(path, limit, "such a file")?).map_err(|_| Error::io(path.display(), "is not UTF-8 text"))
}

/// The bytes of the file at `path`, at most `limit` of them: a longer file, a device that never
/// ends (/dev/zero) or a folder is an error naming the path and, for the limit, `what` (e.g.
/// "a prompt file") may hold.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_limited(path: &std::path::Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let name = path.display().to_string();
    if std::fs::metadata(path).map_err(|e| Error::io(&name, e))?.is_dir() {
        return Err(Error::io(&name, "is a folder, not a file"));
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(&name, e))?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|e| Error::io(&name, e))?;
    if bytes.len() as u64 > limit {
        return Err(Error::io(&name, format!("is larger than the {} MiB {what} may hold", limit >> 20)));
    }
    Ok(bytes)
}

/// The shard files an index names (its `weight_map` values), each a plain file name or a path
/// inside the model folder: an absolute path or one that climbs out with `..` is refused, so an
/// index cannot make the engine open files elsewhere. `path` names the index in errors.
pub fn parse_shard_index(text: &str, path: &str) -> Result<Vec<String>> {
    let index: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::io(path, e))?;
    let map = index.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| Error::io(path, "no `weight_map` object"))?;
    let mut files = Vec::new();
    for (tensor, file) in map {
        let file = file.as_str().ok_or_else(|| Error::io(path, format!("weight_map entry `{tensor}` is not a file name")))?;
        let inside = std::path::Path::new(file).components().all(|c| matches!(c, std::path::Component::Normal(_)));
        if file.is_empty() || !inside {
            return Err(Error::io(path, format!("weight_map entry `{tensor}` names `{file}`, which is not a file inside the model folder")));
        }
        files.push(file.to_string());
    }
    files.sort();
    files.dedup();
    if files.is_empty() {
        return Err(Error::io(path, "`weight_map` names no shard"));
    }
    Ok(files)
}
