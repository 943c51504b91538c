//! `mamba-wgpu quantize`: the GGUF files it writes, read back with the `gguf` package (llama.cpp's
//! own Python reader, tools/compare_gguf.py) against what llama.cpp's converter writes for the
//! same model (tools/make_gguf.py, its conventions), and loaded back by the engine. Needs
//! Python with `gguf`, `numpy` and `safetensors` (`pip install -r tools/requirements-tests.txt`;
//! tools/test.sh installs them into a venv and sets MAMBA_TEST_PYTHON); without them the test
//! fails and says so.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_mamba-wgpu");
const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/shakespeare-mamba");

fn python() -> String {
    let python = std::env::var("MAMBA_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    match Command::new(&python).args(["-c", "import gguf, numpy, safetensors"]).output() {
        Ok(out) if out.status.success() => python,
        _ => panic!(
            "{python} cannot import the `gguf`, `numpy` and `safetensors` packages: run `pip install -r tools/requirements-tests.txt` \
             (tools/test.sh installs them into a venv and sets MAMBA_TEST_PYTHON)"
        ),
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("quantize").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the CLI; returns (exit code, stdout, stderr).
fn cli(args: &[&str]) -> (i32, String, String) {
    let out =
        Command::new(BIN).args(args).env("XDG_RUNTIME_DIR", std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| "/tmp".into())).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn quantize(model: &str, kind: &str, out: &Path) {
    let (code, stdout, stderr) = cli(&["quantize", "--model", model, "--type", kind, "--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "quantize --type {kind} failed:\n{stdout}\n{stderr}");
}

/// tools/make_gguf.py (llama.cpp's converter's conventions) on `model`.
fn converter(model: &str, extra: &[&str], out: &Path) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/make_gguf.py");
    let status = Command::new(python()).arg(script).arg(model).arg(out).args(extra).status().unwrap();
    assert!(status.success(), "make_gguf.py {model} {extra:?} failed");
}

/// tools/compare_gguf.py's verdict on two files: (equal, its report).
fn compare(a: &Path, b: &Path, extra: &[&str]) -> (bool, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/compare_gguf.py");
    let out = Command::new(python())
        .arg(script)
        .arg(a)
        .arg(b)
        .args(["--ignore-key", "general.name", "--ignore-key", "general.size_label"])
        .args(extra)
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn describe(path: &Path) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/compare_gguf.py");
    let out = Command::new(python()).arg(script).arg("--describe").arg(path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// f16 and q8_0 files equal the converter's for the shipped model, keys, names, shapes, types
/// and data (Q8_0 blocks byte for byte), the tokenizer included; the family fixtures in f32
/// too (FalconMamba, Mamba-2 with its (n_heads, 1) A and D and per-group norm).
#[test]
fn quantize_writes_what_llama_cpp_converter_writes() {
    let dir = scratch("converter");
    for (kind, converter_args) in [("f16", vec!["--outtype", "f16"]), ("q8_0", vec!["--outtype", "f16", "--quant", "q8_0"])] {
        let (ours, theirs) = (dir.join(format!("ours-{kind}.gguf")), dir.join(format!("theirs-{kind}.gguf")));
        quantize(SHIPPED, kind, &ours);
        converter(SHIPPED, &converter_args, &theirs);
        // The converter computes ssm_a = -exp(A_log) in the checkpoint's precision (f16 here),
        // quantize in f32: A differs by f16's rounding (relative 2^-11), all else is equal.
        let (equal, report) = compare(&ours, &theirs, &["--rtol", "4.9e-4"]);
        assert!(equal, "shipped model, {kind}: quantize's file differs from the converter's:\n{report}");
    }
    for fixture in ["mamba1-tiny", "falcon-mamba-tiny", "mamba2-tiny", "mamba1-untied-biases"] {
        let model = format!("{}/tests/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR"));
        let (ours, theirs) = (dir.join(format!("ours-{fixture}.gguf")), dir.join(format!("theirs-{fixture}.gguf")));
        quantize(&model, "f32", &ours);
        converter(&model, &["--outtype", "f32", "--no-tokenizer"], &theirs);
        // A = -exp(A_log) may differ in its last bit between f32 exp implementations.
        let (equal, report) = compare(&ours, &theirs, &["--rtol", "2.4e-7"]);
        assert!(equal, "{fixture}: quantize's file differs from the converter's:\n{report}");
    }
}

/// q4_k_m as llama.cpp mixes it: the tied embedding (the output matrix) in Q6_K, the mixer's
/// matrices in Q4_K, dt_proj (rows of 16) in f16, vectors f32; general.file_type 15.
#[test]
fn q4_k_m_uses_q6_k_for_the_output_matrix() {
    let path = scratch("mix").join("q4_k_m.gguf");
    quantize(SHIPPED, "q4_k_m", &path);
    let file = describe(&path);
    assert_eq!(file["kv"]["general.file_type"], 15);
    let kind = |name: &str| file["tensors"][name][0].as_str().unwrap_or("<missing>").to_string();
    assert_eq!(kind("token_embd.weight"), "Q6_K");
    for m in ["ssm_in", "ssm_x", "ssm_out"] {
        assert_eq!(kind(&format!("blk.0.{m}.weight")), "Q4_K", "{m}");
    }
    assert_eq!(kind("blk.0.ssm_dt.weight"), "F16");
    for v in ["blk.0.ssm_a", "blk.0.ssm_d", "blk.0.ssm_conv1d.weight", "blk.0.attn_norm.weight", "output_norm.weight"] {
        assert_eq!(kind(v), "F32", "{v}");
    }
}

/// Bad arguments: an unknown type, an unwritable output, a missing model; exit code 1 or 2
/// (clap's usage errors) with a message naming what is wrong.
#[test]
fn quantize_rejects_bad_arguments() {
    let (code, _, stderr) = cli(&["quantize", "--type", "q3_k", "--out", "/tmp/x.gguf"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("q3_k"), "{stderr}");
    let (code, _, stderr) = cli(&["quantize", "--type", "q8_0", "--out", "/nonexistent-dir/x.gguf"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("/nonexistent-dir/x.gguf"), "{stderr}");
    let (code, _, stderr) = cli(&["quantize", "--model", "/nonexistent-model", "--type", "q8_0", "--out", "/tmp/x.gguf"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("/nonexistent-model"), "{stderr}");
}

/// A GGUF file streamed tensor by tensor (as the browser reads File slices: header from a
/// prefix, matrices uploaded as they come) gives the model the mapped file gives: the same
/// logits, bit for bit; a tensor of the wrong length or one never given is an error naming it.
#[test]
fn streamed_gguf_loads_like_the_mapped_file() {
    use mamba_wgpu::gguf::{GgufCheckpoint, GgufHeader, Parsed, StreamedGguf};
    use mamba_wgpu::{LoadOptions, Model, Session};
    let path = scratch("streamed").join("q4_k_m.gguf");
    quantize(SHIPPED, "q4_k_m", &path);
    let bytes = std::fs::read(&path).unwrap();
    let ctx = common::ctx();
    let name = path.display().to_string();
    // The header from a prefix, as the page reads it: a prefix too short asks for more.
    let (mut len, mut asked) = (64usize, 0);
    let header = loop {
        match GgufHeader::parse_prefix(&bytes[..len], &name).unwrap() {
            Parsed::Header(h) => break h,
            Parsed::NeedBytes(n) => {
                asked += 1;
                assert!(n as usize > len && asked < 64, "asked for {n} bytes after {len}");
                len = (n as usize).max(2 * len).min(bytes.len());
            }
        }
    };
    assert!(asked > 0, "64 bytes cannot hold the header");
    let logits = |model: Model| {
        let mut s = Session::new(std::sync::Arc::new(model), 1).unwrap();
        pollster::block_on(s.prefill(&[vec![5, 17, 300, 2000, 9]])).unwrap()
    };
    let mut streamed = StreamedGguf::new(header.clone(), &name).unwrap();
    for slice in streamed.slices() {
        let data = bytes[slice.offset as usize..(slice.offset + slice.len) as usize].to_vec();
        streamed.add(&ctx, &slice.name, data).unwrap();
    }
    let want = logits(Model::load(ctx.clone(), &GgufCheckpoint::open(&path).unwrap(), LoadOptions::default(), &mut |_| {}).unwrap());
    assert_eq!(logits(streamed.finish(ctx.clone(), &mut |_| {}).unwrap()), want);

    let mut short = StreamedGguf::new(header.clone(), &name).unwrap();
    let first = short.slices().remove(0);
    let err = short.add(&ctx, &first.name, vec![0; first.len as usize - 1]).err().expect("a short tensor");
    assert!(err.to_string().contains(&first.name), "{err}");
    let err = short.finish(ctx, &mut |_| {}).err().expect("tensors missing");
    assert!(err.to_string().contains("was not given"), "{err}");
}

/// quantize -> GGUF -> load is the model that `--dtype` quantizes at load from the folder: the
/// same blocks, so the same logits, bit for bit (q8_0, q6_k, q4_k_m, q4_0 of the shipped model).
#[test]
fn quantized_files_load_as_the_folder_quantized_at_load() {
    use mamba_wgpu::gguf::GgufCheckpoint;
    use mamba_wgpu::quant::BlockFormat;
    use mamba_wgpu::{Checkpoint, LoadOptions, Model, Session, WeightDtype};
    let ctx = common::ctx();
    let logits = |model: Model| {
        let mut s = Session::new(std::sync::Arc::new(model), 1).unwrap();
        let mut out = pollster::block_on(s.prefill(&[vec![7, 300, 11, 4000, 2]])).unwrap();
        out.extend(pollster::block_on(s.step(&[42])).unwrap());
        out
    };
    for (kind, format) in [("q8_0", BlockFormat::Q8_0), ("q6_k", BlockFormat::Q6K), ("q4_k_m", BlockFormat::Q4K), ("q4_0", BlockFormat::Q4_0)] {
        let path = scratch("round-trip").join(format!("{kind}.gguf"));
        quantize(SHIPPED, kind, &path);
        let file = Model::load(ctx.clone(), &GgufCheckpoint::open(&path).unwrap(), LoadOptions::default(), &mut |_| {}).unwrap();
        assert_eq!(file.weight_dtype, WeightDtype::Block(format), "{kind}");
        let options = LoadOptions { weight_dtype: Some(WeightDtype::Block(format)), ..Default::default() };
        let folder = Model::load(ctx.clone(), &Checkpoint::open(Path::new(SHIPPED)).unwrap(), options, &mut |_| {}).unwrap();
        assert_eq!(file.weight_bytes(), folder.weight_bytes(), "{kind}");
        assert_eq!(logits(file), logits(folder), "{kind}: the GGUF file's logits differ from the folder quantized at load");
    }
}
