//! Writing GGUF files (version 3, llama.cpp's ggml/docs/gguf.md): the header (metadata
//! key-value pairs, then each tensor's name, dimensions, type and data offset), padding to the
//! alignment, then the tensors' data, each starting at a multiple of the alignment.
//!
//! Data are aligned to GGUF's default 32 bytes (no `general.alignment` key is written).
//! The tensor table comes before any data, so a writer first declares every tensor (name,
//! shape, type, bytes) and then streams their data in the same order: a model is quantized
//! and written one tensor at a time, never held whole in memory.

use std::io::Write;

use super::header::DEFAULT_ALIGNMENT as ALIGNMENT;
use super::value::ValueType;
use crate::error::{Error, Result};

/// A tensor declared in the table: `dims` in GGUF's order (innermost first), `ggml_type` its
/// element or block type, `bytes` the size of its data.
struct TensorEntry {
    name: String,
    dims: Vec<u64>,
    ggml_type: u32,
    bytes: u64,
}

/// Metadata and the tensor table of a GGUF file, then its data.
#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<u8>,
    kv_count: u64,
    tensors: Vec<TensorEntry>,
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl GgufWriter {
    fn key(&mut self, key: &str, value_type: ValueType) -> &mut Vec<u8> {
        self.kv_count += 1;
        put_string(&mut self.metadata, key);
        self.metadata.extend_from_slice(&value_type.id().to_le_bytes());
        &mut self.metadata
    }

    pub fn u32(&mut self, key: &str, v: u32) {
        self.key(key, ValueType::U32).extend_from_slice(&v.to_le_bytes());
    }

    pub fn f32(&mut self, key: &str, v: f32) {
        self.key(key, ValueType::F32).extend_from_slice(&v.to_le_bytes());
    }

    pub fn bool(&mut self, key: &str, v: bool) {
        self.key(key, ValueType::Bool).push(v as u8);
    }

    pub fn string(&mut self, key: &str, v: &str) {
        put_string(self.key(key, ValueType::String), v);
    }

    pub fn strings(&mut self, key: &str, values: &[String]) {
        let out = self.key(key, ValueType::Array);
        out.extend_from_slice(&ValueType::String.id().to_le_bytes());
        out.extend_from_slice(&(values.len() as u64).to_le_bytes());
        for v in values {
            put_string(out, v);
        }
    }

    pub fn i32s(&mut self, key: &str, values: &[i32]) {
        let out = self.key(key, ValueType::Array);
        out.extend_from_slice(&ValueType::I32.id().to_le_bytes());
        out.extend_from_slice(&(values.len() as u64).to_le_bytes());
        values.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    }

    /// Declares a tensor of row-major `shape` (written reversed, as GGUF's dims are innermost
    /// first) whose data will be `bytes` long.
    pub fn tensor(&mut self, name: &str, shape: &[usize], ggml_type: u32, bytes: usize) {
        let dims = shape.iter().rev().map(|&d| d as u64).collect();
        self.tensors.push(TensorEntry { name: name.to_string(), dims, ggml_type, bytes: bytes as u64 });
    }

    /// The header: magic, version, counts, metadata, tensor table, padding to the alignment.
    fn header(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.metadata.len() + 64 * self.tensors.len() + 64);
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.kv_count.to_le_bytes());
        out.extend_from_slice(&self.metadata);
        let mut offset = 0u64;
        for t in &self.tensors {
            put_string(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            t.dims.iter().for_each(|d| out.extend_from_slice(&d.to_le_bytes()));
            out.extend_from_slice(&t.ggml_type.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset += t.bytes.next_multiple_of(ALIGNMENT);
        }
        out.resize((out.len() as u64).next_multiple_of(ALIGNMENT) as usize, 0);
        out
    }

    /// Writes the header to `out` (`path` names it in errors); the tensors' data follow
    /// through the returned stream, in declaration order.
    pub fn start<W: Write>(&self, mut out: W, path: &str) -> Result<TensorStream<W>> {
        out.write_all(&self.header()).map_err(|e| Error::io(path, e))?;
        let sizes = self.tensors.iter().map(|t| (t.name.clone(), t.bytes)).collect();
        Ok(TensorStream { out, path: path.to_string(), sizes, next: 0 })
    }
}

/// The data section being written: each declared tensor's bytes in turn.
pub struct TensorStream<W: Write> {
    out: W,
    path: String,
    /// (name, bytes) of every declared tensor
    sizes: Vec<(String, u64)>,
    next: usize,
}

impl<W: Write> TensorStream<W> {
    /// The next tensor's data, padded to the alignment; its size must be the declared one.
    pub fn next(&mut self, bytes: &[u8]) -> Result<()> {
        let Some((name, size)) = self.sizes.get(self.next) else {
            return Err(Error::invalid("gguf writer", format!("more tensors than the {} declared for {}", self.sizes.len(), self.path)));
        };
        if bytes.len() as u64 != *size {
            return Err(Error::tensor(name, format!("has {} bytes, {size} were declared for {}", bytes.len(), self.path)));
        }
        let io = |e: std::io::Error| Error::io(&self.path, e);
        self.out.write_all(bytes).map_err(io)?;
        let pad = (size.next_multiple_of(ALIGNMENT) - size) as usize;
        self.out.write_all(&[0u8; ALIGNMENT as usize][..pad]).map_err(io)?;
        self.next += 1;
        Ok(())
    }

    /// Fails unless every declared tensor was written; flushes.
    pub fn finish(mut self) -> Result<()> {
        if self.next != self.sizes.len() {
            return Err(Error::invalid("gguf writer", format!("{} of {} tensors written to {}", self.next, self.sizes.len(), self.path)));
        }
        self.out.flush().map_err(|e| Error::io(&self.path, e))
    }
}
