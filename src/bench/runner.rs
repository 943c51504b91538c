//! The native benchmark run (`mamba-wgpu bench`): probes, then every shape, dtype and batch.

use std::sync::Arc;
use std::time::Instant;

use crate::error::Result;
use crate::model::config::SsdShape;
use crate::model::{Checkpoint, LoadOptions, Model};
use crate::{GpuContext, Session, WeightDtype};

use super::decode::{fixed_costs, start_decode, time_decode, DecodeRate};
use super::report::{BenchReport, Measurement};
use super::{probes, synthetic};

#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Synthetic shapes to run (names from `synthetic::SHAPES`); ignored when `model_dir` is set.
    pub shapes: Vec<String>,
    pub dtypes: Vec<WeightDtype>,
    pub batches: Vec<usize>,
    pub prompt_lens: Vec<usize>,
    /// Decode steps timed after the warm-up.
    pub decode_steps: usize,
    pub model_dir: Option<std::path::PathBuf>,
    pub adapter: Option<String>,
    /// Sequence length of the scan comparisons (Mamba-1: d_inner 1536, d_state 16; Mamba-2:
    /// mamba2-2.7b's heads; batch 1).
    pub scan_len: usize,
}

impl BenchOptions {
    /// Every shape and dtype, batch 1 and 8, prompts 128 to 8192.
    pub fn full() -> Self {
        BenchOptions {
            shapes: synthetic::SHAPES.iter().map(|s| s.0).filter(|n| !synthetic::LARGE.contains(n)).map(String::from).collect(),
            dtypes: vec![WeightDtype::F32, WeightDtype::F16],
            batches: vec![1, 8],
            prompt_lens: vec![128, 512, 2048, 8192],
            decode_steps: 128,
            model_dir: None,
            adapter: None,
            scan_len: 4096,
        }
    }

    /// The 130m shape in f16 only, a short prompt, fewer decode steps and a shorter scan:
    /// a few minutes on a software device such as lavapipe.
    pub fn quick() -> Self {
        BenchOptions {
            shapes: vec!["mamba-130m".into()],
            dtypes: vec![WeightDtype::F16],
            batches: vec![1],
            prompt_lens: vec![64],
            decode_steps: 32,
            scan_len: 1024,
            ..Self::full()
        }
    }
}

/// Runs the benchmark; `log` receives progress lines (the adapter, the first probes, then the
/// table's header and a row per finished measurement) and `progress` the report so far after
/// each measurement, so a long run that is stopped keeps what it measured.
pub fn run(options: &BenchOptions, log: &mut dyn FnMut(&str), progress: &mut dyn FnMut(&BenchReport)) -> Result<BenchReport> {
    // A bad --model fails before the probes spend their minutes.
    if let Some(path) = &options.model_dir {
        if path.is_file() {
            crate::gguf::GgufCheckpoint::open(path)?;
        } else {
            Checkpoint::open(path)?;
        }
    }
    let ctx = pollster::block_on(GpuContext::new(options.adapter.as_deref()))?;
    log(&format!("adapter: {}", ctx.adapter));
    let mut probe = probes::BandwidthProbe::new(&ctx)?;
    let bandwidth = probe.measure(&ctx)?;
    log(&format!("read bandwidth: {bandwidth:.1} GB/s"));
    let scan = probes::scan_seconds(&ctx, options.scan_len, 1536, 16)?;
    log(&format!(
        "scan L={}: chunked {:.2} ms, one invocation per (channel, state) {:.2} ms, the engine's sequential scan {:.2} ms",
        options.scan_len,
        scan.chunked * 1e3,
        scan.per_state * 1e3,
        scan.sequential * 1e3
    ));
    let ssd_shape = SsdShape { n_heads: 80, head_dim: 64, n_groups: 1, dt_min: 0.0, dt_max: f32::INFINITY };
    let ssd = probes::ssd_seconds(&ctx, options.scan_len, ssd_shape, 128)?;
    log(&format!(
        "Mamba-2 scan L={} (mamba2-2.7b heads): chunked SSD {:.2} ms, sequential {:.2} ms",
        options.scan_len,
        ssd.chunked * 1e3,
        ssd.sequential * 1e3
    ));
    let fixed = pollster::block_on(fixed_costs(&ctx))?;
    log(&format!("a submit's round trip: {:.3} ms; an empty dispatch: {:.3} ms", fixed.round_trip_ms, fixed.empty_dispatch_ms));
    let mut report = BenchReport::new(&ctx, bandwidth, &scan, &ssd, options.scan_len, fixed);
    log(BenchReport::header());

    let specs: Vec<ModelSpec> = match &options.model_dir {
        Some(dir) => vec![ModelSpec::Folder(dir.clone())],
        None => options.shapes.iter().map(|s| ModelSpec::Synthetic(s.clone())).collect(),
    };
    for dtype in &options.dtypes {
        for spec in &specs {
            if let Some(reason) = spec.too_large(&ctx, *dtype)? {
                log(&format!("skipping {}: {reason}", spec.name()));
                continue;
            }
            let model = match spec.load(&ctx, *dtype) {
                Ok(model) => Arc::new(model),
                // Out of GPU memory: the shape does not fit this adapter.
                Err(crate::Error::Gpu(reason)) if reason.to_lowercase().contains("memory") => {
                    log(&format!("skipping {}: {reason}", spec.name()));
                    continue;
                }
                Err(e) => return Err(e),
            };
            for &batch in &options.batches {
                measure_model(&model, batch, options, &mut probe, &mut |m| {
                    log(&m.line());
                    // The run's best bandwidth: every row's roofline is the best of its probes.
                    report.read_bandwidth_gb_s = report.read_bandwidth_gb_s.max(m.read_bandwidth_gb_s);
                    report.results.push(m);
                    progress(&report);
                })?;
            }
        }
    }
    Ok(report)
}

