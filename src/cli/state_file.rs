//! `--save-state` / `--load-state` files: the session snapshot plus what the snapshot alone
//! cannot hold, so a loaded run continues exactly as if it had never stopped.
//!
//! Layout (little endian):
//! ```text
//! magic "MWGPUCLI"  8 bytes
//! version           u32  (1)
//! fingerprint       u64  the model's (Model::fingerprint): a quick, early "wrong model" check
//! pending flag, id  u32, u32  the last generated token, chosen but not yet fed to the model
//! history length    u32, then that many u32 ids: prompt + generated, for the repetition penalty
//! snapshot length   u64, then Session::snapshot bytes (they carry their own model check)
//! ```
//! The sampler's random state is not saved: a loaded run draws from a fresh `--seed`. Greedy
//! runs, and runs whose saving side generated nothing (`--max-tokens 0`), continue exactly.

use std::path::Path;

use mamba_wgpu::{Error, Model, Result};

const MAGIC: &[u8; 8] = b"MWGPUCLI";
const VERSION: u32 = 1;

pub struct SavedState {
    pub snapshot: Vec<u8>,
    pub pending: Option<u32>,
    pub history: Vec<u32>,
}

/// Writes next to the target and renames, so an interrupted save never leaves a torn file
/// under the real name.
pub fn save(path: &Path, model: &Model, state: &SavedState) -> Result<()> {
    let mut out = Vec::with_capacity(40 + state.history.len() * 4 + state.snapshot.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&model.fingerprint.to_le_bytes());
    out.extend_from_slice(&(state.pending.is_some() as u32).to_le_bytes());
    out.extend_from_slice(&state.pending.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&(state.history.len() as u32).to_le_bytes());
    for id in &state.history {
        out.extend_from_slice(&id.to_le_bytes());
    }
    out.extend_from_slice(&(state.snapshot.len() as u64).to_le_bytes());
    out.extend_from_slice(&state.snapshot);

    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "state".into());
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, &out).map_err(|e| Error::io(tmp.display(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path.display(), e)
    })
}

pub fn load(path: &Path, model: &Model) -> Result<SavedState> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path.display(), e))?;
    let bad = |reason: String| Error::Snapshot { reason: format!("{}: {reason}", path.display()) };
    let mut r = Reader { bytes: &bytes, at: 0 };
    let truncated = || bad("truncated state file".into());
    if r.take(8).ok_or_else(truncated)? != MAGIC {
        return Err(bad("not a mamba-wgpu state file (saved with --save-state)".into()));
    }
    let version = r.u32().ok_or_else(truncated)?;
    if version != VERSION {
        return Err(bad(format!("state file format {version}, this build reads format {VERSION}")));
    }
    let fingerprint = r.u64().ok_or_else(truncated)?;
    if fingerprint != model.fingerprint {
        return Err(bad(format!("it was saved from a different model than {}", model.source)));
    }
    let has_pending = r.u32().ok_or_else(truncated)?;
    let pending_id = r.u32().ok_or_else(truncated)?;
    let count = r.u32().ok_or_else(truncated)? as usize;
    let history_bytes = r.take(count.checked_mul(4).ok_or_else(truncated)?).ok_or_else(truncated)?;
    let history = history_bytes.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let len = usize::try_from(r.u64().ok_or_else(truncated)?).map_err(|_| truncated())?;
    let snapshot = r.take(len).ok_or_else(truncated)?.to_vec();
    if r.at != bytes.len() {
        return Err(bad(format!("{} unexpected bytes after the snapshot", bytes.len() - r.at)));
    }
    Ok(SavedState { snapshot, pending: (has_pending != 0).then_some(pending_id), history })
}

/// Bounds-checked reads: a truncated or hostile file yields None, never a panic.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let slice = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(slice)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        Some(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }
}
