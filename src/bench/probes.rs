//! Baselines measured on the same adapter in the same run: the read bandwidth of a plain
//! streaming kernel (the decode roofline) and the chunked scan against the sequential one.

use std::time::Instant;

use bytemuck::{Pod, Zeroable};

use super::kernels::{scan_per_state, BenchKernel};
use crate::error::{Error, Result};
use crate::gpu::kernels::SSD_CHUNK;
use crate::gpu::readback::read_f32;
use crate::gpu::tensor::{storage, upload_f32, TensorView};
use crate::gpu::{GpuContext, Tape};
use crate::model::config::SsdShape;
use crate::ops::scan::{selective_scan, Scan, ScanKind};
use crate::ops::ssd::{chunk_buffer_elements, ssd_scan, Ssd, SsdKind};

/// shaders/bench/read_bandwidth.wgsl's parameters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BandwidthParams {
    pub n_vec4: u32,
    pub threads: u32,
    pub _pad: [u32; 2],
}

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
/// faster of its two access patterns (shaders/bench/read_bandwidth.wgsl), grid-strided and a
/// chunk per workgroup. Measured again next to each decode measurement, since a shared
/// machine's bandwidth drifts.
pub struct BandwidthProbe {
    /// Bytes of each source buffer.
    bytes: u64,
    /// PROBE_BYTES in buffers of at most one storage binding each, read one after the other.
    srcs: Vec<wgpu::Buffer>,
    sums: wgpu::Buffer,
    /// One per pattern: a tape replays a fixed kernel sequence.
    tapes: [Tape; 2],
}

/// Bytes the probe streams per pass: more than any cache (a server CPU's L3 can be 260 MiB, an
/// H200's L2 is 50 MB). Where a storage binding is smaller (lavapipe: 128 MiB), in several
/// buffers.
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

