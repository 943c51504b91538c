//! A Mamba-1 model on the GPU: config, weights uploaded once, and the forward pass.

pub mod checkpoint;
pub mod config;
pub mod forward;
pub mod gpu_weights;
pub mod torch_bin;
pub mod weight_mix;
pub mod weights;

pub use checkpoint::{Checkpoint, TensorSource};
pub use config::MambaConfig;
pub use gpu_weights::{LoadOptions, Model};
