//! GGUF files (llama.cpp's format) for every family, written at test time by tools/make_gguf.py
//! (llama.cpp's own `gguf` package, the converter's conventions) from the fixtures and the
//! shipped model: the weights read from a GGUF equal the safetensors folder's, the GPU model
//! from it runs as the folder's, quantized files match the CPU reference on their dequantized
//! weights, the embedded tokenizer encodes as the model's tokenizer.json, the CLI and the C API
//! load GGUF files, and malformed files are errors naming the file. Needs Python with the
//! packages of tools/requirements-tests.txt (MAMBA_TEST_PYTHON); without them the tests fail
//! and say how to get them.

mod cli_support;
mod common;
mod gguf_support;

use std::ffi::CString;
use std::path::Path;
use std::sync::Arc;

use mamba_wgpu::capi::{self, mw_status};
use mamba_wgpu::gguf::{tokenizer_from_header, GgufCheckpoint, GgufHeader, Parsed, Value};
use mamba_wgpu::model::checkpoint::{ShardBytes, StoredDtype};
use mamba_wgpu::model::config::Family;
use mamba_wgpu::model::weights::{load_weights, HostSink, HostWeights, SsmWeights};
use mamba_wgpu::quant::BlockFormat;
use mamba_wgpu::reference::{self, RefState};
use mamba_wgpu::tokenizer::Tokenizer;
use mamba_wgpu::{Checkpoint, LoadOptions, Model, Session, TensorSource, WeightDtype};

use cli_support::{check_error, run, run_ok, Fixture, RunOpts};
use gguf_support::{fixture_f32, fixture_q8_0, rewrite, set, shipped_f16, TempFile, SHIPPED_TOKENIZER};

const FIXTURES: [&str; 4] = ["mamba1-tiny", "falcon-mamba-tiny", "mamba2-tiny", "mamba1-untied-biases"];

/// Every tensor of host weights, named.
fn named<'w>(w: &'w HostWeights) -> Vec<(String, &'w [f32])> {
    let mut out: Vec<(String, &'w [f32])> = vec![("embedding".into(), &w.embedding[..]), ("norm_f".into(), &w.norm_f[..])];
    out.extend(w.lm_head.as_deref().map(|h| ("lm_head".to_string(), h)));
    for (i, l) in w.layers.iter().enumerate() {
        let mut add = |name: &str, v: &'w [f32]| out.push((format!("layers.{i}.{name}"), v));
        add("norm", &l.norm);
        add("in_proj", &l.in_proj);
        add("conv_weight", &l.conv_weight);
        add("out_proj", &l.out_proj);
        for (name, v) in [("in_proj_bias", &l.in_proj_bias), ("conv_bias", &l.conv_bias), ("out_proj_bias", &l.out_proj_bias)] {
            if let Some(v) = v {
                add(name, v);
            }
        }
        match &l.ssm {
            SsmWeights::Selective { x_proj, dt_proj, dt_bias, a, d_skip } => {
                for (name, v) in [("x_proj", x_proj), ("dt_proj", dt_proj), ("dt_bias", dt_bias), ("a", a), ("d", d_skip)] {
                    add(name, v);
                }
            }
            SsmWeights::Ssd { dt_bias, a, d_skip, norm } => {
                for (name, v) in [("dt_bias", dt_bias), ("a", a), ("d", d_skip), ("gated_norm", norm)] {
                    add(name, v);
                }
            }
        }
    }
    out
}

/// (a) The f32 files' weights, read on the CPU, equal the folders' bit for bit, except A
/// (the converter computes -exp(A_log) in f64 and rounds once, the loader in f32: within 1
/// ulp); the configs are equal but for FalconMamba's mixer_rms_eps, which GGUF does not carry
/// (llama.cpp uses layer_norm_rms_epsilon there).
#[test]
fn f32_files_hold_the_folders_weights() {
    for name in FIXTURES {
        let dir = common::fixture(name);
        let gguf = GgufCheckpoint::open(&fixture_f32(&dir)).unwrap();
        let folder = Checkpoint::open(&dir).unwrap();
        let mut config = gguf.config.clone();
        config.naming = folder.config.naming;
        if config.family == Family::FalconMamba {
            assert_eq!(config.mixer_rms_eps, Some(config.norm_eps), "{name}: FalconMamba's dt/B/C norms take the layer norm's eps");
            config.mixer_rms_eps = folder.config.mixer_rms_eps;
        }
        assert_eq!(config, folder.config, "{name}: configs differ");
        let (ours, theirs) = (load_weights(&gguf, &mut HostSink).unwrap(), load_weights(&folder, &mut HostSink).unwrap());
        let (ours, theirs) = (named(&ours), named(&theirs));
        assert_eq!(ours.iter().map(|t| &t.0).collect::<Vec<_>>(), theirs.iter().map(|t| &t.0).collect::<Vec<_>>(), "{name}");
        for ((tensor, got), (_, want)) in ours.iter().zip(&theirs) {
            assert_eq!(got.len(), want.len(), "{name} {tensor}");
            let ulps = if tensor.ends_with(".a") { 1 } else { 0 };
            for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
                let apart = (g.to_bits() as i64 - w.to_bits() as i64).unsigned_abs();
                assert!(apart <= ulps, "{name} {tensor}[{i}]: {g} from the GGUF, {w} from the folder");
            }
        }
        println!("{name}: {} tensors equal", ours.len());
    }
}

