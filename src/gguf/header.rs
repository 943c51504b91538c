//! The header of a GGUF file (v2, v3): magic, version, metadata, the tensor table, and where the
//! tensor data starts. It is parsed from a byte slice that starts at the file's first byte and
//! may be only a prefix of the file, so that a caller holding the first few MB (a browser
//! fetching by ranges) learns the tensors' places before it reads any of them; data access
//! lives apart (checkpoint.rs).
//!
//! Every count and length in the file is checked before anything is allocated for it: the
//! header may take at most `MAX_HEADER_BYTES`, an array nest `MAX_ARRAY_DEPTH` deep, a tensor
//! `MAX_DIMS` dimensions, so no input makes the parser allocate more than a small multiple of
//! that or recurse without bound.

use std::collections::HashMap;

use super::value::{Array, Value, ValueType};
use crate::error::{Error, Result};
use crate::model::checkpoint::StoredDtype;
use crate::quant::BlockFormat;

/// ggml's type ids of the float types the engine reads; block formats map through
/// `BlockFormat::from_ggml_type`.
pub const GGML_TYPE_F32: u32 = 0;
pub const GGML_TYPE_F16: u32 = 1;
pub const GGML_TYPE_BF16: u32 = 30;

/// "GGUF" read as a little-endian u32.
const MAGIC: &[u8; 4] = b"GGUF";

/// The data alignment where `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// Most bytes a header may take. The largest real ones (a 256k-token vocabulary with its merges
/// and scores) take about 10 MB.
pub const MAX_HEADER_BYTES: u64 = 64 << 20;

/// Deepest nesting of arrays (llama.cpp's files nest none).
const MAX_ARRAY_DEPTH: usize = 4;

/// ggml's GGML_MAX_DIMS.
const MAX_DIMS: usize = 4;

/// ggml's GGML_MAX_NAME: a tensor name is shorter.
const MAX_TENSOR_NAME: usize = 64;

/// Least bytes of one metadata entry (key length, key type) and one tensor info (name length,
/// dimension count, type, offset): a count larger than what the bytes left can hold is refused
/// before anything is allocated for it.
const MIN_KV_BYTES: u64 = 8 + 4;
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;

/// One tensor of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// GGUF's `ne`: dimensions innermost first (the reverse of NumPy's shape).
    pub dims: Vec<u64>,
    pub dtype: StoredDtype,
    /// The ggml type id as stored.
    pub ggml_type: u32,
    /// Offset from the start of the data section (a multiple of the alignment).
    pub offset: u64,
    /// Bytes of data, from the type and the dimensions.
    pub byte_len: u64,
}

impl TensorInfo {
    /// The shape in row-major (NumPy, PyTorch) order: `dims` reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// A parsed header: metadata in file order, the tensor table, the data's place.
#[derive(Clone, Debug)]
pub struct GgufHeader {
    pub version: u32,
    metadata: Vec<(String, Value)>,
    keys: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
    /// `general.alignment`, or 32.
    pub alignment: u64,
    /// File offset of the data section: the header's end rounded up to the alignment.
    pub data_start: u64,
}

/// What a prefix of a file holds.
pub enum Parsed {
    Header(GgufHeader),
    /// The header goes on past the prefix: read at least this many bytes from the file's start
    /// (a lower bound; a longer header asks again).
    NeedBytes(u64),
}

impl GgufHeader {
    /// Parses the header of the file `name` (used in errors) from `bytes`, the whole file or a
    /// prefix of it; a prefix that ends inside the header is an error saying how many bytes the
    /// header needs at least.
    pub fn parse(bytes: &[u8], name: &str) -> Result<Self> {
        match Self::parse_prefix(bytes, name)? {
            Parsed::Header(header) => Ok(header),
            Parsed::NeedBytes(needed) => {
                Err(gguf_error(name, format!("truncated: the header needs at least {needed} bytes, but only {} are there", bytes.len())))
            }
        }
    }

    /// `parse`, telling a prefix that is too short apart from a malformed file.
    pub fn parse_prefix(bytes: &[u8], name: &str) -> Result<Parsed> {
        let mut r = Reader { bytes, at: 0, name };
        match parse(&mut r) {
            Ok(header) => Ok(Parsed::Header(header)),
            Err(Stop::Need(needed)) => Ok(Parsed::NeedBytes(needed)),
            Err(Stop::Bad(e)) => Err(e),
        }
    }

