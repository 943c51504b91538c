//! The browser build end to end: builds `web/dist` (the `mamba-wgpu` npm package in
//! `web/dist/npm`, the page, shipped model, fixtures) with `web/build.sh`, once, then
//! - `web/test/e2e.mjs` opens the demo page in headless Chromium (WebGPU on SwiftShader,
//!   Chromium's software Vulkan) and checks (a) greedy ids on a fixture of each family against
//!   its `expected.json`, and (b) greedy text from the shipped model against what the native CLI
//!   prints;
//! - `web/test/npm-package.mjs` checks the package's package.json and types, `npm pack`s it,
//!   installs the tarball offline into a scratch app and runs that app in headless Chromium:
//!   greedy ids on the mamba1-tiny fixture, errors, stop, picked files.
//!
//! Needs Chromium (`apt-get install -y chromium`), Node with npm (`apt-get install -y nodejs
//! npm`) and `npm ci --prefix web`; a missing piece fails the test with the command that
//! installs it, it never passes silently. The two tests take turns with the browser.
#![cfg(not(target_arch = "wasm32"))]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// The text case: a short greedy run, since SwiftShader takes a while per token.
const PROMPT: &str = "ROMEO:";
const MAX_TOKENS: usize = 20;
const SHIPPED_MODEL: &str = "models/shakespeare-mamba";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(command: &mut Command, what: &str) -> Output {
    match command.output() {
        Ok(output) => output,
        Err(e) => panic!("could not start {what}: {e}"),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn require_tools(root: &Path) {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "the browser test needs Chromium at {chromium}: install it with `apt-get install -y chromium` (or set CHROMIUM=/path/to/chromium)"
    );
    let node = Command::new("node").arg("--version").output();
    assert!(node.as_ref().is_ok_and(|o| o.status.success()), "the browser test needs Node.js: install it with `apt-get install -y nodejs npm`");
    let npm = Command::new("npm").arg("--version").output();
    assert!(npm.as_ref().is_ok_and(|o| o.status.success()), "the browser test needs npm: install it with `apt-get install -y npm`");
    if !root.join("web/node_modules/playwright-core/package.json").exists() {
        let npm = Command::new("npm").args(["ci", "--prefix", "web", "--no-audit", "--no-fund"]).current_dir(root).output();
        match npm {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!("`npm ci --prefix web` failed (run it by hand to see why):\n{}{}", text(&o.stdout), text(&o.stderr)),
            Err(e) => panic!("the browser test needs npm to install playwright-core: `apt-get install -y npm`, then `npm ci --prefix web` ({e})"),
        }
    }
}

/// The text the native CLI generates for the text case, or why there is nothing to compare with.
fn expected_text(root: &Path) -> Result<String, String> {
    if !root.join(SHIPPED_MODEL).join("model.safetensors").is_file() {
        return Err(format!("{SHIPPED_MODEL}/model.safetensors is missing: the shipped model is not in the repository yet"));
    }
    let output = run(
        Command::new(env!("CARGO_BIN_EXE_mamba-wgpu"))
            .args(["generate", "--model", SHIPPED_MODEL, "--prompt", PROMPT, "--max-tokens", &MAX_TOKENS.to_string(), "--temperature", "0", "--json"])
            .current_dir(root),
        "the mamba-wgpu CLI",
    );
    if !output.status.success() {
        return Err(format!("`mamba-wgpu generate` failed: {}", text(&output.stderr).trim()));
    }
    // --json gives the generated text exactly (in text mode the CLI ends its line).
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).map_err(|e| format!("`mamba-wgpu generate --json` printed no JSON: {e}"))?;
    json["text"].as_str().map(str::to_string).ok_or_else(|| format!("`mamba-wgpu generate --json` printed no text: {json}"))
}

