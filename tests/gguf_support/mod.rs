//! Helpers of tests/gguf.rs: GGUF files converted from the fixtures by tools/make_gguf.py (the
//! `gguf` Python package, llama.cpp's own writer), and malformed files rewritten from them.
#![allow(dead_code)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use mamba_wgpu::gguf::{Array, GgufHeader, TensorInfo, Value};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The shipped model's tokenizer.json: the fixtures have none, so their GGUF files embed it
/// (trimmed to their vocabulary, as make_gguf.py's --vocab-from does).
pub const SHIPPED_TOKENIZER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/shakespeare-mamba/tokenizer.json");

/// Python with the packages make_gguf.py needs; fails (never skips) with how to get them.
pub fn python() -> String {
    let python = std::env::var("MAMBA_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python).args(["-c", "import gguf, numpy, safetensors"]).output();
    match probe {
        Ok(out) if out.status.success() => python,
        _ => panic!(
            "{python} cannot import `gguf`, `numpy` and `safetensors`, which tools/make_gguf.py needs to write the GGUF files \
             these tests read: run `python3 -m venv target/test-venv && target/test-venv/bin/pip install -r tools/requirements-tests.txt` \
             and set MAMBA_TEST_PYTHON=target/test-venv/bin/python (tools/test.sh does both)"
        ),
    }
}

/// Where the converted files go: under target/.
fn out_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gguf-tests");
    std::fs::create_dir_all(&dir).expect("target's tmp folder is writable");
    dir
}

/// `model_dir` converted by tools/make_gguf.py with `args` (e.g. `--outtype f32`), once per
/// test process (written under a name of its own, then renamed: another test process may be
/// reading the file); `label` names the file.
pub fn convert(model_dir: &Path, label: &str, args: &[&str]) -> PathBuf {
    static DONE: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
    let name = model_dir.file_name().and_then(|n| n.to_str()).expect("a folder name");
    let out = out_dir().join(format!("{name}-{label}.gguf"));
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if done.get_or_insert_with(HashSet::new).contains(&out) {
        return out;
    }
    let script = Path::new(ROOT).join("tools/make_gguf.py");
    let partial = out.with_extension(format!("{}.partial", std::process::id()));
    let output = Command::new(python())
        .arg(&script)
        .arg(model_dir)
        .arg(&partial)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(output.status.success(), "make_gguf.py {name} {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    std::fs::rename(&partial, &out).expect("rename the converted file");
    done.get_or_insert_with(HashSet::new).insert(out.clone());
    out
}

/// A fixture as an f32 GGUF file with the shipped tokenizer embedded.
pub fn fixture_f32(fixture: &Path) -> PathBuf {
    convert(fixture, "f32", &["--outtype", "f32", "--vocab-from", SHIPPED_TOKENIZER])
}

/// A fixture with its 2-D weights quantized to Q8_0 where their rows are whole blocks.
pub fn fixture_q8_0(fixture: &Path) -> PathBuf {
    convert(fixture, "q8_0", &["--outtype", "f32", "--quant", "q8_0", "--vocab-from", SHIPPED_TOKENIZER])
}

/// The shipped model as the converter writes it by default (f16, its own tokenizer).
pub fn shipped_f16() -> PathBuf {
    convert(&Path::new(ROOT).join("models/shakespeare-mamba"), "f16", &[])
}

/// A file under target/ (named uniquely for this test process), removed on drop.
pub struct TempFile(pub PathBuf);

impl TempFile {
    pub fn new(name: &str, bytes: &[u8]) -> Self {
        let path = out_dir().join(format!("{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).expect("write a test file");
        TempFile(path)
    }

    pub fn path_str(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `file` with its header rewritten: `edit` changes the metadata and the tensor table (dims,
/// type ids, offsets relative to the data section); the data section is copied as it is.
pub fn rewrite(file: &Path, edit: impl FnOnce(&mut Vec<(String, Value)>, &mut Vec<TensorInfo>)) -> Vec<u8> {
    let bytes = std::fs::read(file).expect("read a GGUF file");
    let header = GgufHeader::parse(&bytes, &file.display().to_string()).expect("a valid GGUF file");
    let mut metadata = header.metadata().to_vec();
    let mut tensors = header.tensors().to_vec();
    edit(&mut metadata, &mut tensors);
    let mut out = Vec::new();
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in &metadata {
        put_str(&mut out, key);
        out.extend_from_slice(&value.value_type().id().to_le_bytes());
        put_value(&mut out, value);
    }
    for t in &tensors {
        put_str(&mut out, &t.name);
        out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&t.ggml_type.to_le_bytes());
        out.extend_from_slice(&t.offset.to_le_bytes());
    }
    out.resize(out.len().next_multiple_of(header.alignment as usize), 0);
    out.extend_from_slice(&bytes[header.data_start as usize..]);
    out
}

/// Sets (or adds) metadata `key`.
pub fn set(metadata: &mut Vec<(String, Value)>, key: &str, value: Value) {
    match metadata.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value,
        None => metadata.push((key.to_string(), value)),
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::U8(v) => out.push(*v),
        Value::I8(v) => out.push(*v as u8),
        Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => out.push(*v as u8),
        Value::String(s) => put_str(out, s),
        Value::Array(a) => put_array(out, a),
        Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
    }
}

fn put_array(out: &mut Vec<u8>, a: &Array) {
    out.extend_from_slice(&a.element_type().id().to_le_bytes());
    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! each {
        ($v:expr) => {
            $v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()))
        };
    }
    match a {
        Array::U8(v) => out.extend_from_slice(v),
        Array::I8(v) => each!(v),
        Array::U16(v) => each!(v),
        Array::I16(v) => each!(v),
        Array::U32(v) => each!(v),
        Array::I32(v) => each!(v),
        Array::F32(v) => each!(v),
        Array::Bool(v) => v.iter().for_each(|&b| out.push(b as u8)),
        Array::String(v) => v.iter().for_each(|s| put_str(out, s)),
        Array::Array(v) => v.iter().for_each(|inner| put_array(out, inner)),
        Array::U64(v) => each!(v),
        Array::I64(v) => each!(v),
        Array::F64(v) => each!(v),
    }
}
