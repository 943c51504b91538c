//! `mw_session`: one sequence (batch 1) run through a model: prefill, step, reset, snapshot
//! and restore.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::errors::{copy_out, guard, slice, write, CResult, Failure};
use super::model::{loaded_of, mw_model, LoadedModel};
use super::{free, handle, into_raw, mw_status, Handle};
use crate::Session;

/// What a session handle owns.
pub(crate) struct SessionState {
    pub model: Arc<LoadedModel>,
    pub session: Session,
    /// The last token `mw_generate` returned, not yet in the recurrent state: the next call
    /// that runs the model feeds it first, so the state always continues the text handed out.
    pub pending: Option<u32>,
    /// The last ids fed since the reset (the pending one included), at most MAX_HISTORY: what
    /// the repetition penalty of the next generation looks at.
    pub history: Vec<u32>,
}

/// Most ids a session remembers for the repetition penalty (its window is far smaller).
pub const MAX_HISTORY: usize = 1 << 16;

/// Drops all but the last MAX_HISTORY ids.
pub fn trim_history(history: &mut Vec<u32>) {
    let excess = history.len().saturating_sub(MAX_HISTORY);
    history.drain(..excess);
}

impl SessionState {
    /// `ids` preceded by the pending token, which then counts as fed.
    fn with_pending(&mut self, ids: &[u32]) -> Vec<u32> {
        let mut all: Vec<u32> = self.pending.iter().copied().collect();
        all.extend_from_slice(ids);
        all
    }

    /// Runs `work` on the pending token followed by `ids`. On success the pending token is
    /// consumed and `ids` join the history; on a failure that fed nothing (a bad id) both stay.
    fn run<T>(&mut self, ids: &[u32], work: impl FnOnce(&mut Session, Vec<Vec<u32>>) -> crate::Result<T>) -> CResult<T> {
        let all = self.with_pending(ids);
        let before = self.session.position();
        let result = work(&mut self.session, vec![all]);
        if result.is_ok() || self.session.position() != before {
            self.pending = None;
            self.history.extend_from_slice(ids);
            trim_history(&mut self.history);
        }
        Ok(result?)
    }

    /// Feeds the pending token, if any, so the state holds everything handed out.
    fn flush_pending(&mut self) -> CResult<()> {
        if self.pending.is_some() {
            self.run(&[], |s, prompt| pollster::block_on(s.feed(&prompt)))?;
        }
        Ok(())
    }
}

/// Opaque to C. Shared references only: the state is reached through `busy`.
pub struct mw_session {
    tag: u64,
    busy: AtomicBool,
    state: UnsafeCell<SessionState>,
}

impl Handle for mw_session {
    const TAG: u64 = u64::from_le_bytes(*b"mw:sessn");
    const NAME: &'static str = "mw_session";
    fn tag(&self) -> u64 {
        self.tag
    }
    fn clear_tag(&mut self) {
        self.tag = 0;
    }
}

/// Clears the busy flag when a call ends, panics included.
struct Release<'a>(&'a AtomicBool);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Runs `body` on the session's state, which no other call may use meanwhile: a second call
/// (another thread, or this session's own callback) gets MW_ERR_BUSY.
///
/// # Safety
/// `session` is NULL or a session handle.
pub(crate) unsafe fn with_session<T>(session: *mut mw_session, body: impl FnOnce(&mut SessionState) -> CResult<T>) -> CResult<T> {
    let s = handle(session.cast_const(), "session")?;
    if s.busy.swap(true, Ordering::Acquire) {
        return Err(Failure::new(
            mw_status::MW_ERR_BUSY,
            "the session is in use by another call (from another thread, or from its own callback); a session takes one call at a time",
        ));
    }
    let _release = Release(&s.busy);
    // SAFETY: the busy flag makes this the only reference to the state until `_release` drops.
    body(&mut *s.state.get())
}

/// Opens a session of batch 1 on `model`.
///
/// # Safety
/// `model` is NULL or a model handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mw_session_new(model: *const mw_model, out: *mut *mut mw_session) -> mw_status {
    guard(|| {
        write(out, "out", std::ptr::null_mut())?;
        let model = loaded_of(model)?;
        let session = Session::new(model.model.clone(), 1)?;
        let state = SessionState { model, session, pending: None, history: Vec::new() };
        write(out, "out", into_raw(mw_session { tag: mw_session::TAG, busy: AtomicBool::new(false), state: UnsafeCell::new(state) }))
    })
}

/// Zeroes the state: the next prefill starts a new sequence.
///
/// # Safety
/// `session` is NULL or a session handle.
#[no_mangle]
pub unsafe extern "C" fn mw_session_reset(session: *mut mw_session) -> mw_status {
    guard(|| {
        with_session(session, |s| {
            s.session.reset();
            s.pending = None;
            s.history.clear();
            Ok(())
        })
    })
}

/// Tokens fed since creation, the last reset or the restored snapshot's position.
///
/// # Safety
/// `session` is NULL or a session handle; `position` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mw_session_position(session: *mut mw_session, position: *mut u64) -> mw_status {
    guard(|| with_session(session, |s| write(position, "position", s.session.position() + s.pending.is_some() as u64)))
}

/// Checks a logits buffer before any work: NULL means "read nothing back".
unsafe fn logits_out<'a>(s: &SessionState, logits: *mut f32, logits_len: usize) -> CResult<Option<&'a mut [f32]>> {
    if logits.is_null() {
        return Ok(None);
    }
    let vocab = s.model.model.config.vocab_size;
    if logits_len < vocab {
        return Err(Failure::new(mw_status::MW_ERR_BUFFER_TOO_SMALL, format!("`logits` holds {logits_len} floats, the vocabulary has {vocab}")));
    }
    Ok(Some(std::slice::from_raw_parts_mut(logits, vocab)))
}

