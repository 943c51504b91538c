//! GGUF block formats: the matrix kernels and the embedding gather on quantized weights against
//! the reference computed on the dequantized weights (src/quant's dequantize, itself checked
//! against the `gguf` Python package's values in tests/data/quant).

mod common;

use mamba_wgpu::gpu::tensor::{storage, upload_f32, TensorView, WeightData};
use mamba_wgpu::gpu::GpuWeight;
use mamba_wgpu::model::checkpoint::TensorBytes;
use mamba_wgpu::model::weight_mix::{MatrixRole, WeightMix};
use mamba_wgpu::model::weights::{load_weights, HostSink, TensorSink};
use mamba_wgpu::ops::linear::{linear, Activation, InputNorm, Linear};
use mamba_wgpu::quant::{self, BlockFormat};
use mamba_wgpu::reference::{self, RefState};
use mamba_wgpu::{Checkpoint, LoadOptions, Model, Session, WeightDtype};

use common::{assert_close, random_values, read, run};

/// A (rows, cols) matrix quantized to `format`: the blocks and their dequantized values.
fn quantized(format: BlockFormat, seed: u64, rows: usize, cols: usize) -> (Vec<u8>, Vec<f32>) {
    // Rows of different magnitudes, so that blocks get different scales.
    let values: Vec<f32> = random_values(seed, rows * cols, 1.0).iter().enumerate().map(|(i, v)| v * (1.0 + (i / cols % 5) as f32 * 0.3)).collect();
    let blocks = quant::quantize(format, &values);
    let mut back = Vec::new();
    quant::dequantize(format, &blocks, &mut back);
    (blocks, back)
}

/// Linear with quantized weights: the matvec (1 to 8 rows, with and without the norm on load
/// and accumulate) and the tiled matmul (more rows), rows of W not a multiple of the workgroup's
/// rows, rows several blocks long, weights whole and split into parts; against the reference
/// product with the dequantized weights.
#[test]
fn quantized_linear_matches_dequantized_reference() {
    const TOL: f32 = 2e-4;
    let contexts = [common::ctx(), common::own_ctx().with_max_binding_bytes(4096).unwrap()];
    let mut case = 0u64;
    for format in BlockFormat::ALL {
        let block = format.block_elements();
        for &(m, n, blocks) in &[(1usize, 33usize, 1usize), (3, 100, 3), (8, 7, 2), (9, 65, 2), (70, 130, 1), (1, 260, 5)] {
            let k = blocks * block;
            for (variant, ctx) in contexts.iter().enumerate() {
                case += 1;
                let (blocks_bytes, w) = quantized(format, case, n, k);
                let weight = GpuWeight::upload(ctx, "w", n, k, WeightData::Blocks(format, &blocks_bytes)).unwrap();
                if variant == 1 && blocks_bytes.len() > 8192 {
                    assert!(weight.parts.len() > 1, "{format}: a {}-byte weight is split at 4096 bytes", blocks_bytes.len());
                }
                let x = random_values(case + 1000, m * k, 1.0);
                let bias = random_values(case + 2000, n, 0.5);
                let y0 = random_values(case + 3000, m * n, 1.0);
                let norm_w: Vec<f32> = random_values(case + 4000, k, 0.5).iter().map(|v| 1.0 + v).collect();
                let matvec = m <= 8;
                let norm = matvec && case % 2 == 0;
                let accumulate = matvec && case % 3 == 0;
                let activation = if case % 4 == 1 { Activation::Softplus } else { Activation::None };
                let (x_buf, b_buf, y_buf, n_buf) =
                    (upload_f32(ctx, "x", &x), upload_f32(ctx, "bias", &bias), upload_f32(ctx, "y", &y0), upload_f32(ctx, "norm", &norm_w));
                let op = Linear {
                    bias: Some(TensorView::vector(&b_buf, n as u32)),
                    activation,
                    norm: norm.then(|| InputNorm::rows(1e-3, Some(TensorView::vector(&n_buf, k as u32)))),
                    accumulate,
                    ..Linear::new(TensorView::f32(&x_buf, m as u32, k as u32), &weight, TensorView::f32(&y_buf, m as u32, n as u32))
                };
                run(ctx, |rec| linear(rec, &op));
                let x_ref = if norm { reference::rms_norm(&x, &norm_w, 1e-3) } else { x.clone() };
                let mut want = reference::matmul(&x_ref, &w, Some(&bias), m, n, k);
                if activation == Activation::Softplus {
                    want.iter_mut().for_each(|v| *v = reference::softplus(*v as f64) as f32);
                }
                if accumulate {
                    want.iter_mut().zip(&y0).for_each(|(v, y)| *v += y);
                }
                let label = format!("{format} m={m} n={n} k={k} split={} norm={norm} accumulate={accumulate} {activation:?}", variant == 1);
                assert_close(&label, &read(ctx, &y_buf, m * n), &want, TOL);
            }
        }
    }
}

