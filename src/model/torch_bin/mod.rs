//! `pytorch_model.bin`: a state dict written by `torch.save` (its zip format, the default since
//! torch 1.6), as the original state-spaces `mamba_ssm` checkpoints are published. Read without
//! running anything: the zip container is parsed by hand and `<archive>/data.pkl` by a pickle
//! machine that knows only the opcodes torch.save emits for a state dict and only the globals
//! that rebuild tensors:
//!
//! - `collections.OrderedDict` (the state dict and the empty backward-hook dicts; its BUILD with
//!   the `_metadata` attributes is accepted and ignored),
//! - `torch._utils._rebuild_tensor_v2`,
//! - `torch.FloatStorage`, `torch.HalfStorage`, `torch.BFloat16Storage` (F32, F16, BF16; what
//!   torch 1.6 to 2.x write as a storage's type in its persistent id).
//!
//! Any other global is refused by name. Nothing is called: "calling" `_rebuild_tensor_v2` only
//! records the storage, offset, shape and strides, checked once the tensor's name is known.
//! A persistent id `('storage', <storage type>, key, location, numel)` names the zip entry
//! `<archive>/data/<key>`, whose bytes the tensors borrow (by byte range; nothing is copied).
//! Tensors may share a storage (a tied LM head, views) and start at an offset inside it; they
//! must be contiguous.
//!
//! Bounded against hostile files: every offset and size is checked against the file, no
//! allocation follows an unchecked count, the pickle is at most [`MAX_PICKLE_BYTES`], its
//! values nest at most [`MAX_DEPTH`] deep and its work is bounded by its length. Containers
//! are values: a memo entry is a snapshot of the container when it was stored (torch.save
//! never fetches a container from the memo after changing it).
//!
//! The zip container is read in `zip.rs`, the pickle in `pickle.rs` (with the allow-list of
//! globals), both through the bounds-checked reads of `reader.rs`; this file turns the
//! unpickled state dict into checked byte ranges.

mod pickle;
mod reader;
#[cfg(test)]
mod tests;
mod zip;

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use self::pickle::{Machine, RawTensor, Value};
use self::zip::Zip;
use super::checkpoint::StoredDtype;
use crate::error::{Error, Result};

pub use self::pickle::MAX_DEPTH;

/// A failure inside the file, as a reason; [`read_state_dict`] adds the file's (or tensor's) name.
type Parse<T> = std::result::Result<T, String>;

/// Most bytes of `data.pkl`: a state dict's pickle takes about 100 bytes a tensor (some 70 KiB
/// for the 64 layers of mamba-2.8b).
pub const MAX_PICKLE_BYTES: usize = 8 << 20;

/// One tensor of the state dict: where its little-endian bytes lie in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TorchTensor {
    pub dtype: StoredDtype,
    pub shape: Vec<usize>,
    /// Byte range in the file (inside its storage's zip entry).
    pub bytes: Range<usize>,
}

/// A state dict read from a `torch.save` file.
pub struct StateDict {
    /// In the pickle's order.
    pub tensors: Vec<(String, TorchTensor)>,
    /// Bytes of the storages the tensors use, each counted once.
    pub data_bytes: usize,
}

