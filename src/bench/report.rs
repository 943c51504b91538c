//! The benchmark's figures: a table for people, JSON for machines.

use serde::Serialize;

use super::decode::FixedCosts;
use super::probes::{ScanTimes, SsdTimes};
use crate::GpuContext;

#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    pub model: String,
    pub dtype: String,
    pub batch: usize,
    pub prompt_len: usize,
    /// Decode steps per submit (each sampled on the GPU and fed to the next).
    pub tokens_per_submit: usize,
    /// Compute dispatches per decode step (the sampling step included).
    pub dispatches_per_token: f64,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
    /// decode tokens/s over (read bandwidth x batch / bytes read per step)
    pub decode_roofline_fraction: f64,
    /// The read bandwidth of that roofline: the best of the probes run between decode rounds.
    pub read_bandwidth_gb_s: f64,
    /// weights + state + scratch
    pub gpu_memory_bytes: u64,
    pub weight_bytes: u64,
    pub state_bytes_per_sequence: u64,
}

impl Measurement {
    pub fn line(&self) -> String {
        format!(
            "{:<15} {:<4} {:>5} {:>6} {:>3} {:>8.1} {:>12.1} {:>11.1} {:>8.0}% {:>9.1} {:>7.3}",
            self.model,
            self.dtype,
            self.batch,
            self.prompt_len,
            self.tokens_per_submit,
            self.dispatches_per_token,
            self.prefill_tokens_per_s,
            self.decode_tokens_per_s,
            self.decode_roofline_fraction * 100.0,
            self.gpu_memory_bytes as f64 / 1e6,
            self.gpu_memory_bytes as f64 / self.weight_bytes as f64,
        )
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub adapter: String,
    pub backend: String,
    pub device_type: String,
    /// Seconds since the Unix epoch.
    pub timestamp: u64,
    /// The best read bandwidth the streaming kernel reached in the run.
    pub read_bandwidth_gb_s: f64,
    /// Time of the sequential-in-time scan with one invocation per (channel, state) (as
    /// llama.cpp's WebGPU backend runs it) over the chunked scan's (> 1: the chunked scan is
    /// faster).
    pub scan_speedup: f64,
    /// The same against the engine's own sequential scan, one invocation per channel.
    pub scan_speedup_vs_engine_sequential: f64,
    pub scan_len: usize,
    /// Mamba-2: time of the sequential scan over the chunked SSD scan's, at `ssd_len` tokens
    /// of the mamba2-2.7b head shape (80 heads of 64 channels, d_state 128, one group).
    pub ssd_speedup: f64,
    pub ssd_len: usize,
    /// A submit's round trip and an empty dispatch on this adapter: what every decode step
    /// pays whatever its work.
    pub fixed_costs: FixedCosts,
    pub results: Vec<Measurement>,
}

impl BenchReport {
    pub fn new(ctx: &GpuContext, read_bandwidth_gb_s: f64, scan: &ScanTimes, ssd: &SsdTimes, scan_len: usize, fixed_costs: FixedCosts) -> Self {
        BenchReport {
            adapter: ctx.adapter.name.clone(),
            backend: ctx.adapter.backend.clone(),
            device_type: ctx.adapter.device_type.clone(),
            timestamp: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            read_bandwidth_gb_s,
            scan_speedup: scan.per_state / scan.chunked,
            scan_speedup_vs_engine_sequential: scan.sequential / scan.chunked,
            scan_len,
            ssd_speedup: ssd.sequential / ssd.chunked,
            ssd_len: scan_len,
            fixed_costs,
            results: Vec::new(),
        }
    }

    pub fn header() -> &'static str {
        "model           type batch prompt   k disp/tok prefill tok/s decode tok/s roofline    mem MB mem/wts"
    }

    pub fn table(&self) -> String {
        let mut s = format!(
            "adapter: {} ({}, {})\nread bandwidth (streaming kernel): {:.1} GB/s\n\
             chunked scan vs sequential scans (L={}, d_inner=1536, d_state=16): {:.2}x against one invocation per (channel, state), \
             {:.2}x against the engine's sequential scan\n\
             Mamba-2 chunked SSD scan vs the sequential one (L={}, 80 heads x 64, d_state 128): {:.2}x\n\
             fixed costs: a submit's round trip {:.3} ms, an empty dispatch {:.3} ms\n\n{}\n",
            self.adapter,
            self.backend,
            self.device_type,
            self.read_bandwidth_gb_s,
            self.scan_len,
            self.scan_speedup,
            self.scan_speedup_vs_engine_sequential,
            self.ssd_len,
            self.ssd_speedup,
            self.fixed_costs.round_trip_ms,
            self.fixed_costs.empty_dispatch_ms,
            Self::header()
        );
        for m in &self.results {
            s += &m.line();
            s.push('\n');
        }
        s
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}
