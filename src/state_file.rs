//! The state files of `--save-state` / `--load-state`: the session snapshot plus what the
//! snapshot alone cannot hold, so a loaded run continues exactly as if it had never stopped.
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
//!
//! Reading is bounded: the header is read first, each length is checked against a limit
//! before anything it counts is read, and nothing is read past the snapshot, so a wrong file
//! (a device such as /dev/zero, a multi-GB file) fails after a few bytes.

use std::io::Read;

use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"MWGPUCLI";
const VERSION: u32 = 1;
/// Most history ids a state file may hold (64 MiB of ids): far beyond any conversation.
pub const MAX_HISTORY: u32 = 1 << 24;

#[derive(Clone, Debug, PartialEq)]
pub struct SavedState {
    /// The model's fingerprint (Model::fingerprint).
    pub fingerprint: u64,
    pub snapshot: Vec<u8>,
    pub pending: Option<u32>,
    pub history: Vec<u32>,
}

/// The file's bytes.
pub fn encode(state: &SavedState) -> Vec<u8> {
    let mut out = Vec::with_capacity(40 + state.history.len() * 4 + state.snapshot.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&state.fingerprint.to_le_bytes());
    out.extend_from_slice(&(state.pending.is_some() as u32).to_le_bytes());
    out.extend_from_slice(&state.pending.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&(state.history.len() as u32).to_le_bytes());
    for id in &state.history {
        out.extend_from_slice(&id.to_le_bytes());
    }
    out.extend_from_slice(&(state.snapshot.len() as u64).to_le_bytes());
    out.extend_from_slice(&state.snapshot);
    out
}

/// Reads a state file from `input`, named `path` in errors. `fingerprint` is the model's: a
/// file of another model is refused before its body is read. `snapshot_len` is the exact
/// snapshot length this model and session need (Session::snapshot_len).
pub fn decode(mut input: impl Read, path: &str, fingerprint: u64, snapshot_len: usize) -> Result<SavedState> {
    let bad = |reason: String| Error::Snapshot { reason: format!("{path}: {reason}") };
    let mut read = |n: usize| -> Result<Vec<u8>> {
        let mut buf = vec![0; n];
        input.read_exact(&mut buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => bad("truncated state file".into()),
            _ => Error::io(path, e),
        })?;
        Ok(buf)
    };
    if read(8)? != MAGIC {
        return Err(bad("not a mamba-wgpu state file (saved with --save-state)".into()));
    }
    let word = |b: Vec<u8>| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let version = word(read(4)?);
    if version != VERSION {
        return Err(bad(format!("state file format {version}, this build reads format {VERSION}")));
    }
    let saved_fingerprint = u64::from_le_bytes(read(8)?.try_into().expect("8 bytes"));
    if saved_fingerprint != fingerprint {
        return Err(bad("it was saved from a different model".into()));
    }
    let has_pending = word(read(4)?);
    let pending_id = word(read(4)?);
    let count = word(read(4)?);
    if count > MAX_HISTORY {
        return Err(bad(format!("a history of {count} ids exceeds the limit of {MAX_HISTORY} a state file may hold")));
    }
    let history = read(count as usize * 4)?.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let len = u64::from_le_bytes(read(8)?.try_into().expect("8 bytes"));
    if len != snapshot_len as u64 {
        return Err(bad(format!("a snapshot of {len} bytes; this model's state takes {snapshot_len}")));
    }
    let snapshot = read(snapshot_len)?;
    let mut extra = [0u8; 1];
    if input.read(&mut extra).map_err(|e| Error::io(path, e))? != 0 {
        return Err(bad("unexpected bytes after the snapshot".into()));
    }
    Ok(SavedState { fingerprint, snapshot, pending: (has_pending != 0).then_some(pending_id), history })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SavedState {
        SavedState { fingerprint: 42, snapshot: vec![7; 100], pending: Some(3), history: vec![1, 2, 3] }
    }

    #[test]
    fn round_trip() {
        let state = sample();
        assert_eq!(decode(&encode(&state)[..], "s", 42, 100).unwrap(), state);
    }

    #[test]
    fn bad_files_are_errors_that_name_the_file() {
        let bytes = encode(&sample());
        let err = |bytes: &[u8], fingerprint: u64, len: usize| decode(bytes, "FILE", fingerprint, len).unwrap_err().to_string();
        assert!(err(&bytes, 41, 100).contains("different model"), "{}", err(&bytes, 41, 100));
        assert!(err(&bytes, 42, 99).contains("99"));
        assert!(err(&bytes[..50], 42, 100).contains("truncated"));
        assert!(err(&[bytes.clone(), vec![0]].concat(), 42, 100).contains("unexpected bytes"));
        assert!(err(&[0u8; 64], 42, 100).contains("FILE: not a mamba-wgpu state file"));
        // A history count over the limit is refused before anything it counts is read.
        let mut huge = bytes.clone();
        huge[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(err(&huge, 42, 100).contains("exceeds the limit"));
    }

    #[test]
    fn an_endless_input_is_refused_after_its_header() {
        let zeros = std::io::repeat(0);
        assert!(decode(zeros, "/dev/zero", 42, 100).unwrap_err().to_string().contains("not a mamba-wgpu state file"));
    }
}
