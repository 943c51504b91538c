//! A seeded differential test of the whole engine against the CPU reference
//! (src/reference.rs): random configs of the three families (Mamba-1, FalconMamba with its
//! mixer norms' epsilon, Mamba-2 with heads, groups and time step limits; d_model and d_inner
//! not multiples of anything, d_state 1 to the largest the scans hold, d_conv 2 to 4, odd
//! dt_rank, biases on and off, tied and untied heads, several epsilons), random weights,
//! batches 1 to 5, prompt lengths around the prefill chunk's boundaries (chunk - 1, chunk,
//! chunk + 1, with small chunks) and the chunked scans', decode steps after the prefill, and
//! snapshot / restore.
//!
//! Each case checks every position's logits of the prompt, the logits of each decode step,
//! the recurrent state at the end, and that a restored snapshot replays the same steps.
//! `MAMBA_DIFF_CASES=N` runs N cases instead of the default; `MAMBA_DIFF_SEED=S` starts
//! elsewhere. A failure names the case's seed and config, so it can be rerun alone.

mod common;

use std::sync::Arc;

use mamba_wgpu::gpu::kernels::{SCAN_CHUNK, SCAN_MAX_STATE, SSD_CHUNK, SSD_MAX_STATE};
use mamba_wgpu::model::checkpoint::ShardBytes;
use mamba_wgpu::model::weights::{load_weights, HostSink};
use mamba_wgpu::reference::{self, RefState};
use mamba_wgpu::{Checkpoint, LoadOptions, Model, Session};

const DEFAULT_CASES: usize = 240;
/// Logits and states: f32 kernels against the f64-accumulating reference.
const TOL: f32 = 2e-3;

/// SplitMix64: a small, seeded generator for the configs and shapes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in lo..=hi.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.range(0, items.len() - 1)]
    }
}

/// One random model: its config.json and its tensors (Hugging Face naming, f32), and the
/// chunk length of its prefill scan (for prompt lengths around it).
struct RandomModel {
    config_json: String,
    description: String,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    scan_chunk: usize,
}

/// Mamba-2's head structure of a random model: (d_model, expand, heads, head_dim, groups).
fn random_heads(rng: &mut Rng) -> (usize, usize, usize, usize, usize) {
    let (n_heads, head_dim) = (rng.range(1, 6), rng.range(1, 40));
    let groups: Vec<usize> = (1..=n_heads).filter(|g| n_heads % g == 0).collect();
    let n_groups = rng.pick(&groups);
    let d_inner = n_heads * head_dim;
    let expand = if d_inner % 2 == 0 && rng.coin() { 2 } else { 1 };
    (d_inner / expand, expand, n_heads, head_dim, n_groups)
}

