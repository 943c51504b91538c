//! Every kernel against the CPU reference (src/reference.rs, f64 accumulation) over a grid of
//! shapes: sizes that are not multiples of the workgroup sizes, sequence lengths 1, 2,
//! chunk - 1, chunk, chunk + 1 and a few thousand, batch 1 and 3. Each test states its
//! tolerance (absolute, scaled by max(1, |expected|)); a failure prints index, got, expected.

mod common;

use half::f16;
use mamba_wgpu::bench::kernels::scan_per_state;
use mamba_wgpu::gpu::kernels::SCAN_CHUNK;
use mamba_wgpu::gpu::tensor::{storage, upload_f32, TensorView, WeightData};
use mamba_wgpu::gpu::{GpuContext, GpuWeight, Tape};
use mamba_wgpu::model::config::SsdShape;
use mamba_wgpu::ops::conv1d::{conv1d_silu, Conv1d};
use mamba_wgpu::ops::group_norm::{group_rms_norm, GroupRmsNorm};
use mamba_wgpu::ops::linear::{linear, linear_conv_step, Activation, InputNorm, Linear};
use mamba_wgpu::ops::norm::{add_rms_norm, AddRmsNorm};
use mamba_wgpu::ops::scan::{scan_step_dt, scan_step_fused, scan_step_fused_fits, selective_scan, Scan, ScanKind, ScanStepDt, ScanStepFused};
use mamba_wgpu::ops::ssd::{chunk_buffer_elements, ssd_scan, Ssd, SsdKind};
use mamba_wgpu::reference;

use common::{assert_close, random_values, read, run};

fn read_bytes(ctx: &GpuContext, buffer: &wgpu::Buffer, n: usize) -> Vec<u8> {
    let bytes = pollster::block_on(mamba_wgpu::gpu::readback::read_buffers(ctx, &[buffer])).expect("readback").remove(0);
    bytes[..n].to_vec()
}

fn to_f16_rounded(values: &[f32]) -> (Vec<u16>, Vec<f32>) {
    let bits: Vec<u16> = values.iter().map(|&v| f16::from_f32(v).to_bits()).collect();
    let rounded = bits.iter().map(|&b| f16::from_bits(b).to_f32()).collect();
    (bits, rounded)
}

/// Linear (matvec for m <= 8, tiled matmul above) with strided input, bias, softplus, f32 and
/// f16 weights, and weights split into several parts; the matvec also with its input rows
/// RMS-normalized (rms_norm_eps) and with its result added into y (accumulate).
#[test]
fn linear_matches_reference() {
    const TOL: f32 = 1e-4;
    // Whole weights, and weights split into many parts (at 4096 bytes).
    let contexts = [common::ctx(), common::own_ctx().with_max_binding_bytes(4096).unwrap()];
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
        (5, 72, 48),
        (2, 130, 96),
        // Partial 64 x 64 tiles, and (260 rows of W) the parts of a weight split at 4096 bytes.
        (50, 200, 136),
        (300, 260, 8),
    ] {
        for f16_weights in [false, true] {
            for (variant, ctx) in contexts.iter().enumerate() {
                case += 1;
                let split = variant == 1;
                // Rows of X aligned to 16 bytes take the matvec's 16-byte loads (when k
                // allows), others the element path; offsets and strides vary with the case.
                let alignment = case % 3;
                let (x_offset, x_stride) = match alignment {
                    0 => (3, k + 5),
                    1 => (4, k.next_multiple_of(4) + 4),
                    _ => (8, k.next_multiple_of(8) + 8),
                };
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
                // The matvec's options, on alternate cases (rms_norm_eps and accumulate each on
                // half of them, with every activation).
                let matvec = m <= 8;
                let rms_norm_eps = (matvec && case % 4 < 2).then_some(1e-3);
                let accumulate = matvec && case % 8 >= 4;
                let y0 = random_values(case + 3000, m * n, 1.0);
                let y_buf = upload_f32(ctx, "y", &y0);
                // Softplus on half the cases, shifted by the shape so that each kernel gets it
                // with both weight types (a case is 10 * shape + 5 * f16 + variant + 1).
                let activation = if (case + case / 10).is_multiple_of(2) { Activation::Softplus } else { Activation::None };
                run(ctx, |rec| {
                    linear(
                        rec,
                        &Linear {
                            x: TensorView { row_stride: x_stride as u32, ..TensorView::f32(&x_buf, m as u32, k as u32) }
                                .columns(x_offset as u32, k as u32),
                            weight: &weight,
                            bias: Some(TensorView::vector(&b_buf, n as u32)),
                            y: TensorView::f32(&y_buf, m as u32, n as u32),
                            activation,
                            norm: rms_norm_eps.map(|eps| InputNorm::rows(eps, None)),
                            accumulate,
                        },
                    )
                });
                let mut x_dense: Vec<f32> = x.chunks(x_stride).flat_map(|r| r[x_offset..x_offset + k].to_vec()).collect();
                if let Some(eps) = rms_norm_eps {
                    x_dense = reference::rms_norm(&x_dense, &vec![1.0; k], eps);
                }
                let w_ref = if f16_weights { &w_rounded } else { &w };
                let mut want = reference::matmul(&x_dense, w_ref, Some(&bias), m, n, k);
                if activation == Activation::Softplus {
                    want.iter_mut().for_each(|v| *v = reference::softplus(*v as f64) as f32);
                }
                if accumulate {
                    want.iter_mut().zip(&y0).for_each(|(v, y)| *v += y);
                }
                let got = read(ctx, &y_buf, m * n);
                let options = format!("rms_norm={} accumulate={accumulate}", rms_norm_eps.is_some());
                assert_close(&format!("linear m={m} n={n} k={k} f16={f16_weights} split={split} {options}"), &got, &want, TOL);
            }
        }
    }
}

#[test]
fn add_rms_norm_matches_reference() {
    rms_norm_cases(&common::ctx());
}

fn rms_norm_cases(ctx: &GpuContext) {
    const TOL: f32 = 1e-5;
    for &(batch, t, d) in &[(1, 1, 1), (1, 5, 64), (3, 7, 300), (2, 3, 2560), (1, 3000, 40)] {
        let residual = random_values(d as u64, batch * t * d, 2.0);
        let delta = random_values(d as u64 + 1, batch * t * d, 1.0);
        let weight = random_values(d as u64 + 2, d, 1.5);
        let ones = vec![1.0; d];
        for (with_delta, last_only, with_weight) in [(false, false, true), (true, false, true), (true, true, true), (true, false, false)] {
            let r_buf = upload_f32(ctx, "residual", &residual);
            let d_buf = upload_f32(ctx, "delta", &delta);
            let w_buf = upload_f32(ctx, "weight", &weight);
            let out = storage(ctx, "out", batch * t * d);
            run(ctx, |rec| {
                add_rms_norm(
                    rec,
                    &AddRmsNorm {
                        residual: TensorView::f32(&r_buf, (batch * t) as u32, d as u32),
                        delta: with_delta.then(|| TensorView::f32(&d_buf, (batch * t) as u32, d as u32)),
                        weight: with_weight.then(|| TensorView::vector(&w_buf, d as u32)),
                        out: TensorView::f32(&out, if last_only { batch } else { batch * t } as u32, d as u32),
                        batch: batch as u32,
                        t_len: t as u32,
                        last_only,
                        eps: 1e-5,
                    },
                )
            });
            let summed: Vec<f32> = if with_delta { residual.iter().zip(&delta).map(|(a, b)| a + b).collect() } else { residual.clone() };
            let rows: Vec<f32> = if last_only { summed.chunks(t * d).flat_map(|s| s[(t - 1) * d..].to_vec()).collect() } else { summed.clone() };
            let want = reference::rms_norm(&rows, if with_weight { &weight } else { &ones }, 1e-5);
            let label = format!("rms_norm batch={batch} t={t} d={d} delta={with_delta} last_only={last_only} weight={with_weight}");
            assert_close(&label, &read(ctx, &out, rows.len()), &want, TOL);
            if with_delta && !last_only {
                assert_close(&format!("{label} residual"), &read(ctx, &r_buf, summed.len()), &summed, TOL);
            }
        }
    }
}

