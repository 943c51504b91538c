//! Whole-model behaviour on the fixture checkpoints: loading variants (state-spaces naming,
//! shards, f16 / bf16 storage, split weights), the recurrent equivalences (prefill L then one
//! step = prefill L + 1; snapshot, restore and continue = continue straight on), and bad
//! input, each an Error that names the problem.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use half::{bf16, f16};
use mamba_wgpu::gpu::GpuContext;
use mamba_wgpu::model::weights::{load_weights, HostSink};
use mamba_wgpu::reference::{self, RefState};
use mamba_wgpu::{Checkpoint, LoadOptions, Model, Session, WeightDtype};
use safetensors::{Dtype, SafeTensors};

/// These tests use the repository's fixtures by name (tests/fixtures/mamba1-tiny, mamba1-small).
fn fixture(name: &str) -> PathBuf {
    let dir = common::fixture(name);
    assert!(dir.is_dir(), "fixture {} is missing", dir.display());
    dir
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mamba-wgpu-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// (dtype, shape, bytes) of every tensor of a fixture's model.safetensors.
fn fixture_tensors(name: &str) -> Vec<(String, Dtype, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(fixture(name).join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<_> = st.tensors().into_iter().map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec())).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn write_safetensors(path: &Path, tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(String, safetensors::tensor::TensorView)> =
        tensors.iter().map(|(n, d, s, b)| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytemuck::pod_collect_to_vec(bytes)
}

fn load(ctx: Arc<GpuContext>, dir: &Path, dtype: Option<WeightDtype>) -> mamba_wgpu::Result<Arc<Model>> {
    Model::open(ctx, dir, LoadOptions { weight_dtype: dtype, ..Default::default() }).map(Arc::new)
}

/// The reference forward's logits for a checkpoint (its own weights, after any rounding).
fn reference_logits(dir: &Path, prompts: &[Vec<u32>]) -> Vec<f32> {
    let ckpt = Checkpoint::open(dir).unwrap();
    let weights = load_weights(&ckpt, &mut HostSink).unwrap();
    let ids: Vec<u32> = prompts.concat();
    let mut state = RefState::zeros(&ckpt.config, prompts.len());
    reference::forward(&weights, &ckpt.config, &ids, prompts.len(), &mut state)
}

fn prompt(len: usize, vocab: u32, seed: u32) -> Vec<u32> {
    (0..len as u32).map(|i| (i * 7919 + seed * 104729) % vocab).collect()
}

fn all_logits(model: Arc<Model>, prompts: &[Vec<u32>]) -> Vec<f32> {
    let mut s = Session::new(model, prompts.len()).unwrap();
    pollster::block_on(s.prefill_all_logits(prompts)).unwrap()
}

/// The CPU reference itself reproduces Hugging Face (so it can be trusted as the oracle).
#[test]
fn reference_matches_fixture_logits() {
    let dir = fixture("mamba1-tiny");
    let expected = std::fs::read(dir.join("expected.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&expected).unwrap();
    let ids: Vec<i64> = bytemuck::pod_collect_to_vec(st.tensor("input_ids").unwrap().data());
    let prompts: Vec<Vec<u32>> = ids.chunks(37).map(|r| r.iter().map(|&v| v as u32).collect()).collect();
    let want = f32s(st.tensor("logits").unwrap().data());
    let (abs, _) = common::assert_close("reference logits", &reference_logits(&dir, &prompts), &want, 1e-4);
    println!("reference vs HF: max abs diff {abs:.2e}");
}

#[test]
fn prefill_then_step_equals_longer_prefill() {
    const TOL: f32 = 1e-4;
    let model = load(common::ctx(), &fixture("mamba1-small"), None).unwrap();
    let vocab = model.config.vocab_size as u32;
    // 130 tokens: several scan chunks, and with a 64-token prefill chunk, three submits.
    let prompts = vec![prompt(130, vocab, 1), prompt(130, vocab, 2), prompt(130, vocab, 3)];
    let mut a = Session::with_chunk(model.clone(), 3, 64).unwrap();
    pollster::block_on(a.prefill(&prompts.iter().map(|p| p[..129].to_vec()).collect::<Vec<_>>())).unwrap();
    let stepped = pollster::block_on(a.step(&prompts.iter().map(|p| p[129]).collect::<Vec<_>>())).unwrap();
    let mut b = Session::new(model, 3).unwrap();
    let straight = pollster::block_on(b.prefill(&prompts)).unwrap();
    common::assert_close("prefill 129 + step vs prefill 130", &stepped, &straight, TOL);
    let (sa, sb) = (pollster::block_on(a.read_state()).unwrap(), pollster::block_on(b.read_state()).unwrap());
    for (layer, ((ca, ha), (cb, hb))) in sa.iter().zip(&sb).enumerate() {
        common::assert_close(&format!("conv state {layer}"), ca, cb, TOL);
        common::assert_close(&format!("ssm state {layer}"), ha, hb, TOL);
    }
}

// A one-token run records the next one's commands while the GPU works (Session::run): steps
// of different kinds in a row must each use their own commands and the ids given to them.
#[test]
fn mixed_decode_steps_equal_straight_prefills() {
    const TOL: f32 = 1e-4;
    let model = load(common::ctx(), &fixture("mamba1-small"), None).unwrap();
    let vocab = model.config.vocab_size as u32;
    let prompts = [prompt(14, vocab, 7), prompt(14, vocab, 8)];
    let upto = |n: usize| prompts.iter().map(|p| p[..n].to_vec()).collect::<Vec<_>>();
    let at = |i: usize| prompts.iter().map(|p| p[i]).collect::<Vec<_>>();
    let straight = |n: usize| pollster::block_on(Session::new(model.clone(), 2).unwrap().prefill(&upto(n))).unwrap();
    let argmax = |logits: &[f32]| -> Vec<u32> {
        logits.chunks(vocab as usize).map(|row| row.iter().enumerate().fold(0, |best, (i, &v)| if v > row[best] { i } else { best }) as u32).collect()
    };

    let mut s = Session::new(model.clone(), 2).unwrap();
    pollster::block_on(s.prefill(&upto(9))).unwrap();
    for i in 9..11 {
        let logits = pollster::block_on(s.step(&at(i))).unwrap();
        common::assert_close(&format!("step {i}"), &logits, &straight(i + 1), TOL);
    }
    assert_eq!(pollster::block_on(s.step_greedy(&at(11))).unwrap(), argmax(&straight(12)), "greedy step 11");
    pollster::block_on(s.feed(&at(12).iter().map(|&t| vec![t]).collect::<Vec<_>>())).unwrap();
    let logits = pollster::block_on(s.step(&at(13))).unwrap();
    common::assert_close("step 13", &logits, &straight(14), TOL);
}

#[test]
fn snapshot_restore_continues_like_straight_generation() {
    let model = load(common::ctx(), &fixture("mamba1-tiny"), None).unwrap();
    let prompts = vec![prompt(20, 512, 5), prompt(20, 512, 6)];
    let greedy = |s: &mut Session, first: Vec<u32>, n: usize| -> Vec<Vec<u32>> {
        let mut next = first;
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(next.clone());
            next = pollster::block_on(s.step_greedy(&next)).unwrap();
        }
        out
    };
    let mut s = Session::new(model.clone(), 2).unwrap();
    let first = pollster::block_on(s.prefill_greedy(&prompts)).unwrap();
    let snapshot = pollster::block_on(s.snapshot()).unwrap();
    let straight = greedy(&mut s, first.clone(), 10);

    let mut restored = Session::new(model.clone(), 2).unwrap();
    restored.restore(&snapshot).unwrap();
    assert_eq!(restored.position(), 20);
    assert_eq!(greedy(&mut restored, first.clone(), 10), straight);

    // Reset forgets the prompt: generation then differs from the continued one... and equals a
    // fresh session's.
    restored.reset();
    let mut fresh = Session::new(model, 2).unwrap();
    assert_eq!(pollster::block_on(restored.step_greedy(&first)).unwrap(), pollster::block_on(fresh.step_greedy(&first)).unwrap());
}

#[test]
fn snapshot_from_another_model_is_refused() {
    let tiny = load(common::ctx(), &fixture("mamba1-tiny"), None).unwrap();
    let small = load(common::ctx(), &fixture("mamba1-small"), None).unwrap();
    let mut s = Session::new(tiny.clone(), 1).unwrap();
    pollster::block_on(s.prefill(&[vec![1, 2, 3]])).unwrap();
    let snap = pollster::block_on(s.snapshot()).unwrap();
    let err = Session::new(small, 1).unwrap().restore(&snap).unwrap_err().to_string();
    assert!(err.contains("different model"), "{err}");
    let err = Session::new(tiny.clone(), 2).unwrap().restore(&snap).unwrap_err().to_string();
    assert!(err.contains("batch"), "{err}");
    let err = Session::new(tiny, 1).unwrap().restore(&snap[..snap.len() - 4]).unwrap_err().to_string();
    assert!(err.contains("bytes of state"), "{err}");
}

/// Weights split into many parts (a tiny binding limit) give the same logits.
#[test]
fn split_weights_match_unsplit() {
    let dir = fixture("mamba1-small");
    let prompts = vec![prompt(40, 1000, 9)];
    let whole = all_logits(load(common::ctx(), &dir, None).unwrap(), &prompts);
    let split_ctx = common::own_ctx().with_max_binding_bytes(64 * 1024).unwrap();
    let model = load(split_ctx, &dir, None).unwrap();
    assert!(model.weights.embedding.parts.len() > 1 && model.weights.layers[0].in_proj.parts.len() > 1);
    // 1e-4, not tighter: the split context's smaller binding limit also shortens the prefill
    // chunks, and on GPUs the chunked scan then composes the steps in another order.
    common::assert_close("split vs whole", &all_logits(model, &prompts), &whole, 1e-4);
    // Decode steps, with x_proj split too (16 KiB): the fused scan step takes weights in one
    // part only, so these steps take the unfused kernels.
    let small = load(common::own_ctx().with_max_binding_bytes(16 * 1024).unwrap(), &dir, None).unwrap();
    assert!(matches!(&small.weights.layers[0].ssm, mamba_wgpu::model::weights::SsmWeights::Selective { x_proj, .. } if x_proj.parts.len() > 1));
    let steps = |model: Arc<Model>| -> Vec<f32> {
        let mut session = Session::new(model, 1).unwrap();
        pollster::block_on(session.prefill(&prompts)).unwrap();
        (0..3).flat_map(|i| pollster::block_on(session.step(&[7 * i + 1])).unwrap()).collect()
    };
    common::assert_close("decode steps, split vs whole", &steps(small), &steps(load(common::ctx(), &dir, None).unwrap()), 1e-4);
}

/// f16 storage (converted at load, or stored as F16 / BF16 in the file) against the reference
/// run on the same rounded weights.
#[test]
fn half_precision_weights_match_reference_on_rounded_weights() {
    const TOL: f32 = 1e-3;
    let prompts = vec![prompt(70, 512, 4)];
    for (label, convert) in [("F16", Dtype::F16), ("BF16", Dtype::BF16)] {
        let dir = temp_dir(&format!("half-{label}"));
        std::fs::copy(fixture("mamba1-tiny").join("config.json"), dir.join("config.json")).unwrap();
        let tensors: Vec<_> = fixture_tensors("mamba1-tiny")
            .into_iter()
            .map(|(n, _, s, b)| {
                let bits: Vec<u16> =
                    f32s(&b).iter().map(|&v| if convert == Dtype::F16 { f16::from_f32(v).to_bits() } else { bf16::from_f32(v).to_bits() }).collect();
                (n, convert, s, bytemuck::cast_slice(&bits).to_vec())
            })
            .collect();
        write_safetensors(&dir.join("model.safetensors"), &tensors);
        let model = load(common::ctx(), &dir, None).unwrap();
        assert_eq!(model.weight_dtype, WeightDtype::F16, "{label} checkpoints load as f16");
        let got = all_logits(model, &prompts);
        let (abs, _) = common::assert_close(&format!("{label} weights"), &got, &reference_logits(&dir, &prompts), TOL);
        println!("{label}: max abs diff {abs:.2e}");
    }
    // An f32 checkpoint converted to f16 at load: close to the f32 logits.
    let dir = fixture("mamba1-tiny");
    let f32_logits = all_logits(load(common::ctx(), &dir, None).unwrap(), &prompts);
    let f16_logits = all_logits(load(common::ctx(), &dir, Some(WeightDtype::F16)).unwrap(), &prompts);
    common::assert_close("f16 at load vs f32", &f16_logits, &f32_logits, 2e-2);
}

/// The original state-spaces naming, and shards listed in model.safetensors.index.json.
#[test]
fn state_spaces_naming_and_shards_load_the_same_model() {
    let prompts = vec![prompt(30, 512, 8)];
    let want = all_logits(load(common::ctx(), &fixture("mamba1-tiny"), None).unwrap(), &prompts);
    let tensors = fixture_tensors("mamba1-tiny");

    let dir = temp_dir("state-spaces");
    std::fs::write(
        dir.join("config.json"),
        r#"{"d_model": 64, "n_layer": 2, "vocab_size": 512, "ssm_cfg": {}, "rms_norm": true,
        "residual_in_fp32": true, "fused_add_norm": true, "pad_vocab_size_multiple": 8, "tie_embeddings": true}"#,
    )
    .unwrap();
    let renamed: Vec<_> =
        tensors.iter().map(|(n, d, s, b)| (n.replace("backbone.embeddings.", "backbone.embedding."), *d, s.clone(), b.clone())).collect();
    write_safetensors(&dir.join("model.safetensors"), &renamed);
    common::assert_close("state-spaces naming", &all_logits(load(common::ctx(), &dir, None).unwrap(), &prompts), &want, 0.0);

    let dir = temp_dir("shards");
    std::fs::copy(fixture("mamba1-tiny").join("config.json"), dir.join("config.json")).unwrap();
    let (first, second) = tensors.split_at(tensors.len() / 2);
    write_safetensors(&dir.join("model-00001-of-00002.safetensors"), first);
    write_safetensors(&dir.join("model-00002-of-00002.safetensors"), second);
    let map: HashMap<&str, &str> = first
        .iter()
        .map(|t| (t.0.as_str(), "model-00001-of-00002.safetensors"))
        .chain(second.iter().map(|t| (t.0.as_str(), "model-00002-of-00002.safetensors")))
        .collect();
    std::fs::write(dir.join("model.safetensors.index.json"), serde_json::json!({"metadata": {}, "weight_map": map}).to_string()).unwrap();
    common::assert_close("sharded", &all_logits(load(common::ctx(), &dir, None).unwrap(), &prompts), &want, 0.0);
}

/// A model folder whose files are damaged in one way; returns the load error text.
fn load_error(name: &str, edit: impl FnOnce(&Path, &mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>)) -> String {
    let dir = temp_dir(name);
    std::fs::copy(fixture("mamba1-tiny").join("config.json"), dir.join("config.json")).unwrap();
    let mut tensors = fixture_tensors("mamba1-tiny");
    edit(&dir, &mut tensors);
    if !dir.join("model.safetensors").exists() {
        write_safetensors(&dir.join("model.safetensors"), &tensors);
    }
    match load(common::ctx(), &dir, None) {
        Ok(_) => panic!("{name}: loading succeeded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_checkpoints_are_errors_that_name_the_problem() {
    let err = load_error("truncated", |dir, tensors| {
        write_safetensors(&dir.join("model.safetensors"), tensors);
        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        std::fs::write(dir.join("model.safetensors"), &bytes[..bytes.len() - 1000]).unwrap();
    });
    assert!(err.contains("model.safetensors") && err.contains("truncated"), "{err}");

    let err = load_error("wrong-shape", |_, tensors| {
        let t = tensors.iter_mut().find(|t| t.0 == "backbone.layers.1.mixer.x_proj.weight").unwrap();
        t.2 = vec![18, 256];
    });
    assert!(err.contains("backbone.layers.1.mixer.x_proj.weight") && err.contains("[36, 128]"), "{err}");

    let err = load_error("wrong-dtype", |_, tensors| {
        let t = tensors.iter_mut().find(|t| t.0 == "backbone.norm_f.weight").unwrap();
        t.1 = Dtype::I32;
    });
    assert!(err.contains("backbone.norm_f.weight") && err.contains("I32"), "{err}");

    let err = load_error("missing-tensor", |_, tensors| tensors.retain(|t| t.0 != "backbone.layers.0.mixer.D"));
    assert!(err.contains("backbone.layers.0.mixer.D") && err.contains("not found"), "{err}");

    let err = load_error("missing-config-field", |dir, _| {
        let text = std::fs::read_to_string(dir.join("config.json")).unwrap().replace("\"num_hidden_layers\": 2,", "");
        std::fs::write(dir.join("config.json"), text).unwrap();
    });
    assert!(err.contains("num_hidden_layers") && err.contains("config.json"), "{err}");

    let err = load_error("no-weights", |dir, _| std::fs::write(dir.join("model.safetensors"), b"").unwrap());
    assert!(err.contains("model.safetensors"), "{err}");
}

#[test]
fn shapes_the_engine_cannot_hold_are_errors() {
    use mamba_wgpu::bench::synthetic::{config_for, SyntheticModel};
    // A state larger than the chunked scan's workgroup carry: refused at load, naming the field.
    let mut config = config_for("mamba-130m").unwrap();
    (config.d_state, config.n_layer, config.vocab_size) = (80, 1, 64);
    let source = SyntheticModel { config, name: "wide-state".into(), dtype: WeightDtype::F32 };
    let err = Model::load(common::ctx(), &source, LoadOptions::default(), &mut |_| {}).err().expect("refused").to_string();
    assert!(err.contains("state_size 80"), "{err}");
    // A batch whose logits alone exceed a storage binding.
    let model = load(common::ctx(), &fixture("mamba1-tiny"), None).unwrap();
    let err = Session::new(model, 1 << 20).err().expect("refused").to_string();
    assert!(err.contains("batch of 1048576"), "{err}");
}

#[test]
fn bad_prompts_are_errors_that_name_the_problem() {
    let model = load(common::ctx(), &fixture("mamba1-tiny"), None).unwrap();
    let mut s = Session::new(model, 2).unwrap();
    let run = |s: &mut Session, p: Vec<Vec<u32>>| pollster::block_on(s.prefill(&p)).unwrap_err().to_string();
    let err = run(&mut s, vec![vec![1, 512], vec![1, 2]]);
    assert!(err.contains("512") && err.contains("vocabulary"), "{err}");
    let err = run(&mut s, vec![vec![], vec![]]);
    assert!(err.contains("empty"), "{err}");
    let err = run(&mut s, vec![vec![1, 2]]);
    assert!(err.contains("batch"), "{err}");
    let err = run(&mut s, vec![vec![1, 2], vec![3]]);
    assert!(err.contains("equal lengths"), "{err}");
    let err = pollster::block_on(s.step(&[1])).unwrap_err().to_string();
    assert!(err.contains("batch of 2"), "{err}");
    assert_eq!(s.position(), 0, "failed calls consume nothing");
}

/// Every position's logits of a prompt prefilled in several submits (chunks of 16 tokens)
/// come back in (batch, length) order, equal to one submit's, at batch 3 with a short last
/// chunk; and the state after it equals one submit's.
#[test]
fn all_logits_across_prefill_chunks_keep_sequence_order() {
    let model = load(common::ctx(), &fixture("mamba1-small"), None).unwrap();
    let vocab = model.config.vocab_size as u32;
    let prompts: Vec<Vec<u32>> = (0..3).map(|b| prompt(33, vocab, 20 + b)).collect();
    let mut chunked = Session::with_chunk(model.clone(), 3, 16).unwrap();
    let mut whole = Session::with_chunk(model, 3, 64).unwrap();
    let got = pollster::block_on(chunked.prefill_all_logits(&prompts)).unwrap();
    let want = pollster::block_on(whole.prefill_all_logits(&prompts)).unwrap();
    common::assert_close("logits over 3 chunks vs 1", &got, &want, 1e-4);
    let (got, want) = (pollster::block_on(chunked.read_state()).unwrap(), pollster::block_on(whole.read_state()).unwrap());
    for (layer, ((gc, gs), (wc, ws))) in got.iter().zip(&want).enumerate() {
        common::assert_close(&format!("conv state {layer}"), gc, wc, 1e-4);
        common::assert_close(&format!("ssm state {layer}"), gs, ws, 1e-4);
    }
}

/// Generation samples on the GPU (shaders/sample.wgsl); its tokens equal those of the CPU
/// sampler on the read-back rows of logits, one step at a time, for every sampling mode.
#[test]
fn gpu_sampled_generation_matches_sampling_read_back_rows() {
    use mamba_wgpu::generate::{Generator, StopConditions};
    use mamba_wgpu::sampling::{Sampler, SamplingParams, GENERATION_DEFAULTS};
    const TOKENS: usize = 16;
    let model = load(common::ctx(), &fixture("mamba1-small"), None).unwrap();
    let vocab = model.config.vocab_size as u32;
    let start = prompt(12, vocab, 3);
    for params in [
        SamplingParams { temperature: 0.8, top_k: 20, repetition_penalty: 1.3, seed: 5, ..Default::default() },
        SamplingParams { top_k: 3, top_p: 0.9, seed: 9, ..Default::default() },
        SamplingParams { min_p: 0.2, seed: 11, ..Default::default() },
        SamplingParams { repetition_penalty: 1.5, repetition_window: 4, ..SamplingParams::greedy() },
        SamplingParams { seed: 3, ..GENERATION_DEFAULTS },
    ] {
        let mut session = Session::new(model.clone(), 1).unwrap();
        let stop = StopConditions { max_tokens: TOKENS, eos: Vec::new(), stop_strings: vec![] };
        let mut generator = Generator::new(&mut session, Sampler::new(params.clone()).unwrap(), stop);
        pollster::block_on(generator.start(&start)).unwrap();
        let mut got = Vec::new();
        while let Some(token) = pollster::block_on(generator.next_token()).unwrap() {
            got.push(token);
        }

        let mut session = Session::new(model.clone(), 1).unwrap();
        let mut sampler = Sampler::new(params.clone()).unwrap();
        let mut history = start.clone();
        let mut logits = pollster::block_on(session.prefill(std::slice::from_ref(&start))).unwrap();
        let mut want = Vec::new();
        for _ in 0..TOKENS {
            let token = sampler.sample(&logits, &history, history.len() as u64).unwrap();
            want.push(token);
            history.push(token);
            logits = pollster::block_on(session.step(&[token])).unwrap();
        }
        assert_eq!(got, want, "{params:?}");
    }
}

/// What one generation gives with at most `per_submit` tokens per submit: the tokens, why it
/// ended, the pending token and the session's state afterwards.
fn generate_with(
    model: &std::sync::Arc<mamba_wgpu::Model>,
    start: &[u32],
    params: &mamba_wgpu::sampling::SamplingParams,
    stop: mamba_wgpu::generate::StopConditions,
    per_submit: usize,
    stop_after: Option<usize>,
) -> (Vec<u32>, Option<mamba_wgpu::generate::FinishReason>, Option<u32>, Vec<u8>) {
    use mamba_wgpu::generate::Generator;
    use mamba_wgpu::sampling::Sampler;
    let mut session = Session::new(model.clone(), 1).unwrap();
    let mut generator = Generator::new(&mut session, Sampler::new(params.clone()).unwrap(), stop).with_tokens_per_submit(per_submit).unwrap();
    pollster::block_on(generator.start(start)).unwrap();
    let mut tokens = Vec::new();
    while let Some(token) = pollster::block_on(generator.next_token()).unwrap() {
        tokens.push(token);
        if Some(tokens.len()) == stop_after {
            pollster::block_on(generator.stop()).unwrap();
        }
    }
    let (reason, pending) = (generator.finish_reason(), generator.pending_token());
    drop(generator);
    (tokens, reason, pending, pollster::block_on(session.snapshot()).unwrap())
}

/// Tokens per submit change nothing: for every family and sampling mode, 1, 2, 3, 5 and 16
/// tokens per submit give the same tokens, the same end, the same pending token and a
/// bit-identical state, also when an EOS id or a cancel falls inside a submit (the session
/// rolls back and replays). The state after an EOS inside a submit equals that of a session
/// that was fed the prompt and the returned tokens one at a time.
#[test]
fn tokens_per_submit_change_nothing() {
    use mamba_wgpu::generate::{FinishReason, StopConditions};
    use mamba_wgpu::sampling::{SamplingParams, GENERATION_DEFAULTS};
    for name in ["mamba1-tiny", "falcon-mamba-tiny", "mamba2-tiny"] {
        let model = load(common::ctx(), &fixture(name), None).unwrap();
        let vocab = model.config.vocab_size as u32;
        let start = prompt(9, vocab, 4);
        for params in [
            SamplingParams { seed: 21, ..GENERATION_DEFAULTS },
            SamplingParams { temperature: 1.2, top_p: 0.7, min_p: 0.02, seed: 8, ..Default::default() },
            SamplingParams { repetition_penalty: 1.3, ..SamplingParams::greedy() },
        ] {
            let label = format!("{name} {params:?}");
            let budget = StopConditions { max_tokens: 20, ..Default::default() };
            let one = generate_with(&model, &start, &params, budget.clone(), 1, None);
            assert_eq!(one.0.len(), 20, "{label}");
            for per_submit in [2, 3, 5, 16] {
                assert!(generate_with(&model, &start, &params, budget.clone(), per_submit, None) == one, "{label}: {per_submit} per submit");
            }
            // An EOS id first drawn as the 7th token; and a cancel after 6 tokens.
            let eos_at = one.0.iter().position(|&t| t == one.0[6]).unwrap();
            let with_eos = StopConditions { max_tokens: 20, eos: vec![one.0[6]], ..Default::default() };
            let eos_one = generate_with(&model, &start, &params, with_eos.clone(), 1, None);
            assert_eq!((&eos_one.0[..], eos_one.1, eos_one.2), (&one.0[..eos_at], Some(FinishReason::Eos), None), "{label}");
            let cancel_one = generate_with(&model, &start, &params, budget.clone(), 1, Some(6));
            assert_eq!((&cancel_one.0[..], cancel_one.1), (&one.0[..6], Some(FinishReason::Cancelled)), "{label}");
            for per_submit in [3, 16] {
                assert!(
                    generate_with(&model, &start, &params, with_eos.clone(), per_submit, None) == eos_one,
                    "{label}: EOS, {per_submit} per submit"
                );
                assert!(generate_with(&model, &start, &params, budget.clone(), per_submit, Some(6)) == cancel_one, "{label}: cancel, {per_submit}");
            }
            let mut fed = Session::new(model.clone(), 1).unwrap();
            pollster::block_on(fed.prefill(std::slice::from_ref(&start))).unwrap();
            for &token in &one.0[..eos_at] {
                pollster::block_on(fed.step(&[token])).unwrap();
            }
            assert!(pollster::block_on(fed.snapshot()).unwrap() == eos_one.3, "{label}: state after the EOS");
        }
    }
}

/// A batched decode can take in sequences prefilled alone (`Session::copy_sequence`): two
/// prompts of different lengths, each prefilled in a session of one, copied into a session of
/// two, step together exactly as each steps alone; and copied back out, they hold the same state.
#[test]
fn sequences_move_between_sessions_exactly() {
    for name in ["mamba1-tiny", "mamba2-tiny"] {
        let model = load(common::ctx(), &fixture(name), None).unwrap();
        let vocab = model.config.vocab_size as u32;
        let prompts = [prompt(37, vocab, 1), prompt(9, vocab, 2)];
        let steps: [[u32; 2]; 3] = [[5, 6], [7, 8], [9, 10]];
        // Each sequence alone: prefill, then the steps.
        let mut alone = Vec::new();
        for (b, p) in prompts.iter().enumerate() {
            let mut s = Session::new(model.clone(), 1).unwrap();
            pollster::block_on(s.prefill(&[p.clone()])).unwrap();
            let logits: Vec<Vec<f32>> = steps.iter().map(|t| pollster::block_on(s.step(&[t[b]])).unwrap()).collect();
            alone.push((logits, pollster::block_on(s.read_state()).unwrap()));
        }
        // Prefilled alone, moved into sequences 1 and 0 of a batch of two, stepped together.
        let mut single = Session::new(model.clone(), 1).unwrap();
        let mut batch = Session::with_chunk(model.clone(), 2, 1).unwrap();
        for (b, p) in prompts.iter().enumerate() {
            single.reset();
            pollster::block_on(single.prefill(&[p.clone()])).unwrap();
            batch.copy_sequence(1 - b, &single, 0).unwrap();
        }
        let v = vocab as usize;
        for (i, t) in steps.iter().enumerate() {
            let logits = pollster::block_on(batch.step(&[t[1], t[0]])).unwrap();
            common::assert_close(&format!("{name} step {i}, sequence 0"), &logits[v..], &alone[0].0[i], 1e-5);
            common::assert_close(&format!("{name} step {i}, sequence 1"), &logits[..v], &alone[1].0[i], 1e-5);
        }
        // Sequence 1 of the batch (prompt 0) copied back out holds prompt 0's state.
        single.copy_sequence(0, &batch, 1).unwrap();
        for (layer, ((conv, ssm), (want_conv, want_ssm))) in pollster::block_on(single.read_state()).unwrap().iter().zip(&alone[0].1).enumerate() {
            common::assert_close(&format!("{name} conv state {layer}"), conv, want_conv, 1e-6);
            common::assert_close(&format!("{name} ssm state {layer}"), ssm, want_ssm, 1e-6);
        }
        assert!(batch.copy_sequence(2, &single, 0).is_err(), "sequence 2 of a batch of 2 must be refused");
    }
}

/// A decode step (one token per sequence, up to 8 sequences) is at most 3 dispatches per layer
/// for every family, plus 2 before sampling: the embedding and the LM head with the final norm
/// inside it. Counted on the tape of the forward pass recorded for one token per sequence, for
/// f32 and f16 weights, d_conv 3 and in_proj biases (mamba1-untied-biases) included.
#[test]
fn decode_step_is_three_dispatches_per_layer() {
    use mamba_wgpu::gpu::Tape;
    use mamba_wgpu::model::forward::{record_forward, LogitsOut, Scratch, StateBuffers};
    let ctx = common::ctx();
    for name in ["mamba1-tiny", "falcon-mamba-tiny", "mamba2-tiny", "mamba2-state128", "mamba1-untied-biases"] {
        for dtype in [None, Some(WeightDtype::F16)] {
            let model = load(ctx.clone(), &fixture(name), dtype).unwrap();
            for batch in [1usize, 3, 8] {
                let (scratch, state) = (Scratch::new(&ctx, &model, batch, batch), StateBuffers::new(&ctx, &model, batch));
                let mut tape = Tape::new(&ctx, "decode", 256);
                let mut rec = tape.record(&ctx);
                record_forward(&mut rec, &model, &scratch, &state, batch as u32, 1, LogitsOut::Last).unwrap();
                let mut encoder = ctx.device.create_command_encoder(&Default::default());
                rec.encode(&mut encoder);
                ctx.queue.submit([encoder.finish()]);
                let kernels = tape.kernels();
                let n_layer = model.config.n_layer;
                assert!(kernels.len() <= 3 * n_layer + 2, "{name} ({dtype:?}, batch {batch}): {} dispatches: {kernels:?}", kernels.len());
                if batch == 1 {
                    println!("{name} ({dtype:?}): {} dispatches for {n_layer} layers: {kernels:?}", kernels.len());
                }
            }
        }
    }
}
