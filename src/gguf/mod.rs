//! GGUF, llama.cpp's model file format (ggml/docs/gguf.md): one file with the metadata (the
//! architecture's hyperparameters, the tokenizer), a table of tensors and their data.
//!
//! - `header.rs` parses the header (v2, v3) from the file's first bytes, which may be only a
//!   prefix of the file; every malformed input is an error naming the file, nothing it says is
//!   allocated unchecked;
//! - `value.rs`: the metadata value types;
//! - `config.rs`: the `MambaConfig` of the `mamba` and `mamba2` architectures' keys;
//! - `checkpoint.rs`: `GgufCheckpoint`, a `TensorSource` over the file's bytes (memory-mapped
//!   natively), its quantized tensors handed on as blocks;
//! - `streamed.rs`: `StreamedGguf`, a file loaded tensor by tensor as its bytes arrive (the
//!   browser's File slices);
//! - `tokenizer.rs`: the embedded `gpt2` (byte-level BPE) tokenizer and chat template;
//! - `writer.rs`, `export.rs`: writing GGUF files, and a model as one.

mod checkpoint;
mod config;
pub mod export;
mod header;
mod streamed;
mod tokenizer;
pub mod value;
pub mod writer;

pub use checkpoint::GgufCheckpoint;
pub use config::config_from_header;
pub use header::{
    dtype_of_ggml_type, ggml_type_of, GgufHeader, Parsed, TensorInfo, DEFAULT_ALIGNMENT, GGML_TYPE_BF16, GGML_TYPE_F16, GGML_TYPE_F32,
    MAX_HEADER_BYTES,
};
pub use streamed::{StreamedGguf, TensorSlice};
pub use tokenizer::{chat_template_from_header, tokenizer_from_header};
pub use value::{Array, Value, ValueType};

/// Whether `bytes`, a file's first bytes, start with GGUF's magic.
pub fn has_magic(bytes: &[u8]) -> bool {
    bytes.starts_with(b"GGUF")
}