    /// Metadata in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.keys.get(key).map(|&i| &self.metadata[i].1)
    }

    /// The tensor table in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// Tensor `name`, checked to have the row-major `shape` a model's config implies; `source`
    /// names the file in errors. What a `TensorSource` of GGUF bytes answers first.
    pub fn tensor_of_shape(&self, name: &str, shape: &[usize], source: &str) -> Result<&TensorInfo> {
        let info = self.tensor(name).ok_or_else(|| Error::tensor(name, format!("not found in {source}")))?;
        if info.shape() != shape {
            return Err(Error::tensor(
                name,
                format!("shape {:?} (GGUF dimensions {:?}) in {source}, but the config implies {shape:?}", info.shape(), info.dims),
            ));
        }
        Ok(info)
    }

    /// File offset where the last tensor's data ends (the data start for a file without tensors):
    /// the least length of a file with this header.
    pub fn data_end(&self) -> u64 {
        self.tensors.iter().map(|t| self.data_start + t.offset + t.byte_len).max().unwrap_or(self.data_start)
    }

    /// File bytes of `t`'s data: start and end offsets.
    pub fn file_range(&self, t: &TensorInfo) -> (u64, u64) {
        (self.data_start + t.offset, self.data_start + t.offset + t.byte_len)
    }

    /// Fails unless every tensor lies within a file of `file_len` bytes; `name` names the file.
    pub fn check_file_len(&self, file_len: u64, name: &str) -> Result<()> {
        match self.tensors.iter().find(|t| self.file_range(t).1 > file_len) {
            Some(t) => Err(gguf_error(
                name,
                format!(
                    "tensor `{}` ({} bytes at offset {}) ends past the end of the file ({file_len} bytes): truncated?",
                    t.name,
                    t.byte_len,
                    self.file_range(t).0
                ),
            )),
            None => Ok(()),
        }
    }
}

/// The engine's dtype of a ggml type id, if it reads it.
pub fn dtype_of_ggml_type(id: u32) -> Option<StoredDtype> {
    match id {
        GGML_TYPE_F32 => Some(StoredDtype::F32),
        GGML_TYPE_F16 => Some(StoredDtype::F16),
        GGML_TYPE_BF16 => Some(StoredDtype::BF16),
        _ => BlockFormat::from_ggml_type(id).map(StoredDtype::Block),
    }
}

/// The ggml type id of a dtype.
pub fn ggml_type_of(dtype: StoredDtype) -> u32 {
    match dtype {
        StoredDtype::F32 => GGML_TYPE_F32,
        StoredDtype::F16 => GGML_TYPE_F16,
        StoredDtype::BF16 => GGML_TYPE_BF16,
        StoredDtype::Block(f) => f.ggml_type(),
    }
}

/// ggml's name of a type id, for messages about types the engine does not read.
fn ggml_type_name(id: u32) -> &'static str {
    const NAMES: [&str; 31] = [
        "f32", "f16", "q4_0", "q4_1", "", "", "q5_0", "q5_1", "q8_0", "q8_1", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q8_k", "iq2_xxs", "iq2_xs",
        "iq3_xxs", "iq1_s", "iq4_nl", "iq3_s", "iq2_s", "iq4_xs", "i8", "i16", "i32", "i64", "f64", "iq1_m", "bf16",
    ];
    NAMES.get(id as usize).copied().filter(|n| !n.is_empty()).unwrap_or("unknown")
}

pub(crate) fn gguf_error(name: &str, reason: impl Into<String>) -> Error {
    Error::Gguf { path: name.to_string(), reason: reason.into() }
}

/// Why parsing stopped: the bytes end inside the header (at least this many are needed), or
/// the file is malformed.
enum Stop {
    Need(u64),
    Bad(Error),
}

type Parse<T> = std::result::Result<T, Stop>;

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    name: &'a str,
}

impl<'a> Reader<'a> {
    fn bad<T>(&self, reason: impl Into<String>) -> Parse<T> {
        Err(Stop::Bad(gguf_error(self.name, reason)))
    }

