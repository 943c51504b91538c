//! Ctrl-C. While a prompt is prefilled or tokens are generated, the first Ctrl-C asks the work
//! to stop: between prefill chunks (Session::set_interrupt) or after the current token. The
//! output so far and the summary are still printed, and the command exits with 130, the
//! shell's code for SIGINT. A second Ctrl-C, or one at any other time (loading, waiting for
//! chat input), exits at once with 130, after printing the exit note if one is set (chat's
//! summary).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

static GENERATING: AtomicBool = AtomicBool::new(false);
static REQUESTED: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));
static EXIT_NOTE: Mutex<Option<String>> = Mutex::new(None);

pub fn install() {
    // Failing to install (e.g. another handler exists) only loses the graceful stop.
    let _ = ctrlc::set_handler(|| {
        if !GENERATING.load(Ordering::SeqCst) || REQUESTED.swap(true, Ordering::SeqCst) {
            if let Some(note) = EXIT_NOTE.lock().unwrap_or_else(|e| e.into_inner()).as_deref() {
                let _ = writeln!(std::io::stderr(), "{note}");
            }
            std::process::exit(130);
        }
    });
}

/// The flag a first Ctrl-C sets while work runs, for Session::set_interrupt.
pub fn flag() -> Arc<AtomicBool> {
    REQUESTED.clone()
}

/// What a Ctrl-C that exits at once prints first (None: nothing).
pub fn set_exit_note(note: Option<String>) {
    *EXIT_NOTE.lock().unwrap_or_else(|e| e.into_inner()) = note;
}

/// Marks prefill and generation as running for as long as the guard lives.
pub struct Generating;

impl Generating {
    pub fn begin() -> Self {
        REQUESTED.store(false, Ordering::SeqCst);
        GENERATING.store(true, Ordering::SeqCst);
        Generating
    }

    /// Whether Ctrl-C asked the work to stop.
    pub fn stop_requested(&self) -> bool {
        REQUESTED.load(Ordering::SeqCst)
    }
}

impl Drop for Generating {
    fn drop(&mut self) {
        GENERATING.store(false, Ordering::SeqCst);
    }
}