/// (b) The GPU model from each f32 file gives the folder model's logits over the fixture's
/// prompts (within 1e-4: the weights are equal but for A's last bit) and its greedy tokens.
/// FalconMamba's folder is given the file's dt/B/C norm eps (the GGUF's layer_norm_rms_epsilon,
/// as llama.cpp runs it), so that both run one model.
#[test]
fn gguf_models_run_as_the_folders_on_the_gpu() {
    const TOL: f32 = 1e-4;
    let ctx = common::ctx();
    for name in FIXTURES {
        let dir = common::fixture(name);
        let file = fixture_f32(&dir);
        // Model::open takes a GGUF file as it takes a folder.
        let from_file = Model::open(ctx.clone(), &file, LoadOptions::default()).unwrap();
        let mut folder = Checkpoint::open(&dir).unwrap();
        folder.config.mixer_rms_eps = from_file.config.mixer_rms_eps;
        let from_folder = Model::load(ctx.clone(), &folder, LoadOptions::default(), &mut |_| {}).unwrap();
        let prompts = Fixture::load(name).prompts;
        let mut runs = Vec::new();
        for model in [from_file, from_folder] {
            let mut session = Session::new(Arc::new(model), prompts.len()).unwrap();
            let logits = pollster::block_on(session.prefill_all_logits(&prompts)).unwrap();
            session.reset();
            let mut next = pollster::block_on(session.prefill_greedy(&prompts)).unwrap();
            let mut tokens = vec![next.clone()];
            for _ in 0..10 {
                next = pollster::block_on(session.step_greedy(&next)).unwrap();
                tokens.push(next.clone());
            }
            runs.push((logits, tokens));
        }
        let (max_abs, _) = common::assert_close(&format!("{name} logits"), &runs[0].0, &runs[1].0, TOL);
        assert_eq!(runs[0].1, runs[1].1, "{name}: greedy tokens differ");
        println!("{name}: logits max abs diff {max_abs:.1e}, greedy tokens equal");
    }
}

