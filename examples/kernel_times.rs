//! Time per dispatch of each forward-pass kernel at the shapes of mamba-130m (and the in_proj of
//! 2.8b), on the adapter wgpu picks: `cargo run --release --example kernel_times`.
//!
//! Each kernel is dispatched up to 50 times in one compute pass (each dispatch waits for the
//! one before, as in a forward pass; fewer where one dispatch takes long, as on a CPU device),
//! best of 4 submits. The same weights are read again and again there, so a cache may hold
//! them; the last section therefore times a decode step of a synthetic 130m model (f16) kernel
//! by kernel, each over the model's 24 layers with their own weights, against the whole step.
//! The prefill scans are timed by the benchmark's own scan comparison
//! (`bench::probes::scan_seconds`). Baselines from the same run: an empty
//! dispatch (the fixed cost every kernel pays), the streaming read bandwidth (what a matvec
//! could reach) and the same stream converting every f16 to f32 (what an f16 matvec could
//! reach at most). `mamba-wgpu bench` measures whole models; this says where a step's time goes.

use std::sync::Arc;
use std::time::Instant;

use mamba_wgpu::bench::probes::{self, scan_seconds, BandwidthProbe, CHUNKS};
use mamba_wgpu::bench::synthetic::{config_for, SyntheticModel};
use mamba_wgpu::gpu::tensor::{storage, upload_f32, GpuWeight, TensorView, WeightData};
use mamba_wgpu::gpu::{GpuContext, Recorder, Tape};
use mamba_wgpu::model::forward::{layer_conv, record_forward, LogitsOut, Scratch, StateBuffers};
use mamba_wgpu::model::weights::SsmWeights;
use mamba_wgpu::model::{LoadOptions, Model};
use mamba_wgpu::ops::argmax::argmax;
use mamba_wgpu::ops::conv1d::{conv1d_silu, Conv1d};
use mamba_wgpu::ops::linear::{linear, linear_conv_step, InputNorm, Linear};
use mamba_wgpu::ops::norm::{add_rms_norm, AddRmsNorm};
use mamba_wgpu::ops::scan::{scan_step_dt, scan_step_fused, ScanStepDt, ScanStepFused};
use mamba_wgpu::WeightDtype;

const REPS: usize = 50;
/// Dispatches one timed submit may hold: REPS of one kernel, or a few decode steps.
const MAX_DISPATCHES: usize = 1024;

fn wait(ctx: &GpuContext) {
    let _ = ctx.device.poll(wgpu::PollType::wait_indefinitely());
}

/// Seconds per call of `record` (which records one op, or a few), best of 4 submits.
fn time(ctx: &GpuContext, mut record: impl FnMut(&mut Recorder) -> mamba_wgpu::Result<()>) -> mamba_wgpu::Result<f64> {
    let mut tape = Tape::new(ctx, "kernel_times", MAX_DISPATCHES);
    let mut run = |tape: &mut Tape, reps: usize| -> mamba_wgpu::Result<f64> {
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        let mut rec = tape.record(ctx);
        for _ in 0..reps {
            record(&mut rec)?;
        }
        rec.encode(&mut encoder);
        wait(ctx);
        let start = Instant::now();
        ctx.queue.submit([encoder.finish()]);
        wait(ctx);
        Ok(start.elapsed().as_secs_f64() / reps as f64)
    };
    // About 0.2 s per submit: REPS on a GPU, fewer on a CPU device.
    let first = run(&mut tape, 1)?;
    let dispatches_per_call = tape.slots().max(1);
    let reps = ((0.2 / first) as usize).clamp(1, REPS).min(MAX_DISPATCHES / dispatches_per_call);
    let mut best = first;
    for _ in 0..4 {
        best = best.min(run(&mut tape, reps)?);
    }
    Ok(best)
}

/// Seconds per dispatch of `wgsl`'s `main` over `buffers` (bindings 0, 1, ...), `reps`
/// dispatches of `workgroups` in one pass, best of 4 submits. Compiled as the engine compiles
/// its kernels, with wgpu's default runtime checks.
fn raw_dispatch_seconds(ctx: &GpuContext, wgsl: &str, buffers: &[&wgpu::Buffer], workgroups: u32, reps: usize) -> f64 {
    let descriptor = wgpu::ShaderModuleDescriptor { label: Some("baseline"), source: wgpu::ShaderSource::Wgsl(wgsl.into()) };
    let module = ctx.device.create_shader_module(descriptor);
    let pipeline = ctx.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("baseline"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let entries: Vec<_> =
        buffers.iter().enumerate().map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() }).collect();
    let bind_group =
        ctx.device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &pipeline.get_bind_group_layout(0), entries: &entries });
    let mut best = f64::MAX;
    for _ in 0..4 {
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            for _ in 0..reps {
                pass.dispatch_workgroups(workgroups, 1, 1);
            }
        }
        wait(ctx);
        let start = Instant::now();
        ctx.queue.submit([encoder.finish()]);
        wait(ctx);
        best = best.min(start.elapsed().as_secs_f64() / reps as f64);
    }
    best
}