fn random_model(rng: &mut Rng, seed: u64) -> RandomModel {
    // Mamba-1 half the time, FalconMamba and Mamba-2 a quarter each.
    let family = rng.pick(&["mamba", "mamba", "falcon_mamba", "mamba2"]);
    let ssd = family == "mamba2";
    let (d_model, d_inner, heads) = if ssd {
        let (d_model, expand, n_heads, head_dim, n_groups) = random_heads(rng);
        (d_model, d_model * expand, Some((expand, n_heads, head_dim, n_groups)))
    } else {
        let d_model = rng.range(3, 70);
        (d_model, if rng.coin() { 2 * d_model } else { rng.range(2, 150) }, None)
    };
    // Small states mostly, the largest one the scans hold now and then.
    let largest = if ssd { SSD_MAX_STATE } else { SCAN_MAX_STATE } as usize;
    let d_state = if rng.range(0, 5) == 0 { largest } else { rng.range(1, 24) };
    let d_conv = rng.range(2, 4);
    let dt_rank = 2 * rng.range(0, 4) + 1;
    let n_layer = rng.range(1, 2);
    let vocab = rng.range(5, 300);
    let (bias, conv_bias, tied) = (rng.coin(), rng.coin(), rng.coin());
    let eps = rng.pick(&[1e-5f32, 1e-3, 1e-6]);
    let mut config = serde_json::json!({
        "model_type": family,
        "vocab_size": vocab,
        "hidden_size": d_model,
        "intermediate_size": d_inner,
        "state_size": d_state,
        "num_hidden_layers": n_layer,
        "conv_kernel": d_conv,
        "time_step_rank": dt_rank,
        "use_bias": bias,
        "use_conv_bias": conv_bias,
        "layer_norm_epsilon": eps,
        "tie_word_embeddings": tied,
    });
    let mut description = format!(
        "{family}: d_model {d_model}, d_inner {d_inner}, d_state {d_state}, d_conv {d_conv}, {n_layer} layer(s), \
         vocab {vocab}, bias {bias}, conv bias {conv_bias}, tied {tied}, eps {eps}"
    );
    if family == "falcon_mamba" {
        let mixer_eps = rng.pick(&[1e-6f32, 1e-2]);
        config["mixer_rms_eps"] = mixer_eps.into();
        description += &format!(", mixer eps {mixer_eps}");
    }
    let (mut conv_channels, mut in_width) = (d_inner, 2 * d_inner);
    if let Some((expand, n_heads, head_dim, n_groups)) = heads {
        let limit = rng.pick(&[(0.0f32, f32::INFINITY), (0.0, 0.3), (0.05, f32::INFINITY)]);
        let limit_json =
            if limit.1.is_finite() { serde_json::json!([limit.0, limit.1]) } else { serde_json::json!([limit.0, {"__float__": "Infinity"}]) };
        for (key, value) in [("expand", expand.into()), ("num_heads", n_heads.into()), ("head_dim", head_dim.into()), ("n_groups", n_groups.into())] {
            config[key] = value;
        }
        config["time_step_limit"] = limit_json;
        description += &format!(", {n_heads} heads of {head_dim}, {n_groups} group(s), dt limit {limit:?}");
        conv_channels = d_inner + 2 * n_groups * d_state;
        in_width = d_inner + conv_channels + n_heads;
    } else {
        description += &format!(", dt_rank {dt_rank}");
    }
    let config_json = config.to_string();

    // Weights scaled by 1/sqrt(fan-in) so activations stay of order one through the layers.
    let mut salt = seed.wrapping_mul(1000);
    let mut values = |n: usize, scale: f32| {
        salt += 1;
        common::random_values(salt, n, scale)
    };
    let fan = |n: usize| 1.0 / (n as f32).sqrt();
    let mut tensors = vec![("backbone.embeddings.weight".to_string(), vec![vocab, d_model], values(vocab * d_model, 1.0))];
    for i in 0..n_layer {
        let m = format!("backbone.layers.{i}.mixer");
        let norm: Vec<f32> = values(d_model, 0.3).into_iter().map(|v| 1.0 + v).collect();
        tensors.push((format!("backbone.layers.{i}.norm.weight"), vec![d_model], norm));
        tensors.push((format!("{m}.in_proj.weight"), vec![in_width, d_model], values(in_width * d_model, fan(d_model))));
        tensors.push((format!("{m}.conv1d.weight"), vec![conv_channels, 1, d_conv], values(conv_channels * d_conv, 0.6)));
        if let Some((_, n_heads, _, _)) = heads {
            // Mamba-2: one A, D and dt bias per head; the gated norm's weight.
            tensors.push((format!("{m}.dt_bias"), vec![n_heads], values(n_heads, 1.0).into_iter().map(|v| v - 2.0).collect()));
            let a_log: Vec<f32> = values(n_heads, 0.2).iter().enumerate().map(|(j, v)| ((j + 1) as f32).ln() + v).collect();
            tensors.push((format!("{m}.A_log"), vec![n_heads], a_log));
            tensors.push((format!("{m}.D"), vec![n_heads], values(n_heads, 1.0)));
            tensors.push((format!("{m}.norm.weight"), vec![d_inner], values(d_inner, 0.3).into_iter().map(|v| 1.0 + v).collect()));
        } else {
            let x_width = dt_rank + 2 * d_state;
            tensors.push((format!("{m}.x_proj.weight"), vec![x_width, d_inner], values(x_width * d_inner, fan(d_inner))));
            tensors.push((format!("{m}.dt_proj.weight"), vec![d_inner, dt_rank], values(d_inner * dt_rank, fan(dt_rank))));
            tensors.push((format!("{m}.dt_proj.bias"), vec![d_inner], values(d_inner, 1.0).into_iter().map(|v| v - 2.0).collect()));
            // A_log = log(1..=d_state), perturbed: A = -exp(A_log) as in Mamba's initialisation.
            let a_log: Vec<f32> = values(d_inner * d_state, 0.2).iter().enumerate().map(|(j, v)| (((j % d_state) + 1) as f32).ln() + v).collect();
            tensors.push((format!("{m}.A_log"), vec![d_inner, d_state], a_log));
            tensors.push((format!("{m}.D"), vec![d_inner], values(d_inner, 1.0)));
        }
        tensors.push((format!("{m}.out_proj.weight"), vec![d_model, d_inner], values(d_model * d_inner, fan(d_inner))));
        if bias {
            tensors.push((format!("{m}.in_proj.bias"), vec![in_width], values(in_width, 0.3)));
            tensors.push((format!("{m}.out_proj.bias"), vec![d_model], values(d_model, 0.3)));
        }
        if conv_bias {
            tensors.push((format!("{m}.conv1d.bias"), vec![conv_channels], values(conv_channels, 0.3)));
        }
    }
    tensors.push(("backbone.norm_f.weight".to_string(), vec![d_model], values(d_model, 0.3).into_iter().map(|v| 1.0 + v).collect()));
    if !tied {
        tensors.push(("lm_head.weight".to_string(), vec![vocab, d_model], values(vocab * d_model, fan(d_model))));
    }
    let scan_chunk = if ssd { SSD_CHUNK } else { SCAN_CHUNK } as usize;
    RandomModel { config_json, description, tensors, scan_chunk }
}

