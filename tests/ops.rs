//! Every kernel against the CPU reference (src/reference.rs, f64 accumulation) over a grid of
//! shapes: sizes that are not multiples of the workgroup sizes, sequence lengths 1, 2,
//! chunk - 1, chunk, chunk + 1 and a few thousand, batch 1 and 3. Each test states its
//! tolerance (absolute, scaled by max(1, |expected|)); a failure prints index, got, expected.

mod common;

use half::f16;
use mamba_wgpu::gpu::kernels::SCAN_CHUNK;
use mamba_wgpu::gpu::readback::read_f32;
use mamba_wgpu::gpu::tensor::{storage, upload_f32, WeightData};
use mamba_wgpu::gpu::{GpuContext, GpuWeight, Recorder, Tape};
use mamba_wgpu::ops::conv1d::{conv1d_silu, Conv1d};
use mamba_wgpu::ops::linear::{linear, Activation, Linear};
use mamba_wgpu::ops::norm::{add_rms_norm, AddRmsNorm};
use mamba_wgpu::ops::scan::{selective_scan, Scan, ScanKind};
use mamba_wgpu::reference;

use common::{assert_close, random_values};

/// Records `f` on a fresh tape, submits, waits.
fn run(ctx: &GpuContext, f: impl FnOnce(&mut Recorder) -> mamba_wgpu::Result<()>) {
    let mut tape = Tape::new(ctx, "test", 1024);
    let mut rec = tape.record(ctx);
    f(&mut rec).expect("op accepted its arguments");
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    rec.encode(&mut encoder);
    ctx.queue.submit([encoder.finish()]);
}

fn read(ctx: &GpuContext, buffer: &wgpu::Buffer, n: usize) -> Vec<f32> {
    pollster::block_on(read_f32(ctx, buffer, n)).expect("readback")
}

fn to_f16_rounded(values: &[f32]) -> (Vec<u16>, Vec<f32>) {
    let bits: Vec<u16> = values.iter().map(|&v| f16::from_f32(v).to_bits()).collect();
    let rounded = bits.iter().map(|&b| f16::from_bits(b).to_f32()).collect();
    (bits, rounded)
}

/// Linear (matvec for m <= 8, tiled matmul above) with strided input, bias, softplus, f32 and
/// f16 weights, and weights split into several parts.
#[test]
fn linear_matches_reference() {
    const TOL: f32 = 1e-4;
    // Both styles (CPU devices: weights in row blocks, 8 rows per matvec invocation, the direct
    // matmul; GPUs: row-major weights, 8 lanes per matvec row, the tiled matmul), and weights
    // split into many parts.
    let [cpu, gpu] = common::both_styles();
    let contexts = [cpu, gpu, common::own_ctx().with_max_binding_bytes(4096).unwrap()];
    let mut case = 0u64;
    for &(m, n, k) in &[
        (1usize, 1usize, 1usize),
        (1, 17, 5),
        (3, 100, 33),
        (8, 64, 16),
        (8, 64, 24),
        (1, 300, 768),
        (9, 65, 70),
        (70, 130, 129),
        (130, 31, 64),
        (3, 7, 1000),
        (3000, 33, 40),
    ] {
        for f16_weights in [false, true] {
            for (variant, ctx) in contexts.iter().enumerate() {
                case += 1;
                let split = variant == 2;
                let style = if ctx.gpu_kernels { "gpu" } else { "cpu" };
                // Aligned rows take matvec's 16-byte loads (when k allows), others the element path.
                let aligned = !case.is_multiple_of(3);
                let x_offset = if aligned { 4 } else { 3 };
                let x_stride = if aligned { k.next_multiple_of(4) + 4 } else { k + 5 };
                let x = random_values(case, m * x_stride, 1.0);
                let w = random_values(case + 1000, n * k, 0.5);
                let bias = random_values(case + 2000, n, 0.5);
                let (bits, w_rounded) = to_f16_rounded(&w);
                let weight = if f16_weights {
                    GpuWeight::upload(ctx, "w", n, k, WeightData::F16(&bits)).unwrap()
                } else {
                    GpuWeight::upload(ctx, "w", n, k, WeightData::F32(&w)).unwrap()
                };
                let bytes = n * k * if f16_weights { 2 } else { 4 };
                if split && bytes > 4096 {
                    assert!(weight.parts.len() > 1, "a {bytes}-byte weight is split at 4096 bytes");
                }
                let x_buf = upload_f32(ctx, "x", &x);
                let b_buf = upload_f32(ctx, "bias", &bias);
                let y_buf = storage(ctx, "y", m * n);
                let activation = if case.is_multiple_of(2) { Activation::Softplus } else { Activation::None };
                run(ctx, |rec| {
                    linear(
                        rec,
                        &Linear {
                            x: &x_buf,
                            x_stride: x_stride as u32,
                            x_offset: x_offset as u32,
                            rows: m as u32,
                            weight: &weight,
                            bias: Some(&b_buf),
                            y: &y_buf,
                            y_stride: n as u32,
                            y_offset: 0,
                            activation,
                        },
                    )
                });
                let x_dense: Vec<f32> = x.chunks(x_stride).flat_map(|r| r[x_offset..x_offset + k].to_vec()).collect();
                let w_ref = if f16_weights { &w_rounded } else { &w };
                let mut want = reference::matmul(&x_dense, w_ref, Some(&bias), m, n, k);
                if activation == Activation::Softplus {
                    want.iter_mut().for_each(|v| *v = reference::softplus(*v as f64) as f32);
                }
                let got = read(ctx, &y_buf, m * n);
                assert_close(&format!("linear m={m} n={n} k={k} f16={f16_weights} split={split} kernels={style}"), &got, &want, TOL);
            }
        }
    }
}