/// (c) Q8_0 files: the GPU model uploads the blocks as they are stored and matches the CPU
/// reference on the dequantized weights (prompt logits at every position, then decode steps),
/// within the tolerance of tests/quant.rs's models quantized at load. The fixtures whose rows
/// are whole blocks of 32 (d_model 64); mamba1-untied-biases (d_model 72) has no such matrix.
#[test]
fn q8_0_files_match_the_reference_on_their_dequantized_weights() {
    const TOL: f32 = 2e-3;
    let ctx = common::ctx();
    for name in ["mamba1-tiny", "falcon-mamba-tiny", "mamba2-tiny"] {
        let gguf = GgufCheckpoint::open(&fixture_q8_0(&common::fixture(name))).unwrap();
        let quantized = gguf.header.tensors().iter().filter(|t| t.dtype == StoredDtype::Block(BlockFormat::Q8_0)).count();
        assert!(quantized >= 4, "{name}: {quantized} Q8_0 tensors");
        let c = &gguf.config;
        let host = load_weights(&gguf, &mut HostSink).unwrap();
        let model = Arc::new(Model::load(ctx.clone(), &gguf, LoadOptions::default(), &mut |_| {}).unwrap());
        assert_eq!(model.weight_dtype, WeightDtype::Block(BlockFormat::Q8_0), "{name}: blocks uploaded as stored");
        let prompt: Vec<u32> = (0..24u32).map(|i| (i * 7919 + 13) % c.vocab_size as u32).collect();
        let mut state = RefState::zeros(c, 1);
        let want = reference::forward(&host, c, &prompt, 1, &mut state);
        let mut session = Session::new(model, 1).unwrap();
        let got = pollster::block_on(session.prefill_all_logits(std::slice::from_ref(&prompt))).unwrap();
        common::assert_close(&format!("{name} q8_0 prompt logits"), &got, &want, TOL);
        for step in 0..3u32 {
            let token = (step * 31 + 5) % c.vocab_size as u32;
            let want = reference::forward(&host, c, &[token], 1, &mut state);
            let got = pollster::block_on(session.step(&[token])).unwrap();
            common::assert_close(&format!("{name} q8_0 decode step {step}"), &got, &want, TOL);
        }
    }
}

/// The tokenizer built from the shipped model's GGUF encodes and decodes as the `tokenizers`
/// library's own loading of its tokenizer.json.
#[test]
fn embedded_tokenizer_matches_tokenizer_json() {
    let gguf = GgufCheckpoint::open(&shipped_f16()).unwrap();
    let ours = tokenizer_from_header(&gguf.header, gguf.source_name(), gguf.config.vocab_size).unwrap();
    let theirs = tokenizers::Tokenizer::from_file(SHIPPED_TOKENIZER).unwrap();
    let heldout = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/models/shakespeare-mamba/heldout.txt")).unwrap();
    let texts = [
        "ROMEO:\nBut soft, what light through yonder window breaks?",
        "  two  spaces,\ttabs\t\tand\n\n\nnewlines  ",
        "Ünïcödé — “quotes” 日本語 🌍 café",
        "<|endoftext|>between<|endoftext|>",
        "'s 't 're 've 'm 'll 'd 12345 3.14159",
        "",
        &heldout[..heldout.char_indices().nth(4000).map_or(heldout.len(), |(i, _)| i)],
    ];
    assert_eq!(ours.vocab_size(), theirs.get_vocab_size(true));
    assert_eq!(ours.eos_id(), Some(0));
    for text in texts {
        let want = theirs.encode(text, false).unwrap().get_ids().to_vec();
        let got = ours.encode(text).unwrap();
        assert_eq!(got, want, "ids of {:?}", &text[..text.len().min(60)]);
        assert_eq!(ours.decode(&got).unwrap(), theirs.decode(&want, true).unwrap(), "text of {:?}", &text[..text.len().min(60)]);
    }
    // A fixture's file embeds the vocabulary trimmed to its 512 rows; it fits its model.
    let small = GgufCheckpoint::open(&fixture_f32(&common::fixture("mamba2-tiny"))).unwrap();
    let tok = tokenizer_from_header(&small.header, small.source_name(), small.config.vocab_size).unwrap();
    tok.check_fits(small.config.vocab_size).unwrap();
}

