//! `mamba-wgpu serve` end to end: the server on 127.0.0.1 (a free port) with the shipped model,
//! driven by the official `openai` Python client (tests/serve/openai_client.py): completions
//! and chat, streamed and not, with `generate --greedy`'s text; the state cache on a repeated
//! prompt and a follow-up turn; two concurrent streams interleaving; bad requests; a client
//! that disconnects. Then Ctrl-C stops the server. Needs Python with `openai`
//! (`pip install -r tools/requirements-tests.txt`; tools/test.sh installs it into a venv and
//! sets MAMBA_TEST_PYTHON); without it the test fails and says so.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mamba-wgpu");

/// The server process, killed if the test ends early.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python() -> String {
    let python = std::env::var("MAMBA_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python).args(["-c", "import openai"]).output();
    match probe {
        Ok(out) if out.status.success() => python,
        _ => panic!(
            "{python} cannot import the `openai` package: run `pip install -r tools/requirements-tests.txt` \
             (tools/test.sh installs it into a venv and sets MAMBA_TEST_PYTHON)"
        ),
    }
}

/// Starts the server with `args` and returns it with its base URL, read from its first line on
/// stderr, and a reader of the rest of its stderr.
fn start_server(args: &[&str]) -> (Server, String, std::thread::JoinHandle<String>) {
    let child = Command::new(BIN)
        .args([&["serve", "--port", "0"][..], args].concat())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mamba-wgpu serve");
    let mut server = Server(child);
    let mut stderr = BufReader::new(server.0.stderr.take().expect("stderr"));
    let mut line = String::new();
    stderr.read_line(&mut line).expect("read the server's first line");
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_else(|| panic!("no URL in the server's first line: {line:?}"));
    let url = url.to_string();
    // The rest of stderr, for the end of the test.
    let rest = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    (server, url, rest)
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn openai_client_talks_to_the_server() {
    let python = python();
    let greedy = Command::new(BIN).args(["generate", "--prompt", "ROMEO:", "--max-tokens", "20", "--greedy"]).output().expect("run generate");
    assert!(greedy.status.success(), "generate failed: {}", String::from_utf8_lossy(&greedy.stderr));
    let greedy_text = String::from_utf8(greedy.stdout).expect("UTF-8 output");

    let (mut server, url, stderr) = start_server(&["--max-prompt-tokens", "256", "--max-body-bytes", "200000"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/serve/openai_client.py");
    let mut client = Command::new(&python).arg(&script).args([&url, "shakespeare-mamba", &greedy_text]).spawn().expect("run the client");
    let status = wait_with_timeout(&mut client, Duration::from_secs(900));
    if status.is_none() {
        let _ = client.kill();
    }
    assert!(status.is_some_and(|s| s.success()), "the openai client's checks failed (its output is above): {status:?}");

    // Ctrl-C stops the server cleanly: exit code 130 and a last line saying so.
    let pid = server.0.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().expect("kill").success());
    let status = wait_with_timeout(&mut server.0, Duration::from_secs(20)).expect("the server did not stop within 20 s of Ctrl-C");
    assert_eq!(status.code(), Some(130));
    let log = stderr.join().expect("stderr reader");
    assert!(log.contains("stopped") && !log.contains("panicked"), "{log}");
}

/// With one request generating and one waiting, a third at the same time gets 503 in the API's
/// error format, and the first two are answered.
#[test]
fn a_full_queue_refuses_with_503() {
    let python = python();
    let (_server, url, _stderr) = start_server(&["--parallel", "1", "--queue", "1"]);
    // Three requests at once, each long enough to still run when the others arrive.
    let script = r#"
import json, sys, threading, urllib.request, urllib.error
url = sys.argv[1] + "/completions"
codes = [None] * 3
def post(i):
    body = json.dumps({"prompt": "ROMEO:", "max_tokens": 400, "temperature": 0}).encode()
    req = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            codes[i] = (r.status, "choices" in json.load(r))
    except urllib.error.HTTPError as e:
        codes[i] = (e.code, "error" in json.load(e))
threads = [threading.Thread(target=post, args=(i,)) for i in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(sorted(codes)))
"#;
    let out = Command::new(&python).args(["-c", script, &url]).output().expect("run python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let codes = String::from_utf8_lossy(&out.stdout);
    assert_eq!(codes.trim(), "[[200, true], [200, true], [503, true]]", "two answered and one refused");
}
