//! The header of a state snapshot: it names the model (fingerprint) and the shape of the
//! state, so restoring into another model or batch is refused instead of silently wrong.

use crate::error::{Error, Result};
use crate::model::Model;

const MAGIC: &[u8; 8] = b"MAMBAST1";
/// magic, fingerprint, batch, n_layer, d_inner, d_conv, d_state, position
pub(crate) const HEADER_BYTES: usize = 8 + 8 + 4 * 5 + 8;

pub fn header(model: &Model, batch: usize, position: u64) -> Vec<u8> {
    let c = &model.config;
    let mut out = Vec::with_capacity(HEADER_BYTES);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&model.fingerprint.to_le_bytes());
    for v in [batch, c.n_layer, c.d_inner, c.d_conv, c.d_state] {
        out.extend_from_slice(&(v as u32).to_le_bytes());
    }
    out.extend_from_slice(&position.to_le_bytes());
    out
}

/// Checks `bytes` against this model and batch; returns the position and the state bytes.
pub fn check_header<'a>(model: &Model, batch: usize, bytes: &'a [u8]) -> Result<(u64, &'a [u8])> {
    let fail = |reason: String| Error::Snapshot { reason };
    if bytes.len() < HEADER_BYTES || &bytes[..8] != MAGIC {
        return Err(fail("not a mamba-wgpu state snapshot (bad header)".into()));
    }
    let ours = header(model, batch, 0);
    if bytes[8..16] != ours[8..16] {
        return Err(fail(format!("it was saved from a different model than {}", model.source)));
    }
    if bytes[16..36] != ours[16..36] {
        return Err(fail(format!("it was saved with another batch size or state shape (this session: batch {batch})")));
    }
    let position = u64::from_le_bytes(bytes[36..44].try_into().map_err(|_| fail("truncated header".into()))?);
    Ok((position, &bytes[HEADER_BYTES..]))
}
