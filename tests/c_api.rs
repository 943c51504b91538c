//! The C API from the outside: include/mamba_wgpu.h against the Rust definitions in src/capi/
//! (every function, argument, struct field and enum value; struct layouts as the system C
//! compiler lays them out), and the shared library driven from C and Python.
//!
//! The C and Python programs link the shared library in target/<profile>/, which this test
//! brings up to date first (`cargo build --lib`, the same profile and features as the test),
//! so `cargo test --release --test c_api` works on a clean clone. They need the system C
//! compiler (`cc`, or $CC) and `python3`; the generation tests need a GPU adapter (lavapipe
//! will do).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use mamba_wgpu::capi::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

// ---------------------------------------------------------------------------------------------
// Building and running

/// target/<profile>/: where this test binary's profile puts the library and the CLI.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/c_api-<hash>
    exe.parent().and_then(Path::parent).expect("the test binary lives in target/<profile>/deps").to_path_buf()
}

/// The shared library, rebuilt first if the sources changed.
fn library() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let dir = profile_dir();
        let profile = match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev".to_string(),
            Some(name) => name.to_string(),
            None => panic!("no profile folder in {}", dir.display()),
        };
        let target_dir = dir.parent().expect("target folder");
        let mut features = Vec::new();
        if cfg!(feature = "embedded-model") {
            features.push("embedded-model");
        }
        if cfg!(feature = "hub") {
            features.push("hub");
        }
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "--lib", "--profile", &profile, "--no-default-features"]);
        if !features.is_empty() {
            cargo.args(["--features", &features.join(",")]);
        }
        let out = cargo.arg("--target-dir").arg(target_dir).current_dir(ROOT).output().expect("cargo runs");
        assert!(out.status.success(), "cargo build --lib failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let name = if cfg!(target_os = "macos") {
            "libmamba_wgpu.dylib"
        } else if cfg!(windows) {
            "mamba_wgpu.dll"
        } else {
            "libmamba_wgpu.so"
        };
        let lib = dir.join(name);
        assert!(lib.is_file(), "{} missing after cargo build --lib", lib.display());
        lib
    })
}

/// A fresh folder under target/ for this test's files.
fn work_dir(name: &str) -> PathBuf {
    let dir = profile_dir().join("c_api").join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a work folder under target/");
    dir
}

fn c_compiler() -> String {
    std::env::var("CC").ok().filter(|c| !c.is_empty()).unwrap_or_else(|| "cc".into())
}

