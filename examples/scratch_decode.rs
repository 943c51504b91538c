use std::sync::Arc;
use std::time::Instant;
use mamba_wgpu::bench::synthetic::{config_for, SyntheticModel};
use mamba_wgpu::*;
fn main() {
    let shape = std::env::args().nth(1).unwrap_or("mamba-130m".into());
    let f16 = std::env::args().nth(2).map_or(true, |s| s == "f16");
    let ctx = pollster::block_on(GpuContext::new(None)).unwrap();
    let dtype = if f16 { WeightDtype::F16 } else { WeightDtype::F32 };
    let src = SyntheticModel { config: config_for(&shape).unwrap(), name: shape.clone(), dtype };
    let t = Instant::now();
    let model = Arc::new(Model::load(ctx.clone(), &src, LoadOptions { weight_dtype: Some(dtype) }, &mut |_| {}).unwrap());
    println!("load {:.2}s weights {} MB", t.elapsed().as_secs_f64(), model.weight_bytes() / 1_000_000);
    let bw = mamba_wgpu::bench::probes::read_bandwidth_gb_s(&ctx).unwrap();
    println!("bw {bw:.2} GB/s");
    let mut s = Session::new(model.clone(), 1).unwrap();
    let mut next = pollster::block_on(s.prefill_greedy(&[vec![1, 2, 3]])).unwrap();
    for _ in 0..3 { next = pollster::block_on(s.step_greedy(&next)).unwrap(); }
    let n = 10;
    let t = Instant::now();
    for _ in 0..n { next = pollster::block_on(s.step_greedy(&next)).unwrap(); }
    let per = t.elapsed().as_secs_f64() / n as f64;
    let (st, _) = s.memory_bytes();
    let bytes = mamba_wgpu::bench::decode_bytes_per_step(&model, st) as f64;
    println!("decode {:.1} ms/token = {:.2} tok/s; roofline {:.2} tok/s; fraction {:.0}%", per * 1e3, 1.0 / per, bw * 1e9 / bytes, 100.0 * bw * 1e9 / bytes * per.recip().recip().recip() / (bw*1e9/bytes) * 0.0 + 100.0 * (1.0/per) / (bw * 1e9 / bytes));
}
