//! Parity with Hugging Face `transformers`: for every fixture folder under tests/fixtures and
//! under the folders listed in $MAMBA_FIXTURES, the engine must reproduce the oracle's logits over the whole
//! prompt (max |diff| <= 1e-3), its recurrent states after the prompt (same layout, <= 1e-3)
//! and its 12 greedy tokens exactly. A folder that cannot be checked fails with the reason.

mod common;

use std::path::Path;
use std::sync::Arc;

use mamba_wgpu::{Checkpoint, LoadOptions, Model, Session};
use safetensors::{Dtype, SafeTensors};

const LOGITS_TOL: f32 = 1e-3;
const STATE_TOL: f32 = 1e-3;

struct Expected {
    shape: Vec<usize>,
    floats: Vec<f32>,
    ints: Vec<i64>,
}

fn read_expected(dir: &Path) -> Result<std::collections::HashMap<String, Expected>, String> {
    let path = dir.join("expected.safetensors");
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = std::collections::HashMap::new();
    for (name, view) in st.tensors() {
        let data = view.data();
        let (floats, ints) = match view.dtype() {
            Dtype::F32 => (bytemuck::pod_collect_to_vec(data), vec![]),
            Dtype::I64 => (vec![], bytemuck::pod_collect_to_vec(data)),
            other => return Err(format!("{name}: unexpected dtype {other:?}")),
        };
        out.insert(name, Expected { shape: view.shape().to_vec(), floats, ints });
    }
    Ok(out)
}

fn check_fixture(dir: &Path) -> Result<String, String> {
    let ckpt = Checkpoint::open(dir).map_err(|e| e.to_string())?;
    let expected = read_expected(dir)?;
    let get = |name: &str| expected.get(name).ok_or_else(|| format!("expected.safetensors has no `{name}`"));
    let ids = get("input_ids")?;
    let (batch, t_len) = (ids.shape[0], ids.shape[1]);
    let prompts: Vec<Vec<u32>> = ids.ints.chunks(t_len).map(|row| row.iter().map(|&v| v as u32).collect()).collect();
    let model = Arc::new(Model::load(common::ctx(), &ckpt, LoadOptions::default(), &mut |_| {}).map_err(|e| e.to_string())?);
    let c = model.config.clone();

    // Chunk of 128 tokens: the 300-token fixture crosses two prefill submits as well as many
    // scan chunks inside each.
    let mut session = Session::with_chunk(model, batch, 128).map_err(|e| e.to_string())?;
    let logits = pollster::block_on(session.prefill_all_logits(&prompts)).map_err(|e| e.to_string())?;
    let (max_abs, max_rel) = common::assert_close("logits", &logits, &get("logits")?.floats, LOGITS_TOL);
    let mut report = format!("logits max abs diff {max_abs:.2e}, max rel diff {max_rel:.2e}");

    let states = pollster::block_on(session.read_state()).map_err(|e| e.to_string())?;
    let mut checked_states = 0;
    for (layer, (conv, ssm)) in states.iter().enumerate() {
        for (kind, got) in [("conv", conv), ("ssm", ssm)] {
            if let Some(want) = expected.get(&format!("{kind}_state_layer{layer}")) {
                let (a, _) = common::assert_close(&format!("{kind}_state_layer{layer}"), got, &want.floats, STATE_TOL);
                report += &format!(", {kind}{layer} {a:.1e}");
                checked_states += 1;
            }
        }
    }
    if checked_states == 0 {
        return Err("no *_state_layer{i} tensors to check".into());
    }

    // Greedy: argmax of the last logits (on the GPU), then one-token steps.
    let greedy = get("greedy_ids")?;
    let n_new = greedy.shape[1];
    session.reset();
    let mut next = pollster::block_on(session.prefill_greedy(&prompts)).map_err(|e| e.to_string())?;
    let mut generated = vec![Vec::new(); batch];
    for step in 0..n_new {
        for (b, g) in generated.iter_mut().enumerate() {
            g.push(next[b] as i64);
        }
        if step + 1 < n_new {
            next = pollster::block_on(session.step_greedy(&next)).map_err(|e| e.to_string())?;
        }
    }
    let want: Vec<Vec<i64>> = greedy.ints.chunks(n_new).map(|r| r.to_vec()).collect();
    if generated != want {
        return Err(format!("greedy ids {generated:?}, expected {want:?}"));
    }
    Ok(format!("{report}; {n_new} greedy tokens x {batch} exact (vocab {}, {} layers)", c.vocab_size, c.n_layer))
}

#[test]
fn every_fixture_matches_hugging_face() {
    let mut failures = Vec::new();
    for dir in common::fixture_dirs() {
        match std::panic::catch_unwind(|| check_fixture(&dir)) {
            Ok(Ok(report)) => println!("{}: {report}", dir.display()),
            Ok(Err(reason)) => failures.push(format!("{}: {reason}", dir.display())),
            Err(panic) => {
                let msg = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
                failures.push(format!("{}: {}", dir.display(), msg.unwrap_or_default()));
            }
        }
    }
    assert!(failures.is_empty(), "fixtures that do not match:\n{}", failures.join("\n"));
}

/// The shipped model (f16 weights) against Hugging Face's greedy generation on the same files
/// (tests/data/shipped_model_hf_greedy.json, written by tools/train_shakespeare.py).
#[test]
fn shipped_model_greedy_matches_hugging_face() {
    const TOKENS: usize = 64;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("tests/data/shipped_model_hf_greedy.json")).expect("expected ids file");
    let data: serde_json::Value = serde_json::from_str(&text).unwrap();
    let model = Arc::new(Model::open(common::ctx(), &root.join("models/shakespeare-mamba"), LoadOptions::default()).unwrap());
    for case in data["cases"].as_array().unwrap() {
        let ids = |key: &str| -> Vec<u32> { case[key].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect() };
        let (prompt, want) = (ids("prompt_ids"), ids("new_ids"));
        let mut session = Session::new(model.clone(), 1).unwrap();
        let mut next = pollster::block_on(session.prefill_greedy(&[prompt])).unwrap();
        let mut got = Vec::new();
        while got.len() < TOKENS.min(want.len()) {
            got.push(next[0]);
            next = pollster::block_on(session.step_greedy(&next)).unwrap();
        }
        assert_eq!(got, want[..got.len()], "prompt {:?}", case["prompt"]);
    }
}
