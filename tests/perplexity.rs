//! Perplexity (src/perplexity.rs and `mamba-wgpu perplexity`) against the CPU reference forward
//! (src/reference.rs): the same token ids, the same windows, the NLL computed here from the
//! reference's logits. The fixtures have no tokenizer, so the library is driven with ids; the
//! CLI is run on the built-in model with a slice of its held-out text.

mod cli_support;
mod common;

use std::path::Path;
use std::sync::Arc;

use cli_support::{expect_error, run_ok, TempDir};
use mamba_wgpu::model::weights::{load_weights, HostSink};
use mamba_wgpu::perplexity::perplexity;
use mamba_wgpu::reference::{self, RefState};
use mamba_wgpu::tokenizer::Tokenizer;
use mamba_wgpu::{Checkpoint, LoadOptions, Model, Session};

/// GPU and reference logits differ by about 1e-5 (f32 kernels vs f64 accumulation); over
/// hundreds of tokens the mean NLL, and so log PPL, differs by far less than this.
const LOG_PPL_TOLERANCE: f64 = 1e-4;

/// PPL from the reference forward: the ids cut into windows of `context` (all of them without
/// one), each run from a zero state, every token but a window's first scored from the logits
/// before it. Returns (perplexity, scored tokens).
fn reference_perplexity(dir: &Path, ids: &[u32], context: Option<usize>) -> (f64, usize) {
    let ckpt = Checkpoint::open(dir).unwrap();
    let weights = load_weights(&ckpt, &mut HostSink).unwrap();
    let vocab = ckpt.config.vocab_size;
    let (mut nll, mut scored) = (0.0f64, 0usize);
    for window in ids.chunks(context.unwrap_or(ids.len())) {
        let mut state = RefState::zeros(&ckpt.config, 1);
        let logits = reference::forward(&weights, &ckpt.config, window, 1, &mut state);
        for (t, &target) in window.iter().enumerate().skip(1) {
            let row: Vec<f64> = logits[(t - 1) * vocab..t * vocab].iter().map(|&x| x as f64).collect();
            let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let log_sum = max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
            nll += log_sum - row[target as usize];
            scored += 1;
        }
    }
    ((nll / scored as f64).exp(), scored)
}

fn ids(len: usize, vocab: u32) -> Vec<u32> {
    (0..len as u32).map(|i| (i * 7919 + 13) % vocab).collect()
}

fn assert_same_ppl(what: &str, got: f64, expected: f64) {
    let diff = (got.ln() - expected.ln()).abs();
    assert!(diff < LOG_PPL_TOLERANCE, "{what}: perplexity {got}, reference {expected} (log difference {diff:e})");
}

/// Whole sequence and windows, on every model family; chunks of 16 tokens, so that pieces
/// cross chunk boundaries, windows start inside a chunk, and the last window is a single
/// token (nothing scored in it).
#[test]
fn library_perplexity_matches_the_reference_forward() {
    for name in ["mamba1-tiny", "falcon-mamba-tiny", "mamba2-tiny"] {
        let dir = common::fixture(name);
        let model = Arc::new(Model::open(common::ctx(), &dir, LoadOptions::default()).unwrap());
        let ids = ids(121, model.config.vocab_size as u32);
        let mut session = Session::with_chunk(model, 1, 16).unwrap();
        for context in [None, Some(40), Some(7)] {
            let mut last_progress = (0, 0);
            let got = pollster::block_on(perplexity(&mut session, &ids, context, &mut |done, total| last_progress = (done, total))).unwrap();
            let (expected, scored) = reference_perplexity(&dir, &ids, context);
            let what = format!("{name}, context {context:?}");
            assert_eq!(got.tokens, scored, "{what}: scored tokens");
            let windows = context.map_or(1, |n| ids.len().div_ceil(n));
            assert_eq!(got.tokens, ids.len() - windows, "{what}: every token but each window's first");
            assert_same_ppl(&what, got.perplexity, expected);
            assert!((got.mean_nll.exp() - got.perplexity).abs() < 1e-9 * got.perplexity, "{what}: PPL = exp(mean NLL)");
            // The last window (one token at context 40 or 7) feeds nothing: progress ends before it.
            assert_eq!(last_progress.1, ids.len(), "{what}: progress total");
        }
    }
}

