//! Reliability: what a hostile but fair user can feed the CLI and the library, one test per
//! family of defects. A user's files are never destroyed; reads are bounded whatever the
//! input; configs are read exactly as transformers reads them; bad input gets one clear
//! `error:` line and exit code 1 (130 after Ctrl-C), never a panic or a silent wrong answer.

mod cli_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cli_support::*;

/// A copy of a fixture's model folder (config.json, model.safetensors) under `tmp`.
fn model_copy(tmp: &TempDir, fixture: &str, name: &str) -> PathBuf {
    let src = Fixture::load(fixture).dir;
    let dir = tmp.path().join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(file), dir.join(file)).expect("copy fixture");
    }
    dir
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let path = dir.join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("config")).expect("json");
    edit(config.as_object_mut().expect("object"));
    std::fs::write(&path, config.to_string()).expect("write config");
}

/// Rewrites model.safetensors with `edit` applied to its (name, f32 values, shape) tensors.
fn edit_tensors(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Vec<f32>, Vec<usize>)>)) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).expect("read");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut tensors: Vec<(String, Vec<f32>, Vec<usize>)> =
        st.tensors().into_iter().map(|(n, v)| (n, bytemuck::pod_collect_to_vec(v.data()), v.shape().to_vec())).collect();
    edit(&mut tensors);
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, v, s)| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), bytemuck::cast_slice(v)).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &path).expect("write safetensors");
}

/// --save-state never overwrites an input of the run (a model file, the prompt file, the
/// loaded state), nor writes through a symbolic link; an earlier state file is replaced.
#[test]
fn save_state_never_overwrites_an_input() {
    let tmp = TempDir::new("save-inputs");
    let dir = model_copy(&tmp, "mamba1-tiny", "model");
    let d = dir.display().to_string();
    let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
    for target in ["model.safetensors", "config.json"] {
        let path = dir.join(target).display().to_string();
        let out = run(&["generate", "--model", &d, "--prompt-ids", "1,2", "--max-tokens", "1", "--save-state", &path], &RunOpts::default());
        check_error(&out, &["--save-state", target, "an input of this run"]);
    }
    assert_eq!(std::fs::read(dir.join("model.safetensors")).unwrap(), weights, "the model is intact");

    let prompt = tmp.path().join("prompt.txt");
    std::fs::write(&prompt, "t1 t2").unwrap();
    let words = word_model(&tmp, "mamba1-tiny");
    let p = prompt.display().to_string();
    let out = run(&["generate", "--model", &words, "--prompt-file", &p, "--max-tokens", "1", "--save-state", &p], &RunOpts::default());
    check_error(&out, &["prompt.txt", "an input of this run"]);
    assert_eq!(std::fs::read_to_string(&prompt).unwrap(), "t1 t2");

    let state = tmp.path().join("a.state").display().to_string();
    run_ok(&["generate", "--model", &d, "--prompt-ids", "1,2", "--max-tokens", "1", "--save-state", &state]);
    let saved = std::fs::read(&state).unwrap();
    let out = run(&["generate", "--model", &d, "--load-state", &state, "--max-tokens", "1", "--save-state", &state], &RunOpts::default());
    check_error(&out, &["a.state", "an input of this run"]);
    assert_eq!(std::fs::read(&state).unwrap(), saved);

    let link = tmp.path().join("link.state");
    std::os::unix::fs::symlink(dir.join("model.safetensors"), &link).unwrap();
    let l = link.display().to_string();
    let out = run(&["generate", "--model", &d, "--prompt-ids", "1", "--max-tokens", "1", "--save-state", &l], &RunOpts::default());
    check_error(&out, &["link.state", "symbolic link"]);
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());

    // An earlier state file that is not an input is replaced.
    run_ok(&["generate", "--model", &d, "--prompt-ids", "1,2,3", "--max-tokens", "2", "--save-state", &state]);
    assert_ne!(std::fs::read(&state).unwrap(), saved);
}

