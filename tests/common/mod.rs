//! Shared helpers of the integration tests: the GPU context (failing loudly without an
//! adapter), fixture discovery and comparisons that print where they fail.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use mamba_wgpu::GpuContext;

/// One device for the whole test binary. Without an adapter every GPU test fails with a
/// message that says how to get one; none passes silently.
pub fn ctx() -> Arc<GpuContext> {
    static CTX: OnceLock<Arc<GpuContext>> = OnceLock::new();
    CTX.get_or_init(|| {
        let _ = env_logger::builder().is_test(true).try_init();
        match pollster::block_on(GpuContext::new(None)) {
            Ok(ctx) => ctx,
            Err(e) => panic!("GPU tests need a wgpu adapter: {e}"),
        }
    })
    .clone()
}

/// A fresh context (not shared) for tests that change its settings.
pub fn own_ctx() -> Arc<GpuContext> {
    pollster::block_on(GpuContext::new(None)).unwrap_or_else(|e| panic!("GPU tests need a wgpu adapter: {e}"))
}

/// The fixture folders: every subfolder of the repository's tests/fixtures, then of each
/// folder listed in $MAMBA_FIXTURES (separated like PATH), so that other people's fixtures can
/// be dropped in without code changes.
pub fn fixture_dirs() -> Vec<PathBuf> {
    let mut roots = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")];
    if let Some(extra) = std::env::var_os("MAMBA_FIXTURES") {
        roots.extend(std::env::split_paths(&extra).filter(|p| !p.as_os_str().is_empty()));
    }
    let mut dirs = Vec::new();
    for root in roots {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&root)
            .unwrap_or_else(|e| panic!("fixtures folder {} unreadable ({e})", root.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        assert!(!found.is_empty(), "no fixture folders under {}", root.display());
        found.sort();
        dirs.extend(found);
    }
    dirs
}

/// The repository's fixture folder `name` (tests/fixtures/NAME).
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Max |got - expected| and the max relative difference; panics naming the first index over
/// `tol` (absolute, scaled by max(1, |expected|)).
pub fn assert_close(what: &str, got: &[f32], expected: &[f32], tol: f32) -> (f32, f32) {
    assert_eq!(got.len(), expected.len(), "{what}: length {} vs expected {}", got.len(), expected.len());
    let (mut max_abs, mut max_rel) = (0.0f32, 0.0f32);
    let mut first_bad = None;
    for (i, (&g, &e)) in got.iter().zip(expected).enumerate() {
        let diff = (g - e).abs();
        let rel = diff / e.abs().max(1e-6);
        max_abs = max_abs.max(diff);
        max_rel = max_rel.max(if e.abs() > 1e-3 { rel } else { 0.0 });
        if (diff > tol * e.abs().max(1.0) || !g.is_finite()) && first_bad.is_none() {
            first_bad = Some((i, g, e));
        }
    }
    if let Some((i, g, e)) = first_bad {
        panic!("{what}: index {i}: got {g}, expected {e} (tolerance {tol}; max abs diff {max_abs})");
    }
    (max_abs, max_rel)
}

/// Deterministic pseudo-random values in [-scale, scale) (SplitMix64), for kernel inputs.
pub fn random_values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// Records `f` on a fresh tape, submits, waits.
pub fn run(ctx: &GpuContext, f: impl FnOnce(&mut mamba_wgpu::gpu::Recorder) -> mamba_wgpu::Result<()>) {
    let mut tape = mamba_wgpu::gpu::Tape::new(ctx, "test", 1024);
    let mut rec = tape.record(ctx);
    f(&mut rec).expect("op accepted its arguments");
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    rec.encode(&mut encoder);
    ctx.queue.submit([encoder.finish()]);
}

/// A buffer's first `n` f32 values.
pub fn read(ctx: &GpuContext, buffer: &wgpu::Buffer, n: usize) -> Vec<f32> {
    pollster::block_on(mamba_wgpu::gpu::readback::read_f32(ctx, buffer, n)).expect("readback")
}