/// What converting f16 costs a stream, the least an f16 matvec does besides reading: GB/s of
/// the bandwidth probe's chunked pattern (shaders/bench/read_bandwidth.wgsl, main_chunks: each
/// workgroup of 8 reads its own chunk with 16-byte loads) summing the words as they are, then
/// converting every half to f32 (`unpack2x16float`) and summing those.
fn stream_with_and_without_unpacking(ctx: &GpuContext) -> (f64, f64) {
    // One of the probe's source buffers (the probe reads several where a binding is small).
    let bytes = probes::source_bytes(ctx);
    let src = storage(ctx, "stream source", (bytes / 4) as usize);
    let sums = storage(ctx, "stream sums", (CHUNKS * 8) as usize);
    let (element, zero, as_sum, halves) = (
        "vec4<u32>",
        "vec4<u32>(0u)",
        "acc.x + acc.y + acc.z + acc.w",
        "vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y)) + vec4<f32>(unpack2x16float(v.z), unpack2x16float(v.w))",
    );
    let kernel = |init: &str, add: &str, result: &str| {
        format!(
            "@group(0) @binding(0) var<storage, read> src: array<{element}>;
            @group(0) @binding(1) var<storage, read_write> sums: array<u32>;
            @compute @workgroup_size(8)
            fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>) {{
                let chunk = arrayLength(&src) / {CHUNKS}u;
                var acc = {init};
                for (var i = t; i < chunk; i += 8u) {{
                    let v = src[g.x * chunk + i];
                    acc += {add};
                }}
                sums[g.x * 8u + t] = {result};
            }}"
        )
    };
    let as_words = kernel(zero, "v", as_sum);
    let unpacked = kernel("vec4<f32>(0.0)", halves, "bitcast<u32>(acc.x + acc.y + acc.z + acc.w)");
    let gb_s = |wgsl: &str| bytes as f64 / raw_dispatch_seconds(ctx, wgsl, &[&src, &sums], CHUNKS, 1) / 1e9;
    // The two take turns, the best of 3 turns each: a shared machine's bandwidth drifts
    // within seconds, and one measured after the other once read 1.02x.
    let (mut words, mut halves) = (0.0f64, 0.0f64);
    for _ in 0..3 {
        words = words.max(gb_s(&as_words));
        halves = halves.max(gb_s(&unpacked));
    }
    (words, halves)
}

fn report(name: &str, seconds: f64, figure: &str) {
    println!("{name:<44} {:>9.1} us  {figure}", seconds * 1e6);
}