    /// Fails unless `n` more bytes would keep the header within its limit and are there.
    fn need(&self, n: u64) -> Parse<()> {
        let end = (self.at as u64).saturating_add(n);
        if end > MAX_HEADER_BYTES {
            return self.bad(format!("the header would take more than {} MiB (at least {end} bytes)", MAX_HEADER_BYTES >> 20));
        }
        if end > self.bytes.len() as u64 {
            return Err(Stop::Need(end));
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> Parse<&'a [u8]> {
        self.need(n as u64)?;
        let slice = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Parse<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u32(&mut self) -> Parse<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Parse<u64> {
        self.array().map(u64::from_le_bytes)
    }

    /// A string; `what` names it in errors (a key, a tensor name, a value).
    fn string(&mut self, what: &dyn Fn() -> String) -> Parse<String> {
        let len = self.u64()?;
        self.need(len)?;
        let bytes = self.take(len as usize)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => self.bad(format!("{} is not UTF-8", what())),
        }
    }

    fn value_type(&mut self, what: &dyn Fn() -> String) -> Parse<ValueType> {
        let id = self.u32()?;
        match ValueType::from_id(id) {
            Some(t) => Ok(t),
            None => self.bad(format!("{} has value type {id}, which GGUF does not define (0 to 12)", what())),
        }
    }

    fn value(&mut self, t: ValueType, what: &dyn Fn() -> String, depth: usize) -> Parse<Value> {
        Ok(match t {
            ValueType::U8 => Value::U8(self.array::<1>()?[0]),
            ValueType::I8 => Value::I8(self.array::<1>()?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array()?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array()?)),
            ValueType::U32 => Value::U32(self.u32()?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array()?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array()?)),
            ValueType::Bool => Value::Bool(self.boolean(what)?),
            ValueType::String => Value::String(self.string(what)?),
            ValueType::Array => Value::Array(self.array_value(what, depth)?),
            ValueType::U64 => Value::U64(self.u64()?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array()?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array()?)),
        })
    }

    fn boolean(&mut self, what: &dyn Fn() -> String) -> Parse<bool> {
        match self.array::<1>()?[0] {
            0 => Ok(false),
            1 => Ok(true),
            other => self.bad(format!("{} holds {other} as a BOOL (0 or 1)", what())),
        }
    }

    /// An array: element type, count, elements. The count is checked against the bytes its
    /// elements need at least before anything is allocated.
    fn array_value(&mut self, what: &dyn Fn() -> String, depth: usize) -> Parse<Array> {
        if depth >= MAX_ARRAY_DEPTH {
            return self.bad(format!("{} nests arrays more than {MAX_ARRAY_DEPTH} deep", what()));
        }
        let t = self.value_type(what)?;
        let n = self.u64()?;
        let least = match t {
            ValueType::String => 8,
            ValueType::Array => 4 + 8,
            fixed => fixed.fixed_size().unwrap_or(1) as u64,
        };
        self.need(n.saturating_mul(least))?;
        let n = n as usize;
        macro_rules! fixed {
            ($variant:ident, $ty:ty) => {{
                let raw = self.take(n * std::mem::size_of::<$ty>())?;
                Array::$variant(
                    raw.chunks_exact(std::mem::size_of::<$ty>()).map(|b| <$ty>::from_le_bytes(b.try_into().unwrap_or_default())).collect(),
                )
            }};
        }
        Ok(match t {
            ValueType::U8 => Array::U8(self.take(n)?.to_vec()),
            ValueType::I8 => Array::I8(self.take(n)?.iter().map(|&b| b as i8).collect()),
            ValueType::U16 => fixed!(U16, u16),
            ValueType::I16 => fixed!(I16, i16),
            ValueType::U32 => fixed!(U32, u32),
            ValueType::I32 => fixed!(I32, i32),
            ValueType::F32 => fixed!(F32, f32),
            ValueType::U64 => fixed!(U64, u64),
            ValueType::I64 => fixed!(I64, i64),
            ValueType::F64 => fixed!(F64, f64),
            ValueType::Bool => Array::Bool((0..n).map(|_| self.boolean(what)).collect::<Parse<_>>()?),
            ValueType::String => Array::String((0..n).map(|_| self.string(what)).collect::<Parse<_>>()?),
            ValueType::Array => Array::Array((0..n).map(|_| self.array_value(what, depth + 1)).collect::<Parse<_>>()?),
        })
    }
}