#[test]
fn add_rms_norm_matches_reference() {
    for ctx in common::both_styles() {
        rms_norm_cases(&ctx);
    }
}

fn rms_norm_cases(ctx: &GpuContext) {
    const TOL: f32 = 1e-5;
    for &(batch, t, d) in &[(1, 1, 1), (1, 5, 64), (3, 7, 300), (2, 3, 2560), (1, 3000, 40)] {
        let residual = random_values(d as u64, batch * t * d, 2.0);
        let delta = random_values(d as u64 + 1, batch * t * d, 1.0);
        let weight = random_values(d as u64 + 2, d, 1.5);
        for (with_delta, last_only) in [(false, false), (true, false), (true, true)] {
            let r_buf = upload_f32(ctx, "residual", &residual);
            let d_buf = upload_f32(ctx, "delta", &delta);
            let w_buf = upload_f32(ctx, "weight", &weight);
            let out = storage(ctx, "out", batch * t * d);
            run(ctx, |rec| {
                add_rms_norm(
                    rec,
                    &AddRmsNorm {
                        residual: &r_buf,
                        delta: with_delta.then_some(&d_buf),
                        weight: &w_buf,
                        out: &out,
                        d: d as u32,
                        batch: batch as u32,
                        t_len: t as u32,
                        last_only,
                        eps: 1e-5,
                    },
                )
            });
            let summed: Vec<f32> = if with_delta { residual.iter().zip(&delta).map(|(a, b)| a + b).collect() } else { residual.clone() };
            let rows: Vec<f32> = if last_only { summed.chunks(t * d).flat_map(|s| s[(t - 1) * d..].to_vec()).collect() } else { summed.clone() };
            let want = reference::rms_norm(&rows, &weight, 1e-5);
            let label = format!("rms_norm batch={batch} t={t} d={d} delta={with_delta} last_only={last_only}");
            assert_close(&label, &read(ctx, &out, rows.len()), &want, TOL);
            if with_delta && !last_only {
                assert_close(&format!("{label} residual"), &read(ctx, &r_buf, summed.len()), &summed, TOL);
            }
        }
    }
}

#[test]
fn embedding_gathers_rows_across_parts() {
    for gpu_style in [false, true] {
        // Parts of 85 (f32) or 170 (f16) rows: whole and partial blocks of 64 rows.
        let ctx = common::own_ctx().with_max_binding_bytes(8192).unwrap().with_kernel_style(gpu_style).unwrap();
        gather_rows_across_parts(&ctx);
    }
}

fn gather_rows_across_parts(ctx: &GpuContext) {
    let (vocab, d) = (200, 24);
    let table = random_values(7, vocab * d, 1.0);
    let (bits, rounded) = to_f16_rounded(&table);
    let ids: Vec<u32> = vec![0, 199, 13, 13, 63, 64, 84, 85, 127, 128, 169, 170];
    for f16_weights in [false, true] {
        let weight = if f16_weights {
            GpuWeight::upload(ctx, "emb", vocab, d, WeightData::F16(&bits))
        } else {
            GpuWeight::upload(ctx, "emb", vocab, d, WeightData::F32(&table))
        }
        .unwrap();
        assert!(weight.parts.len() > 1, "the table is split");
        let ids_buf = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: 4 * ids.len() as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        ctx.queue.write_buffer(&ids_buf, 0, bytemuck::cast_slice(&ids));
        let out = storage(ctx, "out", ids.len() * d);
        run(ctx, |rec| mamba_wgpu::ops::embedding::embedding(rec, &weight, &ids_buf, ids.len() as u32, &out));
        let src = if f16_weights { &rounded } else { &table };
        let want: Vec<f32> = ids.iter().flat_map(|&i| src[i as usize * d..][..d].to_vec()).collect();
        assert_close(&format!("embedding f16={f16_weights}"), &read(ctx, &out, want.len()), &want, 0.0);
    }
}

