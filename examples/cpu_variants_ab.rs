//! Interleaved A/B of a CPU-device kernel variant, on a synthetic model:
//! `cargo run --release --example cpu_variants_ab -- VARIANT [SHAPE] [f16|f32] [BATCH]`
//! (default mamba-130m f16, batch 1). VARIANT is one of
//! - `int64-loads`: the matvec and matmul loading X and W as u32 (A) or as u64 (B)
//!   (shaders/matrix_loads.wgsl vs matrix_loads_int64.wgsl);
//! - `scan-quads`: the scan steps loading B, C, dt_low, A and the state one value (A) or four
//!   values (B) at a time (shaders/scan_state.wgsl vs scan_state_quads.wgsl);
//! - `scan-int64`: the same four values at a time (A) or eight as four u64 (B;
//!   shaders/scan_state_int64.wgsl, and where d_state is 16 the scans of
//!   scan_sequential_int64.wgsl that hold the state in registers and load vec4s of channels);
//! - `unbounded-loops`: every shader with naga's loop counters (A) or without them (B, the
//!   default; src/gpu/kernels.rs, KernelCache::loop_bounding);
//! - `shared-x`: the matvec's and matmul's invocations each loading X (A) or sharing it
//!   through the subgroup (B; shaders/block_x_lanes.wgsl vs block_x_subgroup.wgsl, and
//!   matmul.wgsl's main_direct vs matmul_subgroup.wgsl);
//! - `fused-norms`: a decode step's norms as dispatches of their own (A) or inside in_proj,
//!   with out_proj adding into the residual (B; GpuContext::fused_norms).
//!
//! The two sessions take turns, each round a 64-token prefill and 3 decode steps, so both see
//! the same machine: on a shared 2-core host the bandwidth drifts by half within minutes, more
//! than the difference measured. Prints the mean of each, the median decode step and in how
//! many rounds B's steps were the faster (a slow phase moves a mean more than these), and
//! checks that both produced the same tokens.

use std::sync::Arc;
use std::time::Instant;

use mamba_wgpu::bench::synthetic::{config_for, SyntheticModel};
use mamba_wgpu::gpu::kernels::ScanLoads;
use mamba_wgpu::{GpuContext, LoadOptions, Model, Session, WeightDtype};

const ROUNDS: usize = 20;
const PROMPT_LEN: usize = 64;
const STEPS_PER_ROUND: usize = 3;

/// One variant's session and running totals.
struct Run {
    session: Session,
    tokens: Vec<u32>,
    prefill_seconds: f64,
    step_seconds: f64,
    /// Each round's mean decode step.
    round_steps: Vec<f64>,
}

/// The context of side A (`on` false) or B (`on` true) of `variant`, with CPU-device kernels.
fn context(variant: &str, on: bool) -> mamba_wgpu::Result<Arc<GpuContext>> {
    let ctx = pollster::block_on(GpuContext::new(None))?.with_kernel_style(false)?;
    match variant {
        "int64-loads" => {
            if !ctx.adapter.shader_int64 {
                return Err(mamba_wgpu::Error::invalid("adapter", format!("{} has no 64-bit integers: nothing to compare", ctx.adapter.name)));
            }
            ctx.with_int64_loads(on)
        }
        "scan-quads" => ctx.with_scan_loads(if on { ScanLoads::Quads } else { ScanLoads::Single }),
        "scan-int64" => ctx.with_scan_loads(if on { ScanLoads::Int64 } else { ScanLoads::Quads }),
        "unbounded-loops" => ctx.with_loop_bounding(!on),
        "shared-x" => ctx.with_shared_x(on),
        "fused-norms" => ctx.with_fused_norms(on),
        other => Err(mamba_wgpu::Error::invalid(
            "variant",
            format!("`{other}`: expected int64-loads, scan-quads, scan-int64, unbounded-loops, shared-x or fused-norms"),
        )),
    }
}