#[test]
fn embedding_gathers_rows_across_parts() {
    // Parts of 85 (f32) or 170 (f16) rows.
    gather_rows_across_parts(&common::own_ctx().with_max_binding_bytes(8192).unwrap());
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
        let rows = ids.len() as u32;
        run(ctx, |rec| {
            mamba_wgpu::ops::embedding::embedding(rec, &weight, TensorView::u32(&ids_buf, rows, 1), TensorView::f32(&out, rows, d as u32))
        });
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
    run(&ctx, |rec| mamba_wgpu::ops::argmax::argmax(rec, TensorView::f32(&l_buf, 3, n as u32), TensorView::u32(&ids, 3, 1)));
    let got: Vec<u32> = bytemuck::cast_slice(&read(&ctx, &ids, 3)).to_vec();
    let want: Vec<u32> = logits.chunks(n).map(|row| mamba_wgpu::sampling::argmax(row).unwrap()).collect();
    assert_eq!(got, want);
    assert_eq!(got[1], 17);
}

/// A broken row (NaN or +inf) comes back as its first broken entry with the top bit set, a row
/// of -inf only as 0xffffffff; -inf entries among finite ones are simply never the largest.
#[test]
fn argmax_marks_broken_rows() {
    let ctx = common::ctx();
    let n = 700;
    let mut logits = random_values(4, 4 * n, 5.0);
    logits[30] = f32::NAN;
    logits[500] = f32::NAN;
    logits[n + 650] = f32::INFINITY;
    logits[n + 10] = 100.0;
    logits[2 * n..3 * n].iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
    logits[3 * n..4 * n].iter_mut().step_by(2).for_each(|x| *x = f32::NEG_INFINITY);
    let l_buf = upload_f32(&ctx, "logits", &logits);
    let ids = storage(&ctx, "ids", 4);
    run(&ctx, |rec| mamba_wgpu::ops::argmax::argmax(rec, TensorView::f32(&l_buf, 4, n as u32), TensorView::u32(&ids, 4, 1)));
    let got: Vec<u32> = bytemuck::cast_slice(&read(&ctx, &ids, 4)).to_vec();
    let finite_row = &logits[3 * n..];
    let best = (0..n).filter(|&i| finite_row[i].is_finite()).max_by(|&a, &b| finite_row[a].total_cmp(&finite_row[b]).then(b.cmp(&a))).unwrap();
    assert_eq!(got, vec![0x8000_0000 | 30, 0x8000_0000 | 650, u32::MAX, best as u32]);
}

/// Conv over a prompt (conv_prefill + conv_state_update) and the one-token conv_step, from a non-zero state, with and
/// without a bias: output and the new state against the reference.
#[test]
fn conv1d_matches_reference() {
    conv1d_cases(&common::ctx());
}

