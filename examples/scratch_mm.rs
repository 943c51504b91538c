use std::time::Instant;
use mamba_wgpu::gpu::tensor::{storage, upload_f32, WeightData};
use mamba_wgpu::gpu::{GpuWeight, Tape};
use mamba_wgpu::ops::linear::{linear, Linear};
use mamba_wgpu::*;
fn main() {
    let ctx = pollster::block_on(GpuContext::new(None)).unwrap();
    for &(m, n, k, f16) in &[(512usize, 3072usize, 768usize, true), (512, 3072, 768, false)] {
        let bits = vec![0x3c00u16; n * k];
        let vals = vec![1.0f32; n * k];
        let w = if f16 { GpuWeight::upload(&ctx, "w", n, k, WeightData::F16(&bits)).unwrap() } else { GpuWeight::upload(&ctx, "w", n, k, WeightData::F32(&vals)).unwrap() };
        let x = upload_f32(&ctx, "x", &vec![0.5; m * k]);
        let y = storage(&ctx, "y", m * n);
        let mut tape = Tape::new(&ctx, "t", 4);
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            let mut enc = ctx.device.create_command_encoder(&Default::default());
            let mut rec = tape.record(&ctx);
            linear(&mut rec, &Linear::dense(&x, m as u32, &w, &y)).unwrap();
            rec.encode(&mut enc);
            ctx.queue.submit([enc.finish()]);
            ctx.device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!("matmul m={m} n={n} k={k} f16={f16}: {:.1} ms, {:.1} GFLOP/s", best * 1e3, 2.0 * (m * n * k) as f64 / best / 1e9);
    }
}