/// Reads the state dict of a `torch.save` zip file; `path` names it in errors.
pub fn read_state_dict(file: &[u8], path: &str) -> Result<StateDict> {
    let fail = |reason: String| Error::io(path, reason);
    if !file.starts_with(b"PK\x03\x04") {
        let legacy = file.first() == Some(&0x80) || file.get(257..262) == Some(b"ustar".as_slice());
        return Err(fail(if legacy {
            "is in PyTorch's legacy (pre-1.6) format, which is not read here: re-save it with a current torch \
             (torch.save(torch.load(path), path)) or convert it to safetensors"
                .into()
        } else {
            "is not a PyTorch checkpoint (no zip signature; torch.save writes a zip file)".into()
        }));
    }
    let zip = Zip::parse(file).map_err(|e| fail(format!("zip: {e}")))?;
    let pkl_name = zip.data_pkl().map_err(&fail)?;
    let prefix = &pkl_name[..pkl_name.len() - "/data.pkl".len()];
    if let Some(range) = zip.find_checked(&format!("{prefix}/byteorder")).map_err(&fail)? {
        if &file[range] != b"little" {
            return Err(fail(format!("{prefix}/byteorder is not `little`: only little-endian checkpoints are supported")));
        }
    }
    let pkl_range = zip.find_checked(pkl_name).map_err(&fail)?.ok_or_else(|| fail(format!("no entry `{pkl_name}`")))?;
    if pkl_range.len() > MAX_PICKLE_BYTES {
        return Err(fail(format!("{pkl_name} takes {} bytes, more than the {MAX_PICKLE_BYTES} a state dict may", pkl_range.len())));
    }
    let root = Machine::new(&file[pkl_range]).run().map_err(|e| fail(format!("{pkl_name}: {e}")))?;
    let Value::Dict(dict) = root else {
        return Err(fail(format!("{pkl_name} holds {}, not a state dict (a dict of tensors)", root.kind())));
    };

    let mut names = HashSet::new();
    let mut storages = HashMap::new();
    let mut tensors = Vec::new();
    for (key, value) in &dict.items {
        let Value::Str(name) = key else {
            return Err(fail(format!("{pkl_name}: a state dict key is {}, not a string", key.kind())));
        };
        let Value::Tensor(raw) = value else {
            return Err(Error::tensor(&**name, format!("is {}, not a tensor, in {path} (only a flat state dict is read)", value.kind())));
        };
        if !names.insert(name.clone()) {
            return Err(Error::tensor(&**name, format!("appears twice in {path}")));
        }
        let entry = format!("{prefix}/data/{}", raw.storage.key);
        let storage = match zip.find(&entry).map_err(&fail)? {
            Some(range) => range,
            None => return Err(Error::tensor(&**name, format!("its storage `{}` has no entry {entry} in {path}", raw.storage.key))),
        };
        let tensor = locate(raw, storage.clone()).map_err(|e| Error::tensor(&**name, format!("{e} in {path}")))?;
        storages.insert(entry, storage.len());
        tensors.push((name.to_string(), tensor));
    }
    Ok(StateDict { tensors, data_bytes: storages.values().sum() })
}

/// The byte range of a tensor inside its storage's entry, with everything checked.
fn locate(raw: &RawTensor, storage: Range<usize>) -> Parse<TorchTensor> {
    let dtype = raw.storage.dtype;
    let width: usize = if dtype == StoredDtype::F32 { 4 } else { 2 };
    let numel_stored = raw.storage.numel;
    if numel_stored.checked_mul(width) != Some(storage.len()) {
        return Err(format!("its storage `{}` holds {} bytes, not {numel_stored} x {width}", raw.storage.key, storage.len()));
    }
    let shape: Vec<usize> =
        raw.size.iter().map(|&s| usize::try_from(s).map_err(|_| format!("size {:?} has a negative dimension", raw.size))).collect::<Parse<_>>()?;
    let numel = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(|| format!("shape {shape:?} is too large"))?;
    if shape.len() != raw.stride.len() {
        return Err(format!("size {shape:?} and stride {:?} differ in length", raw.stride));
    }
    if !is_contiguous(&shape, &raw.stride, numel) {
        return Err(format!(
            "is not contiguous (shape {shape:?}, strides {:?}); only contiguous tensors are read: re-save it with .contiguous() or convert to safetensors",
            raw.stride
        ));
    }
    let offset = usize::try_from(raw.offset).map_err(|_| format!("storage offset {} is negative", raw.offset))?;
    match offset.checked_add(numel) {
        Some(end) if end <= numel_stored => {}
        _ => return Err(format!("elements [{offset}, {offset} + {numel}) lie outside its storage of {numel_stored}")),
    }
    let start = storage.start + offset * width;
    Ok(TorchTensor { dtype, shape, bytes: start..start + numel * width })
}

/// Row-major with no gaps; strides of size-1 dimensions do not matter, and an empty tensor is
/// contiguous whatever its strides, as in torch.
fn is_contiguous(shape: &[usize], stride: &[i64], numel: usize) -> bool {
    if numel == 0 {
        return true;
    }
    let mut expected: i128 = 1;
    for (&size, &stride) in shape.iter().zip(stride).rev() {
        if size != 1 && i128::from(stride) != expected {
            return false;
        }
        expected *= size as i128;
    }
    true
}