/// Compiles C `sources` into `exe`, linked against the shared library (with an rpath to it).
fn compile_c(sources: &[&Path], exe: &Path, extra: &[&str]) {
    let lib_dir = library().parent().expect("library folder");
    let mut cmd = Command::new(c_compiler());
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror"])
        .arg(format!("-I{ROOT}/include"))
        .args(sources)
        .arg("-o")
        .arg(exe)
        .arg(format!("-L{}", lib_dir.display()))
        .arg("-lmamba_wgpu")
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .args(extra);
    let out = cmd.output().unwrap_or_else(|e| panic!("the C compiler `{}` does not run ({e}); install one or set $CC", c_compiler()));
    assert!(out.status.success(), "compiling {sources:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

fn run(cmd: &mut Command) -> Output {
    // lavapipe's Vulkan loader wants a runtime folder; give one where there is none.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        let dir = std::env::temp_dir().join("mamba-wgpu-xdg");
        let _ = std::fs::create_dir_all(&dir);
        cmd.env("XDG_RUNTIME_DIR", dir);
    }
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?} does not run: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn shipped_model() -> String {
    format!("{ROOT}/models/shakespeare-mamba")
}

/// What `mamba-wgpu generate --greedy` prints on stdout.
fn cli_greedy(model: &str, prompt: &str, max_tokens: u32) -> String {
    let out = run(Command::new(env!("CARGO_BIN_EXE_mamba-wgpu")).args([
        "generate",
        "--model",
        model,
        "--prompt",
        prompt,
        "--max-tokens",
        &max_tokens.to_string(),
        "--greedy",
    ]));
    assert!(out.status.success(), "the CLI failed: {}", text(&out.stderr));
    text(&out.stdout)
}

fn python() -> String {
    let python = std::env::var("PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".into());
    match Command::new(&python).arg("--version").output() {
        Ok(out) if out.status.success() => python,
        _ => panic!("the Python example test needs `{python}` (install Python 3, or set $PYTHON to its path)"),
    }
}

// ---------------------------------------------------------------------------------------------
// The examples against the CLI

#[test]
#[cfg_attr(windows, ignore = "compiles C with `cc` and an rpath (Unix)")]
fn c_example_prints_what_the_cli_prints() {
    let dir = work_dir("example");
    let exe = dir.join("generate");
    compile_c(&[&Path::new(ROOT).join("examples/c/generate.c")], &exe, &[]);
    let out = run(Command::new(&exe).args([&shipped_model(), "ROMEO:", "20"]));
    assert!(out.status.success(), "examples/c/generate failed: {}", text(&out.stderr));
    let expected = cli_greedy(&shipped_model(), "ROMEO:", 20);
    assert!(expected.trim().len() > 10, "the CLI printed almost nothing: {expected:?}");
    assert_eq!(text(&out.stdout), expected, "C example (left) vs `mamba-wgpu generate --greedy` (right)");
    assert!(text(&out.stderr).contains("generated tokens: 20"), "{}", text(&out.stderr));
}

#[test]
fn python_example_prints_what_the_cli_prints() {
    let python = python();
    let script = Path::new(ROOT).join("examples/python/generate.py");
    let out = run(Command::new(python).arg(&script).args([&shipped_model(), "ROMEO:", "20"]).env("MAMBA_WGPU_LIB", library()));
    assert!(out.status.success(), "examples/python/generate.py failed: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), cli_greedy(&shipped_model(), "ROMEO:", 20), "Python example (left) vs the CLI (right)");
}

#[test]
#[cfg_attr(windows, ignore = "compiles C with `cc` and an rpath (Unix)")]
fn c_example_reports_a_bad_model_path() {
    let dir = work_dir("bad-path");
    let exe = dir.join("generate");
    compile_c(&[&Path::new(ROOT).join("examples/c/generate.c")], &exe, &[]);
    let missing = dir.join("no/such/model");
    let out = run(Command::new(&exe).arg(&missing).args(["ROMEO:", "5"]));
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&missing.display().to_string()) && stderr.contains("not found"), "the message should name the path: {stderr}");
    assert!(out.stdout.is_empty());
}

#[cfg(unix)]
#[test]
fn c_example_loads_a_repo_id_from_the_hugging_face_cache() {
    // The hub's layout: refs/main names the commit, the snapshot's files link into blobs/.
    let dir = work_dir("hub-cache");
    let repo = dir.join("hub/models--test-owner--shakespeare");
    let hash = "0123456789abcdef0123456789abcdef01234567";
    let snapshot = repo.join("snapshots").join(hash);
    std::fs::create_dir_all(&snapshot).expect("mkdir snapshot");
    std::fs::create_dir_all(repo.join("refs")).expect("mkdir refs");
    std::fs::write(repo.join("refs/main"), hash).expect("write refs/main");
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::os::unix::fs::symlink(Path::new(&shipped_model()).join(file), snapshot.join(file)).expect("symlink");
    }
    let exe = dir.join("generate");
    compile_c(&[&Path::new(ROOT).join("examples/c/generate.c")], &exe, &[]);
    let out = run(Command::new(&exe).args(["test-owner/shakespeare", "ROMEO:", "20"]).env("HF_HUB_CACHE", dir.join("hub")).current_dir(&dir));
    assert!(out.status.success(), "loading test-owner/shakespeare from the cache failed: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), cli_greedy(&shipped_model(), "ROMEO:", 20));
}

