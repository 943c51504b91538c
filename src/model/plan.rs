//! How the forward pass runs a loaded model, decided once at load and read by the forward
//! pass; the ops never ask the context how to run. Every adapter runs the same kernels: what
//! differs between models or devices is a value here or a parameter of a kernel.

use super::gpu_weights::GpuWeights;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Runs whose rows the matvec takes (decode steps) normalize inside in_proj and add
    /// out_proj's output into the residual stream, one dispatch per layer fewer: possible
    /// where every layer's RMSNorm weight was folded into its in_proj at load.
    pub fused_norms: bool,
}

impl Plan {
    pub fn for_weights(weights: &GpuWeights) -> Self {
        Plan { fused_norms: weights.layers.iter().all(|l| l.norm.is_none()) }
    }
}