/// A model to measure: a synthetic one of a released shape, or a checkpoint folder.
enum ModelSpec {
    Synthetic(String),
    Folder(std::path::PathBuf),
}

impl ModelSpec {
    fn name(&self) -> String {
        match self {
            ModelSpec::Synthetic(name) => name.clone(),
            ModelSpec::Folder(dir) => dir.display().to_string(),
        }
    }

    /// Why a synthetic shape cannot be measured here, if it cannot: its weights exceed the
    /// host's available memory where the adapter is a CPU device (whose memory is the host's).
    /// A real GPU's own memory is not visible to wgpu: there a load that runs out of it is
    /// reported as skipped.
    fn too_large(&self, ctx: &GpuContext, dtype: WeightDtype) -> Result<Option<String>> {
        let ModelSpec::Synthetic(name) = self else { return Ok(None) };
        let bytes = (synthetic::config_for(name)?.parameter_count() as f64 * dtype.bytes_per_value()) as u64;
        let gb = |b: u64| b as f64 / 1e9;
        if ctx.adapter.device_type.contains("Cpu") {
            if let Some(available) = host_available_bytes() {
                if bytes > available / 10 * 9 {
                    return Ok(Some(format!("its {:.1} GB of weights exceed the host's {:.1} GB of available memory", gb(bytes), gb(available))));
                }
            }
        }
        Ok(None)
    }

    fn load(&self, ctx: &Arc<GpuContext>, dtype: WeightDtype) -> Result<Model> {
        let options = LoadOptions { weight_dtype: Some(dtype), ..Default::default() };
        match self {
            ModelSpec::Synthetic(name) => {
                let source = synthetic::SyntheticModel { config: synthetic::config_for(name)?, name: name.clone(), dtype };
                pollster::block_on(Model::load_checked(ctx.clone(), &source, options, &mut |_| {}))
            }
            ModelSpec::Folder(path) if path.is_file() => {
                pollster::block_on(Model::load_checked(ctx.clone(), &crate::gguf::GgufCheckpoint::open(path)?, options, &mut |_| {}))
            }
            ModelSpec::Folder(dir) => pollster::block_on(Model::load_checked(ctx.clone(), &Checkpoint::open(dir)?, options, &mut |_| {})),
        }
    }
}

/// MemAvailable of /proc/meminfo (Linux), in bytes.
fn host_available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// Bytes one decode step must read at least: every weight except the embedding table (only
/// one row of it is read, unless it doubles as the LM head), plus the state read and written.
pub fn decode_bytes_per_step(model: &Model, state_bytes: u64) -> u64 {
    let w = &model.weights;
    let unread_embedding = if w.lm_head.is_some() { w.embedding.size_bytes() } else { 0 };
    model.weight_bytes() - unread_embedding + 2 * state_bytes
}