/// Feeds `ids`; with `logits` also reads back the last position's logits.
unsafe fn prefill(s: &mut SessionState, ids: &[u32], logits: *mut f32, logits_len: usize) -> CResult<()> {
    if ids.is_empty() {
        return Err(Failure::invalid("n_ids", "is 0: give at least one token id"));
    }
    match logits_out(s, logits, logits_len)? {
        None => s.run(ids, |session, prompt| pollster::block_on(session.feed(&prompt))),
        Some(out) => {
            let row = s.run(ids, |session, prompt| pollster::block_on(session.prefill(&prompt)))?;
            out.copy_from_slice(&row[..out.len()]);
            Ok(())
        }
    }
}

/// Feeds `ids` and returns the most likely next token (argmax on the GPU).
fn prefill_greedy(s: &mut SessionState, ids: &[u32]) -> CResult<u32> {
    if ids.is_empty() {
        return Err(Failure::invalid("n_ids", "is 0: give at least one token id"));
    }
    let next = s.run(ids, |session, prompt| pollster::block_on(session.prefill_greedy(&prompt)))?;
    next.first().copied().ok_or_else(|| Failure::new(mw_status::MW_ERR_GPU, "no token came back from the GPU"))
}

/// Feeds `n_ids` token ids. With `logits` (room for `logits_len` >= vocab_size floats) the
/// last position's logits are copied there; NULL reads nothing back.
///
/// # Safety
/// `session` is NULL or a session handle; `ids` is NULL or readable for `n_ids` ids; `logits`
/// is NULL or writable for `logits_len` floats.
#[no_mangle]
pub unsafe extern "C" fn mw_session_prefill(
    session: *mut mw_session,
    ids: *const u32,
    n_ids: usize,
    logits: *mut f32,
    logits_len: usize,
) -> mw_status {
    guard(|| {
        let ids = slice(ids, n_ids, "ids")?;
        with_session(session, |s| prefill(s, ids, logits, logits_len))
    })
}

/// Feeds `n_ids` token ids and stores the most likely next token at `next_id`.
///
/// # Safety
/// `session` is NULL or a session handle; `ids` is NULL or readable for `n_ids` ids;
/// `next_id` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mw_session_prefill_greedy(session: *mut mw_session, ids: *const u32, n_ids: usize, next_id: *mut u32) -> mw_status {
    guard(|| {
        let ids = slice(ids, n_ids, "ids")?;
        if next_id.is_null() {
            return Err(Failure::null("next_id"));
        }
        let next = with_session(session, |s| prefill_greedy(s, ids))?;
        write(next_id, "next_id", next)
    })
}

/// Feeds one token; like `mw_session_prefill` with one id.
///
/// # Safety
/// As `mw_session_prefill`.
#[no_mangle]
pub unsafe extern "C" fn mw_session_step(session: *mut mw_session, id: u32, logits: *mut f32, logits_len: usize) -> mw_status {
    guard(|| with_session(session, |s| prefill(s, &[id], logits, logits_len)))
}

/// Feeds one token and stores the most likely next one at `next_id`.
///
/// # Safety
/// As `mw_session_prefill_greedy`.
#[no_mangle]
pub unsafe extern "C" fn mw_session_step_greedy(session: *mut mw_session, id: u32, next_id: *mut u32) -> mw_status {
    guard(|| {
        if next_id.is_null() {
            return Err(Failure::null("next_id"));
        }
        let next = with_session(session, |s| prefill_greedy(s, &[id]))?;
        write(next_id, "next_id", next)
    })
}

/// The recurrent state as bytes. `len` receives the size; a NULL `buf` only asks for it.
///
/// # Safety
/// `session` is NULL or a session handle; `buf` is NULL or writable for `capacity` bytes;
/// `len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mw_session_snapshot(session: *mut mw_session, buf: *mut u8, capacity: usize, len: *mut usize) -> mw_status {
    guard(|| {
        with_session(session, |s| {
            let size = s.session.snapshot_len();
            write(len, "len", size)?;
            if buf.is_null() {
                return Ok(());
            }
            if capacity < size {
                return Err(Failure::new(mw_status::MW_ERR_BUFFER_TOO_SMALL, format!("`buf` holds {capacity} bytes, the snapshot has {size}")));
            }
            s.flush_pending()?;
            let bytes = pollster::block_on(s.session.snapshot())?;
            copy_out(&bytes, false, buf, capacity, len, "buf")
        })
    })
}

/// Restores a state saved by `mw_session_snapshot` from a session of the same model.
///
/// # Safety
/// `session` is NULL or a session handle; `bytes` is NULL or readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn mw_session_restore(session: *mut mw_session, bytes: *const u8, len: usize) -> mw_status {
    guard(|| {
        let bytes = slice(bytes, len, "bytes")?;
        with_session(session, |s| {
            s.session.restore(bytes)?;
            s.pending = None;
            s.history.clear();
            Ok(())
        })
    })
}

/// Frees the session (and its GPU buffers).
///
/// # Safety
/// `session` is NULL or a session handle not in use by another call.
#[no_mangle]
pub unsafe extern "C" fn mw_session_free(session: *mut mw_session) {
    if !session.is_null() && (*session).tag == mw_session::TAG && (*session).busy.load(Ordering::Acquire) {
        // Freed from its own callback: leave it (the running call still uses it) and say so.
        let _ = guard(|| Err(Failure::new(mw_status::MW_ERR_BUSY, "mw_session_free: the session is in use by another call; not freed")));
        return;
    }
    free(session)
}