/// A ChatML template as models publish it, in a tokenizer_config.json.
const CHATML_CONFIG: &str = r#"{"chat_template": "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}", "eos_token": "<|im_end|>"}"#;

/// A template that does not compile.
const BROKEN_CONFIG: &str = r#"{"chat_template": "{% for m in messages %}"}"#;

/// A copy of the shipped model in `dir`/`name` with `tokenizer_config` as its
/// tokenizer_config.json.
fn model_copy(dir: &Path, name: &str, tokenizer_config: &str) -> PathBuf {
    let model = dir.join(name);
    std::fs::create_dir_all(&model).expect("mkdir a model folder");
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(Path::new(&shipped_model()).join(file), model.join(file)).expect("copy the shipped model");
    }
    std::fs::write(model.join("tokenizer_config.json"), tokenizer_config).expect("write tokenizer_config.json");
    model
}

/// tests/c/api_checks.c: error paths, buffers, prefill/step/generation, snapshots, callbacks,
/// threads, chat templates, all through C.
#[test]
#[cfg_attr(windows, ignore = "compiles C with `cc` and an rpath (Unix)")]
fn api_checks_from_c() {
    let dir = work_dir("api-checks");
    let exe = dir.join("api_checks");
    compile_c(&[&Path::new(ROOT).join("tests/c/api_checks.c")], &exe, &["-lpthread"]);
    let bare = format!("{ROOT}/tests/fixtures/mamba1-small");
    // The ChatML model, with two more configs beside its files for the load options.
    let chatml = model_copy(&dir, "chatml-model", CHATML_CONFIG);
    let raising = r#"{"chat_template": "{{ raise_exception('Conversation roles must alternate') }}"}"#;
    std::fs::write(chatml.join("raising.json"), raising).expect("write raising.json");
    std::fs::write(chatml.join("broken.json"), BROKEN_CONFIG).expect("write broken.json");
    let broken = model_copy(&dir, "broken-template-model", BROKEN_CONFIG);
    let out = run(Command::new(&exe).args([&shipped_model(), &bare]).arg(&chatml).arg(&broken));
    assert!(out.status.success(), "api_checks failed:\n{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).starts_with("ok: "), "{}", text(&out.stdout));
}

#[test]
fn sampling_defaults_are_the_library_defaults() {
    let mut opts = std::mem::MaybeUninit::<mw_sampling_options>::uninit();
    assert_eq!(unsafe { mamba_wgpu::capi::generate::mw_sampling_defaults(opts.as_mut_ptr()) }, mw_status::MW_OK);
    let opts = unsafe { opts.assume_init() };
    assert_eq!(opts.params(), mamba_wgpu::sampling::SamplingParams::default());
    assert_eq!((opts.max_tokens, opts.stop_strings.is_null(), opts.n_stop_strings), (200, true, 0));
    let status = unsafe { mamba_wgpu::capi::generate::mw_sampling_defaults(std::ptr::null_mut()) };
    assert_eq!(status, mw_status::MW_ERR_NULL_POINTER);
    let message = unsafe { std::ffi::CStr::from_ptr(mamba_wgpu::capi::errors::mw_last_error()) };
    assert!(message.to_string_lossy().contains("`options` is NULL"), "{message:?}");
}

// ---------------------------------------------------------------------------------------------
// The header against the Rust definitions

#[derive(Debug, PartialEq)]
struct Function {
    /// Rust spelling of the return type ("()" for none).
    ret: String,
    /// (name, Rust spelling of the type)
    params: Vec<(String, String)>,
}

#[derive(Debug, Default)]
struct Api {
    functions: BTreeMap<String, Function>,
    /// Function pointer types: their signature.
    callbacks: BTreeMap<String, Function>,
    /// Struct name -> fields (name, Rust spelling of the type), in order.
    structs: BTreeMap<String, Vec<(String, String)>>,
    /// Enum name -> (enumerator, value), in order.
    enums: BTreeMap<String, Vec<(String, i64)>>,
    /// Opaque handle types.
    opaque: Vec<String>,
}

/// Whitespace-insensitive type spelling.
fn squash(s: &str) -> String {
    s.split_whitespace().collect()
}

/// A C type as Rust spells it: `const char *const *` is `*const *const c_char`.
fn c_type_to_rust(c: &str) -> String {
    let spaced = c.replace('*', " * ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    let star = tokens.iter().position(|&t| t == "*").unwrap_or(tokens.len());
    let (base, pointers) = tokens.split_at(star);
    let mut is_const = base.contains(&"const");
    let base: Vec<&str> = base.iter().copied().filter(|&t| t != "const").collect();
    let base = match base.as_slice() {
        ["void"] if pointers.is_empty() => "()".to_string(),
        ["void"] => "c_void".into(),
        ["char"] => "c_char".into(),
        ["int"] => "c_int".into(),
        ["float"] => "f32".into(),
        ["double"] => "f64".into(),
        ["size_t"] => "usize".into(),
        ["uint8_t"] => "u8".into(),
        ["int32_t"] => "i32".into(),
        ["uint32_t"] => "u32".into(),
        ["int64_t"] => "i64".into(),
        ["uint64_t"] => "u64".into(),
        [name] if name.starts_with("mw_") => name.to_string(),
        other => panic!("header: type `{c}` ({other:?}) has no Rust spelling in this test; add it"),
    };
    let mut rust = base;
    let mut i = 0;
    while i < pointers.len() {
        assert_eq!(pointers[i], "*", "header: unexpected `{}` in type `{c}`", pointers[i]);
        rust = format!("*{} {rust}", if is_const { "const" } else { "mut" });
        is_const = pointers.get(i + 1) == Some(&"const");
        i += if is_const { 2 } else { 1 };
    }
    squash(&rust)
}

/// Splits at commas outside brackets.
fn split_top(s: &str, sep: char) -> Vec<String> {
    let (mut parts, mut depth, mut cur) = (Vec::new(), 0i32, String::new());
    for ch in s.chars() {
        match ch {
            '(' | '<' | '[' | '{' => depth += 1,
            ')' | '>' | ']' | '}' => depth -= 1,
            _ => {}
        }
        if ch == sep && depth == 0 {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(ch);
        }
    }
    if !cur.trim().is_empty() {
        parts.push(cur);
    }
    parts.into_iter().map(|p| p.trim().to_string()).collect()
}

/// `type name` -> (name, Rust type).
fn c_decl(decl: &str) -> (String, String) {
    let decl = decl.trim();
    let split = decl.rfind(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or_else(|| panic!("header: `{decl}` has no name"));
    (decl[split + 1..].to_string(), c_type_to_rust(&decl[..=split]))
}

fn c_params(list: &str) -> Vec<(String, String)> {
    if list.trim() == "void" {
        return Vec::new();
    }
    split_top(list, ',').iter().map(|p| c_decl(p)).collect()
}

/// The header without comments, preprocessor lines and the C++ guards.
fn header_code(header: &str) -> String {
    let mut code = String::new();
    let mut rest = header;
    while let Some(start) = rest.find("/*") {
        code.push_str(&rest[..start]);
        let end = rest[start..].find("*/").expect("header: unterminated comment");
        rest = &rest[start + end + 2..];
    }
    code.push_str(rest);
    let mut out = String::new();
    let mut in_cpp_guard = false;
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or("").trim();
        if line.starts_with("#ifdef __cplusplus") {
            in_cpp_guard = true;
        } else if in_cpp_guard && line.starts_with("#endif") {
            in_cpp_guard = false;
        } else if !in_cpp_guard && !line.starts_with('#') {
            out.push_str(line);
            out.push(' ');
        }
    }
    out
}

fn parse_header(header: &str) -> Api {
    let mut api = Api::default();
    for statement in split_top(&header_code(header), ';') {
        let s = statement.split_whitespace().collect::<Vec<_>>().join(" ");
        if let Some(rest) = s.strip_prefix("typedef enum ") {
            let (open, close) = (rest.find('{').expect("enum body"), rest.rfind('}').expect("enum body"));
            let name = rest[close + 1..].trim().to_string();
            assert_eq!(rest[..open].trim(), name, "header: enum tag and typedef differ");
            let values = split_top(&rest[open + 1..close], ',')
                .iter()
                .map(|e| {
                    let (n, v) = e.split_once('=').unwrap_or_else(|| panic!("header: enumerator `{e}` needs an explicit value"));
                    (n.trim().to_string(), v.trim().parse::<i64>().unwrap_or_else(|_| panic!("header: value of `{e}`")))
                })
                .collect();
            api.enums.insert(name, values);
        } else if let Some(rest) = s.strip_prefix("typedef struct ") {
            match (rest.find('{'), rest.rfind('}')) {
                (Some(open), Some(close)) => {
                    let name = rest[close + 1..].trim().to_string();
                    assert_eq!(rest[..open].trim(), name, "header: struct tag and typedef differ");
                    let fields = split_top(&rest[open + 1..close], ';').iter().map(|f| c_decl(f)).collect();
                    api.structs.insert(name, fields);
                }
                _ => {
                    let words: Vec<&str> = rest.split_whitespace().collect();
                    assert!(words.len() == 2 && words[0] == words[1], "header: opaque typedef `{s}`");
                    api.opaque.push(words[0].to_string());
                }
            }
        } else if let Some(rest) = s.strip_prefix("typedef ") {
            // typedef RET (*NAME)(PARAMS)
            let open = rest.find("(*").unwrap_or_else(|| panic!("header: unknown typedef `{s}`"));
            let close = open + rest[open..].find(')').expect("callback name");
            let name = rest[open + 2..close].trim().to_string();
            let params = rest[close + 1..].trim();
            let params = params.strip_prefix('(').and_then(|p| p.strip_suffix(')')).expect("callback parameters");
            api.callbacks.insert(name, Function { ret: c_type_to_rust(&rest[..open]), params: c_params(params) });
        } else if s.starts_with("extern") {
            continue;
        } else {
            let open = s.find('(').unwrap_or_else(|| panic!("header: not a prototype: `{s}`"));
            let (name, ret) = c_decl(&s[..open]);
            let params = s[open + 1..].strip_suffix(')').unwrap_or_else(|| panic!("header: `{s}` does not end with `)`"));
            let previous = api.functions.insert(name.clone(), Function { ret, params: c_params(params) });
            assert!(previous.is_none(), "header: {name} declared twice");
        }
    }
    api
}

/// src/capi/*.rs without comments, on one line.
fn rust_code() -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("src/capi")).expect("src/capi").map(|e| e.expect("entry").path()).collect();
    files.sort();
    let mut out = String::new();
    for file in files {
        for line in std::fs::read_to_string(&file).expect("read src/capi").lines() {
            out.push_str(line.split("//").next().unwrap_or(""));
            out.push(' ');
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// (name, type) pairs of a Rust parameter list.
fn rust_params(list: &str) -> Vec<(String, String)> {
    split_top(list, ',')
        .iter()
        .map(|p| {
            let (name, ty) = p.split_once(':').unwrap_or_else(|| panic!("src/capi: parameter `{p}`"));
            (name.trim().to_string(), squash(ty))
        })
        .collect()
}

/// The text between the bracket at `open` and its match.
fn bracketed(s: &str, open: usize) -> (&str, usize) {
    let (o, c) = match s.as_bytes()[open] {
        b'(' => (b'(', b')'),
        b'{' => (b'{', b'}'),
        other => panic!("not a bracket: {}", other as char),
    };
    let mut depth = 0;
    for (i, &b) in s.as_bytes().iter().enumerate().skip(open) {
        if b == o {
            depth += 1;
        } else if b == c {
            depth -= 1;
            if depth == 0 {
                return (&s[open + 1..i], i);
            }
        }
    }
    panic!("unbalanced brackets");
}

fn parse_rust() -> Api {
    let code = rust_code();
    let mut api = Api::default();
    // #[no_mangle] pub (unsafe) extern "C" fn NAME(PARAMS) (-> RET) {
    for piece in code.split("#[no_mangle]").skip(1) {
        let at = piece.find("extern \"C\" fn ").unwrap_or_else(|| panic!("src/capi: #[no_mangle] on something else: {piece:.80}"));
        let rest = &piece[at + "extern \"C\" fn ".len()..];
        let open = rest.find('(').expect("fn parameters");
        let name = rest[..open].trim().to_string();
        let (params, close) = bracketed(rest, open);
        let after = rest[close + 1..].trim_start();
        let ret = match after.strip_prefix("->") {
            Some(r) => squash(&r[..r.find('{').expect("fn body")]),
            None => "()".into(),
        };
        api.functions.insert(name, Function { ret, params: rust_params(params) });
    }
    // #[repr(C)] (#[derive(..)]) pub struct NAME { pub a: T, ... } / pub enum NAME { A = 0, ... }
    for piece in code.split("#[repr(C)]").skip(1) {
        let piece = piece.trim_start();
        let piece = if piece.starts_with("#[derive") { &piece[piece.find(']').expect("derive") + 1..] } else { piece };
        let piece = piece.trim_start();
        let open = piece.find('{').expect("body");
        let (body, _) = bracketed(piece, open);
        if let Some(name) = piece[..open].trim().strip_prefix("pub struct ") {
            let fields = rust_params(&body.replace("pub ", ""));
            api.structs.insert(name.trim().to_string(), fields);
        } else if let Some(name) = piece[..open].trim().strip_prefix("pub enum ") {
            let values = split_top(body, ',')
                .iter()
                .map(|v| {
                    let (n, x) = v.split_once('=').unwrap_or_else(|| panic!("src/capi: `{v}` needs an explicit value"));
                    (n.trim().to_string(), x.trim().parse().unwrap_or_else(|_| panic!("src/capi: value of `{v}`")))
                })
                .collect();
            api.enums.insert(name.trim().to_string(), values);
        } else {
            panic!("src/capi: #[repr(C)] on `{:.60}`", piece);
        }
    }
    // pub type NAME = Option<unsafe extern "C" fn(a: T, ..) -> R>;
    for piece in code.split("pub type ").skip(1) {
        let (name, rest) = piece.split_once('=').expect("type alias");
        let rest = rest.trim();
        let inner = rest.strip_prefix("Option<unsafe extern \"C\" fn").unwrap_or_else(|| panic!("src/capi: type `{name}` is not a callback"));
        let (params, close) = bracketed(inner, 0);
        let ret = match inner[close + 1..].trim_start().strip_prefix("->") {
            Some(r) => squash(r.split('>').next().unwrap_or("")),
            None => "()".into(),
        };
        api.callbacks.insert(name.trim().to_string(), Function { ret, params: rust_params(params) });
    }
    api
}

fn header_text() -> String {
    std::fs::read_to_string(Path::new(ROOT).join("include/mamba_wgpu.h")).expect("include/mamba_wgpu.h")
}

#[test]
fn header_declares_what_the_library_defines() {
    let c = parse_header(&header_text());
    let rust = parse_rust();
    assert!(c.functions.len() >= 25, "header parse found only {:?}", c.functions.keys());

    let names = |m: &BTreeMap<String, Function>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&c.functions), names(&rust.functions), "functions: header (left) vs #[no_mangle] in src/capi (right)");
    for (name, f) in &c.functions {
        let r = &rust.functions[name];
        assert_eq!(f.params.len(), r.params.len(), "{name}: argument count, header {:?} vs Rust {:?}", f.params, r.params);
        assert_eq!(f, r, "{name}: header (left) vs Rust (right)");
    }
    assert_eq!(c.callbacks, rust.callbacks, "callback types: header (left) vs Rust (right)");
    assert_eq!(c.structs, rust.structs, "struct fields: header (left) vs Rust (right)");
    assert_eq!(c.enums, rust.enums, "enums: header (left) vs Rust (right)");
    let mut opaque = c.opaque.clone();
    opaque.sort();
    assert_eq!(opaque, ["mw_context", "mw_model", "mw_session"]);
    for f in c.functions.keys().filter(|n| !["mw_last_error", "mw_status_string", "mw_version"].contains(&n.as_str())) {
        let ret = &c.functions[f].ret;
        assert!(ret == "mw_status" || (f.ends_with("_free") && ret == "()"), "{f} returns {ret}: every call returns an mw_status");
    }
}

/// Struct name -> (size, align, [(field, offset, size)]).
type Layouts = BTreeMap<String, (usize, usize, Vec<(String, usize, usize)>)>;

/// (name, size, align, [(field, offset, size)]) as Rust lays the struct out.
type Layout = (&'static str, usize, usize, Vec<(&'static str, usize, usize)>);

