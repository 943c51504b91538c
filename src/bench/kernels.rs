//! The benchmark's own kernels: the streaming read probes (the decode roofline) and the
//! per-state scan baseline. The model never runs them; they live in shaders/bench/.

use crate::error::{Error, Result};
use crate::gpu::kernels::{KernelSpec, SCAN_MAX_STATE};
use crate::gpu::Recorder;
use crate::ops::scan::Scan;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchKernel {
    /// Streaming reads, grid-strided (shaders/bench/read_bandwidth.wgsl, main).
    ReadBandwidth,
    /// Streaming reads, a contiguous chunk per workgroup (main_chunks).
    ReadBandwidthChunks,
    /// The sequential scan as llama.cpp's WebGPU backend runs it: one invocation per (channel,
    /// state), each step's C . h summed over the workgroup by a tree in workgroup memory or,
    /// with `subgroups`, by subgroupAdd. `workgroup`: d_state rounded up to a power of two.
    ScanPerState { subgroups: bool, workgroup: u8 },
    /// One store and nothing else: the fixed cost of a dispatch (shaders/bench/empty.wgsl).
    Empty,
}

impl From<BenchKernel> for KernelSpec {
    fn from(kernel: BenchKernel) -> Self {
        let (file, source, entry, constants) = match kernel {
            BenchKernel::ReadBandwidth => ("bench/read_bandwidth.wgsl", READ_BANDWIDTH, "main", vec![]),
            BenchKernel::ReadBandwidthChunks => ("bench/read_bandwidth.wgsl", READ_BANDWIDTH, "main_chunks", vec![]),
            BenchKernel::ScanPerState { subgroups: false, workgroup } => {
                ("bench/scan_per_state.wgsl", SCAN_PER_STATE, "main", vec![("WG", workgroup as f64)])
            }
            BenchKernel::ScanPerState { subgroups: true, workgroup } => {
                ("bench/scan_per_state_subgroup.wgsl", SCAN_PER_STATE_SUBGROUP, "main_subgroup", vec![("WG", workgroup as f64)])
            }
            BenchKernel::Empty => ("bench/empty.wgsl", EMPTY, "main", vec![]),
        };
        KernelSpec { file, source, entry, constants }
    }
}

pub const READ_BANDWIDTH: &str = include_str!("../../shaders/bench/read_bandwidth.wgsl");
pub const SCAN_PER_STATE: &str = include_str!("../../shaders/bench/scan_per_state.wgsl");
pub const SCAN_PER_STATE_SUBGROUP: &str = include_str!("../../shaders/bench/scan_per_state_subgroup.wgsl");
pub const EMPTY: &str = include_str!("../../shaders/bench/empty.wgsl");

/// The benchmark's shader files, (name under shaders/, text), for the shader tests.
pub const SHADERS: &[(&str, &str)] = &[
    ("bench/read_bandwidth.wgsl", READ_BANDWIDTH),
    ("bench/scan_per_state.wgsl", SCAN_PER_STATE),
    ("bench/scan_per_state_subgroup.wgsl", SCAN_PER_STATE_SUBGROUP),
    ("bench/empty.wgsl", EMPTY),
];

/// Records the per-state baseline scan over the same operands as the engine's scans
/// (`subgroups` needs a device with them).
pub fn scan_per_state(rec: &mut Recorder, op: &Scan, subgroups: bool) -> Result<()> {
    let params = op.params()?;
    if params.d_state > SCAN_MAX_STATE {
        return Err(Error::Limit(format!("d_state {} exceeds the per-state scan's {SCAN_MAX_STATE}", params.d_state)));
    }
    if subgroups && !rec.ctx().adapter.subgroups {
        return Err(Error::Limit(format!("{} has no subgroups for the per-state scan", rec.ctx().adapter.name)));
    }
    let kernel = BenchKernel::ScanPerState { subgroups, workgroup: params.d_state.next_power_of_two() as u8 };
    let buffers = [op.x.buffer, op.dt.buffer, op.xdbl.buffer, op.z.buffer, op.a.buffer, op.d_skip.buffer, op.h.buffer, op.y.buffer];
    rec.dispatch(kernel, &params, &buffers, [params.d_inner, op.batch, 1])
}
