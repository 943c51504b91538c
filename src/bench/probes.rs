//! Baselines measured on the same adapter in the same run: the read bandwidth of a plain
//! streaming kernel (the decode roofline) and the chunked scan against the sequential one.

use std::time::Instant;

use crate::error::{Error, Result};
use crate::gpu::params::BandwidthParams;
use crate::gpu::readback::read_f32;
use crate::gpu::tensor::{storage, upload_f32};
use crate::gpu::{GpuContext, Kernel, Tape};
use crate::ops::scan::{selective_scan, Scan, ScanKind};

/// Submits what `record` records `reps` times in one command buffer and waits; best of 3
/// repetitions, in seconds per rep.
fn time_best<F>(ctx: &GpuContext, tape: &mut Tape, reps: u32, mut record: F) -> Result<f64>
where
    F: FnMut(&mut crate::gpu::Recorder) -> Result<()>,
{
    let mut best = f64::INFINITY;
    for round in 0..4 {
        let start = Instant::now();
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        for _ in 0..reps {
            let mut rec = tape.record(ctx);
            record(&mut rec)?;
            rec.encode(&mut encoder);
        }
        ctx.queue.submit([encoder.finish()]);
        ctx.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| crate::Error::Gpu(e.to_string()))?;
        // Round 0 warms up (pipeline creation, first touch of memory).
        if round > 0 {
            best = best.min(start.elapsed().as_secs_f64() / reps as f64);
        }
    }
    Ok(best)
}

/// The read bandwidth of a streaming kernel over more bytes than any cache holds, in GB/s: the
/// fastest of its access patterns (shaders/read_bandwidth.wgsl), one that suits GPUs and one
/// that suits CPU devices, and the latter with 64-bit loads where the device has them
/// (shaders/read_bandwidth_int64.wgsl). Measured again next to each decode measurement, since
/// a shared machine's bandwidth drifts.
pub struct BandwidthProbe {
    /// Bytes of each source buffer.
    bytes: u64,
    /// PROBE_BYTES in buffers of at most one storage binding each, read one after the other.
    srcs: Vec<wgpu::Buffer>,
    sums: wgpu::Buffer,
    /// One per pattern: a tape replays a fixed kernel sequence.
    tapes: [Tape; 3],
}

/// Bytes the probe streams per pass: more than any cache (the development machine's L3 is
/// 260 MiB, an H200's L2 50 MB). Where a storage binding is smaller (lavapipe: 128 MiB), in
/// several buffers.
const PROBE_BYTES: u64 = 512 << 20;

/// Invocations of the grid-strided pattern: enough to fill a big GPU, few enough that each
/// streams a long run.
const STRIDED_THREADS: u32 = 256 * 2048;
/// Workgroups (of 8) of the chunked pattern: many chunks, so that every core gets several.
pub const CHUNKS: u32 = 2048;

/// Bytes of each of the probe's source buffers: PROBE_BYTES or one storage binding, whichever
/// is smaller, in whole 32-byte elements per chunk.
pub fn source_bytes(ctx: &GpuContext) -> u64 {
    ctx.max_binding_bytes.min(PROBE_BYTES) / (32 * CHUNKS as u64) * (32 * CHUNKS as u64)
}

/// (kernel, invocations, workgroups) of each pattern; the last one needs 64-bit integers.
const PATTERNS: [(Kernel, u32, u32); 3] = [
    (Kernel::ReadBandwidth, STRIDED_THREADS, STRIDED_THREADS / 256),
    (Kernel::ReadBandwidthChunks, CHUNKS * 8, CHUNKS),
    (Kernel::ReadBandwidthChunksInt64, CHUNKS * 8, CHUNKS),
];

impl BandwidthProbe {
    /// Runs every pattern once and checks each invocation's sum, so a pattern that skipped part
    /// of the buffer cannot pass for a fast one.
    pub fn new(ctx: &GpuContext) -> Result<Self> {
        let bytes = source_bytes(ctx);
        let buffers = PROBE_BYTES.div_ceil(bytes) as usize;
        let mut probe = BandwidthProbe {
            bytes,
            srcs: (0..buffers).map(|_| storage(ctx, "bandwidth source", (bytes / 4) as usize)).collect(),
            sums: storage(ctx, "bandwidth sums", STRIDED_THREADS as usize),
            tapes: ["bandwidth strided", "bandwidth chunks", "bandwidth chunks u64"].map(|label| Tape::new(ctx, label, buffers)),
        };
        probe.check(ctx)?;
        Ok(probe)
    }

    /// The patterns this device runs: the 64-bit loads where it has them (the CPU-device
    /// matvec uses them too).
    fn pattern_count(ctx: &GpuContext) -> usize {
        if ctx.adapter.shader_int64 {
            3
        } else {
            2
        }
    }

    /// One measurement in GB/s: the fastest pattern, each the best of its repetitions.
    pub fn measure(&mut self, ctx: &GpuContext) -> Result<f64> {
        let (srcs, sums) = (&self.srcs, &self.sums);
        let pass_bytes = self.bytes * srcs.len() as u64;
        // About 2 GiB per timed submit: enough that the submit's own cost does not count.
        let reps = (4 / srcs.len() as u32).max(1);
        let mut best = 0.0f64;
        for (&(kernel, threads, workgroups), tape) in PATTERNS.iter().zip(&mut self.tapes).take(Self::pattern_count(ctx)) {
            let params = pattern_params(self.bytes, threads);
            let seconds =
                time_best(ctx, tape, reps, |rec| srcs.iter().try_for_each(|src| rec.dispatch(kernel, &params, &[src, sums], [workgroups, 1, 1])))?;
            best = best.max(pass_bytes as f64 / seconds / 1e9);
        }
        Ok(best)
    }