fn main() -> mamba_wgpu::Result<()> {
    let ctx = pollster::block_on(GpuContext::new(None))?;
    let bandwidth = BandwidthProbe::new(&ctx)?.measure(&ctx)?;
    println!("adapter: {}", ctx.adapter);
    let (words, halves) = stream_with_and_without_unpacking(&ctx);
    println!(
        "baselines: streaming read {bandwidth:.1} GB/s (the probe; its chunked pattern {words:.1} GB/s here, converting every \
         f16 {halves:.1} GB/s, {:.2}x); empty dispatch (64 workgroups) {:.1} us\n",
        halves / words,
        pollster::block_on(mamba_wgpu::bench::decode::fixed_costs(&ctx)).expect("empty dispatches").empty_dispatch_ms * 1e3
    );

    // mamba-130m: d_model, d_inner, d_state, dt_rank, vocab; prefill chunk of 512 tokens.
    let (d, di, n, r, vocab, t) = (768u32, 1536u32, 16u32, 48u32, 50280u32, 512u32);
    let values = |len: u32, v: f32| upload_f32(&ctx, "values", &vec![v; len as usize]);
    let weight = |rows: u32, cols: u32, f16: bool| -> mamba_wgpu::Result<GpuWeight> {
        let count = (rows * cols) as usize;
        if f16 {
            let bits: Vec<u16> = (0..count).map(|i| 0x2000 ^ (i as u16 & 0x3ff)).collect();
            GpuWeight::upload(&ctx, "w", rows as usize, cols as usize, WeightData::F16(&bits))
        } else {
            let v: Vec<f32> = (0..count).map(|i| ((i % 97) as f32 - 48.0) * 1e-3).collect();
            GpuWeight::upload(&ctx, "w", rows as usize, cols as usize, WeightData::F32(&v))
        }
    };
    let x = values(t * 2 * di, 0.01);
    let out = storage(&ctx, "out", (t * 2 * di).max(vocab) as usize);

    println!("decode (one token)");
    for (label, rows, cols) in
        [("in_proj", 2 * di, d), ("x_proj", r + 2 * n, di), ("out_proj", d, di), ("lm_head", vocab, d), ("in_proj of 2.8b", 10240, 2560)]
    {
        for f16 in [true, false] {
            let w = weight(rows, cols, f16)?;
            let s = time(&ctx, |rec| linear(rec, &Linear::new(TensorView::f32(&x, 1, cols), &w, TensorView::f32(&out, 1, rows))))?;
            let gb_s = w.size_bytes() as f64 / s / 1e9;
            let dtype = if f16 { "f16" } else { "f32" };
            report(&format!("matvec {label} {rows}x{cols} {dtype}"), s, &format!("{gb_s:.1} GB/s ({:.0}% of streaming)", 100.0 * gb_s / bandwidth));
        }
    }
    let residual = values(t * d, 0.1);
    let norm_weight = values(d, 1.0);
    let normed = storage(&ctx, "normed", (t * d) as usize);
    let xz = values(t * 2 * di, 0.1);
    let (conv_w, conv_b, conv_state) = (values(di * 4, 0.1), values(di, 0.1), values(di * 4, 0.1));
    let x_conv = storage(&ctx, "x_conv", (t * di) as usize);
    let (xdbl, a, d_skip, h) = (values(r + 2 * n, 0.1), values(di * n, -0.5), values(di, 1.0), values(di * n, 0.0));
    let dt_proj = weight(di, r, false)?;
    let norm = |rows: u32| AddRmsNorm {
        residual: TensorView::f32(&residual, rows, d),
        delta: Some(TensorView::f32(&normed, rows, d)),
        weight: Some(TensorView::vector(&norm_weight, d)),
        out: TensorView::f32(&out, rows, d),
        batch: 1,
        t_len: rows,
        last_only: false,
        eps: 1e-5,
    };
    let conv = |rows: u32| Conv1d {
        x: TensorView::f32(&xz, rows, 2 * di).columns(0, di),
        weight: TensorView::f32(&conv_w, di, 4),
        bias: Some(TensorView::vector(&conv_b, di)),
        state: TensorView::f32(&conv_state, di, 4),
        out: TensorView::f32(&x_conv, rows, di),
        batch: 1,
        t_len: rows,
    };
    report("add_rms_norm", time(&ctx, |rec| add_rms_norm(rec, &norm(1)))?, "");
    report("conv step", time(&ctx, |rec| conv1d_silu(rec, &conv(1)))?, "");
    let step = ScanStepDt {
        x_y: TensorView::f32(&x_conv, 1, di),
        xdbl: TensorView::f32(&xdbl, 1, r + 2 * n),
        z: TensorView::f32(&xz, 1, 2 * di).columns(di, di),
        a: TensorView::f32(&a, di, n),
        d_skip: TensorView::vector(&d_skip, di),
        h: TensorView::f32(&h, di, n),
        dt_proj: &dt_proj,
        dt_bias: TensorView::vector(&conv_b, di),
        batch: 1,
    };
    report("scan step with dt", time(&ctx, |rec| scan_step_dt(rec, &step))?, "");
    let x_proj = weight(r + 2 * n, di, false)?;
    let fused = ScanStepFused {
        x: TensorView::f32(&xz, 1, 2 * di).columns(0, di),
        z_y: TensorView::f32(&xz, 1, 2 * di).columns(di, di),
        x_proj: &x_proj,
        dt_proj: &dt_proj,
        dt_bias: TensorView::vector(&conv_b, di),
        a: TensorView::f32(&a, di, n),
        d_skip: TensorView::vector(&d_skip, di),
        h: TensorView::f32(&h, di, n),
        mixer_norm_eps: None,
        batch: 1,
    };
    report("scan step with x_proj and dt (f32)", time(&ctx, |rec| scan_step_fused(rec, &fused))?, "");

    println!("\nprefill ({t} tokens)");
    report("add_rms_norm", time(&ctx, |rec| add_rms_norm(rec, &norm(t)))?, "");
    report("conv1d", time(&ctx, |rec| conv1d_silu(rec, &conv(t)))?, "");
    // The benchmark's scan comparison at this length (one dispatch per pass: the scan is long).
    let scan = scan_seconds(&ctx, t as usize, di as usize, n as usize)?;
    report("scan chunked", scan.chunked, "");
    report("scan sequential, one invocation per state", scan.per_state, "");
    report("scan sequential, the engine's", scan.sequential, "");
    for (label, rows, cols) in [("in_proj", 2 * di, d), ("x_proj", r + 2 * n, di), ("dt_proj", di, r), ("out_proj", d, di)] {
        for f16 in [true, false] {
            let w = weight(rows, cols, f16)?;
            let s = time(&ctx, |rec| linear(rec, &Linear::new(TensorView::f32(&x, t, cols), &w, TensorView::f32(&out, t, rows))))?;
            let dtype = if f16 { "f16" } else { "f32" };
            report(&format!("matmul {label} {rows}x{cols} {dtype}"), s, &format!("{:.0} GFLOP/s", 2.0 * (t * rows * cols) as f64 / s / 1e9));
        }
    }
    decode_step_by_kernel(&ctx)
}

