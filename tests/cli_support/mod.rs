//! Helpers of tests/cli.rs and tests/reliability.rs: running the binary, fixtures, temp
//! folders, a word tokenizer.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Default)]
pub struct RunOpts {
    pub envs: Vec<(&'static str, String)>,
    pub cwd: Option<PathBuf>,
    pub stdin: Option<String>,
}

/// Starts the binary with piped stdout and stderr (null stdin) in the crate root.
pub fn spawn(args: &[&str]) -> std::process::Child {
    command(args, &RunOpts::default()).stdin(Stdio::null()).spawn().expect("the mamba-wgpu binary runs")
}

fn command(args: &[&str], opts: &RunOpts) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mamba-wgpu"));
    cmd.args(args).current_dir(opts.cwd.clone().unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()));
    // Without a login session, libwayland (loaded by the Vulkan/GL drivers) prints
    // "error: XDG_RUNTIME_DIR is invalid" lines that would drown the CLI's own message.
    cmd.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    for key in ["HF_HUB_CACHE", "HF_HOME", "RUST_LOG"] {
        cmd.env_remove(key);
    }
    for (k, v) in &opts.envs {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

pub fn run(args: &[&str], opts: &RunOpts) -> Output {
    let mut cmd = command(args, opts);
    cmd.stdin(if opts.stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().expect("the mamba-wgpu binary runs");
    if let Some(input) = &opts.stdin {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(input.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait for mamba-wgpu");
    Output { code: out.status.code(), stdout: String::from_utf8_lossy(&out.stdout).into(), stderr: String::from_utf8_lossy(&out.stderr).into() }
}

/// Runs and requires exit code 0.
pub fn run_ok(args: &[&str]) -> Output {
    let out = run(args, &RunOpts::default());
    assert_eq!(out.code, Some(0), "`mamba-wgpu {}` failed: {}", args.join(" "), out.stderr);
    out
}

pub fn expect_error(args: &[&str], needles: &[&str]) {
    check_error(&run(args, &RunOpts::default()), needles);
}

/// Exit code 1, no panic, and exactly one line `error: ...` that names every needle.
pub fn check_error(out: &Output, needles: &[&str]) {
    assert_eq!(out.code, Some(1), "expected exit code 1; stderr: {}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "panic: {}", out.stderr);
    let errors: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "one error line expected: {}", out.stderr);
    for needle in needles {
        assert!(errors[0].contains(needle), "`{needle}` missing from: {}", errors[0]);
    }
}

pub struct Fixture {
    pub dir: PathBuf,
    pub prompts: Vec<Vec<u32>>,
    pub greedy: Vec<Vec<u32>>,
}

impl Fixture {
    pub fn load(name: &str) -> Self {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
        let text = std::fs::read_to_string(dir.join("expected.json")).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let v: serde_json::Value = serde_json::from_str(&text).expect("expected.json is JSON");
        let ids = |key: &str| serde_json::from_value::<Vec<Vec<u32>>>(v[key].clone()).unwrap_or_else(|e| panic!("{key}: {e}"));
        Fixture { prompts: ids("input_ids"), greedy: ids("greedy_ids"), dir }
    }
    pub fn dir_str(&self) -> String {
        self.dir.display().to_string()
    }
    pub fn prompt_csv(&self, row: usize) -> String {
        csv(&self.prompts[row])
    }
}

pub fn csv(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// Ids printed by ids mode (space separated, one line).
pub fn parse_ids(stdout: &str) -> Vec<u32> {
    stdout.split_whitespace().map(|s| s.parse().unwrap_or_else(|_| panic!("`{s}` in {stdout:?} is not an id"))).collect()
}

/// Text of the word tokenizer: id i is `t{i}`, 0 is the special `<|endoftext|>`.
pub fn words(ids: &[u32]) -> String {
    ids.iter().map(|&i| if i == 0 { "<|endoftext|>".to_string() } else { format!("t{i}") }).collect::<Vec<_>>().join(" ")
}

pub fn parse_words(text: &str) -> Vec<u32> {
    text.split_whitespace().map(|w| w.strip_prefix('t').and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("`{w}` is not a word token"))).collect()
}

/// A copy of a fixture model with a word-level tokenizer.json covering its vocabulary: token i
/// is `t{i}`, 0 is `<|endoftext|>`; no decoder, so decoded tokens are joined by spaces.
pub fn word_model(tmp: &TempDir, fixture: &str) -> String {
    let src = Fixture::load(fixture).dir;
    let dir = tmp.path().join(format!("{fixture}-words"));
    std::fs::create_dir_all(&dir).expect("mkdir model");
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(file), dir.join(file)).expect("copy fixture");
    }
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).expect("config")).expect("json");
    let vocab_size = config["vocab_size"].as_u64().expect("vocab_size") as u32;
    let mut vocab = serde_json::Map::new();
    vocab.insert("<|endoftext|>".into(), 0.into());
    for i in 1..vocab_size {
        vocab.insert(format!("t{i}"), i.into());
    }
    let tokenizer = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [{"id": 0, "content": "<|endoftext|>", "single_word": false, "lstrip": false,
                          "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<|endoftext|>"}
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).expect("write tokenizer");
    dir.display().to_string()
}

/// A fresh folder under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("mamba-wgpu-cli-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir is writable");
        TempDir(path)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