/// The page's GGUF case: the shipped model written as q8_0 by `mamba-wgpu quantize` and by
/// tools/make_gguf.py (llama.cpp's converter's conventions, with the `gguf` package), each
/// with the CLI's greedy text on that file, as JSON `[{"file", "text"}, ...]`.
fn gguf_cases(root: &Path) -> Result<String, String> {
    let dir = root.join("target").join("browser");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let cli = || Command::new(env!("CARGO_BIN_EXE_mamba-wgpu"));
    let ours = dir.join("shakespeare-q8_0.gguf");
    let quantize =
        run(cli().args(["quantize", "--model", SHIPPED_MODEL, "--type", "q8_0", "--out"]).arg(&ours).current_dir(root), "mamba-wgpu quantize");
    if !quantize.status.success() {
        return Err(format!("`mamba-wgpu quantize` failed: {}", text(&quantize.stderr).trim()));
    }
    let theirs = dir.join("shakespeare-converter-q8_0.gguf");
    let python = std::env::var("MAMBA_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let convert = run(
        Command::new(&python)
            .arg("tools/make_gguf.py")
            .arg(SHIPPED_MODEL)
            .arg(&theirs)
            .args(["--outtype", "f16", "--quant", "q8_0"])
            .current_dir(root),
        "tools/make_gguf.py (needs the `gguf` package: pip install -r tools/requirements-tests.txt)",
    );
    if !convert.status.success() {
        return Err(format!("tools/make_gguf.py failed (pip install -r tools/requirements-tests.txt): {}", text(&convert.stderr).trim()));
    }
    let mut cases = Vec::new();
    for file in [ours, theirs] {
        let output = run(
            cli()
                .args(["generate", "--model"])
                .arg(&file)
                .args(["--prompt", PROMPT, "--max-tokens", &MAX_TOKENS.to_string(), "--temperature", "0", "--json"])
                .current_dir(root),
            "mamba-wgpu generate",
        );
        if !output.status.success() {
            return Err(format!("`mamba-wgpu generate --model {}` failed: {}", file.display(), text(&output.stderr).trim()));
        }
        let json: serde_json::Value =
            serde_json::from_slice(&output.stdout).map_err(|e| format!("`mamba-wgpu generate --json` printed no JSON: {e}"))?;
        let expected = json["text"].as_str().ok_or_else(|| format!("`mamba-wgpu generate --json` printed no text: {json}"))?;
        cases.push(serde_json::json!({ "file": file, "text": expected }));
    }
    Ok(serde_json::Value::Array(cases).to_string())
}

/// Checks the tools, runs `web/build.sh` (once for both tests), and waits for the browser:
/// one test drives Chromium at a time, since SwiftShader keeps every core busy.
fn prepare(root: &Path) -> MutexGuard<'static, ()> {
    static BUILD: OnceLock<Result<(), String>> = OnceLock::new();
    static BROWSER: Mutex<()> = Mutex::new(());
    require_tools(root);
    let built = BUILD.get_or_init(|| {
        let build = run(Command::new("bash").arg("web/build.sh").current_dir(root), "web/build.sh");
        print!("{}{}", text(&build.stderr), text(&build.stdout));
        if build.status.success() {
            Ok(())
        } else {
            Err(format!("web/build.sh failed:\n{}{}", text(&build.stdout), text(&build.stderr)))
        }
    });
    if let Err(e) = built {
        panic!("{e}");
    }
    // A test that failed while holding the lock leaves it poisoned; the browser is free anyway.
    BROWSER.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn demo_page_generates_in_headless_chromium() {
    let root = root();
    let _browser = prepare(&root);

    let mut e2e = Command::new("node");
    e2e.arg("web/test/e2e.mjs").current_dir(&root).env("E2E_PROMPT", PROMPT).env("E2E_MAX_TOKENS", MAX_TOKENS.to_string());
    match expected_text(&root) {
        Ok(expected) => e2e.env("E2E_EXPECTED_TEXT", expected).env_remove("E2E_EXPECTED_ERROR"),
        Err(reason) => e2e.env("E2E_EXPECTED_ERROR", reason).env_remove("E2E_EXPECTED_TEXT"),
    };
    match gguf_cases(&root) {
        Ok(cases) => e2e.env("E2E_GGUF", cases).env_remove("E2E_GGUF_ERROR"),
        Err(reason) => e2e.env("E2E_GGUF_ERROR", reason).env_remove("E2E_GGUF"),
    };
    let output = run(&mut e2e, "node web/test/e2e.mjs");
    print!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "the browser test failed: see web/test/e2e.mjs's report above (FAIL lines)");
}

#[test]
fn npm_package_installs_and_runs_in_headless_chromium() {
    let root = root();
    let _browser = prepare(&root);
    let output = run(Command::new("node").arg("web/test/npm-package.mjs").current_dir(&root), "node web/test/npm-package.mjs");
    print!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "the npm package test failed: see web/test/npm-package.mjs's report above (FAIL lines)");
}
