//! wgpu plumbing with no model knowledge: device selection, buffers, kernels, command recording.

pub mod context;
pub mod kernels;
pub mod params;
pub mod readback;
pub mod tape;
pub mod tensor;

pub use context::{AdapterSummary, GpuContext};
pub use kernels::Kernel;
pub use tape::{Recorder, Tape};
pub use tensor::{GpuWeight, WeightDtype};
