//! # mamba-wgpu
//!
//! Runs Mamba selective state-space language models (Gu & Dao, 2023: Mamba-1, FalconMamba,
//! Mamba-2) on any GPU through `wgpu` compute shaders: Vulkan, Metal and DX12 natively, WebGPU
//! in the browser.
//!
//! - Loads Hugging Face checkpoints (`config.json`, `model.safetensors` or shards, F32/F16/BF16),
//!   the original state-spaces naming, and llama.cpp's GGUF files ([`gguf`]; their Q8_0, Q4_0,
//!   Q4_1, Q5_0, Q5_1 and K-quant blocks uploaded as stored and dequantized by the kernels as
//!   they load them, [`quant`]); writes GGUF files ([`gguf::export`]).
//! - The whole forward pass runs in WGSL kernels (`shaders/`): embedding, fused residual +
//!   RMSNorm, tiled matmul / matrix-vector products, causal conv1d + SiLU, dt projection +
//!   softplus, a chunked parallel selective scan for prompts and a one-step scan for decoding.
//! - A [`Session`] prefills prompts, steps one token at a time, and snapshots its fixed-size
//!   recurrent state (the prompt cache).
//!
//! It does not run hybrid models (Mamba with attention), nor train.
//!
//! ```no_run
//! # async fn demo() -> mamba_wgpu::Result<()> {
//! use std::sync::Arc;
//! use mamba_wgpu::{GpuContext, LoadOptions, Model, Session};
//! let ctx = GpuContext::new(None).await?;
//! let model = Arc::new(Model::open(ctx, "models/shakespeare-mamba".as_ref(), LoadOptions::default())?);
//! let mut session = Session::new(model, 1)?;
//! let mut next = session.prefill_greedy(&[vec![1, 2, 3]]).await?;
//! for _ in 0..10 {
//!     next = session.step_greedy(&next).await?;
//! }
//! # Ok(()) }
//! ```

pub mod chat_template;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod gpu;
pub mod model;
pub mod ops;
pub mod perplexity;
pub mod quant;
pub mod reference;
pub mod sampling;
pub mod session;
pub mod snapshot;
pub mod state_file;
pub mod tokenizer;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, Result};
pub use gpu::{GpuContext, WeightDtype};
pub use model::{Checkpoint, LoadOptions, MambaConfig, Model, TensorSource};
pub use session::Session;
pub mod bench;
/// The C API (`include/mamba_wgpu.h`).
#[cfg(not(target_arch = "wasm32"))]
pub mod capi;
#[cfg(not(target_arch = "wasm32"))]
pub mod hub_cache;
