//! Ctrl-C: while tokens are being generated, the first Ctrl-C asks the loop to stop after the
//! current token (the output so far and the summary are still printed, exit code 0); a second
//! one, or one at any other time (loading, waiting for chat input), exits at once with 130,
//! the shell's code for SIGINT.

use std::sync::atomic::{AtomicBool, Ordering};

static GENERATING: AtomicBool = AtomicBool::new(false);
static REQUESTED: AtomicBool = AtomicBool::new(false);

pub fn install() {
    // Failing to install (e.g. another handler exists) only loses the graceful stop.
    let _ = ctrlc::set_handler(|| {
        if !GENERATING.load(Ordering::SeqCst) || REQUESTED.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
}

/// Marks a generation loop as running for as long as the guard lives.
pub struct Generating;

impl Generating {
    pub fn begin() -> Self {
        REQUESTED.store(false, Ordering::SeqCst);
        GENERATING.store(true, Ordering::SeqCst);
        Generating
    }

    /// Whether Ctrl-C asked the loop to stop.
    pub fn stop_requested(&self) -> bool {
        REQUESTED.load(Ordering::SeqCst)
    }
}

impl Drop for Generating {
    fn drop(&mut self) {
        GENERATING.store(false, Ordering::SeqCst);
        REQUESTED.store(false, Ordering::SeqCst);
    }
}