/// Decode is timed in this many rounds, each right after a bandwidth measurement, and the best
/// round is set against the best bandwidth: both as undisturbed as the machine allows.
const DECODE_ROUNDS: usize = 4;

fn measure_model(
    model: &Arc<Model>,
    batch: usize,
    o: &BenchOptions,
    probe: &mut probes::BandwidthProbe,
    done: &mut dyn FnMut(Measurement),
) -> Result<()> {
    let c = &model.config;
    let vocab = c.vocab_size as u32;
    let prompt = |len: usize| -> Vec<Vec<u32>> { (0..batch).map(|b| (0..len).map(|i| ((i * 31 + b * 7 + 1) as u32) % vocab).collect()).collect() };

    // Decode as generation runs it, sampled on the GPU with the default options: one token
    // per submit, then the adapter's tokens per submit, in the same run.
    let mut session = Session::new(model.clone(), batch)?;
    let mut decodes = Vec::new();
    for steps in [1, model.ctx.tokens_per_submit()] {
        decodes.push(measure_decode(&mut session, steps, o.decode_steps, &prompt(16), probe)?);
    }
    let (state_bytes, _) = session.memory_bytes();

    for &len in &o.prompt_lens {
        session.reset();
        let prompts = prompt(len);
        // Warm-up on a short prompt so pipelines and tapes exist.
        pollster::block_on(session.prefill_greedy(&prompt(len.min(session.prefill_chunk()))))?;
        session.reset();
        let start = Instant::now();
        pollster::block_on(session.prefill_greedy(&prompts))?;
        let prefill_tps = (len * batch) as f64 / start.elapsed().as_secs_f64();
        let (state, scratch) = session.memory_bytes();
        for Decode { rate, bandwidth } in &decodes {
            let roofline_tps = batch as f64 * bandwidth * 1e9 / decode_bytes_per_step(model, state_bytes) as f64;
            done(Measurement {
                model: model.source.clone(),
                dtype: model.weight_dtype.name().into(),
                batch,
                prompt_len: len,
                tokens_per_submit: rate.tokens_per_submit,
                dispatches_per_token: rate.dispatches_per_token,
                prefill_tokens_per_s: prefill_tps,
                decode_tokens_per_s: rate.tokens_per_s,
                decode_roofline_fraction: rate.tokens_per_s / roofline_tps,
                read_bandwidth_gb_s: *bandwidth,
                gpu_memory_bytes: model.weight_bytes() + state + scratch,
                weight_bytes: model.weight_bytes(),
                state_bytes_per_sequence: state / batch as u64,
            });
        }
    }
    Ok(())
}

/// Decode at `steps` tokens per submit, and its roofline's bandwidth: the best of the probes
/// run between its rounds.
struct Decode {
    rate: DecodeRate,
    bandwidth: f64,
}

/// Decode tokens/s of the batch at `steps` tokens per submit, sampled on the GPU: the best of
/// DECODE_ROUNDS rounds of about `tokens` steps, each right after a bandwidth probe.
fn measure_decode(session: &mut Session, steps: usize, tokens: usize, prompts: &[Vec<u32>], probe: &mut probes::BandwidthProbe) -> Result<Decode> {
    let mut next = pollster::block_on(start_decode(session, prompts))?;
    // Warm-up: pipelines, tapes, the first recordings.
    pollster::block_on(time_decode(session, steps, 2, &mut next))?;
    let submits = tokens.div_ceil(DECODE_ROUNDS).div_ceil(steps);
    let mut bandwidth = 0f64;
    let mut best: Option<DecodeRate> = None;
    for _ in 0..DECODE_ROUNDS {
        bandwidth = bandwidth.max(probe.measure(&session.model().ctx)?);
        let rate = pollster::block_on(time_decode(session, steps, submits, &mut next))?;
        if best.as_ref().is_none_or(|b| rate.tokens_per_s > b.tokens_per_s) {
            best = Some(rate);
        }
    }
    let rate = best.ok_or_else(|| crate::Error::invalid("bench", "no decode round ran"))?;
    Ok(Decode { rate, bandwidth })
}
