//! Interleaved A/B of decode steps on a CPU device: the block matvec loading its weights as u32
//! quads against u64 pairs (shaders/weight_units.wgsl vs weight_units_int64.wgsl), on a synthetic
//! model: `cargo run --release --example decode_ab -- [SHAPE] [f16|f32]` (default mamba-130m f16).
//!
//! The two sessions take turns, a few steps each, so both see the same machine: on a shared
//! 2-core host the bandwidth drifts by half within minutes, more than the difference measured.
//! Prints the mean and best step time of each and checks that both produced the same tokens.

use std::sync::Arc;
use std::time::Instant;

use mamba_wgpu::bench::synthetic::{config_for, SyntheticModel};
use mamba_wgpu::{GpuContext, LoadOptions, Model, Session, WeightDtype};

const ROUNDS: usize = 40;
const STEPS_PER_TURN: usize = 3;

fn main() -> mamba_wgpu::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let shape = args.first().map_or("mamba-130m", |s| s.as_str());
    let dtype = match args.get(1).map(|s| s.as_str()) {
        None | Some("f16") => WeightDtype::F16,
        Some("f32") => WeightDtype::F32,
        Some(other) => return Err(mamba_wgpu::Error::invalid("dtype", format!("`{other}`: expected f16 or f32"))),
    };
    let config = config_for(shape)?;
    let probe = pollster::block_on(GpuContext::new(None))?;
    if !probe.adapter.shader_int64 {
        return Err(mamba_wgpu::Error::invalid("adapter", format!("{} has no 64-bit integers: nothing to compare", probe.adapter.name)));
    }
    println!("adapter: {}; {shape} {dtype:?}, CPU-device kernels", probe.adapter);
    drop(probe);

    let mut runs = Vec::new();
    for int64 in [false, true] {
        let ctx = pollster::block_on(GpuContext::new(None))?.with_kernel_style(false)?.with_int64_loads(int64)?;
        let source = SyntheticModel { config: config.clone(), name: shape.to_string(), dtype };
        let model = pollster::block_on(Model::load_checked(ctx, &source, LoadOptions { weight_dtype: Some(dtype) }, &mut |_| {}))?;
        let mut session = Session::new(Arc::new(model), 1)?;
        let mut tokens = pollster::block_on(session.prefill_greedy(&[vec![1, 2, 3]]))?;
        for _ in 0..STEPS_PER_TURN {
            tokens = pollster::block_on(session.step_greedy(&tokens))?;
        }
        runs.push((session, tokens, 0.0f64, f64::MAX));
    }
    for _ in 0..ROUNDS {
        for (session, tokens, total, best) in &mut runs {
            let start = Instant::now();
            for _ in 0..STEPS_PER_TURN {
                *tokens = pollster::block_on(session.step_greedy(tokens))?;
            }
            let step = start.elapsed().as_secs_f64() / STEPS_PER_TURN as f64;
            *total += step;
            *best = best.min(step);
        }
    }
    for ((_, _, total, best), loads) in runs.iter().zip(["u32", "u64"]) {
        println!("{loads} loads: mean step {:.1} ms, best {:.1} ms", total / ROUNDS as f64 * 1e3, best * 1e3);
    }
    println!("u64 / u32 speed (means): {:.3}x", runs[0].2 / runs[1].2);
    let same = runs[0].1 == runs[1].1;
    println!("same tokens: {}", if same { "yes" } else { "NO" });
    if !same {
        return Err(mamba_wgpu::Error::invalid("decode", "the two loads produced different tokens"));
    }
    Ok(())
}
