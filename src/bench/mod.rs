//! `mamba-wgpu bench`: prefill and decode tokens/s on synthetic models with the shapes of the
//! state-spaces releases (or a real checkpoint), each set against baselines measured on the
//! same adapter in the same run: the streaming read bandwidth (decode's roofline: every weight
//! byte is read once per step) and the sequential-in-time scan kernel. The decode measurement
//! (`decode`) and the synthetic models also run in the browser (the page's `?bench=1`).

pub mod decode;
pub mod kernels;
#[cfg(not(target_arch = "wasm32"))]
pub mod probes;
#[cfg(not(target_arch = "wasm32"))]
mod report;
#[cfg(not(target_arch = "wasm32"))]
mod runner;
pub mod synthetic;

#[cfg(not(target_arch = "wasm32"))]
pub use report::{BenchReport, Measurement};
#[cfg(not(target_arch = "wasm32"))]
pub use runner::{decode_bytes_per_step, run, BenchOptions};