#[test]
fn argmax_picks_the_first_largest() {
    let ctx = common::ctx();
    let n = 1000;
    let mut logits = random_values(3, 3 * n, 5.0);
    logits[n + 17] = 9.0;
    logits[n + 400] = 9.0; // a tie: the lower index wins
    logits[2 * n + 999] = 7.0;
    let l_buf = upload_f32(&ctx, "logits", &logits);
    let ids = storage(&ctx, "ids", 3);
    run(&ctx, |rec| mamba_wgpu::ops::argmax::argmax(rec, &l_buf, 3, n as u32, &ids));
    let got: Vec<u32> = bytemuck::cast_slice(&read(&ctx, &ids, 3)).to_vec();
    let want: Vec<u32> = logits.chunks(n).map(|row| mamba_wgpu::sampling::argmax(row).unwrap()).collect();
    assert_eq!(got, want);
    assert_eq!(got[1], 17);
}

/// Conv over a prompt (conv_prefill + conv_state_update) and the one-token conv_step, from a
/// non-zero state: output and the new state against the reference.
#[test]
fn conv1d_matches_reference() {
    const TOL: f32 = 1e-5;
    let ctx = common::ctx();
    for &batch in &[1usize, 3] {
        for &(channels, k) in &[(1usize, 4usize), (65, 4), (130, 3)] {
            for &t in &[1usize, 2, 3, 4, 5, 70, 3000] {
                let x_stride = 2 * channels;
                let seed = (batch * 100000 + channels * 1000 + t) as u64;
                let xz = random_values(seed, batch * t * x_stride, 1.0);
                let weight = random_values(seed + 1, channels * k, 0.7);
                let bias = random_values(seed + 2, channels, 0.3);
                let state0 = random_values(seed + 3, batch * channels * k, 1.0);
                let x_buf = upload_f32(&ctx, "xz", &xz);
                let w_buf = upload_f32(&ctx, "w", &weight);
                let b_buf = upload_f32(&ctx, "b", &bias);
                let s_buf = upload_f32(&ctx, "state", &state0);
                let out = storage(&ctx, "out", batch * t * channels);
                run(&ctx, |rec| {
                    conv1d_silu(
                        rec,
                        &Conv1d {
                            x: &x_buf,
                            x_stride: x_stride as u32,
                            weight: &w_buf,
                            bias: Some(&b_buf),
                            state: &s_buf,
                            out: &out,
                            batch: batch as u32,
                            t_len: t as u32,
                            channels: channels as u32,
                            k: k as u32,
                        },
                    )
                });
                let x: Vec<f32> = xz.chunks(x_stride).flat_map(|r| r[..channels].to_vec()).collect();
                let mut state = state0.clone();
                let want = reference::conv1d_silu(&x, &mut state, &weight, Some(&bias), batch, channels, k);
                let label = format!("conv1d batch={batch} channels={channels} k={k} t={t}");
                assert_close(&label, &read(&ctx, &out, want.len()), &want, TOL);
                assert_close(&format!("{label} state"), &read(&ctx, &s_buf, state.len()), &state, 0.0);
            }
        }
    }
}

/// Random but realistic scan inputs: dt > 0 after softplus, A_log = log of 1..16 perturbed.
struct ScanCase {
    batch: usize,
    t: usize,
    d_inner: usize,
    d_state: usize,
    dt_rank: usize,
    x: Vec<f32>,
    dt: Vec<f32>,
    xdbl: Vec<f32>,
    xz: Vec<f32>,
    a: Vec<f32>, // A = -exp(A_log)
    d_skip: Vec<f32>,
    h0: Vec<f32>,
}

impl ScanCase {
    fn new(batch: usize, t: usize, d_inner: usize, d_state: usize, seed: u64) -> Self {
        let dt_rank = 3;
        let rows = batch * t;
        let width = dt_rank + 2 * d_state;
        ScanCase {
            batch,
            t,
            d_inner,
            d_state,
            dt_rank,
            x: random_values(seed, rows * d_inner, 1.0),
            dt: random_values(seed + 1, rows * d_inner, 2.0).into_iter().map(|v| reference::softplus(v as f64 - 1.5) as f32).collect(),
            xdbl: random_values(seed + 2, rows * width, 1.0),
            xz: random_values(seed + 3, rows * 2 * d_inner, 2.0),
            a: (0..d_inner * d_state)
                .map(|i| -((((i % d_state) + 1) as f32).ln() + 0.1 * random_values(seed + 4 + i as u64, 1, 1.0)[0]).exp())
                .collect(),
            d_skip: random_values(seed + 5, d_inner, 1.0),
            h0: random_values(seed + 6, batch * d_inner * d_state, 1.0),
        }
    }