/// (kernel, invocations, workgroups) of each pattern.
const PATTERNS: [(BenchKernel, u32, u32); 2] =
    [(BenchKernel::ReadBandwidth, STRIDED_THREADS, STRIDED_THREADS / 256), (BenchKernel::ReadBandwidthChunks, CHUNKS * 8, CHUNKS)];

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
            tapes: ["bandwidth strided", "bandwidth chunks"].map(|label| Tape::new(ctx, label, buffers)),
        };
        probe.check(ctx)?;
        Ok(probe)
    }

    /// One measurement in GB/s: the fastest pattern, each the best of its repetitions.
    pub fn measure(&mut self, ctx: &GpuContext) -> Result<f64> {
        let (srcs, sums) = (&self.srcs, &self.sums);
        let pass_bytes = self.bytes * srcs.len() as u64;
        // About 2 GiB per timed submit: enough that the submit's own cost does not count.
        let reps = (4 / srcs.len() as u32).max(1);
        let mut best = 0.0f64;
        for (&(kernel, threads, workgroups), tape) in PATTERNS.iter().zip(&mut self.tapes) {
            let params = pattern_params(self.bytes, threads);
            let seconds =
                time_best(ctx, tape, reps, |rec| srcs.iter().try_for_each(|src| rec.dispatch(kernel, &params, &[src, sums], [workgroups, 1, 1])))?;
            best = best.max(pass_bytes as f64 / seconds / 1e9);
        }
        Ok(best)
    }

    /// Every word of the source is 1.0, so each invocation's sum is known exactly
    /// (`expected_sum_bits`).
    fn check(&mut self, ctx: &GpuContext) -> Result<()> {
        const FILL_BYTES: u64 = 16 << 20; // written a slice at a time: a buffer is up to 512 MiB
        let fill = vec![1.0f32; (FILL_BYTES.min(self.bytes) / 4) as usize];
        for src in &self.srcs {
            for offset in (0..self.bytes).step_by(FILL_BYTES as usize) {
                let len = FILL_BYTES.min(self.bytes - offset) as usize;
                ctx.queue.write_buffer(src, offset, &bytemuck::cast_slice(&fill)[..len]);
            }
        }
        for (&(kernel, threads, workgroups), tape) in PATTERNS.iter().zip(&mut self.tapes) {
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

/// The bits that invocation `i` of a pattern stores (shaders/bench/read_bandwidth.wgsl): it
/// sums 1.0 four times per vec4 it reads.
fn expected_sum_bits(kernel: BenchKernel, bytes: u64, threads: u32, i: u32) -> u32 {
    // Elements i, i + step, ... below `len` (counted from the invocation's first).
    let reads = |len: u32, first: u32, step: u32| if first < len { (len - first).div_ceil(step) } else { 0 };
    let n_vec4 = (bytes / 16) as u32;
    let chunk = |elements: u32| elements / (threads / 8);
    let count = match kernel {
        BenchKernel::ReadBandwidthChunks => reads(chunk(n_vec4), i % 8, 8),
        _ => reads(n_vec4, i, threads),
    };
    (4.0 * count as f32).to_bits()
}

/// Seconds per scan of (batch 1, t_len, d_inner, d_state) with each scan kernel.
pub struct ScanTimes {
    /// The chunked parallel scan (ScanKind::Chunked).
    pub chunked: f64,
    /// The baseline: one invocation per (channel, state), as llama.cpp's WebGPU backend runs
    /// it (with subgroups where the device has them).
    pub per_state: f64,
    /// The engine's own sequential scan, one invocation per channel (ScanKind::Sequential).
    pub sequential: f64,
}

pub fn scan_seconds(ctx: &GpuContext, t_len: usize, d_inner: usize, d_state: usize) -> Result<ScanTimes> {
    let dt_rank = 48u32;
    let rows = t_len;
    let fill = |label: &str, n: usize, value: f32| upload_f32(ctx, label, &vec![value; n]);
    let x = fill("x", rows * d_inner, 0.5);
    let dt = fill("dt", rows * d_inner, 0.01);
    let xdbl = fill("xdbl", rows * (dt_rank as usize + 2 * d_state), 0.1);
    let xz = fill("xz", rows * 2 * d_inner, 0.3);
    let a = fill("a", d_inner * d_state, -2.0);
    let d_skip = fill("d", d_inner, 1.0);
    let h = fill("h", d_inner * d_state, 0.0);
    let y = storage(ctx, "y", rows * d_inner);
    let (rows, di, n) = (rows as u32, d_inner as u32, d_state as u32);
    let scan = Scan {
        x: TensorView::f32(&x, rows, di),
        dt: TensorView::f32(&dt, rows, di),
        xdbl: TensorView::f32(&xdbl, rows, dt_rank + 2 * n),
        z: TensorView::f32(&xz, rows, 2 * di).columns(di, di),
        a: TensorView::f32(&a, di, n),
        d_skip: TensorView::vector(&d_skip, di),
        h: TensorView::f32(&h, di, n),
        y: TensorView::f32(&y, rows, di),
        batch: 1,
        t_len: rows,
    };
    let time = |record: &dyn Fn(&mut crate::gpu::Recorder) -> Result<()>| -> Result<f64> {
        let mut tape = Tape::new(ctx, "scan", 1);
        time_best(ctx, &mut tape, 2, record)
    };
    Ok(ScanTimes {
        chunked: time(&|rec| selective_scan(rec, &scan, ScanKind::Chunked))?,
        per_state: time(&|rec| scan_per_state(rec, &scan, ctx.adapter.subgroups))?,
        sequential: time(&|rec| selective_scan(rec, &scan, ScanKind::Sequential))?,
    })
}

/// Seconds per Mamba-2 scan of (batch 1, t_len) with a head shape, chunked (SSD) and
/// sequential (one step after another, each channel's states spread over 16 invocations).
pub struct SsdTimes {
    pub chunked: f64,
    pub sequential: f64,
}

/// Tokens per scan call of the Mamba-2 probe: the session's default prefill chunk, whose chunk
/// states fit one storage binding at the released shapes.
const SSD_PIECE: usize = 512;

/// Both kernels over t_len tokens as the session runs them: in pieces of SSD_PIECE tokens (the
/// same inputs each time), the state carried from piece to piece.
pub fn ssd_seconds(ctx: &GpuContext, t_len: usize, shape: SsdShape, d_state: usize) -> Result<SsdTimes> {
    let piece = t_len.clamp(1, SSD_PIECE);
    let d_inner = shape.n_heads * shape.head_dim;
    let width = d_inner + 2 * shape.n_groups * d_state;
    let fill = |label: &str, n: usize, value: f32| upload_f32(ctx, label, &vec![value; n]);
    let xbc = fill("xbc", piece * width, 0.1);
    let dt = fill("dt", piece * shape.n_heads, -4.0);
    let dt_bias = fill("dt_bias", shape.n_heads, 0.0);
    let a = fill("a", shape.n_heads, -2.0);
    let d_skip = fill("d", shape.n_heads, 1.0);
    let h = fill("h", d_inner * d_state, 0.0);
    let y = storage(ctx, "y", piece * d_inner);
    let (state_len, decay_len) = chunk_buffer_elements(piece, 1, &shape, d_state);
    let (chunk_state, chunk_decay) = (storage(ctx, "chunk_state", state_len), storage(ctx, "chunk_decay", decay_len));
    let (rows, heads, n) = (piece as u32, shape.n_heads as u32, d_state as u32);
    let chunks = rows.div_ceil(SSD_CHUNK);
    let op = Ssd {
        shape,
        d_state: n,
        xbc: TensorView::f32(&xbc, rows, width as u32),
        dt_raw: TensorView::f32(&dt, rows, heads),
        dt_bias: TensorView::vector(&dt_bias, heads),
        a: TensorView::vector(&a, heads),
        d_skip: TensorView::vector(&d_skip, heads),
        h: TensorView::f32(&h, d_inner as u32, n),
        y: TensorView::f32(&y, rows, d_inner as u32),
        gate: None,
        chunk_state: Some(TensorView::f32(&chunk_state, chunks * d_inner as u32, n)),
        chunk_decay: Some(TensorView::f32(&chunk_decay, chunks, heads)),
        batch: 1,
        t_len: rows,
    };
    let pieces = t_len.div_ceil(piece);
    let time = |kind: SsdKind| -> Result<f64> {
        let mut tape = Tape::new(ctx, "ssd", 3 * pieces);
        time_best(ctx, &mut tape, 1, |rec| (0..pieces).try_for_each(|_| ssd_scan(rec, &op, kind)))
    };
    Ok(SsdTimes { chunked: time(SsdKind::Chunked)?, sequential: time(SsdKind::Sequential)? })
}