    /// Every word of the source is 1.0 for the f32 patterns and 1 for the u64 one, so each
    /// invocation's sum is known exactly (`expected_sum_bits`).
    fn check(&mut self, ctx: &GpuContext) -> Result<()> {
        const FILL_BYTES: u64 = 16 << 20; // written a slice at a time: a buffer is up to 512 MiB
        let mut filled_with = None;
        for (&(kernel, threads, workgroups), tape) in PATTERNS.iter().zip(&mut self.tapes).take(Self::pattern_count(ctx)) {
            let word = if kernel == Kernel::ReadBandwidthChunksInt64 { 1u32 } else { 1.0f32.to_bits() };
            // The two f32 patterns share one fill.
            if filled_with != Some(word) {
                let fill = vec![word; (FILL_BYTES.min(self.bytes) / 4) as usize];
                for src in &self.srcs {
                    for offset in (0..self.bytes).step_by(FILL_BYTES as usize) {
                        let len = FILL_BYTES.min(self.bytes - offset) as usize;
                        ctx.queue.write_buffer(src, offset, &bytemuck::cast_slice(&fill)[..len]);
                    }
                }
                filled_with = Some(word);
            }
            let params = pattern_params(self.bytes, threads);
            for (b, src) in self.srcs.iter().enumerate() {
                let mut encoder = ctx.device.create_command_encoder(&Default::default());
                let mut rec = tape.record(ctx);
                rec.dispatch(kernel, &params, &[src, &self.sums], [workgroups, 1, 1])?;
                rec.encode(&mut encoder);
                ctx.queue.submit([encoder.finish()]);
                let sums = pollster::block_on(read_f32(ctx, &self.sums, threads as usize))?;
                for (i, got) in sums.iter().enumerate() {
                    let (got, want) = (got.to_bits(), expected_sum_bits(kernel, self.bytes, threads, i as u32));
                    if got != want {
                        return Err(Error::Gpu(format!(
                            "bandwidth probe {kernel:?}, buffer {b}: invocation {i} stored {got:#010x}, expected {want:#010x}: it does not read the buffer it is timed on"
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The parameters of a pattern of `threads` invocations over `bytes`.
fn pattern_params(bytes: u64, threads: u32) -> BandwidthParams {
    BandwidthParams { n_vec4: (bytes / 16) as u32, threads, _pad: [0; 2] }
}

/// The bits that invocation `i` of a pattern stores (shaders/read_bandwidth.wgsl and
/// read_bandwidth_int64.wgsl): the f32 patterns sum 1.0 four times per element they read; the
/// u64 one sums four u64 of 2^32 + 1 per element and stores the low 32 bits as a u32.
fn expected_sum_bits(kernel: Kernel, bytes: u64, threads: u32, i: u32) -> u32 {
    // Elements i, i + step, ... below `len` (counted from the invocation's first).
    let reads = |len: u32, first: u32, step: u32| if first < len { (len - first).div_ceil(step) } else { 0 };
    let n_vec4 = (bytes / 16) as u32;
    let chunk = |elements: u32| elements / (threads / 8);
    match kernel {
        Kernel::ReadBandwidth => (4.0 * reads(n_vec4, i, threads) as f32).to_bits(),
        Kernel::ReadBandwidthChunks => (4.0 * reads(chunk(n_vec4), i % 8, 8) as f32).to_bits(),
        _ => 4 * reads(chunk(n_vec4 / 2), i % 8, 8),
    }
}

/// Seconds per scan of (batch 1, t_len, d_inner, d_state) with each scan kernel.
pub struct ScanTimes {
    /// The chunked parallel scan (ScanKind::Chunked).
    pub chunked: f64,
    /// The baseline issue 5 names: one invocation per (channel, state), as llama.cpp's WebGPU
    /// backend runs it (ScanKind::PerState, with subgroups where the device has them).
    pub per_state: f64,
    /// The engine's own sequential scan (ScanKind::Sequential: on CPU devices 4 channels per
    /// invocation with their states in registers, the scan they run prompts with).
    pub sequential: f64,
}

pub fn scan_seconds(ctx: &GpuContext, t_len: usize, d_inner: usize, d_state: usize) -> Result<ScanTimes> {
    let dt_rank = 48;
    let rows = t_len;
    let fill = |label: &str, n: usize, value: f32| upload_f32(ctx, label, &vec![value; n]);
    let x = fill("x", rows * d_inner, 0.5);
    let dt = fill("dt", rows * d_inner, 0.01);
    let xdbl = fill("xdbl", rows * (dt_rank + 2 * d_state), 0.1);
    let xz = fill("xz", rows * 2 * d_inner, 0.3);
    let a = fill("a", d_inner * d_state, -2.0);
    let d_skip = fill("d", d_inner, 1.0);
    let h = fill("h", d_inner * d_state, 0.0);
    let y = storage(ctx, "y", rows * d_inner);
    let scan = Scan {
        x: &x,
        dt: &dt,
        xdbl: &xdbl,
        xz: &xz,
        a: &a,
        d_skip: &d_skip,
        h: &h,
        y: &y,
        batch: 1,
        t_len: t_len as u32,
        d_inner: d_inner as u32,
        d_state: d_state as u32,
        dt_rank: dt_rank as u32,
    };
    let time = |kind: ScanKind| -> Result<f64> {
        let mut tape = Tape::new(ctx, "scan", 1);
        time_best(ctx, &mut tape, 2, |rec| selective_scan(rec, &scan, kind))
    };
    Ok(ScanTimes {
        chunked: time(ScanKind::Chunked)?,
        per_state: time(ScanKind::PerState { subgroups: ctx.adapter.subgroups })?,
        sequential: time(ScanKind::Sequential)?,
    })
}