fn conv1d_cases(ctx: &GpuContext) {
    const TOL: f32 = 1e-5;
    for &batch in &[1usize, 3] {
        for &(channels, k) in &[(1usize, 4usize), (65, 4), (130, 3), (68, 4)] {
            for &t in &[1usize, 2, 3, 4, 5, 70, 3000] {
                let x_stride = 2 * channels;
                let seed = (batch * 100000 + channels * 1000 + t) as u64;
                let xz = random_values(seed, batch * t * x_stride, 1.0);
                let weight = random_values(seed + 1, channels * k, 0.7);
                let bias = random_values(seed + 2, channels, 0.3);
                let bias = t.is_multiple_of(2).then_some(bias);
                let state0 = random_values(seed + 3, batch * channels * k, 1.0);
                let x_buf = upload_f32(ctx, "xz", &xz);
                let w_buf = upload_f32(ctx, "w", &weight);
                let b_buf = bias.as_ref().map(|b| upload_f32(ctx, "b", b));
                let s_buf = upload_f32(ctx, "state", &state0);
                let out = storage(ctx, "out", batch * t * channels);
                run(ctx, |rec| {
                    conv1d_silu(
                        rec,
                        &Conv1d {
                            x: TensorView::f32(&x_buf, (batch * t) as u32, x_stride as u32).columns(0, channels as u32),
                            weight: TensorView::f32(&w_buf, channels as u32, k as u32),
                            bias: b_buf.as_ref().map(|b| TensorView::vector(b, channels as u32)),
                            state: TensorView::f32(&s_buf, (batch * channels) as u32, k as u32),
                            out: TensorView::f32(&out, (batch * t) as u32, channels as u32),
                            batch: batch as u32,
                            t_len: t as u32,
                        },
                    )
                });
                let x: Vec<f32> = xz.chunks(x_stride).flat_map(|r| r[..channels].to_vec()).collect();
                let mut state = state0.clone();
                let want = reference::conv1d_silu(&x, &mut state, &weight, bias.as_deref(), batch, channels, k);
                let label = format!("conv1d batch={batch} channels={channels} k={k} t={t} bias={}", bias.is_some());
                assert_close(&label, &read(ctx, &out, want.len()), &want, TOL);
                assert_close(&format!("{label} state"), &read(ctx, &s_buf, state.len()), &state, 0.0);
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
    fn new(batch: usize, t: usize, d_inner: usize, d_state: usize, dt_rank: usize, seed: u64) -> Self {
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
    fn gpu(&self, ctx: &GpuContext, kind: Kind) -> (Vec<f32>, Vec<f32>) {
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
        let (rows, di, n) = ((self.batch * self.t) as u32, self.d_inner as u32, self.d_state as u32);
        let scan = Scan {
            x: TensorView::f32(&x, rows, di),
            dt: TensorView::f32(&dt, rows, di),
            xdbl: TensorView::f32(&xdbl, rows, (self.dt_rank + 2 * self.d_state) as u32),
            z: TensorView::f32(&xz, rows, 2 * di).columns(di, di),
            a: TensorView::f32(&a, di, n),
            d_skip: TensorView::vector(&d_skip, di),
            h: TensorView::f32(&h, self.batch as u32 * di, n),
            y: TensorView::f32(&y, rows, di),
            batch: self.batch as u32,
            t_len: self.t as u32,
        };
        run(ctx, |rec| match kind {
            Kind::Engine(kind) => selective_scan(rec, &scan, kind),
            Kind::PerState { subgroups } => scan_per_state(rec, &scan, subgroups),
        });
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

/// A scan kernel: the engine's two, or the benchmark's per-state baseline.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Engine(ScanKind),
    PerState { subgroups: bool },
}

/// Every scan kernel against the reference, from a non-zero initial state.
#[test]
fn scan_kernels_match_reference() {
    scan_cases(&common::ctx());
}

fn scan_cases(ctx: &GpuContext) {
    const TOL: f32 = 2e-4;
    let mut seed = 0;
    for &batch in &[1, 3] {
        // d_inner over several workgroups (260), d_state up to the largest the chunked scan
        // holds (64), odd sizes.
        for &(d_inner, d_state, dt_rank) in &[(1, 1, 3), (17, 5, 3), (40, 16, 3), (40, 12, 4), (42, 16, 8), (40, 16, 8), (260, 16, 8), (19, 64, 5)] {
            for &t in &[1, 2, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7, 3000] {
                seed += 10;
                let case = ScanCase::new(batch, t, d_inner, d_state, dt_rank, seed);
                let (want_y, want_h) = case.reference();
                for kind in scan_kinds(ctx) {
                    if matches!(kind, Kind::Engine(ScanKind::Sequential)) && exceeds_llvmpipe_loops(ctx, t * d_state) {
                        continue;
                    }
                    let (y, h) = case.gpu(ctx, kind);
                    let label = format!("{kind:?} scan batch={batch} d_inner={d_inner} d_state={d_state} t={t}");
                    assert_close(&format!("{label} y"), &y, &want_y, TOL);
                    assert_close(&format!("{label} h"), &h, &want_h, TOL);
                }
            }
        }
    }
}

/// Mesa's llvmpipe (behind lavapipe and Mesa's GL driver) ends any shader loop after 65535
/// iterations in all, to keep a runaway shader from hanging the CPU. The sequential scan's
/// state loop runs t_len * d_state times in one invocation, so there it is checked up to that
/// many (the model runs it for single tokens only; prompts take the chunked scan).
fn exceeds_llvmpipe_loops(ctx: &GpuContext, iterations: usize) -> bool {
    ctx.adapter.name.contains("llvmpipe") && iterations > 65535
}

/// Every scan kernel of `ctx`: the benchmark's per-state baseline with its sums in workgroup
/// memory and, where the device has subgroups, by subgroupAdd (on lavapipe, whose subgroups
/// are 8 wide, a workgroup of 16 states is two subgroups).
fn scan_kinds(ctx: &GpuContext) -> Vec<Kind> {
    let mut kinds = vec![Kind::Engine(ScanKind::Chunked), Kind::Engine(ScanKind::Sequential), Kind::PerState { subgroups: false }];
    if ctx.adapter.subgroups {
        kinds.push(Kind::PerState { subgroups: true });
    }
    kinds
}

/// The chunked parallel scan equals the step-by-step scan on the same inputs, over many chunks.
#[test]
fn chunked_scan_equals_sequential_scan() {
    const TOL: f32 = 1e-4;
    let ctx = common::ctx();
    for &(batch, t) in &[(1, 10 * CHUNK + 3), (3, 4 * CHUNK)] {
        let case = ScanCase::new(batch, t, 33, 16, 3, 777 + t as u64);
        let (y_chunked, h_chunked) = case.gpu(&ctx, Kind::Engine(ScanKind::Chunked));
        let (y_seq, h_seq) = case.gpu(&ctx, Kind::Engine(ScanKind::Sequential));
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
    let err = linear(&mut rec, &Linear::new(TensorView::f32(&x, 2, 8), &weight, TensorView::f32(&y, 2, 4))).unwrap_err().to_string();
    assert!(err.contains("linear.x") || err.contains("linear.y"), "{err}");
    // Shapes that disagree with the weight's.
    let err = linear(&mut rec, &Linear::new(TensorView::f32(&x, 1, 7), &weight, TensorView::f32(&y, 1, 3))).unwrap_err().to_string();
    assert!(err.contains("linear.x") && err.contains("(1, 7)"), "{err}");
    // An element type the kernel does not read.
    let err = linear(&mut rec, &Linear::new(TensorView::u32(&x, 1, 8), &weight, TensorView::f32(&y, 1, 4))).unwrap_err().to_string();
    assert!(err.contains("U32"), "{err}");
    // The matvec's options with more rows than the matvec takes.
    let (x, y) = (storage(&ctx, "x", 9 * 8), storage(&ctx, "y", 9 * 4));
    let norm = Linear { norm: Some(InputNorm::rows(1e-5, None)), ..Linear::new(TensorView::f32(&x, 9, 8), &weight, TensorView::f32(&y, 9, 4)) };
    let err = linear(&mut rec, &norm).unwrap_err().to_string();
    assert!(err.contains("at most 8 rows"), "{err}");
}

/// The decode step with the dt projection fused in (step_dt_states) against the reference:
/// dt = softplus(dt_low . dt_proj^T + bias), then the scan step; f32 and f16 dt_proj, dt_rank
/// not a multiple of the 16-byte unit, d_inner not a multiple of the workgroup's 4 channels,
/// d_state and dt_rank above 16 (more than one state and dt_low element per invocation).
#[test]
fn scan_step_with_fused_dt_matches_reference() {
    const TOL: f32 = 2e-4;
    let mut seed = 5000;
    let ctx = common::ctx();
    {
        for &(batch, d_inner, d_state, dt_rank) in &[
            (1, 1, 1, 1),
            (1, 100, 16, 5),
            (3, 70, 4, 8),
            (1, 40, 8, 12),
            (2, 130, 16, 48),
            (3, 37, 8, 16),
            (2, 9, 40, 37),
            (2, 136, 16, 48),
            (3, 260, 16, 16),
        ] {
            for f16_weights in [false, true] {
                seed += 10;
                let mut case = ScanCase::new(batch, 1, d_inner, d_state, dt_rank, seed);
                let width = dt_rank + 2 * d_state;
                let w = random_values(seed + 8, d_inner * dt_rank, 0.5);
                let bias = random_values(seed + 9, d_inner, 0.5);
                let (bits, rounded) = to_f16_rounded(&w);
                let dt_proj = if f16_weights {
                    GpuWeight::upload(&ctx, "dt_proj", d_inner, dt_rank, WeightData::F16(&bits))
                } else {
                    GpuWeight::upload(&ctx, "dt_proj", d_inner, dt_rank, WeightData::F32(&w))
                }
                .unwrap();
                // The reference's dt, from the same (rounded) weights.
                let w_used = if f16_weights { &rounded } else { &w };
                let dt_low: Vec<f32> = case.xdbl.chunks(width).flat_map(|row| row[..dt_rank].to_vec()).collect();
                let pre = reference::matmul(&dt_low, w_used, Some(&bias), batch, d_inner, dt_rank);
                case.dt = pre.iter().map(|&v| reference::softplus(v as f64) as f32).collect();
                let (want_y, want_h) = case.reference();

                let up = |label: &str, v: &[f32]| upload_f32(&ctx, label, v);
                let (x_y, xdbl, xz, a, d_skip, h, dt_bias) = (
                    up("x_y", &case.x),
                    up("xdbl", &case.xdbl),
                    up("xz", &case.xz),
                    up("a", &case.a),
                    up("d", &case.d_skip),
                    up("h", &case.h0),
                    up("b", &bias),
                );
                let (b, di, n) = (batch as u32, d_inner as u32, d_state as u32);
                let step = ScanStepDt {
                    x_y: TensorView::f32(&x_y, b, di),
                    xdbl: TensorView::f32(&xdbl, b, width as u32),
                    z: TensorView::f32(&xz, b, 2 * di).columns(di, di),
                    a: TensorView::f32(&a, di, n),
                    d_skip: TensorView::vector(&d_skip, di),
                    h: TensorView::f32(&h, b * di, n),
                    dt_proj: &dt_proj,
                    dt_bias: TensorView::vector(&dt_bias, di),
                    batch: b,
                };
                run(&ctx, |rec| scan_step_dt(rec, &step));
                let label = format!("step_dt batch={batch} d_inner={d_inner} d_state={d_state} dt_rank={dt_rank} f16={f16_weights}");
                assert_close(&format!("{label} y"), &read(&ctx, &x_y, want_y.len()), &want_y, TOL);
                assert_close(&format!("{label} h"), &read(&ctx, &h, want_h.len()), &want_h, TOL);
            }
        }
    }
}

/// in_proj then the decode conv step on its conv columns against the reference matmul then
/// conv1d: the conv output, the new conv state and in_proj's other columns. In place (the conv's
/// output over in_proj's conv columns) it is one kernel for any d_conv; into another buffer, two
/// dispatches. Mamba-1's layout (x | z) and Mamba-2's (z | xBC | dt); f32 and f16 weights, with
/// and without biases, aligned and unaligned k, batch 1 to 8, with and without the input's
/// RMSNorm on load, with and without its weight.
#[test]
fn in_proj_with_conv_step_matches_reference() {
    const TOL: f32 = 1e-4;
    let mut seed = 9000;
    let ctx = common::ctx();
    // (batch, columns before the conv's, conv channels, columns after, k, d_conv, biases)
    for &(batch, before, channels, after, k_in, conv_k, biases) in &[
        (1, 0, 40, 40, 24, 4, true),
        (3, 0, 100, 100, 13, 4, false),
        (2, 0, 64, 64, 32, 3, true),
        (8, 0, 72, 72, 48, 4, true),
        (1, 32, 64, 4, 16, 4, true),
        (5, 33, 57, 3, 21, 4, false),
        (3, 24, 40, 3, 40, 2, true),
    ] {
        // norm: 0 none, 1 an RMSNorm without a weight, 2 with one
        for (f16_weights, norm, in_place) in
            [(false, 0, true), (true, 0, true), (false, 1, true), (true, 2, true), (false, 2, false), (true, 1, false)]
        {
            seed += 10;
            let n = before + channels + after;
            let x = random_values(seed, batch * k_in, 1.0);
            let norm_w: Vec<f32> = random_values(seed + 6, k_in, 0.5).iter().map(|v| 1.0 + v).collect();
            let x_normed = match norm {
                0 => x.clone(),
                1 => reference::rms_norm(&x, &vec![1.0; k_in], 1e-3),
                _ => reference::rms_norm(&x, &norm_w, 1e-3),
            };
            let w = random_values(seed + 1, n * k_in, 0.5);
            let in_bias = random_values(seed + 2, n, 0.5);
            let conv_w = random_values(seed + 3, channels * conv_k, 0.7);
            let conv_b = random_values(seed + 4, channels, 0.3);
            let state0 = random_values(seed + 5, batch * channels * conv_k, 1.0);
            let (bits, rounded) = to_f16_rounded(&w);
            let weight = if f16_weights {
                GpuWeight::upload(&ctx, "in_proj", n, k_in, WeightData::F16(&bits))
            } else {
                GpuWeight::upload(&ctx, "in_proj", n, k_in, WeightData::F32(&w))
            }
            .unwrap();
            let xz_want = reference::matmul(&x_normed, if f16_weights { &rounded } else { &w }, biases.then_some(&in_bias[..]), batch, n, k_in);
            let conv_in: Vec<f32> = xz_want.chunks(n).flat_map(|row| row[before..before + channels].to_vec()).collect();
            let mut state_want = state0.clone();
            let conv_want = reference::conv1d_silu(&conv_in, &mut state_want, &conv_w, biases.then_some(&conv_b[..]), batch, channels, conv_k);

            let (x_buf, in_bias_buf, conv_w_buf, conv_b_buf, state, norm_buf) = (
                upload_f32(&ctx, "x", &x),
                upload_f32(&ctx, "b", &in_bias),
                upload_f32(&ctx, "cw", &conv_w),
                upload_f32(&ctx, "cb", &conv_b),
                upload_f32(&ctx, "s", &state0),
                upload_f32(&ctx, "norm", &norm_w),
            );
            let (xz, x_conv) = (storage(&ctx, "xz", batch * n), storage(&ctx, "x_conv", batch * channels));
            let (b, c) = (batch as u32, channels as u32);
            let xz_view = TensorView::f32(&xz, b, n as u32);
            let conv_x = xz_view.columns(before as u32, c);
            let in_proj = Linear {
                bias: biases.then(|| TensorView::vector(&in_bias_buf, n as u32)),
                norm: (norm > 0).then(|| InputNorm::rows(1e-3, (norm == 2).then(|| TensorView::vector(&norm_buf, k_in as u32)))),
                ..Linear::new(TensorView::f32(&x_buf, b, k_in as u32), &weight, xz_view)
            };
            let conv = Conv1d {
                x: conv_x,
                weight: TensorView::f32(&conv_w_buf, c, conv_k as u32),
                bias: biases.then(|| TensorView::vector(&conv_b_buf, c)),
                state: TensorView::f32(&state, b * c, conv_k as u32),
                out: if in_place { conv_x } else { TensorView::f32(&x_conv, b, c) },
                batch: b,
                t_len: 1,
            };
            let mut tape = Tape::new(&ctx, "in_proj+conv", 4);
            let mut rec = tape.record(&ctx);
            linear_conv_step(&mut rec, &in_proj, &conv).expect("op accepted its arguments");
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            rec.encode(&mut encoder);
            ctx.queue.submit([encoder.finish()]);
            // In place: one kernel; into x_conv: in_proj, then the conv.
            let fused = tape.kernels() == vec![("matvec.wgsl", "main_conv")];
            assert_eq!(fused, in_place, "kernels {:?}, in place {in_place}", tape.kernels());
            let label = format!("in_proj+conv batch={batch} n={n} conv={before}+{channels} k={k_in} d_conv={conv_k} f16={f16_weights} norm={norm}");
            let got = read(&ctx, &xz, batch * n);
            let cols =
                |xz: &[f32], from: usize, width: usize| -> Vec<f32> { xz.chunks(n).flat_map(|row| row[from..from + width].to_vec()).collect() };
            let conv_got = if in_place { cols(&got, before, channels) } else { read(&ctx, &x_conv, batch * channels) };
            assert_close(&format!("{label} conv"), &conv_got, &conv_want, TOL);
            assert_close(&format!("{label} state"), &read(&ctx, &state, state_want.len()), &state_want, TOL);
            for (from, width) in [(0, before), (before + channels, after)] {
                assert_close(&format!("{label} columns {from}.."), &cols(&got, from, width), &cols(&xz_want, from, width), TOL);
            }
        }
    }
}

/// The matvec's RMSNorm on load against the reference norm then matmul: whole rows and 2 to 16
/// groups (Mamba-2's gated norm, after the gate), with and without the norm's weight, rows of X
/// aligned (vec4 loads) or not, groups that split a 16-byte unit of W, a column slice of a wider
/// matrix (the LM head's last positions), f32 and f16 weights, batch 1 to 8, with accumulate,
/// and weights split into parts.
#[test]
fn matvec_norm_on_load_matches_reference() {
    const TOL: f32 = 1e-4;
    let contexts = [common::ctx(), common::own_ctx().with_max_binding_bytes(4096).unwrap()];
    let mut case = 20000u64;
    // (m, n, k, groups, x offset, x stride)
    for &(m, n, k, groups, x_offset, x_stride) in &[
        (1, 64, 64, 1, 0, 64),
        (3, 70, 128, 2, 0, 128),
        (5, 33, 96, 8, 4, 104),
        (8, 40, 48, 16, 0, 48),
        (2, 100, 45, 5, 3, 50),
        (1, 300, 256, 1, 128, 512),
        (4, 257, 160, 8, 0, 160),
    ] {
        for f16_weights in [false, true] {
            for (variant, ctx) in contexts.iter().enumerate() {
                case += 1;
                let with_weight = case % 2 == 0;
                let accumulate = case % 3 == 0;
                let x = random_values(case, m * x_stride, 1.5);
                let w = random_values(case + 1000, n * k, 0.5);
                let bias = random_values(case + 2000, n, 0.5);
                let norm_w: Vec<f32> = random_values(case + 3000, k, 0.5).iter().map(|v| 1.0 + v).collect();
                let y0 = random_values(case + 4000, m * n, 1.0);
                let (bits, w_rounded) = to_f16_rounded(&w);
                let weight = if f16_weights {
                    GpuWeight::upload(ctx, "w", n, k, WeightData::F16(&bits)).unwrap()
                } else {
                    GpuWeight::upload(ctx, "w", n, k, WeightData::F32(&w)).unwrap()
                };
                let (x_buf, b_buf, n_buf, y_buf) =
                    (upload_f32(ctx, "x", &x), upload_f32(ctx, "bias", &bias), upload_f32(ctx, "norm", &norm_w), upload_f32(ctx, "y", &y0));
                let norm = InputNorm { eps: 1e-3, groups: groups as u32, weight: with_weight.then(|| TensorView::vector(&n_buf, k as u32)) };
                let op = Linear {
                    bias: Some(TensorView::vector(&b_buf, n as u32)),
                    norm: Some(norm),
                    accumulate,
                    ..Linear::new(
                        TensorView { row_stride: x_stride as u32, ..TensorView::f32(&x_buf, m as u32, k as u32) }.columns(x_offset as u32, k as u32),
                        &weight,
                        TensorView::f32(&y_buf, m as u32, n as u32),
                    )
                };
                run(ctx, |rec| linear(rec, &op));
                let width = k / groups;
                let x_normed: Vec<f32> = x
                    .chunks(x_stride)
                    .flat_map(|row| {
                        (0..groups).flat_map(|g| {
                            let scale = if with_weight { norm_w[g * width..][..width].to_vec() } else { vec![1.0; width] };
                            reference::rms_norm(&row[x_offset + g * width..][..width], &scale, 1e-3)
                        })
                    })
                    .collect();
                let mut want = reference::matmul(&x_normed, if f16_weights { &w_rounded } else { &w }, Some(&bias), m, n, k);
                if accumulate {
                    want.iter_mut().zip(&y0).for_each(|(v, y)| *v += y);
                }
                let label = format!(
                    "norm on load m={m} n={n} k={k} groups={groups} f16={f16_weights} weight={with_weight} split={} accumulate={accumulate}",
                    variant == 1
                );
                assert_close(&label, &read(ctx, &y_buf, m * n), &want, TOL);
            }
        }
    }
}

/// The fused decode step (x_proj, FalconMamba's norms, dt_proj and the scan in one kernel)
/// against the reference composed of its parts: matmul, the norms of dt_low, B and C, matmul
/// and softplus, the selective scan. x and z are columns of in_proj's output rows and y goes
/// over z; f32 and f16 weights, FalconMamba's norms on and off, batch 1 to 8, d_inner over
/// several workgroups and not a multiple of 4, dt_rank not a multiple of the 16-byte unit.
#[test]
fn scan_step_fused_matches_reference() {
    const TOL: f32 = 2e-4;
    let ctx = common::ctx();
    let mut seed = 30000;
    for &(batch, d_inner, d_state, dt_rank) in
        &[(1, 1, 1, 1), (1, 128, 16, 4), (3, 70, 4, 8), (5, 300, 16, 12), (8, 64, 16, 37), (2, 260, 8, 48), (3, 37, 8, 16), (1, 520, 16, 33)]
    {
        for (f16_weights, falcon) in [(false, false), (true, false), (false, true), (true, true)] {
            seed += 10;
            let case = ScanCase::new(batch, 1, d_inner, d_state, dt_rank, seed);
            let rows = dt_rank + 2 * d_state;
            let upload = |name: &str, r: usize, c: usize, values: &[f32]| -> (GpuWeight, Vec<f32>) {
                let (bits, rounded) = to_f16_rounded(values);
                if f16_weights {
                    (GpuWeight::upload(&ctx, name, r, c, WeightData::F16(&bits)).unwrap(), rounded)
                } else {
                    (GpuWeight::upload(&ctx, name, r, c, WeightData::F32(values)).unwrap(), values.to_vec())
                }
            };
            let (x_proj, x_proj_w) = upload("x_proj", rows, d_inner, &random_values(seed + 7, rows * d_inner, 0.3));
            let (dt_proj, dt_proj_w) = upload("dt_proj", d_inner, dt_rank, &random_values(seed + 8, d_inner * dt_rank, 0.5));
            let dt_bias = random_values(seed + 9, d_inner, 0.5);
            // in_proj's output rows: x | z
            let proj: Vec<f32> =
                (0..batch).flat_map(|b| [&case.x[b * d_inner..][..d_inner], &case.xz[(2 * b + 1) * d_inner..][..d_inner]].concat()).collect();
            let z: Vec<f32> = proj.chunks(2 * d_inner).flat_map(|r| r[d_inner..].to_vec()).collect();

            let x_dbl = reference::matmul(&case.x, &x_proj_w, None, batch, rows, d_inner);
            let col = |from: usize, width: usize| -> Vec<f32> { x_dbl.chunks(rows).flat_map(|r| r[from..from + width].to_vec()).collect() };
            let (mut dt_low, mut b, mut c) = (col(0, dt_rank), col(dt_rank, d_state), col(dt_rank + d_state, d_state));
            if falcon {
                dt_low = reference::rms_norm(&dt_low, &vec![1.0; dt_rank], 1e-3);
                b = reference::rms_norm(&b, &vec![1.0; d_state], 1e-3);
                c = reference::rms_norm(&c, &vec![1.0; d_state], 1e-3);
            }
            let dt: Vec<f32> = reference::matmul(&dt_low, &dt_proj_w, Some(&dt_bias), batch, d_inner, dt_rank)
                .into_iter()
                .map(|v| reference::softplus(v as f64) as f32)
                .collect();
            let mut want_h = case.h0.clone();
            let inputs = reference::ScanInputs { x: &case.x, dt: &dt, b: &b, c: &c, z: &z, a: &case.a, d_skip: &case.d_skip };
            let want_y = reference::selective_scan(&inputs, &mut want_h, batch, d_inner, d_state);

            let up = |label: &str, v: &[f32]| upload_f32(&ctx, label, v);
            let (proj_b, a_b, d_b, h_b, bias_b) =
                (up("proj", &proj), up("a", &case.a), up("d", &case.d_skip), up("h", &case.h0), up("dt_bias", &dt_bias));
            let (bb, di, n) = (batch as u32, d_inner as u32, d_state as u32);
            let proj_view = TensorView::f32(&proj_b, bb, 2 * di);
            assert!(scan_step_fused_fits(&x_proj, &dt_proj, bb));
            let step = ScanStepFused {
                x: proj_view.columns(0, di),
                z_y: proj_view.columns(di, di),
                x_proj: &x_proj,
                dt_proj: &dt_proj,
                dt_bias: TensorView::vector(&bias_b, di),
                a: TensorView::f32(&a_b, di, n),
                d_skip: TensorView::vector(&d_b, di),
                h: TensorView::f32(&h_b, bb * di, n),
                mixer_norm_eps: falcon.then_some(1e-3),
                batch: bb,
            };
            let mut tape = Tape::new(&ctx, "fused step", 2);
            let mut rec = tape.record(&ctx);
            scan_step_fused(&mut rec, &step).expect("op accepted its arguments");
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            rec.encode(&mut encoder);
            ctx.queue.submit([encoder.finish()]);
            assert_eq!(tape.kernels(), vec![("scan_step_fused.wgsl", "main")]);
            let label = format!("fused step batch={batch} d_inner={d_inner} d_state={d_state} dt_rank={dt_rank} f16={f16_weights} falcon={falcon}");
            let got = read(&ctx, &proj_b, proj.len());
            let cols = |v: &[f32], from: usize| -> Vec<f32> { v.chunks(2 * d_inner).flat_map(|r| r[from..from + d_inner].to_vec()).collect() };
            assert_close(&format!("{label} y"), &cols(&got, d_inner), &want_y, TOL);
            assert_close(&format!("{label} x kept"), &cols(&got, 0), &case.x, 0.0);
            assert_close(&format!("{label} h"), &read(&ctx, &h_b, want_h.len()), &want_h, TOL);
        }
    }
    // Where x_proj's output for every sequence exceeds the kernel's workgroup memory (or the
    // weights are split), the forward pass takes the unfused path.
    let x_proj = GpuWeight::upload(&ctx, "x_proj", 400, 8, WeightData::F32(&[0.5; 3200])).unwrap();
    let dt_proj = GpuWeight::upload(&ctx, "dt_proj", 8, 368, WeightData::F32(&vec![0.5; 8 * 368])).unwrap();
    assert!(scan_step_fused_fits(&x_proj, &dt_proj, 6));
    assert!(!scan_step_fused_fits(&x_proj, &dt_proj, 7));
    assert!(!scan_step_fused_fits(&x_proj, &dt_proj, 9));
}

/// The GPU sampler (shaders/sample.wgsl) against the CPU sampler, its reference, over rows of
/// 1 to 5000 entries with ties and -inf, three sequences with different options each (every
/// mode: greedy, temperature, top-k, top-p, min-p, the repetition penalty over its window),
/// and the sequence's bookkeeping (position, budget, history). The GPU sums in f32 where the
/// CPU sums in f64, so a draw may differ where the uniform number or a top-p / min-p boundary
/// lies within rounding of a cumulative probability: a differing token must be the CPU's
/// with that boundary moved by 1e-5 (top-p 1e-4), and few may differ.
#[test]
fn gpu_sampler_matches_cpu_sampler() {
    use mamba_wgpu::ops::sample::{sample, SamplerBuffers, SequenceSampling, SequenceState};
    use mamba_wgpu::sampling::{uniform_at, Sampler, SamplingParams};
    let ctx = common::ctx();
    let base = SamplingParams::default();
    let options = [
        SamplingParams::greedy(),
        SamplingParams { repetition_penalty: 1.5, repetition_window: 6, ..SamplingParams::greedy() },
        base.clone(),
        SamplingParams { temperature: 0.7, top_k: 40, repetition_penalty: 1.3, repetition_window: 8, ..base.clone() },
        SamplingParams { top_p: 0.9, ..base.clone() },
        SamplingParams { min_p: 0.1, temperature: 1.5, ..base.clone() },
        SamplingParams { top_k: 20, top_p: 0.8, min_p: 0.05, repetition_penalty: 0.8, ..base.clone() },
        SamplingParams { temperature: 2.0, top_p: 0.5, ..base.clone() },
        SamplingParams { temperature: 1e-3, ..base.clone() },
        mamba_wgpu::sampling::GENERATION_DEFAULTS,
    ];
    let batch = 3;
    let (mut cases, mut moved) = (0, 0);
    for vocab in [1usize, 7, 300, 5000] {
        let buffers = SamplerBuffers::new(&ctx, batch, vocab);
        let ids = storage(&ctx, "ids", batch);
        for round in 0..12u64 {
            let mut rows = Vec::new();
            let mut sequences = Vec::new();
            for b in 0..batch as u64 {
                let seed = round * 31 + b;
                let mut row = random_values(seed + 1000 * vocab as u64, vocab, 4.0);
                if round % 3 == 1 {
                    row.iter_mut().for_each(|x| *x = (*x * 2.0).round() / 2.0); // ties
                }
                if vocab > 10 {
                    row[3] = f32::NEG_INFINITY;
                }
                rows.extend_from_slice(&row);
                let params = SamplingParams { seed: seed << 20, ..options[((round * 3 + b) % options.len() as u64) as usize].clone() };
                let recent: Vec<u32> = (0..20).map(|j| ((seed * 7 + j * 13) % vocab as u64) as u32).collect();
                sequences.push(SequenceSampling { params, eos: vec![], budget: 10, recent, position: 100 + round + b });
            }
            buffers.set(&ctx, &sequences).unwrap();
            let logits = upload_f32(&ctx, "logits", &rows);
            run(&ctx, |rec| sample(rec, &buffers, TensorView::f32(&logits, batch as u32, vocab as u32), TensorView::u32(&ids, batch as u32, 1), 0));
            let out: Vec<u32> = bytemuck::pod_collect_to_vec(&read_bytes(&ctx, &buffers.out, batch * 4));
            let next: Vec<u32> = bytemuck::pod_collect_to_vec(&read_bytes(&ctx, &ids, batch * 4));
            let states: Vec<SequenceState> =
                bytemuck::pod_collect_to_vec(&read_bytes(&ctx, &buffers.sequences, batch * std::mem::size_of::<SequenceState>()));
            for (b, sequence) in sequences.iter().enumerate() {
                let row = &rows[b * vocab..(b + 1) * vocab];
                let label = format!("vocab={vocab} round={round} sequence={b} {:?}", sequence.params);
                let u = uniform_at(sequence.params.seed, sequence.position) as f64;
                let cpu = |params: SamplingParams, u: f64| Sampler::new(params).unwrap().sample_with(row, &sequence.recent, u).unwrap();
                let want = cpu(sequence.params.clone(), u);
                cases += 1;
                if out[b] != want {
                    let p = &sequence.params;
                    let nearby = [
                        cpu(p.clone(), (u - 1e-5).max(0.0)),
                        cpu(p.clone(), (u + 1e-5).min(0.999_999)),
                        cpu(SamplingParams { top_p: (p.top_p - 1e-4).max(1e-4), ..p.clone() }, u),
                        cpu(SamplingParams { top_p: (p.top_p + 1e-4).min(1.0), ..p.clone() }, u),
                        cpu(SamplingParams { min_p: (p.min_p - 1e-5).max(0.0), ..p.clone() }, u),
                        cpu(SamplingParams { min_p: (p.min_p + 1e-5).min(1.0), ..p.clone() }, u),
                    ];
                    assert!(nearby.contains(&out[b]), "{label}: GPU drew {}, CPU {want}, nearby {nearby:?}", out[b]);
                    moved += 1;
                }
                assert_eq!(next[b], out[b], "{label}: the next step's input");
                let s = &states[b];
                assert_eq!((s.position, s.budget, s.done), (sequence.position as u32 + 1, 9, 0), "{label}");
                let kept = sequence.recent.len().min(sequence.params.repetition_window);
                assert_eq!(s.hist_count as usize, kept + 1, "{label}: history count");
            }
        }
    }
    assert!(moved * 50 <= cases, "{moved} of {cases} draws differ from the CPU's");
}

/// The sampler's stops: an EOS id ends a sequence (it is written, then NO_TOKEN in later
/// steps), so does the budget; a row with NaN or +inf, or only -inf, is BROKEN_ROW; the
/// history ring wraps.
#[test]
fn gpu_sampler_stops_and_reports_broken_rows() {
    use mamba_wgpu::ops::sample::{sample, SamplerBuffers, SequenceSampling, BROKEN_ROW, HISTORY_CAPACITY, NO_TOKEN};
    use mamba_wgpu::sampling::SamplingParams;
    let ctx = common::ctx();
    let vocab = 50;
    let buffers = SamplerBuffers::new(&ctx, 4, vocab);
    let ids = storage(&ctx, "ids", 4);
    let mut rows = random_values(5, 4 * vocab, 2.0);
    let argmax = |b: usize| (0..vocab).max_by(|&i, &j| rows[b * vocab + i].total_cmp(&rows[b * vocab + j])).unwrap() as u32;
    // A window as long as the ring, so the ring starts full and the new tokens wrap around.
    let params = SamplingParams { repetition_window: HISTORY_CAPACITY, ..SamplingParams::greedy() };
    let greedy = |eos: Vec<u32>, budget: usize| SequenceSampling { params: params.clone(), eos, budget, recent: vec![1; 3000], position: 0 };
    let (eos_id, b1) = (argmax(0), argmax(1));
    rows[2 * vocab + 7] = f32::NAN;
    rows[3 * vocab..].iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
    buffers.set(&ctx, &[greedy(vec![99, eos_id], 10), greedy(vec![], 2), greedy(vec![], 10), greedy(vec![], 10)]).unwrap();
    let logits = upload_f32(&ctx, "logits", &rows);
    run(&ctx, |rec| {
        for step in 0..3 {
            sample(rec, &buffers, TensorView::f32(&logits, 4, vocab as u32), TensorView::u32(&ids, 4, 1), step)?;
        }
        Ok(())
    });
    let out: Vec<u32> = bytemuck::pod_collect_to_vec(&read_bytes(&ctx, &buffers.out, 12 * 4));
    assert_eq!(out[0..4], [eos_id, b1, BROKEN_ROW, BROKEN_ROW], "step 0");
    assert_eq!(out[4..8], [NO_TOKEN, b1, NO_TOKEN, NO_TOKEN], "step 1");
    assert_eq!(out[8..12], [NO_TOKEN, NO_TOKEN, NO_TOKEN, NO_TOKEN], "step 2: the budget of 2 is spent");
    // The history kept the last HISTORY_CAPACITY of 3000 ids, then wrapped for the new ones.
    let history: Vec<u32> = bytemuck::pod_collect_to_vec(&read_bytes(&ctx, &buffers.history, 4 * HISTORY_CAPACITY * 4));
    let row1 = &history[HISTORY_CAPACITY..2 * HISTORY_CAPACITY];
    assert_eq!((row1[0], row1[1], row1[2]), (b1, b1, 1), "sequence 1's ring after two tokens");
}

/// The benchmark's bandwidth probe checks, when it is built, that each of its patterns read
/// the whole buffer it is timed on (every invocation's sum against the count of elements it
/// should have read), so the roofline cannot come from a kernel that skips data.
#[test]
fn bandwidth_probe_reads_every_byte_it_times() {
    let ctx = common::ctx();
    let mut probe = mamba_wgpu::bench::probes::BandwidthProbe::new(&ctx).unwrap_or_else(|e| panic!("{e}"));
    let gb_s = probe.measure(&ctx).unwrap();
    assert!(gb_s.is_finite() && gb_s > 0.0, "bandwidth {gb_s} GB/s");
}

/// Mamba-2's scan, chunked and sequential, against the reference: the released head shape
/// (head_dim 64, d_state 128) and odd ones, 1 to 8 groups, sequences across several chunks,
/// a finite time step limit, an incoming state, and xBC and dt read through column views of a
/// wider row, as in in_proj's output (z | xBC | dt); the sequential scan also with the gate,
/// y * silu(z).
#[test]
fn ssd_scan_matches_reference() {
    const TOL: f32 = 5e-4;
    let ctx = common::ctx();
    let chunk = mamba_wgpu::gpu::kernels::SSD_CHUNK as usize;
    let mut seed = 5000;
    for &(heads, head_dim, groups, d_state, dt_max) in
        &[(8, 64, 8, 128, f32::INFINITY), (4, 64, 1, 128, 0.2), (3, 5, 1, 7, f32::INFINITY), (6, 33, 2, 17, 0.5), (2, 16, 2, 1, f32::INFINITY)]
    {
        for &(batch, t) in &[(1, 1), (2, chunk - 1), (1, chunk + 1), (2, 3 * chunk + 5)] {
            seed += 10;
            let shape = SsdShape { n_heads: heads, head_dim, n_groups: groups, dt_min: 0.0, dt_max };
            let d_inner = heads * head_dim;
            let width = d_inner + 2 * groups * d_state;
            let rows = batch * t;
            // A row of in_proj's output: z (d_inner) | xBC (width) | dt (heads), then 2 more.
            let row = d_inner + width + heads + 2;
            let proj = random_values(seed, rows * row, 1.0);
            let cols = |from: usize, len: usize| -> Vec<f32> { proj.chunks(row).flat_map(|r| r[from..from + len].to_vec()).collect() };
            let (z, xbc, dt_raw) = (cols(0, d_inner), cols(d_inner, width), cols(d_inner + width, heads));
            let dt_bias: Vec<f32> = random_values(seed + 2, heads, 1.0).iter().map(|v| v - 1.5).collect();
            let a: Vec<f32> = random_values(seed + 3, heads, 1.0).iter().map(|v| -(0.3 + 2.0 * v.abs())).collect();
            let d_skip = random_values(seed + 4, heads, 1.0);
            let h0 = random_values(seed + 5, batch * d_inner * d_state, 0.5);
            let mut want_h = h0.clone();
            let inputs = reference::SsdInputs { xbc: &xbc, dt_raw: &dt_raw, dt_bias: &dt_bias, a: &a, d_skip: &d_skip };
            let want_y = reference::ssd_scan(&inputs, &shape, &mut want_h, batch, d_state);
            let gated_y: Vec<f32> = want_y.iter().zip(&z).map(|(&y, &z)| (y as f64 * reference::silu(z as f64)) as f32).collect();
            for (kind, gated) in [(SsdKind::Chunked, false), (SsdKind::Sequential, false), (SsdKind::Sequential, true)] {
                let up = |label: &str, v: &[f32]| upload_f32(&ctx, label, v);
                let (proj_b, bias_b, a_b, d_b, h_b) = (up("proj", &proj), up("dt_bias", &dt_bias), up("a", &a), up("d", &d_skip), up("h", &h0));
                let y_b = storage(&ctx, "y", rows * d_inner);
                let (state_len, decay_len) = chunk_buffer_elements(rows, batch, &shape, d_state);
                let (chunk_state, chunk_decay) = (storage(&ctx, "chunk_state", state_len), storage(&ctx, "chunk_decay", decay_len));
                let chunks = (batch * t.div_ceil(chunk)) as u32;
                let (r, n, hh, di) = (rows as u32, d_state as u32, heads as u32, d_inner as u32);
                let proj_view = TensorView::f32(&proj_b, r, row as u32);
                let op = Ssd {
                    shape,
                    d_state: n,
                    xbc: proj_view.columns(di, width as u32),
                    dt_raw: proj_view.columns(di + width as u32, hh),
                    dt_bias: TensorView::vector(&bias_b, hh),
                    a: TensorView::vector(&a_b, hh),
                    d_skip: TensorView::vector(&d_b, hh),
                    h: TensorView::f32(&h_b, (batch * d_inner) as u32, n),
                    y: TensorView::f32(&y_b, r, di),
                    gate: gated.then(|| proj_view.columns(0, di)),
                    chunk_state: Some(TensorView::f32(&chunk_state, chunks * d_inner as u32, n)),
                    chunk_decay: Some(TensorView::f32(&chunk_decay, chunks, hh)),
                    batch: batch as u32,
                    t_len: t as u32,
                };
                run(&ctx, |rec| ssd_scan(rec, &op, kind));
                let label =
                    format!("{kind:?} ssd heads={heads} head_dim={head_dim} groups={groups} d_state={d_state} batch={batch} t={t} gated={gated}");
                let want = if gated { &gated_y } else { &want_y };
                assert_close(&format!("{label} y"), &read(&ctx, &y_b, rows * d_inner), want, TOL);
                assert_close(&format!("{label} h"), &read(&ctx, &h_b, batch * d_inner * d_state), &want_h, TOL);
            }
        }
    }
}

/// The segment RMSNorm: Mamba-2's gated norm per group (z read through a column view) and
/// FalconMamba's weightless norms of a first segment and equal ones after it.
#[test]
fn group_rms_norm_matches_reference() {
    const TOL: f32 = 1e-5;
    let ctx = common::ctx();
    for &(rows, d_inner, groups) in &[(1, 8, 1), (3, 96, 8), (2, 600, 2), (5, 33, 3)] {
        let x = random_values(rows as u64, rows * d_inner, 2.0);
        let z_wide = random_values(7 + rows as u64, rows * 2 * d_inner, 2.0);
        let z: Vec<f32> = z_wide.chunks(2 * d_inner).flat_map(|r| r[d_inner..].to_vec()).collect();
        let w: Vec<f32> = random_values(9, d_inner, 0.5).iter().map(|v| 1.0 + v).collect();
        let want = reference::gated_group_rms_norm(&x, &z, &w, groups, 1e-5);
        let (x_b, z_b, w_b) = (upload_f32(&ctx, "x", &x), upload_f32(&ctx, "z", &z_wide), upload_f32(&ctx, "w", &w));
        let (r, di, width) = (rows as u32, d_inner as u32, (d_inner / groups) as u32);
        let gate = Some(TensorView::f32(&z_b, r, 2 * di).columns(di, di));
        let op =
            GroupRmsNorm { x: TensorView::f32(&x_b, r, di), first_width: width, width, gate, weight: Some(TensorView::vector(&w_b, di)), eps: 1e-5 };
        run(&ctx, |rec| group_rms_norm(rec, &op));
        assert_close(&format!("gated norm rows={rows} d_inner={d_inner} groups={groups}"), &read(&ctx, &x_b, rows * d_inner), &want, TOL);
    }
    // FalconMamba: dt_low (5) | B (16) | C (16), each normalized on its own, inside a wider row.
    let (rows, first, width, eps) = (4usize, 5usize, 16usize, 1e-3f32);
    let cols = first + 2 * width;
    let wide = random_values(77, rows * (cols + 3), 1.5);
    let x_b = upload_f32(&ctx, "x_dbl", &wide);
    let op = GroupRmsNorm {
        x: TensorView::f32(&x_b, rows as u32, (cols + 3) as u32).columns(2, cols as u32),
        first_width: first as u32,
        width: width as u32,
        gate: None,
        weight: None,
        eps,
    };
    run(&ctx, |rec| group_rms_norm(rec, &op));
    let got = read(&ctx, &x_b, rows * (cols + 3));
    for (r, (got_row, row)) in got.chunks(cols + 3).zip(wide.chunks(cols + 3)).enumerate() {
        let mut want = row[..2].to_vec();
        for (from, w) in [(2, first), (2 + first, width), (2 + first + width, width)] {
            want.extend(reference::rms_norm(&row[from..from + w], &vec![1.0; w], eps));
        }
        want.push(row[cols + 2]);
        assert_close(&format!("segment norm row {r}"), got_row, &want, TOL);
    }
}