macro_rules! layout {
    ($t:ident { $($f:ident),* $(,)? }) => {{
        // SAFETY: every field of these structs is an integer, a float or a raw pointer.
        let value: $t = unsafe { std::mem::zeroed() };
        let fields = vec![$((stringify!($f), std::mem::offset_of!($t, $f), std::mem::size_of_val(&value.$f))),*];
        (stringify!($t), std::mem::size_of::<$t>(), std::mem::align_of::<$t>(), fields)
    }};
}

fn rust_layouts() -> Vec<Layout> {
    vec![
        layout!(mw_load_options { tokenizer_path, weight_dtype, tokenizer_config_path }),
        layout!(mw_model_info { vocab_size, n_layer, d_model, weight_bytes, eos_id, has_tokenizer, has_chat_template }),
        layout!(mw_chat_message { role, content }),
        layout!(mw_sampling_options {
            temperature,
            top_k,
            top_p,
            min_p,
            repetition_penalty,
            repetition_window,
            seed,
            max_tokens,
            stop_strings,
            n_stop_strings
        }),
        layout!(mw_generate_result { prompt_tokens, generated_tokens, prefill_seconds, decode_seconds, finish_reason }),
    ]
}

fn rust_enum_sizes() -> BTreeMap<&'static str, usize> {
    use std::mem::size_of;
    BTreeMap::from([
        ("mw_status", size_of::<mw_status>()),
        ("mw_weight_dtype", size_of::<mw_weight_dtype>()),
        ("mw_finish_reason", size_of::<mw_finish_reason>()),
    ])
}

