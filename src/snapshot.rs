//! The header of a state snapshot: it names the model (fingerprint, family) and the shape of
//! the state, so restoring into another model or batch is refused instead of silently wrong.

use crate::error::{Error, Result};
use crate::model::config::Family;
use crate::model::Model;

const MAGIC: &[u8; 8] = b"MAMBAST2";
/// The family's code in the header.
const FAMILIES: [Family; 3] = [Family::Mamba1, Family::FalconMamba, Family::Mamba2];
/// magic, fingerprint, family, batch, n_layer, d_inner, d_conv, d_state, conv_channels, position
pub(crate) const HEADER_BYTES: usize = 8 + 8 + 4 * 7 + 8;
/// Where the shape fields (family to conv_channels) are.
const SHAPE: std::ops::Range<usize> = 16..44;

pub fn header(model: &Model, batch: usize, position: u64) -> Vec<u8> {
    let c = &model.config;
    let mut out = Vec::with_capacity(HEADER_BYTES);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&model.fingerprint.to_le_bytes());
    let family = FAMILIES.iter().position(|&f| f == c.family).unwrap_or(0);
    for v in [family, batch, c.n_layer, c.d_inner, c.d_conv, c.d_state, c.conv_channels()] {
        out.extend_from_slice(&(v as u32).to_le_bytes());
    }
    out.extend_from_slice(&position.to_le_bytes());
    out
}

/// Checks `bytes` against this model and batch; returns the position and the state bytes.
pub fn check_header<'a>(model: &Model, batch: usize, bytes: &'a [u8]) -> Result<(u64, &'a [u8])> {
    let fail = |reason: String| Error::Snapshot { reason };
    if bytes.len() < HEADER_BYTES || &bytes[..8] != MAGIC {
        return Err(fail("not a mamba-wgpu state snapshot of this version (bad header)".into()));
    }
    let ours = header(model, batch, 0);
    if bytes[SHAPE.start..SHAPE.start + 4] != ours[SHAPE.start..SHAPE.start + 4] {
        let code = u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]) as usize;
        let theirs = FAMILIES.get(code).map_or("unknown", |f| f.model_type());
        return Err(fail(format!("it was saved from a `{theirs}` model, {} is `{}`", model.source, model.config.family.model_type())));
    }
    if bytes[8..16] != ours[8..16] {
        return Err(fail(format!("it was saved from a different model than {}", model.source)));
    }
    if bytes[SHAPE] != ours[SHAPE] {
        return Err(fail(format!("it was saved with another batch size or state shape (this session: batch {batch})")));
    }
    let position = u64::from_le_bytes(bytes[SHAPE.end..HEADER_BYTES].try_into().map_err(|_| fail("truncated header".into()))?);
    Ok((position, &bytes[HEADER_BYTES..]))
}