fn checkpoint(model: &RandomModel) -> Checkpoint {
    let views: Vec<(String, safetensors::tensor::TensorView)> = model
        .tensors
        .iter()
        .map(|(name, shape, data)| {
            (name.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytemuck::cast_slice(data)).unwrap())
        })
        .collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    Checkpoint::from_parts("random", &model.config_json, vec![("model.safetensors".into(), ShardBytes::Owned(bytes))]).unwrap()
}

/// The prompt lengths of a case: around the prefill chunk's boundaries, and now and then
/// across the chunked scan's (`scan_chunk` steps per workgroup pass).
fn prompt_len(rng: &mut Rng, chunk: usize, scan_chunk: usize) -> usize {
    match rng.range(0, 6) {
        0 => chunk.saturating_sub(1).max(1),
        1 => chunk,
        2 => chunk + 1,
        3 => 2 * chunk + 1,
        4 => scan_chunk + rng.range(0, 2) - 1,
        5 => 2 * scan_chunk + 1,
        _ => rng.range(1, 3 * chunk),
    }
}

/// Runs one case; an error describes the mismatch.
fn run_case(seed: u64) -> Result<(), String> {
    let mut rng = Rng(seed);
    let random = random_model(&mut rng, seed);
    let ckpt = checkpoint(&random);
    let config = ckpt.config.clone();
    let host = load_weights(&ckpt, &mut HostSink).map_err(|e| e.to_string())?;
    let model = Arc::new(Model::load(common::ctx(), &ckpt, LoadOptions::default(), &mut |_| {}).map_err(|e| e.to_string())?);

    let batch = rng.range(1, 5);
    let chunk = rng.pick(&[1usize, 2, 3, 5, 8, 16, 40, 70]);
    let len = prompt_len(&mut rng, chunk, random.scan_chunk);
    let steps = rng.range(1, 3);
    let vocab = config.vocab_size;
    let prompts: Vec<Vec<u32>> = (0..batch).map(|_| (0..len).map(|_| rng.range(0, vocab - 1) as u32).collect()).collect();
    let tokens: Vec<Vec<u32>> = (0..steps).map(|_| (0..batch).map(|_| rng.range(0, vocab - 1) as u32).collect()).collect();
    let what = format!("seed {seed}: batch {batch}, prompt {len}, prefill chunk {chunk}, {steps} step(s); {}", random.description);
    let close = |label: &str, got: &[f32], want: &[f32]| {
        std::panic::catch_unwind(|| common::assert_close(label, got, want, TOL)).map_err(|panic| {
            let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
            format!("{what}: {msg}")
        })
    };

    // The reference: the prompt, then each step, from a zero state.
    let mut state = RefState::zeros(&config, batch);
    let want_prompt = reference::forward(&host, &config, &prompts.concat(), batch, &mut state);
    let want_steps: Vec<Vec<f32>> = tokens.iter().map(|t| reference::forward(&host, &config, t, batch, &mut state)).collect();

    let mut session = Session::with_chunk(model, batch, chunk).map_err(|e| format!("{what}: {e}"))?;
    let got = pollster::block_on(session.prefill_all_logits(&prompts)).map_err(|e| format!("{what}: {e}"))?;
    close("prompt logits (batch, t, vocab)", &got, &want_prompt)?;
    let saved = pollster::block_on(session.snapshot()).map_err(|e| format!("{what}: {e}"))?;
    let mut first_run = Vec::new();
    for (i, (t, want)) in tokens.iter().zip(&want_steps).enumerate() {
        let got = pollster::block_on(session.step(t)).map_err(|e| format!("{what}: {e}"))?;
        close(&format!("step {i} logits"), &got, want)?;
        first_run.push(got);
    }
    let got_state = pollster::block_on(session.read_state()).map_err(|e| format!("{what}: {e}"))?;
    for (layer, (conv, ssm)) in got_state.iter().enumerate() {
        close(&format!("conv state {layer}"), conv, &state.conv[layer])?;
        close(&format!("ssm state {layer}"), ssm, &state.ssm[layer])?;
    }
    // Restoring the snapshot taken after the prompt replays the steps exactly.
    session.restore(&saved).map_err(|e| format!("{what}: {e}"))?;
    for (i, (t, first)) in tokens.iter().zip(&first_run).enumerate() {
        let got = pollster::block_on(session.step(t)).map_err(|e| format!("{what}: {e}"))?;
        if &got != first {
            return Err(format!("{what}: step {i} after restore differs from the same step before"));
        }
    }
    Ok(())
}

#[test]
fn engine_matches_reference_on_random_models() {
    let cases = std::env::var("MAMBA_DIFF_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_CASES);
    let first = std::env::var("MAMBA_DIFF_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(1u64);
    let failures: Vec<String> = (first..first + cases as u64).filter_map(|seed| run_case(seed).err()).collect();
    assert!(failures.is_empty(), "{} of {cases} cases differ from the reference:\n{}", failures.len(), failures.join("\n"));
}