    /// (y, final h) from the GPU kernel `kind`.
    fn gpu(&self, ctx: &GpuContext, kind: ScanKind) -> (Vec<f32>, Vec<f32>) {
        let up = |label: &str, v: &[f32]| upload_f32(ctx, label, v);
        let (x, dt, xdbl, xz, a, d_skip, h) = (
            up("x", &self.x),
            up("dt", &self.dt),
            up("xdbl", &self.xdbl),
            up("xz", &self.xz),
            up("a", &self.a),
            up("d", &self.d_skip),
            up("h", &self.h0),
        );
        let y = storage(ctx, "y", self.batch * self.t * self.d_inner);
        let scan = Scan {
            x: &x,
            dt: &dt,
            xdbl: &xdbl,
            xz: &xz,
            a: &a,
            d_skip: &d_skip,
            h: &h,
            y: &y,
            batch: self.batch as u32,
            t_len: self.t as u32,
            d_inner: self.d_inner as u32,
            d_state: self.d_state as u32,
            dt_rank: self.dt_rank as u32,
        };
        run(ctx, |rec| selective_scan(rec, &scan, kind));
        (read(ctx, &y, self.batch * self.t * self.d_inner), read(ctx, &h, self.h0.len()))
    }

    fn reference(&self) -> (Vec<f32>, Vec<f32>) {
        let width = self.dt_rank + 2 * self.d_state;
        let col = |from: usize| -> Vec<f32> { self.xdbl.chunks(width).flat_map(|r| r[from..from + self.d_state].to_vec()).collect() };
        let (b, c) = (col(self.dt_rank), col(self.dt_rank + self.d_state));
        let z: Vec<f32> = self.xz.chunks(2 * self.d_inner).flat_map(|r| r[self.d_inner..].to_vec()).collect();
        let inputs = reference::ScanInputs { x: &self.x, dt: &self.dt, b: &b, c: &c, z: &z, a: &self.a, d_skip: &self.d_skip };
        let mut h = self.h0.clone();
        let y = reference::selective_scan(&inputs, &mut h, self.batch, self.d_inner, self.d_state);
        (y, h)
    }
}

const CHUNK: usize = SCAN_CHUNK as usize;

/// Both scan kernels against the reference, from a non-zero initial state.
#[test]
fn scan_kernels_match_reference() {
    for ctx in common::both_styles() {
        scan_cases(&ctx);
    }
}

fn scan_cases(ctx: &GpuContext) {
    const TOL: f32 = 2e-4;
    let mut seed = 0;
    for &batch in &[1, 3] {
        for &(d_inner, d_state) in &[(1, 1), (17, 5), (40, 16)] {
            for &t in &[1, 2, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7, 3000] {
                seed += 10;
                let case = ScanCase::new(batch, t, d_inner, d_state, seed);
                let (want_y, want_h) = case.reference();
                for kind in [ScanKind::Chunked, ScanKind::Sequential] {
                    let (y, h) = case.gpu(ctx, kind);
                    let label = format!("{kind:?} scan batch={batch} d_inner={d_inner} d_state={d_state} t={t}");
                    assert_close(&format!("{label} y"), &y, &want_y, TOL);
                    assert_close(&format!("{label} h"), &h, &want_h, TOL);
                }
            }
        }
    }
}

/// The chunked parallel scan equals the step-by-step scan on the same inputs, over many chunks.
#[test]
fn chunked_scan_equals_sequential_scan() {
    const TOL: f32 = 1e-4;
    let ctx = common::ctx();
    for &(batch, t) in &[(1, 10 * CHUNK + 3), (3, 4 * CHUNK)] {
        let case = ScanCase::new(batch, t, 33, 16, 777 + t as u64);
        let (y_chunked, h_chunked) = case.gpu(&ctx, ScanKind::Chunked);
        let (y_seq, h_seq) = case.gpu(&ctx, ScanKind::Sequential);
        assert_close(&format!("chunked vs sequential y, t={t}"), &y_chunked, &y_seq, TOL);
        assert_close(&format!("chunked vs sequential h, t={t}"), &h_chunked, &h_seq, TOL);
    }
}

#[test]
fn ops_reject_buffers_too_small_for_their_shapes() {
    let ctx = common::ctx();
    let weight = GpuWeight::upload(&ctx, "w", 4, 8, WeightData::F32(&[0.5; 32])).unwrap();
    let x = storage(&ctx, "x", 8);
    let y = storage(&ctx, "y", 3); // needs 2 rows x 4
    let mut tape = Tape::new(&ctx, "test", 4);
    let mut rec = tape.record(&ctx);
    let err = linear(&mut rec, &Linear::dense(&x, 2, &weight, &y)).unwrap_err().to_string();
    assert!(err.contains("linear.x") || err.contains("linear.y"), "{err}");
}