/// The embedding gather dequantizes the rows it reads, across the parts of a split table.
#[test]
fn quantized_embedding_gathers_dequantized_rows() {
    let ctx = common::own_ctx().with_max_binding_bytes(4096).unwrap();
    let ids: Vec<u32> = vec![0, 299, 13, 13, 40, 41, 70, 98, 200, 201];
    for format in BlockFormat::ALL {
        let (vocab, d) = (300, 2 * format.block_elements());
        let (bytes, table) = quantized(format, 77, vocab, d);
        let weight = GpuWeight::upload(&ctx, "emb", vocab, d, WeightData::Blocks(format, &bytes)).unwrap();
        assert!(weight.parts.len() > 1, "{format}: the table is split");
        let ids_buf = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: 4 * ids.len() as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        ctx.queue.write_buffer(&ids_buf, 0, bytemuck::cast_slice(&ids));
        let out = storage(&ctx, "out", ids.len() * d);
        let rows = ids.len() as u32;
        run(&ctx, |rec| {
            mamba_wgpu::ops::embedding::embedding(rec, &weight, TensorView::u32(&ids_buf, rows, 1), TensorView::f32(&out, rows, d as u32))
        });
        let want: Vec<f32> = ids.iter().flat_map(|&i| table[i as usize * d..][..d].to_vec()).collect();
        assert_close(&format!("embedding {format}"), &read(&ctx, &out, want.len()), &want, 1e-6);
    }
}

/// A matrix whose rows are not whole blocks, or whose bytes disagree with its shape, is refused
/// with the tensor's name.
#[test]
fn blocks_that_do_not_fit_the_shape_are_refused() {
    let ctx = common::ctx();
    let bytes = vec![0u8; 34 * 3];
    let err =
        GpuWeight::upload(&ctx, "blk.0.ssm_in.weight", 3, 40, WeightData::Blocks(BlockFormat::Q8_0, &bytes)).err().expect("40 is not whole blocks");
    assert!(err.to_string().contains("blk.0.ssm_in.weight") && err.to_string().contains("blocks"), "{err}");
    let err =
        GpuWeight::upload(&ctx, "blk.0.ssm_out.weight", 4, 32, WeightData::Blocks(BlockFormat::Q8_0, &bytes)).err().expect("4 rows need 136 bytes");
    assert!(err.to_string().contains("blk.0.ssm_out.weight") && err.to_string().contains("136"), "{err}");
}

/// tests/data/quant/vectors.safetensors, made by tools/make_quant_vectors.py with the `gguf`
/// package (llama.cpp's gguf-py): per format, blocks and the package's dequantization of them.
struct Vectors(Vec<u8>);

impl Vectors {
    fn load() -> Self {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/quant/vectors.safetensors");
        Vectors(std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}")))
    }

    /// Tensor `name` as bytes, or None where the file does not hold it.
    fn bytes(&self, name: &str) -> Option<Vec<u8>> {
        let file = safetensors::SafeTensors::deserialize(&self.0).expect("vectors.safetensors parses");
        file.tensor(name).ok().map(|t| t.data().to_vec())
    }

    fn f32s(&self, name: &str) -> Option<Vec<f32>> {
        self.bytes(name).map(|b| b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
    }
}

/// The gguf package's name of a format.
fn gguf_name(format: BlockFormat) -> &'static str {
    match format {
        BlockFormat::Q8_0 => "Q8_0",
        BlockFormat::Q4_0 => "Q4_0",
        BlockFormat::Q4K => "Q4_K",
        BlockFormat::Q5K => "Q5_K",
        BlockFormat::Q6K => "Q6_K",
        BlockFormat::Q5_0 => "Q5_0",
        BlockFormat::Q5_1 => "Q5_1",
        BlockFormat::Q4_1 => "Q4_1",
    }
}

