//! One error type for the whole crate. Every variant names what was at fault (a file, a tensor,
//! an argument, a kernel) so that a message printed by the CLI is enough to fix the input.

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened or read.
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },

    /// `config.json` is missing a field, has a wrong type or an unsupported value.
    #[error("config {path}: {reason}")]
    Config { path: String, reason: String },

    /// A safetensors file is malformed or truncated.
    #[error("safetensors {path}: {reason}")]
    Safetensors { path: String, reason: String },

    /// A GGUF file is malformed or truncated (also a GGUF header read from a prefix of its file).
    #[error("GGUF {path}: {reason}")]
    Gguf { path: String, reason: String },

    /// A tensor is missing or has the wrong shape or dtype.
    #[error("tensor `{name}`: {reason}")]
    Tensor { name: String, reason: String },

    /// A caller passed a value outside what the engine accepts.
    #[error("invalid argument `{name}`: {reason}")]
    InvalidArgument { name: String, reason: String },

    /// The tokenizer could not be loaded or failed on a text.
    #[error("tokenizer {path}: {reason}")]
    Tokenizer { path: String, reason: String },

    /// A saved state does not belong to this model or session shape.
    #[error("state snapshot: {reason}")]
    Snapshot { reason: String },

    /// No GPU adapter or device could be obtained.
    #[error("{0}")]
    NoAdapter(String),

    /// The device lacks a limit or feature a kernel needs.
    #[error("GPU limit: {0}")]
    Limit(String),

    /// A GPU operation failed (readback mapping, device lost, validation).
    #[error("GPU: {0}")]
    Gpu(String),

    /// The caller's interrupt flag stopped the work (Session::set_interrupt).
    #[error("interrupted")]
    Interrupted,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn invalid(name: impl Into<String>, reason: impl fmt::Display) -> Self {
        Error::InvalidArgument { name: name.into(), reason: reason.to_string() }
    }

    pub fn tensor(name: impl Into<String>, reason: impl fmt::Display) -> Self {
        Error::Tensor { name: name.into(), reason: reason.to_string() }
    }

    pub fn io(path: impl fmt::Display, err: impl fmt::Display) -> Self {
        Error::Io { path: path.to_string(), reason: err.to_string() }
    }
}