/// (d) `generate --model X.gguf` on the shipped model's f16 file (its tokenizer embedded)
/// prints the folder's text.
#[test]
fn cli_generates_the_folders_text_from_a_gguf_file() {
    let file = shipped_f16().display().to_string();
    let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/models/shakespeare-mamba");
    for prompt in ["ROMEO:", "To be, or not to be"] {
        let generate = |model: &str| run_ok(&["generate", "--model", model, "--prompt", prompt, "--max-tokens", "32", "--greedy"]);
        let (from_file, from_folder) = (generate(&file), generate(folder));
        assert_eq!(from_file.stdout, from_folder.stdout, "prompt {prompt:?}");
        assert!(!from_file.stderr.contains("warning"), "{}", from_file.stderr);
    }
}

/// The C API loads a GGUF file with its tokenizer, and names a malformed one.
#[test]
fn c_api_loads_gguf_files() {
    let file = shipped_f16();
    let path = CString::new(file.display().to_string()).unwrap();
    let mut ctx = std::ptr::null_mut();
    let mut model = std::ptr::null_mut();
    unsafe {
        assert_eq!(capi::context::mw_context_new(std::ptr::null(), &mut ctx), mw_status::MW_OK);
        assert_eq!(capi::model::mw_model_load(ctx, path.as_ptr(), std::ptr::null(), &mut model), mw_status::MW_OK, "{}", last_error());
        let mut info = capi::model::mw_model_info::default();
        assert_eq!(capi::model::mw_model_get_info(model, &mut info), mw_status::MW_OK);
        assert_eq!((info.vocab_size, info.n_layer, info.eos_id, info.has_tokenizer), (4096, 4, 0, 1));
        let text = CString::new("ROMEO:").unwrap();
        let (mut ids, mut n) = ([0u32; 16], 0usize);
        assert_eq!(capi::model::mw_tokenize(model, text.as_ptr(), ids.as_mut_ptr(), ids.len(), &mut n), mw_status::MW_OK);
        let want = Tokenizer::from_file(Path::new(SHIPPED_TOKENIZER)).unwrap().encode("ROMEO:").unwrap();
        assert_eq!(&ids[..n], want.as_slice());
        capi::model::mw_model_free(model);

        let broken = TempFile::new("c-api-truncated.gguf", &std::fs::read(&file).unwrap()[..4096]);
        let path = CString::new(broken.path_str()).unwrap();
        assert_eq!(capi::model::mw_model_load(ctx, path.as_ptr(), std::ptr::null(), &mut model), mw_status::MW_ERR_MODEL);
        assert!(model.is_null());
        assert!(last_error().contains(&broken.path_str()), "{}", last_error());
        capi::context::mw_context_free(ctx);
    }
}

fn last_error() -> String {
    unsafe { std::ffi::CStr::from_ptr(capi::errors::mw_last_error()) }.to_string_lossy().into_owned()
}

/// A header parsed from a prefix of the file (what a browser fetching by ranges does) asks
/// for more bytes until it has them; the data section alone then serves every tensor.
#[test]
fn header_from_a_prefix_and_data_apart() {
    let file = fixture_f32(&common::fixture("mamba2-tiny"));
    let bytes = std::fs::read(&file).unwrap();
    let name = "mamba2-tiny.gguf";
    let mut prefix = 64;
    let header = loop {
        match GgufHeader::parse_prefix(&bytes[..prefix], name).unwrap() {
            Parsed::Header(header) => break header,
            Parsed::NeedBytes(n) => {
                assert!(n as usize > prefix && n as usize <= bytes.len(), "asked for {n} bytes after {prefix}");
                prefix = n as usize;
            }
        }
    };
    assert!(prefix <= header.data_start as usize);
    let err = GgufHeader::parse(&bytes[..100], name).unwrap_err().to_string();
    assert!(err.contains(name) && err.contains("the header needs at least") && err.contains("only 100"), "{err}");

    let start = header.data_start as usize;
    let apart = GgufCheckpoint::from_parts(name, header.clone(), ShardBytes::Owned(bytes[start..].to_vec()), start as u64).unwrap();
    let whole = GgufCheckpoint::open(&file).unwrap();
    let (a, b) = (load_weights(&apart, &mut HostSink).unwrap(), load_weights(&whole, &mut HostSink).unwrap());
    assert_eq!(named(&a), named(&b));
    let short = GgufCheckpoint::from_parts(name, header, ShardBytes::Owned(bytes[start..bytes.len() - 4].to_vec()), start as u64);
    let err = short.err().expect("a short data section is refused").to_string();
    assert!(err.contains("past the end of the file"), "{err}");
}