/// Dequantization on the CPU and in the GPU's embedding gather (each block one row of a table)
/// equals the gguf package's, on its blocks and, for Q8_0 and Q4_0, on blocks of random bytes.
#[test]
fn dequantization_matches_the_gguf_package() {
    let vectors = Vectors::load();
    let ctx = common::ctx();
    for format in BlockFormat::ALL {
        for set in ["", "random_"] {
            let name = gguf_name(format);
            let Some(blocks) = vectors.bytes(&format!("{name}.{set}blocks")) else {
                assert!(set == "random_" && format.block_elements() == 256, "{name}.{set}blocks missing");
                continue;
            };
            let want = vectors.f32s(&format!("{name}.{set}values")).expect("values beside blocks");
            let mut cpu = Vec::new();
            quant::dequantize(format, &blocks, &mut cpu);
            assert_close(&format!("{name}.{set}values on the CPU"), &cpu, &want, 0.0);
            let (rows, d) = (blocks.len() / format.block_bytes(), format.block_elements());
            let table = GpuWeight::upload(&ctx, "blocks", rows, d, WeightData::Blocks(format, &blocks)).unwrap();
            let ids: Vec<u32> = (0..rows as u32).collect();
            let ids_buf = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: 4 * rows as u64,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            ctx.queue.write_buffer(&ids_buf, 0, bytemuck::cast_slice(&ids));
            let out = storage(&ctx, "out", rows * d);
            run(&ctx, |rec| {
                mamba_wgpu::ops::embedding::embedding(
                    rec,
                    &table,
                    TensorView::u32(&ids_buf, rows as u32, 1),
                    TensorView::f32(&out, rows as u32, d as u32),
                )
            });
            assert_close(&format!("{name}.{set}values on the GPU"), &read(&ctx, &out, rows * d), &want, 1e-6);
        }
    }
}

/// The 32-value formats quantize byte for byte as the gguf package's port of llama.cpp's
/// reference quantizers; the K formats (which the package cannot quantize) stay within a bound of the
/// package's sources (a zero block exactly, an outlier block included).
#[test]
fn quantization_matches_the_gguf_package() {
    let vectors = Vectors::load();
    for format in BlockFormat::ALL {
        let name = gguf_name(format);
        let source = vectors.f32s(&format!("{name}.source")).expect("source");
        let ours = quant::quantize(format, &source);
        if format.block_elements() == 32 {
            let theirs = vectors.bytes(&format!("{name}.blocks")).expect("blocks");
            assert_eq!(ours, theirs, "{name}: blocks differ from gguf.quants.quantize");
            continue;
        }
        let mut back = Vec::new();
        quant::dequantize(format, &ours, &mut back);
        let bits = match format {
            BlockFormat::Q4K => 4,
            BlockFormat::Q5K => 5,
            _ => 6,
        };
        for (b, (block, got)) in source.chunks(256).zip(back.chunks(256)).enumerate() {
            let range = block.iter().fold(0f32, |m, v| m.max(v.abs())) * 2.0;
            let bound = range / ((1 << bits) - 1) as f32;
            let err = block.iter().zip(got).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(err <= bound, "{name} block {b}: max error {err} above {bound}");
        }
    }
}

/// The CPU reference's sink for a model quantized at load: each matrix stored as `mix` says
/// (blocks quantized then dequantized, f16 rounded), vectors f32; what the GPU model holds.
struct MixSink(WeightMix);

impl TensorSink for MixSink {
    type Matrix = Vec<f32>;
    type Vector = Vec<f32>;

    fn matrix(&mut self, t: TensorBytes<'_>, role: MatrixRole) -> mamba_wgpu::Result<Vec<f32>> {
        let values = t.to_f32();
        let cols = t.shape[1..].iter().product();
        Ok(match self.0.storage(role, cols) {
            WeightDtype::F32 => values,
            WeightDtype::F16 => values.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect(),
            WeightDtype::Block(f) => {
                let mut back = Vec::new();
                quant::dequantize(f, &quant::quantize(f, &values), &mut back);
                back
            }
        })
    }

    fn vector_mapped(&mut self, t: TensorBytes<'_>, map: fn(f32) -> f32) -> mamba_wgpu::Result<Vec<f32>> {
        HostSink.vector_mapped(t, map)
    }
}