fn parse(r: &mut Reader) -> Parse<GgufHeader> {
    let magic = r.array::<4>()?;
    if &magic != MAGIC {
        return r.bad(format!("not a GGUF file: it starts with {magic:02x?}, not the magic \"GGUF\""));
    }
    let version = r.u32()?;
    match version {
        2 | 3 => {}
        1 => return r.bad("GGUF version 1 (32-bit counts, before August 2023) is not supported; convert the model again"),
        v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => return r.bad("a big-endian GGUF file; only little-endian files are supported"),
        v => return r.bad(format!("GGUF version {v} is not supported (2 or 3)")),
    }
    let n_tensors = r.u64()?;
    let n_kv = r.u64()?;
    // Before anything is allocated: the counts must fit in what the header may hold.
    r.need(n_kv.saturating_mul(MIN_KV_BYTES).saturating_add(n_tensors.saturating_mul(MIN_TENSOR_INFO_BYTES)))?;

    // Capacity for what real files hold; a larger count grows as its entries are read.
    let mut metadata = Vec::with_capacity(n_kv.min(1024) as usize);
    let mut keys = HashMap::with_capacity(n_kv.min(1024) as usize);
    for i in 0..n_kv {
        let key = r.string(&|| format!("metadata key {i}"))?;
        let what = || format!("metadata `{key}`");
        let t = r.value_type(&what)?;
        let value = r.value(t, &what, 0)?;
        if keys.insert(key.clone(), metadata.len()).is_some() {
            return r.bad(format!("metadata key `{key}` appears twice"));
        }
        metadata.push((key, value));
    }
    let alignment = match keys.get("general.alignment").map(|&i| &metadata[i].1) {
        None => DEFAULT_ALIGNMENT,
        Some(Value::U32(a)) if a.is_power_of_two() => u64::from(*a),
        Some(other) => return r.bad(format!("general.alignment is {other:?}; it must be a UINT32 power of two")),
    };

    let mut tensors = Vec::with_capacity(n_tensors.min(4096) as usize);
    let mut by_name = HashMap::with_capacity(n_tensors.min(4096) as usize);
    for i in 0..n_tensors {
        let info = tensor_info(r, i, alignment)?;
        if by_name.insert(info.name.clone(), tensors.len()).is_some() {
            return r.bad(format!("tensor `{}` appears twice", info.name));
        }
        tensors.push(info);
    }
    let data_start = (r.at as u64).next_multiple_of(alignment);
    check_no_overlap(r, &tensors)?;
    Ok(GgufHeader { version, metadata, keys, tensors, by_name, alignment, data_start })
}

fn tensor_info(r: &mut Reader, i: u64, alignment: u64) -> Parse<TensorInfo> {
    let name = r.string(&|| format!("the name of tensor {i}"))?;
    if name.len() >= MAX_TENSOR_NAME {
        return r.bad(format!("tensor {i}'s name `{name}` is {} bytes long; ggml allows {}", name.len(), MAX_TENSOR_NAME - 1));
    }
    let n_dims = r.u32()? as usize;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return r.bad(format!("tensor `{name}` has {n_dims} dimensions (1 to {MAX_DIMS})"));
    }
    let dims = (0..n_dims).map(|_| r.u64()).collect::<Parse<Vec<u64>>>()?;
    let ggml_type = r.u32()?;
    let offset = r.u64()?;
    let Some(dtype) = dtype_of_ggml_type(ggml_type) else {
        return r.bad(format!(
            "tensor `{name}` has ggml type {ggml_type} ({}), which this engine does not read (f32, f16, bf16, q8_0, q4_0, q4_k, q5_k, q6_k)",
            ggml_type_name(ggml_type)
        ));
    };
    let Some(elements) = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).filter(|&n| n < (1 << 60)) else {
        return r.bad(format!("tensor `{name}` has dimensions {dims:?}, too many elements"));
    };
    let byte_len = match dtype {
        StoredDtype::F32 => elements * 4,
        StoredDtype::F16 | StoredDtype::BF16 => elements * 2,
        StoredDtype::Block(f) => {
            if dims[0] % f.block_elements() as u64 != 0 {
                return r.bad(format!(
                    "tensor `{name}`: rows of {} values (dimensions {dims:?}) are not whole {f} blocks of {}",
                    dims[0],
                    f.block_elements()
                ));
            }
            elements / f.block_elements() as u64 * f.block_bytes() as u64
        }
    };
    if offset % alignment != 0 {
        return r.bad(format!("tensor `{name}`'s data offset {offset} is not a multiple of the alignment {alignment}"));
    }
    if offset.checked_add(byte_len).is_none_or(|end| end > i64::MAX as u64) {
        return r.bad(format!("tensor `{name}`'s data offset {offset} is out of range"));
    }
    Ok(TensorInfo { name, dims, dtype, ggml_type, offset, byte_len })
}