/// Compiles a program that prints every struct's layout, every enum's size and values and
/// MW_NO_TOKEN as the C compiler sees them, and that takes the address of every function
/// the header declares, so that linking it proves the library exports them all.
#[test]
#[cfg_attr(windows, ignore = "compiles C with `cc` and an rpath (Unix)")]
fn header_layouts_match_rust_and_the_library_exports_every_function() {
    let c = parse_header(&header_text());
    let mut program = String::from("#include <stddef.h>\n#include <stdio.h>\n#include \"mamba_wgpu.h\"\n\nint main(void) {\n");
    for (name, fields) in &c.structs {
        program += &format!("    printf(\"struct {name} %zu %zu\\n\", sizeof({name}), _Alignof({name}));\n");
        for (field, _) in fields {
            program += &format!("    printf(\"field {name} {field} %zu %zu\\n\", offsetof({name}, {field}), sizeof((({name} *)0)->{field}));\n");
        }
    }
    for (name, values) in &c.enums {
        program += &format!("    printf(\"enum {name} %zu\\n\", sizeof({name}));\n");
        for (value, _) in values {
            program += &format!("    printf(\"value {name} {value} %lld\\n\", (long long){value});\n");
        }
    }
    program += "    printf(\"define MW_NO_TOKEN %llu\\n\", (unsigned long long)MW_NO_TOKEN);\n";
    program += "    void (*const functions[])(void) = {\n";
    for name in c.functions.keys() {
        program += &format!("        (void (*)(void)){name},\n");
    }
    program += "    };\n    printf(\"functions %zu\\n\", sizeof functions / sizeof functions[0]);\n    return 0;\n}\n";

    let dir = work_dir("layout");
    let source = dir.join("layout.c");
    std::fs::write(&source, &program).expect("write layout.c");
    let exe = dir.join("layout");
    compile_c(&[&source], &exe, &[]);
    let out = run(&mut Command::new(&exe));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);

    let mut c_structs: Layouts = BTreeMap::new();
    let mut c_enum_sizes = BTreeMap::new();
    let mut c_values: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
    for line in printed.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let n = |i: usize| w[i].parse::<usize>().expect("a number");
        match w[0] {
            "struct" => {
                c_structs.insert(w[1].into(), (n(2), n(3), Vec::new()));
            }
            "field" => c_structs.get_mut(w[1]).expect("struct first").2.push((w[2].into(), n(3), n(4))),
            "enum" => {
                c_enum_sizes.insert(w[1].to_string(), n(2));
            }
            "value" => c_values.entry(w[1].into()).or_default().push((w[2].into(), w[3].parse().expect("value"))),
            "define" => assert_eq!(w[2].parse::<u64>().expect("MW_NO_TOKEN"), MW_NO_TOKEN as u64, "MW_NO_TOKEN"),
            "functions" => assert_eq!(n(1), c.functions.len()),
            other => panic!("unexpected line {other}"),
        }
    }
    let rust: Layouts = rust_layouts()
        .into_iter()
        .map(|(name, size, align, fields)| (name.to_string(), (size, align, fields.into_iter().map(|(f, o, s)| (f.to_string(), o, s)).collect())))
        .collect();
    assert_eq!(c_structs, rust, "struct layouts: C compiler (left) vs Rust (right): (size, align, [(field, offset, size)])");
    let rust_sizes: BTreeMap<String, usize> = rust_enum_sizes().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    assert_eq!(c_enum_sizes, rust_sizes, "enum sizes: C (left) vs Rust (right)");
    assert_eq!(c_values, c.enums, "enum values as compiled vs as written");
}