/// A decode step of a synthetic 130m model with f16 weights, kernel by kernel: each kind over
/// the model's 24 layers with their own weights, as a step reads them, then the whole step.
/// (The synthetic model has no projection biases, so the plain linears below are its ops.)
fn decode_step_by_kernel(ctx: &Arc<GpuContext>) -> mamba_wgpu::Result<()> {
    let dtype = WeightDtype::F16;
    let source = SyntheticModel { config: config_for("mamba-130m")?, name: "mamba-130m".into(), dtype };
    let model =
        pollster::block_on(Model::load_checked(ctx.clone(), &source, LoadOptions { weight_dtype: Some(dtype), ..Default::default() }, &mut |_| {}))?;
    let (state, s) = (StateBuffers::new(ctx, &model, 1), Scratch::new(ctx, &model, 1, 1));
    let c = &model.config;
    let (d, di, vocab) = (c.d_model as u32, c.d_inner as u32, c.vocab_size as u32);
    let v = |buffer, cols| TensorView::f32(buffer, 1, cols);
    let (w, layers) = (&model.weights, model.weights.layers.iter().enumerate());
    let eps = c.norm_eps;
    let proj = |cols| TensorView::f32(&s.proj, 1, 2 * di).columns(cols, di);
    let parts = [
        (
            "in_proj with norm + conv step",
            time(ctx, |rec| {
                layers.clone().try_for_each(|(i, l)| {
                    let norm = Some(InputNorm::rows(eps, Some(TensorView::vector(&l.norm, d))));
                    let in_proj = Linear { norm, ..Linear::new(v(&s.residual, d), &l.in_proj, v(&s.proj, 2 * di)) };
                    linear_conv_step(rec, &in_proj, &layer_conv(&model, &s, &state, i, 1, 1, true))
                })
            })?,
        ),
        (
            "scan step with x_proj and dt",
            time(ctx, |rec| {
                layers.clone().try_for_each(|(i, l)| match &l.ssm {
                    SsmWeights::Selective { x_proj, dt_proj, dt_bias, a, d_skip } => scan_step_fused(
                        rec,
                        &ScanStepFused {
                            x: proj(0),
                            z_y: proj(di),
                            x_proj,
                            dt_proj,
                            dt_bias: TensorView::vector(dt_bias, di),
                            a: TensorView::f32(a, di, c.d_state as u32),
                            d_skip: TensorView::vector(d_skip, di),
                            h: TensorView::f32(&state.ssm[i], di, c.d_state as u32),
                            mixer_norm_eps: c.mixer_rms_eps,
                            batch: 1,
                        },
                    ),
                    SsmWeights::Ssd { .. } => Ok(()),
                })
            })?,
        ),
        (
            "out_proj + residual",
            time(ctx, |rec| {
                layers
                    .clone()
                    .try_for_each(|(_, l)| linear(rec, &Linear { accumulate: true, ..Linear::new(proj(di), &l.out_proj, v(&s.residual, d)) }))
            })?,
        ),
        (
            "embedding, lm_head with norm_f, argmax",
            time(ctx, |rec| {
                mamba_wgpu::ops::embedding::embedding(rec, &w.embedding, TensorView::u32(&s.ids, 1, 1), v(&s.residual, d))?;
                let norm = Some(InputNorm::rows(eps, Some(TensorView::vector(&w.norm_f, d))));
                linear(rec, &Linear { norm, ..Linear::new(v(&s.residual, d), w.lm_head(), v(&s.logits, vocab)) })?;
                argmax(rec, v(&s.logits, vocab), TensorView::u32(&s.next_ids, 1, 1))
            })?,
        ),
    ];
    let step = time(ctx, |rec| {
        record_forward(rec, &model, &s, &state, 1, 1, LogitsOut::Last)?;
        argmax(rec, v(&s.logits, vocab), TensorView::u32(&s.next_ids, 1, 1))
    })?;
    println!("\ndecode step of a mamba-130m f16 model ({} layers), kernel by kernel", c.n_layer);
    for (label, seconds) in parts {
        println!("{label:<44} {:>9.2} ms  {:.0}% of the step", seconds * 1e3, 100.0 * seconds / step);
    }
    let sum: f64 = parts.iter().map(|p| p.1).sum();
    println!("{:<44} {:>9.2} ms  (the whole step: {:.2} ms)", "sum", sum * 1e3, step * 1e3);
    Ok(())
}