/// Models quantized as they load (`--dtype`) against the CPU reference on the same quantized
/// weights dequantized: every family, block formats whose blocks fit the fixtures' rows and
/// others that fall back (Q8_0 or f16, weight_mix.rs), the prompt's logits at every position
/// and then decode steps (the matvec path, and for Mamba-1 the unfused scan step that a
/// block-format x_proj takes).
#[test]
fn quantized_models_match_the_reference_on_their_dequantized_weights() {
    const TOL: f32 = 2e-3;
    let ctx = common::ctx();
    let shipped = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/models/shakespeare-mamba"));
    let cases = [
        (shipped.clone(), BlockFormat::Q4K),
        (shipped, BlockFormat::Q6K),
        (common::fixture("mamba1-small"), BlockFormat::Q8_0),
        (common::fixture("mamba1-small"), BlockFormat::Q4_0),
        (common::fixture("falcon-mamba-tiny"), BlockFormat::Q5K),
        (common::fixture("mamba2-tiny"), BlockFormat::Q4_0),
    ];
    for (dir, format) in cases {
        let ckpt = Checkpoint::open(&dir).unwrap();
        let c = &ckpt.config;
        let mix = WeightMix::new(WeightDtype::Block(format));
        let options = LoadOptions { weight_dtype: Some(WeightDtype::Block(format)), ..Default::default() };
        let model = std::sync::Arc::new(Model::load(ctx.clone(), &ckpt, options, &mut |_| {}).unwrap());
        let host = load_weights(&ckpt, &mut MixSink(mix)).unwrap();
        let label = format!("{} {format}", dir.display());
        let prompt: Vec<u32> = (0..24u32).map(|i| (i * 7919 + 13) % c.vocab_size as u32).collect();
        let mut state = RefState::zeros(c, 1);
        let want = reference::forward(&host, c, &prompt, 1, &mut state);
        let mut session = Session::new(model, 1).unwrap();
        let got = pollster::block_on(session.prefill_all_logits(std::slice::from_ref(&prompt))).unwrap();
        assert_close(&format!("{label} prompt logits"), &got, &want, TOL);
        for step in 0..3u32 {
            let token = (step * 31 + 5) % c.vocab_size as u32;
            let want = reference::forward(&host, c, &[token], 1, &mut state);
            let got = pollster::block_on(session.step(&[token])).unwrap();
            assert_close(&format!("{label} decode step {step}"), &got, &want, TOL);
        }
    }
}

/// FalconMamba-7B's shape at q4_k_m (random weights of its exact shapes) loads within 4.5 GB of
/// GPU memory, weights and one sequence's state together, on a device held to WebGPU's
/// default 128 MiB per storage binding: every weight part fits one binding.
#[test]
fn falcon_mamba_7b_at_q4_k_m_fits_in_4_5_gb_and_webgpu_bindings() {
    use mamba_wgpu::bench::synthetic::{config_for, SyntheticModel};
    const BINDING: u64 = 128 << 20;
    let ctx = common::own_ctx().with_max_binding_bytes(BINDING).unwrap();
    let dtype = WeightDtype::Block(BlockFormat::Q4K);
    let source = SyntheticModel { config: config_for("falcon-mamba-7b").unwrap(), name: "falcon-mamba-7b".into(), dtype };
    let model = Model::load(ctx, &source, LoadOptions { weight_dtype: Some(dtype), ..Default::default() }, &mut |_| {}).unwrap();
    let w = &model.weights;
    let lm_head = w.lm_head.as_ref().expect("FalconMamba-7B's head is untied");
    assert_eq!(lm_head.dtype, WeightDtype::Block(BlockFormat::Q6K), "the output matrix in Q6_K, as llama.cpp's q4_k_m");
    assert_eq!(w.layers[0].in_proj.dtype, dtype);
    let matrices = std::iter::once(&w.embedding).chain(std::iter::once(lm_head)).chain(w.layers.iter().flat_map(|l| [&l.in_proj, &l.out_proj]));
    for m in matrices {
        for part in &m.parts {
            assert!(part.buffer.size() <= BINDING, "a part of {} bytes exceeds the binding", part.buffer.size());
        }
    }
    let session = Session::new(std::sync::Arc::new(model), 1).unwrap();
    let (state, _) = session.memory_bytes();
    let total = session.model().weight_bytes() + state;
    println!("falcon-mamba-7b q4_k_m: weights {:.2} GB + state {:.1} MB", session.model().weight_bytes() as f64 / 1e9, state as f64 / 1e6);
    assert!(total <= 4_500_000_000, "{total} bytes");
}