/// The destination is checked before the run: a missing folder fails at once, naming the
/// user's path (not a temporary file), before a single token is generated.
#[test]
fn save_state_destination_is_checked_before_the_run() {
    let tmp = TempDir::new("save-dest");
    let d = Fixture::load("mamba1-tiny").dir_str();
    let missing = tmp.path().join("no-such-dir/x.state").display().to_string();
    let start = Instant::now();
    let out = run(&["generate", "--model", &d, "--prompt-ids", "1", "--max-tokens", "100000000", "--save-state", &missing], &RunOpts::default());
    check_error(&out, &["no-such-dir/x.state", "does not exist"]);
    assert!(!out.stderr.contains(".tmp"), "{}", out.stderr);
    assert!(start.elapsed() < Duration::from_secs(60), "the error came after the run");
    let folder = tmp.path().display().to_string();
    let out = run(&["generate", "--model", &d, "--prompt-ids", "1", "--max-tokens", "1", "--save-state", &folder], &RunOpts::default());
    check_error(&out, &["is a folder"]);
}

/// Reads are bounded: an endless --load-state or --prompt-file, or a large file that is not a
/// state file, fails after a bounded read with a message that says what the limit is.
#[test]
fn reads_are_bounded() {
    let tmp = TempDir::new("bounded");
    let d = Fixture::load("mamba1-tiny").dir_str();
    let words = word_model(&tmp, "mamba1-tiny");
    let out = run(&["generate", "--model", &d, "--prompt-ids", "1", "--load-state", "/dev/zero"], &RunOpts::default());
    check_error(&out, &["/dev/zero", "not a mamba-wgpu state file"]);
    let out = run(&["generate", "--model", &words, "--prompt-file", "/dev/zero"], &RunOpts::default());
    check_error(&out, &["/dev/zero", "64 MiB"]);
    // A 1 GB file (sparse) whose header is a state file's with a huge history count.
    let big = tmp.path().join("big.state");
    let file = std::fs::File::create(&big).unwrap();
    file.set_len(1 << 30).unwrap();
    drop(file);
    let state = tmp.path().join("real.state").display().to_string();
    run_ok(&["generate", "--model", &d, "--prompt-ids", "1", "--max-tokens", "0", "--save-state", &state]);
    let mut header = std::fs::read(&state).unwrap()[..28].to_vec();
    header.extend_from_slice(&u32::MAX.to_le_bytes());
    let mut f = std::fs::OpenOptions::new().write(true).open(&big).unwrap();
    std::io::Write::write_all(&mut f, &header).unwrap();
    drop(f);
    let out = run(&["generate", "--model", &d, "--prompt-ids", "1", "--load-state", &big.display().to_string()], &RunOpts::default());
    check_error(&out, &["big.state", "exceeds the limit"]);
}