fn main() -> mamba_wgpu::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let variant = args.first().map_or("", |s| s.as_str());
    let shape = args.get(1).map_or("mamba-130m", |s| s.as_str());
    let dtype = match args.get(2).map(|s| s.as_str()) {
        None | Some("f16") => WeightDtype::F16,
        Some("f32") => WeightDtype::F32,
        Some(other) => return Err(mamba_wgpu::Error::invalid("dtype", format!("`{other}`: expected f16 or f32"))),
    };
    let batch: usize = match args.get(3) {
        None => 1,
        Some(b) => {
            b.parse().ok().filter(|b| (1..=8).contains(b)).ok_or_else(|| mamba_wgpu::Error::invalid("batch", format!("`{b}`: expected 1 to 8")))?
        }
    };
    let config = config_for(shape)?;
    let prompts: Vec<Vec<u32>> = (0..batch as u32).map(|b| (0..PROMPT_LEN as u32).map(|i| 1 + (i * 7 + b) % 1000).collect()).collect();

    let mut runs = Vec::new();
    for on in [false, true] {
        let ctx = context(variant, on)?;
        if !on {
            println!("adapter: {}; {shape} {dtype:?} batch {batch}, CPU-device kernels, {variant} off (A) against on (B)", ctx.adapter);
        }
        let source = SyntheticModel { config: config.clone(), name: shape.to_string(), dtype };
        let model = pollster::block_on(Model::load_checked(ctx, &source, LoadOptions { weight_dtype: Some(dtype) }, &mut |_| {}))?;
        let mut session = Session::new(Arc::new(model), batch)?;
        // Warm-up: pipelines, tapes.
        let tokens = pollster::block_on(session.prefill_greedy(&prompts))?;
        pollster::block_on(session.step_greedy(&tokens))?;
        runs.push(Run { session, tokens: Vec::new(), prefill_seconds: 0.0, step_seconds: 0.0, round_steps: Vec::new() });
    }
    for _ in 0..ROUNDS {
        for run in &mut runs {
            run.session.reset();
            let start = Instant::now();
            let mut tokens = pollster::block_on(run.session.prefill_greedy(&prompts))?;
            run.prefill_seconds += start.elapsed().as_secs_f64();
            run.tokens.extend(&tokens);
            let start = Instant::now();
            for _ in 0..STEPS_PER_ROUND {
                tokens = pollster::block_on(run.session.step_greedy(&tokens))?;
                run.tokens.extend(&tokens);
            }
            let step = start.elapsed().as_secs_f64() / STEPS_PER_ROUND as f64;
            run.step_seconds += step;
            run.round_steps.push(step);
        }
    }
    for (run, side) in runs.iter().zip(["A (off)", "B (on)"]) {
        let mut steps = run.round_steps.clone();
        steps.sort_by(f64::total_cmp);
        println!(
            "{side}: prefill {:.1} tokens/s, decode step {:.1} ms (means of {ROUNDS} rounds; median step {:.1} ms)",
            (ROUNDS * PROMPT_LEN * batch) as f64 / run.prefill_seconds,
            run.step_seconds / ROUNDS as f64 * 1e3,
            steps[ROUNDS / 2] * 1e3
        );
    }
    let b_faster = runs[0].round_steps.iter().zip(&runs[1].round_steps).filter(|(a, b)| b < a).count();
    println!("B's decode steps faster in {b_faster} of {ROUNDS} rounds");
    println!(
        "B / A speed: prefill {:.3}x, decode {:.3}x",
        runs[0].prefill_seconds / runs[1].prefill_seconds,
        runs[0].step_seconds / runs[1].step_seconds
    );
    if runs[0].tokens != runs[1].tokens {
        return Err(mamba_wgpu::Error::invalid("tokens", "the two variants produced different tokens"));
    }
    println!("same tokens: yes");
    Ok(())
}