#[test]
fn library_rejects_short_sequences_and_windows() {
    let model = Arc::new(Model::open(common::ctx(), &common::fixture("mamba1-tiny"), LoadOptions::default()).unwrap());
    let mut session = Session::new(model, 1).unwrap();
    let mut run = |ids: &[u32], context| pollster::block_on(perplexity(&mut session, ids, context, &mut |_, _| {})).unwrap_err().to_string();
    assert!(run(&[1], None).contains("tokens"));
    assert!(run(&[], None).contains("tokens"));
    assert!(run(&[1, 2, 3], Some(1)).contains("context"));
    assert!(run(&[1, 2, 3], Some(0)).contains("context"));
    assert!(run(&[1, 100_000], None).contains("vocabulary"));
}

/// About 300 tokens of the built-in model's held-out text, cut at a line break.
fn heldout_slice() -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/shakespeare-mamba/heldout.txt")).unwrap();
    let end = text[..1000].rfind('\n').unwrap() + 1;
    text[..end].to_string()
}

#[test]
fn cli_json_matches_the_reference_on_the_builtin_model() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/shakespeare-mamba");
    let text = heldout_slice();
    let tmp = TempDir::new("perplexity-json");
    let file = tmp.path().join("slice.txt");
    std::fs::write(&file, &text).unwrap();
    let file = file.display().to_string();
    let ids = Tokenizer::from_file(&dir.join("tokenizer.json")).unwrap().encode(&text).unwrap();

    for context in [None, Some(128)] {
        let mut args = vec!["perplexity", "--file", &file, "--json"];
        let n = context.map(|n: usize| n.to_string());
        if let Some(n) = &n {
            args.extend(["--context", n]);
        }
        let out = run_ok(&args);
        let v: serde_json::Value =
            serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {}", out.stdout));
        let keys: Vec<&String> = v.as_object().expect("an object").keys().collect();
        assert_eq!(keys, ["perplexity", "tokens"], "{}", out.stdout);
        let (expected, scored) = reference_perplexity(&dir, &ids, context);
        assert_eq!(v["tokens"].as_u64(), Some(scored as u64), "{}", out.stdout);
        let got = v["perplexity"].as_f64().expect("perplexity is a number");
        assert_same_ppl(&format!("context {context:?}"), got, expected);
        // Validation loss 3.713 nats/token (PPL 41) on the whole split; a few hundred tokens
        // of the same text land near it.
        assert!((10.0..100.0).contains(&got), "implausible perplexity {got}");
    }
}

#[test]
fn cli_plain_output_names_the_figures() {
    let tmp = TempDir::new("perplexity-plain");
    let file = tmp.path().join("slice.txt");
    std::fs::write(&file, &heldout_slice()[..200]).unwrap();
    let out = run_ok(&["perplexity", "--file", &file.display().to_string()]);
    let names: Vec<&str> = out.stdout.lines().filter_map(|l| l.split_once(": ").map(|(name, _)| name)).collect();
    assert_eq!(names, ["perplexity", "tokens", "tokens/s"], "{}", out.stdout);
}

#[test]
fn cli_bad_inputs_name_the_file_or_argument() {
    let tmp = TempDir::new("perplexity-bad");
    let missing = tmp.path().join("no-such-file.txt").display().to_string();
    expect_error(&["perplexity", "--file", &missing], &["no-such-file.txt"]);
    let empty = tmp.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    expect_error(&["perplexity", "--file", &empty.display().to_string()], &["--file", "empty.txt", "empty"]);
    let one = tmp.path().join("one-token.txt");
    std::fs::write(&one, "a").unwrap();
    expect_error(&["perplexity", "--file", &one.display().to_string()], &["--file", "one-token.txt", "at least 2"]);
    let text = tmp.path().join("text.txt");
    std::fs::write(&text, "To be, or not to be").unwrap();
    for n in ["0", "1"] {
        expect_error(&["perplexity", "--file", &text.display().to_string(), "--context", n], &["--context", "at least 2"]);
    }
}