/// Fails where a tensor's data, as long as its type and dimensions make it, runs into the next
/// tensor's: the table then disagrees with the data (a wrong dimension or type).
fn check_no_overlap(r: &Reader, tensors: &[TensorInfo]) -> Parse<()> {
    let mut order: Vec<&TensorInfo> = tensors.iter().collect();
    order.sort_by_key(|t| t.offset);
    for pair in order.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.offset + a.byte_len > b.offset {
            return r.bad(format!(
                "tensor `{}` ({} {:?}) takes {} bytes, but the next tensor `{}` starts {} bytes after it: its size disagrees with its type and shape",
                a.name,
                ggml_type_name(a.ggml_type),
                a.dims,
                a.byte_len,
                b.name,
                b.offset - a.offset
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    /// A v3 header: `kvs` as (key, type id, value bytes), tensors as (name, dims, type, offset).
    fn file(kvs: &[(&str, u32, Vec<u8>)], tensors: &[(&str, &[u64], u32, u64)]) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
        for (key, t, value) in kvs {
            string(&mut out, key);
            out.extend_from_slice(&t.to_le_bytes());
            out.extend_from_slice(value);
        }
        for (name, dims, t, offset) in tensors {
            string(&mut out, name);
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            dims.iter().for_each(|d| out.extend_from_slice(&d.to_le_bytes()));
            out.extend_from_slice(&t.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
        }
        out
    }

    /// An array's type, count and element bytes.
    fn array(t: u32, n: u64, elements: &[u8]) -> Vec<u8> {
        [&t.to_le_bytes()[..], &n.to_le_bytes(), elements].concat()
    }

    fn error(bytes: &[u8]) -> String {
        GgufHeader::parse(bytes, "t.gguf").err().expect("refused").to_string()
    }

    #[test]
    fn every_value_type_and_nested_arrays() {
        let mut strings = Vec::new();
        string(&mut strings, "a b");
        string(&mut strings, "ü");
        let inner = [array(4, 1, &7u32.to_le_bytes()), array(7, 2, &[1, 0])].concat();
        let kvs = [
            ("u8", 0, vec![200]),
            ("i8", 1, vec![0xff]),
            ("u16", 2, 513u16.to_le_bytes().to_vec()),
            ("i16", 3, (-2i16).to_le_bytes().to_vec()),
            ("u32", 4, 7u32.to_le_bytes().to_vec()),
            ("i32", 5, (-3i32).to_le_bytes().to_vec()),
            ("f32", 6, 1.5f32.to_le_bytes().to_vec()),
            ("bool", 7, vec![1]),
            ("str", 8, [3u64.to_le_bytes().to_vec(), b"abc".to_vec()].concat()),
            ("strs", 9, array(8, 2, &strings)),
            ("nested", 9, array(9, 2, &inner)),
            ("u64", 10, u64::MAX.to_le_bytes().to_vec()),
            ("i64", 11, (-5i64).to_le_bytes().to_vec()),
            ("f64", 12, 0.25f64.to_le_bytes().to_vec()),
            ("general.alignment", 4, 64u32.to_le_bytes().to_vec()),
        ];
        let bytes = file(&kvs, &[("w", &[32, 3], GGML_TYPE_F16, 0), ("q", &[64, 2], BlockFormat::Q8_0.ggml_type(), 192)]);
        let h = GgufHeader::parse(&bytes, "t.gguf").unwrap();
        let want = [
            Value::U8(200),
            Value::I8(-1),
            Value::U16(513),
            Value::I16(-2),
            Value::U32(7),
            Value::I32(-3),
            Value::F32(1.5),
            Value::Bool(true),
            Value::String("abc".into()),
            Value::Array(Array::String(vec!["a b".into(), "ü".into()])),
            Value::Array(Array::Array(vec![Array::U32(vec![7]), Array::Bool(vec![true, false])])),
            Value::U64(u64::MAX),
            Value::I64(-5),
            Value::F64(0.25),
            Value::U32(64),
        ];
        let got: Vec<&Value> = h.metadata().iter().map(|(_, v)| v).collect();
        assert_eq!(got, want.iter().collect::<Vec<_>>());
        assert_eq!((h.alignment, h.data_start % 64, h.get("str").and_then(Value::as_str)), (64, 0, Some("abc")));
        let q = h.tensor("q").unwrap();
        assert_eq!((q.shape(), q.dtype, q.byte_len), (vec![2, 64], StoredDtype::Block(BlockFormat::Q8_0), 4 * 34));
        assert_eq!(h.data_end(), h.data_start + 192 + 136);
        assert!(h.check_file_len(h.data_end() - 1, "t.gguf").unwrap_err().to_string().contains("`q`"));
    }

    #[test]
    fn counts_and_lengths_are_checked_before_allocating() {
        let huge = file(&[("a", 9, array(4, u64::MAX / 4, &[]))], &[]);
        assert!(error(&huge).contains("more than 64 MiB"), "{}", error(&huge));
        let mut many = file(&[], &[]);
        many[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(error(&many).contains("more than 64 MiB"), "{}", error(&many));
        let long_string = file(&[("s", 8, u64::MAX.to_le_bytes().to_vec())], &[]);
        assert!(error(&long_string).contains("more than 64 MiB"));
        let mut deep = array(4, 0, &[]);
        for _ in 0..MAX_ARRAY_DEPTH {
            deep = array(9, 1, &deep);
        }
        assert!(error(&file(&[("deep", 9, deep)], &[])).contains("nests arrays more than"));
        // A prefix: how many bytes the header needs at least.
        let ok = file(&[("k", 4, 1u32.to_le_bytes().to_vec())], &[]);
        assert!(matches!(GgufHeader::parse_prefix(&ok[..10], "t").unwrap(), Parsed::NeedBytes(16)));
        assert!(matches!(GgufHeader::parse_prefix(&ok[..24], "t").unwrap(), Parsed::NeedBytes(36)));
    }

    #[test]
    fn malformed_entries_are_named() {
        let cases: [(Vec<u8>, &str); 9] = [
            (file(&[("b", 7, vec![2])], &[]), "metadata `b` holds 2 as a BOOL"),
            (file(&[("t", 13, vec![])], &[]), "metadata `t` has value type 13"),
            (file(&[("k", 0, vec![1]), ("k", 0, vec![2])], &[]), "`k` appears twice"),
            (file(&[("general.alignment", 4, 24u32.to_le_bytes().to_vec())], &[]), "general.alignment"),
            (file(&[("s", 8, [1u64.to_le_bytes().to_vec(), vec![0xff]].concat())], &[]), "metadata `s` is not UTF-8"),
            (file(&[], &[("w", &[1, 1, 1, 1, 1], 0, 0)]), "tensor `w` has 5 dimensions"),
            (file(&[], &[("w", &[4], 0, 8)]), "`w`'s data offset 8 is not a multiple of the alignment 32"),
            (file(&[], &[("w", &[48], BlockFormat::Q4K.ggml_type(), 0)]), "not whole q4_k blocks"),
            (file(&[], &[("w", &[u64::MAX, 2], 0, 0)]), "too many elements"),
        ];
        for (bytes, needle) in cases {
            let e = error(&bytes);
            assert!(e.contains(needle) && e.contains("t.gguf"), "`{needle}` missing from: {e}");
        }
        let long_name = "x".repeat(MAX_TENSOR_NAME);
        assert!(error(&file(&[], &[(&long_name, &[4], 0, 0)])).contains("bytes long"));
    }
}
