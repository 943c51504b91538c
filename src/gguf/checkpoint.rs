//! A GGUF file as a model's tensor source: the header (header.rs), the config it implies
//! (config.rs) and the bytes of the tensor data. Natively the file is memory-mapped, as
//! safetensors are, so each tensor is read from the page cache as it is uploaded; in the
//! browser the page hands over the bytes (the whole file, or only the data section after it
//! has parsed the header from a prefix).
//!
//! Shapes are given in row-major order (the reverse of GGUF's `ne`), the order of the
//! safetensors checkpoints, so the loader asks for `token_embd.weight` as (vocab, d_model).

use std::borrow::Cow;

use super::config::config_from_header;
use super::header::{gguf_error, GgufHeader};
use crate::error::{Error, Result};
use crate::model::checkpoint::{ShardBytes, TensorBytes, TensorSource};
use crate::model::config::MambaConfig;

pub struct GgufCheckpoint {
    pub config: MambaConfig,
    pub header: GgufHeader,
    /// The file's name, for errors.
    source: String,
    bytes: ShardBytes,
    /// File offset of `bytes[0]`: 0 for the whole file, `header.data_start` for the data section.
    base: u64,
}

impl GgufCheckpoint {
    /// Memory-maps and parses the GGUF file at `path`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: &std::path::Path) -> Result<Self> {
        let name = path.display().to_string();
        if path.is_dir() {
            return Err(Error::io(&name, "is a folder, not a GGUF file"));
        }
        let file = std::fs::File::open(path).map_err(|e| Error::io(&name, e))?;
        // SAFETY: the file is opened read-only and treated as immutable for the lifetime of the
        // map; a concurrent writer truncating it is outside what we can defend against.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(&name, e))?;
        Self::from_bytes(&name, ShardBytes::Mapped(map))
    }

    /// A whole GGUF file's bytes; `name` names it in errors.
    pub fn from_bytes(name: &str, bytes: ShardBytes) -> Result<Self> {
        let header = GgufHeader::parse(bytes.as_slice(), name)?;
        Self::from_parts(name, header, bytes, 0)
    }

    /// A header parsed from a prefix of the file, and bytes of the file starting at file offset
    /// `at` (e.g. `header.data_start`, the data section alone) that hold every tensor.
    pub fn from_parts(name: &str, header: GgufHeader, bytes: ShardBytes, at: u64) -> Result<Self> {
        let len = bytes.as_slice().len() as u64;
        if at > header.data_start {
            return Err(gguf_error(name, format!("the bytes given start at offset {at}, after the tensor data's start {}", header.data_start)));
        }
        header.check_file_len(at + len, name)?;
        let config = config_from_header(&header, name)?;
        Ok(GgufCheckpoint { config, header, source: name.to_string(), bytes, base: at })
    }

    /// Bytes of tensor data in the file.
    pub fn stored_bytes(&self) -> u64 {
        self.header.tensors().iter().map(|t| t.byte_len).sum()
    }
}

impl TensorSource for GgufCheckpoint {
    fn config(&self) -> &MambaConfig {
        &self.config
    }

    fn source_name(&self) -> &str {
        &self.source
    }

    fn contains(&self, name: &str) -> bool {
        self.header.tensor(name).is_some()
    }

    fn names(&self) -> Option<Vec<String>> {
        Some(self.header.tensors().iter().map(|t| t.name.clone()).collect())
    }

    fn tensor<'a>(&'a self, name: &'a str, shape: &[usize]) -> Result<TensorBytes<'a>> {
        let info = self.header.tensor_of_shape(name, shape, &self.source)?;
        // from_parts checked that every tensor lies within the bytes.
        let (start, end) = self.header.file_range(info);
        let bytes = &self.bytes.as_slice()[(start - self.base) as usize..(end - self.base) as usize];
        Ok(TensorBytes { name, dtype: info.dtype, shape: info.shape(), bytes: Cow::Borrowed(bytes) })
    }
}