#[test]
fn header_parser_reads_c_declarations() {
    assert_eq!(c_type_to_rust("const char *const *"), "*const*constc_char");
    assert_eq!(c_type_to_rust("mw_context **"), "*mut*mutmw_context");
    assert_eq!(c_type_to_rust("const mw_model *"), "*constmw_model");
    assert_eq!(c_type_to_rust("void"), "()");
    assert_eq!(c_type_to_rust("void *"), "*mutc_void");
    let api = parse_header(
        "/* c */ typedef enum mw_e { A = 0, B = 2 } mw_e;\ntypedef struct mw_h mw_h;\n#ifdef __cplusplus\nextern \"C\" {\n#endif\n\
         typedef struct mw_s { const char *p; uint32_t n; } mw_s;\n\
         typedef int32_t (*mw_cb)(const char *t, size_t n, void *u);\nmw_status f(mw_h *x, mw_cb c); // x\nconst char *g(void);\n",
    );
    assert_eq!(api.enums["mw_e"], [("A".to_string(), 0), ("B".to_string(), 2)]);
    assert_eq!(api.opaque, ["mw_h"]);
    assert_eq!(api.structs["mw_s"], [("p".to_string(), "*constc_char".to_string()), ("n".to_string(), "u32".to_string())]);
    assert_eq!(api.callbacks["mw_cb"], Function { ret: "i32".into(), params: c_params("const char *t, size_t n, void *u") });
    assert_eq!(api.functions["f"].params, [("x".to_string(), "*mutmw_h".to_string()), ("c".to_string(), "mw_cb".to_string())]);
    assert_eq!(api.functions["g"], Function { ret: "*constc_char".into(), params: vec![] });
}