/// Opens `bytes` as a GGUF file through the library (header, config, every tensor) and through
/// the CLI; both must fail with an error naming the file and every needle (the CLI: exit 1,
/// one error line, no panic).
fn refused(label: &str, bytes: &[u8], needles: &[&str]) {
    let file = TempFile::new(&format!("{label}.gguf"), bytes);
    let err = match GgufCheckpoint::open(&file.0) {
        Ok(gguf) => load_weights(&gguf, &mut HostSink).err().unwrap_or_else(|| panic!("{label}: loads")),
        Err(e) => e,
    }
    .to_string();
    println!("{label}: {err}");
    assert!(err.contains(&file.path_str()), "{label}: the error does not name the file: {err}");
    for needle in needles {
        assert!(err.contains(needle), "{label}: `{needle}` missing from: {err}");
    }
    let out = run(&["generate", "--model", &file.path_str(), "--prompt-ids", "1,2,3", "--max-tokens", "2"], &RunOpts::default());
    check_error(&out, &[&file.path_str()]);
}

/// (e) Malformed files: each a clear error naming the file, from the library and the CLI.
#[test]
fn malformed_files_are_errors_naming_the_file() {
    let file = fixture_f32(&common::fixture("mamba1-tiny"));
    let bytes = std::fs::read(&file).unwrap();
    refused("llama", &rewrite(&file, |m, _| set(m, "general.architecture", Value::String("llama".into()))), &["architecture `llama`"]);
    let q2_k = rewrite(&file, |_, t| t.iter_mut().find(|t| t.name == "blk.0.ssm_in.weight").unwrap().ggml_type = 10);
    refused("q2_k", &q2_k, &["blk.0.ssm_in.weight", "ggml type 10 (q2_k)"]);
    refused("truncated-data", &bytes[..bytes.len() - 1000], &["past the end of the file"]);
    refused("truncated-header", &bytes[..300], &["truncated", "the header needs at least"]);
    refused("magic", &[b"GGML", &bytes[4..]].concat(), &["not a GGUF file"]);
    refused("version", &[&bytes[..4], &9u32.to_le_bytes(), &bytes[8..]].concat(), &["version 9"]);
    // token_embd.weight made twice as long: its data runs into the next tensor's (or past the
    // end of the file).
    let longer = rewrite(&file, |_, t| t.iter_mut().find(|t| t.name == "token_embd.weight").unwrap().dims[1] *= 2);
    refused("size", &longer, &["token_embd.weight"]);
    // A consistent file whose tensor has another shape than the config implies.
    let narrow = rewrite(&file, |_, t| t.iter_mut().find(|t| t.name == "blk.1.ssm_conv1d.bias").unwrap().dims[0] /= 2);
    refused("shape", &narrow, &["blk.1.ssm_conv1d.bias", "shape [64]", "[128]"]);
    let extra = rewrite(&file, |_, t| t.iter_mut().find(|t| t.name == "blk.1.ssm_d").unwrap().name = "blk.1.attn_q.weight".into());
    refused("unknown-tensor", &extra, &["blk.1.attn_q.weight"]);
    let no_layers = rewrite(&file, |m, _| m.retain(|(k, _)| k != "mamba.block_count"));
    refused("missing-key", &no_layers, &["mamba.block_count"]);
}