/// eos_token_id beyond u32 is an error naming the field; every id of an eos_token_id list
/// stops generation.
#[test]
fn eos_ids_are_read_exactly() {
    let fx = Fixture::load("mamba1-small");
    let tmp = TempDir::new("eos-ids");
    let model = word_model(&tmp, "mamba1-small");
    let dir = Path::new(&model);
    edit_config(dir, |c| {
        c.insert("eos_token_id".into(), 4294967495u64.into());
    });
    expect_error(&["generate", "--model", &model, "--prompt", "t1", "--max-tokens", "3"], &["eos_token_id", "4294967495"]);
    // The list's second id is the 4th greedy token: generation stops there.
    edit_config(dir, |c| {
        c.insert("eos_token_id".into(), serde_json::json!([fx.greedy[0][9], fx.greedy[0][3]]));
    });
    let out = run_ok(&["generate", "--model", &model, "--prompt", &words(&fx.prompts[0]), "--max-tokens", "12", "--greedy", "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["finish_reason"], "eos", "{v}");
    assert_eq!(v["generated_tokens"], 3, "{v}");
}

/// Tensors the config does not account for (layers beyond num_hidden_layers) are an error
/// naming them; a conv bias the config turns off is not used (transformers: no bias).
#[test]
fn configs_account_for_every_tensor() {
    let fx = Fixture::load("mamba1-small");
    let tmp = TempDir::new("config-tensors");
    let fewer = model_copy(&tmp, "mamba1-small", "fewer-layers");
    edit_config(&fewer, |c| {
        c.insert("num_hidden_layers".into(), 2.into());
    });
    let f = fewer.display().to_string();
    expect_error(&["generate", "--model", &f, "--prompt-ids", "1", "--max-tokens", "1"], &["backbone.layers.2.", "does not account for"]);

    // use_conv_bias false: the stored biases are ignored, so the run equals one on a copy
    // whose conv biases are gone, and differs from the fixture's (which uses them).
    let with_bias = model_copy(&tmp, "mamba1-small", "bias-stored");
    let without = model_copy(&tmp, "mamba1-small", "bias-removed");
    for dir in [&with_bias, &without] {
        edit_config(dir, |c| {
            c.insert("use_conv_bias".into(), false.into());
        });
    }
    edit_tensors(&without, |t| t.retain(|(name, _, _)| !name.ends_with("conv1d.bias")));
    let prompt = fx.prompt_csv(0);
    let ids = |dir: &Path| {
        parse_ids(&run_ok(&["generate", "--model", &dir.display().to_string(), "--prompt-ids", &prompt, "--max-tokens", "12", "--greedy"]).stdout)
    };
    let ignored = ids(&with_bias);
    assert_eq!(ignored, ids(&without));
    assert_ne!(ignored, fx.greedy[0], "the conv biases change the output, so ignoring them shows");
}

/// A tokenizer that does not belong to the model is refused at load, naming its file.
#[test]
fn tokenizer_must_fit_the_model() {
    let tmp = TempDir::new("tokenizer-fit");
    let model = word_model(&tmp, "mamba1-tiny");
    let dir = Path::new(&model);
    let vocab = 512; // mamba1-tiny's
    let tokenizer = |n: u32| {
        let vocab: serde_json::Map<String, serde_json::Value> = (0..n).map(|i| (format!("t{i}"), i.into())).collect();
        serde_json::json!({"version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
            "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "t0"}})
        .to_string()
    };
    std::fs::write(dir.join("tokenizer.json"), tokenizer(vocab + 40)).unwrap();
    expect_error(&["generate", "--model", &model, "--prompt", "t1", "--max-tokens", "1"], &["tokenizer.json", "552 tokens", "another model"]);
    // A smaller tokenizer is normal (padded vocabularies), but an id the model chooses beyond
    // it is an error naming the tokenizer, not text dropped without a word. Runs on token ids
    // do not use the tokenizer and do not check it.
    std::fs::write(dir.join("tokenizer.json"), tokenizer(2)).unwrap();
    expect_error(
        &["generate", "--model", &model, "--prompt", "t1", "--max-tokens", "20", "--greedy"],
        &["tokenizer.json", "has 2 tokens", "does not fit"],
    );
    std::fs::write(dir.join("tokenizer.json"), tokenizer(vocab + 40)).unwrap();
    run_ok(&["generate", "--model", &model, "--prompt-ids", "1", "--max-tokens", "2"]);
}

/// NaN weights: greedy on the GPU and sampling both say the model output is broken.
#[test]
fn broken_outputs_get_the_same_message_on_every_path() {
    let tmp = TempDir::new("nan");
    let dir = model_copy(&tmp, "mamba1-tiny", "nan");
    edit_tensors(&dir, |t| {
        for (name, values, _) in t.iter_mut() {
            if name == "backbone.norm_f.weight" {
                values[3] = f32::NAN;
            }
        }
    });
    let d = dir.display().to_string();
    // Greedy (argmax on the GPU), sampling the whole row on the CPU, top-k on the GPU.
    for mode in [&["--greedy"][..], &["--temperature", "0.8", "--top-k", "0"], &["--temperature", "0.8", "--top-k", "5"]] {
        let args = [&["generate", "--model", &d, "--prompt-ids", "1,2", "--max-tokens", "3"][..], mode].concat();
        expect_error(&args, &["logits", "the model output is broken"]);
    }
}

/// `chat` on `model`, greedy, `max_tokens` a reply, with its stdin to write to.
fn chat(model: &str, max_tokens: &str) -> (std::process::Child, std::process::ChildStdin) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mamba-wgpu"));
    cmd.args(["chat", "--model", model, "--max-tokens", max_tokens, "--greedy"]).env("XDG_RUNTIME_DIR", std::env::temp_dir());
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("the mamba-wgpu binary runs");
    let stdin = child.stdin.take().expect("piped stdin");
    (child, stdin)
}

/// A line of chat input that is not UTF-8 is an error for its turn only: the next turn is
/// answered and the summary printed.
#[test]
fn chat_survives_a_bad_line() {
    let tmp = TempDir::new("chat-utf8");
    let (child, mut stdin) = chat(&word_model(&tmp, "mamba1-tiny"), "3");
    std::io::Write::write_all(&mut stdin, b"t1 t2\n\xff\xfe bad\nt3 t4\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("not UTF-8"), "{stderr}");
    assert_eq!(stdout.lines().count(), 2, "two replies: {stdout}");
    assert!(stderr.contains("generated tokens: 6"), "{stderr}");
}

/// Ctrl-C at the chat prompt ends the chat with its summary, exit code 130.
#[test]
fn ctrl_c_at_the_chat_prompt_prints_the_summary() {
    let tmp = TempDir::new("chat-ctrl-c");
    let (mut child, mut stdin) = chat(&word_model(&tmp, "mamba1-tiny"), "2");
    std::io::Write::write_all(&mut stdin, b"t1 t2\n").unwrap();
    // The reply's line on stdout means the chat is back at its prompt.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut reply = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut reply).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("generated tokens: 2"), "the summary: {stderr}");
    drop(stdin);
}

fn interrupt(child: &std::process::Child) {
    let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
}

/// Ctrl-C during a long prefill is honoured between chunks, not when the prompt ends; the run
/// prints its summary and exits with 130.
#[test]
fn ctrl_c_stops_a_long_prefill() {
    use std::io::Read;
    let tmp = TempDir::new("prefill-ctrl-c");
    let model = word_model(&tmp, "mamba1-tiny");
    // A prompt whose prefill takes far longer than the wait for the interrupt to act.
    let words: Vec<String> = (0..1_000_000u32).map(|i| format!("t{}", 1 + i % 500)).collect();
    let file = tmp.path().join("prompt.txt");
    std::fs::write(&file, words.join(" ")).unwrap();
    let f = file.display().to_string();
    // --echo-prompt writes the prompt just before its prefill starts: the signal to interrupt.
    let mut child = spawn(&["generate", "--model", &model, "--prompt-file", &f, "--max-tokens", "5", "--echo-prompt"]);
    let mut stdout = child.stdout.take().unwrap();
    let mut echoed = vec![0u8; words.join(" ").len()];
    stdout.read_exact(&mut echoed).expect("the echoed prompt");
    // Long enough for the run to enter its prefill, far shorter than the prefill.
    std::thread::sleep(Duration::from_millis(100));
    let interrupted = Instant::now();
    interrupt(&child);
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(interrupted.elapsed() < Duration::from_secs(20), "Ctrl-C took {:?} to stop the prefill", interrupted.elapsed());
    assert!(stderr.contains("generated tokens: 0") && stderr.contains("stop: cancelled"), "the summary: {stderr}");
    let fed: usize = stderr.split("prompt tokens: ").nth(1).and_then(|s| s.split(',').next()).and_then(|n| n.parse().ok()).expect("a count");
    assert!(fed < 1_000_000, "the summary counts the prompt tokens fed before the interrupt: {stderr}");
}

/// --prompt-ids without --json streams its ids as they come, and a reader that goes away
/// (a closed pipe) ends the run.
#[test]
fn ids_stream_and_a_closed_pipe_ends_the_run() {
    use std::io::Read;
    let d = Fixture::load("mamba1-tiny").dir_str();
    let mut child = spawn(&["generate", "--model", &d, "--prompt-ids", "1,2,3", "--max-tokens", "100000000"]);
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 8];
    stdout.read_exact(&mut first).expect("ids arrive before the run ends");
    drop(stdout);
    let start = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(start.elapsed() < Duration::from_secs(30), "the run went on after its reader left");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stdout"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A shard index cannot point outside the model folder.
#[test]
fn shard_index_stays_inside_the_model_folder() {
    let tmp = TempDir::new("shard-index");
    let dir = model_copy(&tmp, "mamba1-tiny", "sharded");
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let d = dir.display().to_string();
    for target in ["../../etc/passwd", "/etc/passwd"] {
        let index = serde_json::json!({"weight_map": {"backbone.embeddings.weight": target}});
        std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
        expect_error(
            &["generate", "--model", &d, "--prompt-ids", "1"],
            &["model.safetensors.index.json", target, "not a file inside the model folder"],
        );
    }
}

/// Smaller ones: a full stderr is not a panic; --adapter takes an index or a backend; a
/// tensor whose byte range disagrees with its shape is named; a model.safetensors that is a
/// folder says so; bench rejects a bad --model before its probes.
#[test]
fn smaller_defects() {
    let tmp = TempDir::new("smaller");
    let d = Fixture::load("mamba1-tiny").dir_str();
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_mamba-wgpu"))
        .args(["generate", "--model", "/no/such/model", "--prompt-ids", "1"])
        .stderr(full)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));

    run_ok(&["generate", "--model", &d, "--prompt-ids", "1", "--max-tokens", "1", "--adapter", "0"]);
    let info = run_ok(&["info"]);
    let backend = if info.stdout.contains("(Vulkan,") { "vulkan" } else { "gl" };
    let out = run_ok(&["generate", "--model", &d, "--prompt-ids", "1", "--max-tokens", "1", "--adapter", backend, "--json"]);
    assert!(out.stdout.to_lowercase().contains(&format!("({backend},")), "{}", out.stdout);
    expect_error(&["generate", "--model", &d, "--prompt-ids", "1", "--adapter", "99"], &["no adapter matches `99`"]);

    // A tensor whose data_offsets hold fewer bytes than its shape needs.
    let bad = model_copy(&tmp, "mamba1-tiny", "bad-length");
    let bytes = std::fs::read(bad.join("model.safetensors")).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + len].to_vec()).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&header).unwrap();
    let shape = v["backbone.norm_f.weight"]["shape"].as_array().unwrap().clone();
    v["backbone.norm_f.weight"]["shape"] = serde_json::json!([shape[0].as_u64().unwrap() + 1]);
    let mut text = v.to_string();
    while text.len() < len {
        text.push(' ');
    }
    assert_eq!(text.len(), len, "the edited header fits the original's length");
    let mut patched = bytes[..8].to_vec();
    patched.extend_from_slice(text.as_bytes());
    patched.extend_from_slice(&bytes[8 + len..]);
    std::fs::write(bad.join("model.safetensors"), patched).unwrap();
    expect_error(&["generate", "--model", &bad.display().to_string(), "--prompt-ids", "1"], &["backbone.norm_f.weight", "data_offsets"]);

    let folder = model_copy(&tmp, "mamba1-tiny", "folder-weights");
    std::fs::remove_file(folder.join("model.safetensors")).unwrap();
    std::fs::create_dir(folder.join("model.safetensors")).unwrap();
    expect_error(&["generate", "--model", &folder.display().to_string(), "--prompt-ids", "1"], &["model.safetensors", "is a folder"]);

    let out = run(&["bench", "--model", &tmp.path().join("nothing").display().to_string()], &RunOpts::default());
    check_error(&out, &["nothing"]);
    assert!(!out.stderr.contains("read bandwidth"), "the probes ran first: {}", out.stderr);
}

/// More than the adapter allows is a clear error, not an abort: a batch whose state exceeds a
/// storage binding (library), and the same through bench.
#[test]
fn too_big_for_the_adapter_is_an_error() {
    use std::sync::Arc;
    let fx = Fixture::load("mamba1-tiny");
    let ctx = pollster::block_on(mamba_wgpu::GpuContext::new(None)).expect("an adapter");
    let model = Arc::new(mamba_wgpu::Model::open(ctx, &fx.dir, Default::default()).unwrap());
    let err = mamba_wgpu::Session::new(model, 1 << 24).err().expect("a batch of 16M sequences is refused").to_string();
    assert!(err.contains("batch of 16777216") && err.contains("storage binding"), "{err}");
    let out = run(&["bench", "--model", &fx.dir_str(), "--quick", "--batch", "100000000"], &RunOpts::default());
    check_error(&out, &["batch of 100000000"]);
}