/// An embedded tokenizer that cannot be built (another tokenizer model): a warning, and the
/// model runs on token ids; a text prompt fails naming the file and what to do.
#[test]
fn a_tokenizer_that_cannot_be_built_leaves_token_ids() {
    let source = fixture_f32(&common::fixture("mamba1-tiny"));
    let file = TempFile::new("llama-vocab.gguf", &rewrite(&source, |m, _| set(m, "tokenizer.ggml.model", Value::String("llama".into()))));
    let gguf = GgufCheckpoint::open(&file.0).unwrap();
    let err = tokenizer_from_header(&gguf.header, gguf.source_name(), 512).err().expect("no tokenizer").to_string();
    assert!(err.contains(&file.path_str()) && err.contains("`llama`"), "{err}");

    let fx = Fixture::load("mamba1-tiny");
    let out = run_ok(&["generate", "--model", &file.path_str(), "--prompt-ids", &fx.prompt_csv(0), "--max-tokens", "12", "--greedy"]);
    assert_eq!(cli_support::parse_ids(&out.stdout), fx.greedy[0], "stdout: {}", out.stdout);
    assert!(out.stderr.contains("warning:") && out.stderr.contains("`llama`"), "{}", out.stderr);
    let out = run(&["generate", "--model", &file.path_str(), "--prompt", "hello", "--max-tokens", "2"], &RunOpts::default());
    check_error(&out, &[&file.path_str(), "`llama`", "--prompt-ids"]);

    // --tokenizer gives such a file a tokenizer: the shipped model's text, as from its folder.
    let shipped = shipped_f16();
    let file = TempFile::new("shipped-llama-vocab.gguf", &rewrite(&shipped, |m, _| set(m, "tokenizer.ggml.model", Value::String("llama".into()))));
    let generate = |model: &str, more: &[&str]| {
        run_ok(&[&["generate", "--model", model, "--prompt", "ROMEO:", "--max-tokens", "16", "--greedy"][..], more].concat()).stdout
    };
    let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/models/shakespeare-mamba");
    assert_eq!(generate(&file.path_str(), &["--tokenizer", SHIPPED_TOKENIZER]), generate(folder, &[]));
}

/// Bytes changed at random in a file's header, or cut at random, never panic: each is a file
/// that loads or an error.
#[test]
fn damaged_headers_never_panic() {
    let file = fixture_f32(&common::fixture("mamba2-tiny"));
    let bytes = std::fs::read(&file).unwrap();
    let header_len = GgufHeader::parse(&bytes, "x").unwrap().data_start as usize;
    let noise = common::random_values(7, 4 * 3000, 1.0);
    let pick = |i: usize, n: usize| ((noise[i] + 1.0) * 0.5 * n as f32) as usize % n;
    for round in 0..3000 {
        let mut damaged = bytes.clone();
        for k in 0..4 {
            let at = pick(4 * round + k, header_len);
            damaged[at] = (noise[4 * round + k].to_bits() >> 8) as u8;
        }
        if round % 5 == 0 {
            damaged.truncate(pick(4 * round, bytes.len()));
        }
        if let Ok(gguf) = GgufCheckpoint::from_bytes("damaged", ShardBytes::Owned(damaged)) {
            let _ = load_weights(&gguf, &mut HostSink);
            let _ = tokenizer_from_header(&gguf.header, "damaged", gguf.config.vocab_size);
        }
    }
}

/// The GGUF fuzz target's seeds (fuzz/seeds/gguf, tiny FalconMamba and Mamba-2 models with a
/// tokenizer and a chat template) load whole, so fuzzing starts from files that reach every
/// part of the reader.
#[test]
fn fuzz_seeds_are_whole_models() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/gguf");
    let mut families = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let gguf = GgufCheckpoint::open(&entry.unwrap().path()).unwrap();
        load_weights(&gguf, &mut HostSink).unwrap();
        let tok = tokenizer_from_header(&gguf.header, gguf.source_name(), gguf.config.vocab_size).unwrap();
        assert_eq!(tok.encode("ab a").unwrap(), vec![3, 4, 1]);
        assert!(!mamba_wgpu::gguf::chat_template_from_header(&gguf.header, gguf.source_name()).unwrap().is_plain());
        families.push(gguf.config.family);
    }
    families.sort_by_key(|f| f.model_type());
    assert_eq!(families, [Family::FalconMamba, Family::Mamba2]);
}
