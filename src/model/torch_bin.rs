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

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::rc::Rc;

use super::checkpoint::StoredDtype;
use crate::error::{Error, Result};

/// Most bytes of `data.pkl`: a state dict's pickle takes about 100 bytes a tensor (some 70 KiB
/// for the 64 layers of mamba-2.8b).
pub const MAX_PICKLE_BYTES: usize = 8 << 20;

/// Deepest nesting of containers in the pickle (a state dict needs 3).
pub const MAX_DEPTH: u32 = 32;

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
fn locate(raw: &RawTensor, storage: Range<usize>) -> std::result::Result<TorchTensor, String> {
    let dtype = raw.storage.dtype;
    let width: usize = if dtype == StoredDtype::F32 { 4 } else { 2 };
    let numel_stored = raw.storage.numel;
    if numel_stored.checked_mul(width) != Some(storage.len()) {
        return Err(format!("its storage `{}` holds {} bytes, not {numel_stored} x {width}", raw.storage.key, storage.len()));
    }
    let shape: Vec<usize> = raw
        .size
        .iter()
        .map(|&s| usize::try_from(s).map_err(|_| format!("size {:?} has a negative dimension", raw.size)))
        .collect::<std::result::Result<_, _>>()?;
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

// ---------------------------------------------------------------------------------------------
// The zip container

const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_OF_CENTRAL_DIR: u32 = 0x0605_4b50;
const ZIP64_END: u32 = 0x0606_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;

#[derive(Clone, Copy)]
struct Entry {
    local_header: u64,
    compressed: u64,
    size: u64,
    method: u16,
    flags: u16,
    crc: u32,
}

struct Zip<'a> {
    file: &'a [u8],
    entries: HashMap<&'a str, Entry>,
}

type Parse<T> = std::result::Result<T, String>;

impl<'a> Zip<'a> {
    /// The central directory, found from the end record (zip64 records where present).
    fn parse(file: &'a [u8]) -> Parse<Self> {
        let end = find_end_record(file)?;
        let mut r = Reader::at(file, end + 4, "end of central directory")?;
        let (disk, cd_disk, count_here, mut count) = (r.u16()?, r.u16()?, r.u16()? as u64, r.u16()? as u64);
        let (mut cd_size, mut cd_offset) = (r.u32()? as u64, r.u32()? as u64);
        let zip64 = end >= 20 && le32(file, end - 20) == Some(ZIP64_LOCATOR);
        if zip64 {
            let mut loc = Reader::at(file, end - 16, "zip64 end locator")?;
            let (_, record) = (loc.u32()?, loc.u64()?);
            let record = usize::try_from(record).map_err(|_| "zip64 end record beyond the file".to_string())?;
            let mut r = Reader::at(file, record, "zip64 end record")?;
            if r.u32()? != ZIP64_END {
                return Err(format!("no zip64 end record at byte {record}, where its locator points"));
            }
            let _ = (r.u64()?, r.u16()?, r.u16()?);
            let (disk, cd_disk, count_here) = (r.u32()?, r.u32()?, r.u64()?);
            count = r.u64()?;
            (cd_size, cd_offset) = (r.u64()?, r.u64()?);
            if disk != 0 || cd_disk != 0 || count_here != count {
                return Err("spans several disks, which is not supported".into());
            }
        } else {
            if count == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF {
                return Err("its end record points to zip64 records that are missing".into());
            }
            if disk != 0 || cd_disk != 0 || count_here != count {
                return Err("spans several disks, which is not supported".into());
            }
        }
        let cd =
            range_in(file, cd_offset, cd_size).ok_or_else(|| format!("central directory ({cd_size} bytes at {cd_offset}) lies outside the file"))?;
        if count > cd_size / 46 {
            return Err(format!("{count} entries cannot fit a central directory of {cd_size} bytes"));
        }
        let mut r = Reader { bytes: &file[cd], pos: 0, what: "central directory" };
        let mut entries = HashMap::new();
        for _ in 0..count {
            let (name, entry) = read_central_entry(&mut r)?;
            if entries.insert(name, entry).is_some() {
                return Err(format!("entry `{name}` appears twice"));
            }
        }
        Ok(Zip { file, entries })
    }

    /// The one `<archive>/data.pkl` entry.
    fn data_pkl(&self) -> Parse<&'a str> {
        let mut found = self.entries.keys().filter(|n| n.strip_suffix("/data.pkl").is_some_and(|p| !p.is_empty() && !p.contains('/')));
        match (found.next(), found.next()) {
            (Some(name), None) => Ok(name),
            (None, _) => Err("no `<archive>/data.pkl` entry: not a torch.save file".into()),
            (Some(a), Some(b)) => Err(format!("two pickles (`{a}`, `{b}`): not a torch.save file")),
        }
    }

    /// The bytes of entry `name` (None where there is no such entry), checked to be stored,
    /// unencrypted and inside the file.
    fn find(&self, name: &str) -> Parse<Option<Range<usize>>> {
        let Some(e) = self.entries.get(name) else { return Ok(None) };
        if e.flags & 1 != 0 {
            return Err(format!("zip entry `{name}` is encrypted"));
        }
        if e.method != 0 {
            return Err(format!(
                "zip entry `{name}` is compressed (method {}); torch.save stores entries uncompressed: \
                 re-save it with torch.save or convert to safetensors",
                e.method
            ));
        }
        if e.compressed != e.size {
            return Err(format!("zip entry `{name}` is stored but its sizes differ ({} and {})", e.compressed, e.size));
        }
        let header = usize::try_from(e.local_header).map_err(|_| format!("zip entry `{name}`: local header beyond the file"))?;
        let mut r = Reader::at(self.file, header, "local header")?;
        if r.u32()? != LOCAL_HEADER {
            return Err(format!("zip entry `{name}`: no local header at byte {header}"));
        }
        r.skip(22)?;
        let (name_len, extra_len) = (r.u16()? as usize, r.u16()? as usize);
        if r.take(name_len)? != name.as_bytes() {
            return Err(format!("zip entry `{name}`: its local header names another file"));
        }
        r.skip(extra_len)?;
        let start = (header + r.pos) as u64;
        let range = range_in(self.file, start, e.size)
            .ok_or_else(|| format!("zip entry `{name}` ({} bytes at {start}) runs past the end of the file", e.size))?;
        Ok(Some(range))
    }

    /// Like [`Zip::find`], for a small entry read whole (data.pkl, byteorder), whose CRC is then
    /// checked; storages are not (that would read every weight twice).
    fn find_checked(&self, name: &str) -> Parse<Option<Range<usize>>> {
        let Some(range) = self.find(name)? else { return Ok(None) };
        if crc32(&self.file[range.clone()]) != self.entries[name].crc {
            return Err(format!("zip entry `{name}` fails its CRC check (corrupted file)"));
        }
        Ok(Some(range))
    }
}

fn read_central_entry<'a>(r: &mut Reader<'a>) -> Parse<(&'a str, Entry)> {
    if r.u32()? != CENTRAL_HEADER {
        return Err(format!("no central directory entry at byte {} of it", r.pos - 4));
    }
    r.skip(4)?;
    let (flags, method) = (r.u16()?, r.u16()?);
    r.skip(4)?;
    let crc = r.u32()?;
    let (mut compressed, mut size) = (r.u32()? as u64, r.u32()? as u64);
    let (name_len, extra_len, comment_len) = (r.u16()? as usize, r.u16()? as usize, r.u16()? as usize);
    let mut disk = r.u16()? as u32;
    r.skip(6)?;
    let mut local_header = r.u32()? as u64;
    let name = std::str::from_utf8(r.take(name_len)?).map_err(|_| "an entry name is not UTF-8".to_string())?;
    let mut extra = Reader { bytes: r.take(extra_len)?, pos: 0, what: "extra field" };
    r.skip(comment_len)?;
    let wants64 = size == 0xFFFF_FFFF || compressed == 0xFFFF_FFFF || local_header == 0xFFFF_FFFF || disk == 0xFFFF;
    let mut got64 = false;
    while extra.pos + 4 <= extra.bytes.len() {
        let (id, len) = (extra.u16()?, extra.u16()? as usize);
        let mut data = Reader { bytes: extra.take(len)?, pos: 0, what: "zip64 extra field" };
        if id != 1 {
            continue;
        }
        got64 = true;
        // Only the fields that are saturated in the header are present, in this order.
        if size == 0xFFFF_FFFF {
            size = data.u64()?;
        }
        if compressed == 0xFFFF_FFFF {
            compressed = data.u64()?;
        }
        if local_header == 0xFFFF_FFFF {
            local_header = data.u64()?;
        }
        if disk == 0xFFFF {
            disk = data.u32()?;
        }
    }
    if wants64 && !got64 {
        return Err(format!("entry `{name}` needs a zip64 extra field and has none"));
    }
    if disk != 0 {
        return Err(format!("entry `{name}` lies on another disk (multi-disk zips are not supported)"));
    }
    Ok((name, Entry { local_header, compressed, size, method, flags, crc }))
}

/// The end of central directory record: the last position where its signature stands with a
/// comment that ends exactly at the end of the file.
fn find_end_record(file: &[u8]) -> Parse<usize> {
    if file.len() < 22 {
        return Err("too short for a zip file".into());
    }
    let lowest = file.len().saturating_sub(22 + 0xFFFF);
    let mut pos = file.len() - 22;
    loop {
        if le32(file, pos) == Some(END_OF_CENTRAL_DIR) && le16(file, pos + 20).map(usize::from) == Some(file.len() - pos - 22) {
            return Ok(pos);
        }
        if pos == lowest {
            return Err("no end of central directory record (truncated?)".into());
        }
        pos -= 1;
    }
}

/// `len` bytes at `start`, where they lie inside `file`.
fn range_in(file: &[u8], start: u64, len: u64) -> Option<Range<usize>> {
    let end = start.checked_add(len)?;
    if end > file.len() as u64 {
        return None;
    }
    Some(start as usize..end as usize)
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// The zip CRC-32 (IEEE).
fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |c, &b| CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8))
}

/// Little-endian reads that fail, naming `what`, instead of running past the end.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn at(file: &'a [u8], pos: usize, what: &'static str) -> Parse<Self> {
        let bytes = file.get(pos..).ok_or_else(|| format!("{what} at byte {pos} lies beyond the file"))?;
        Ok(Reader { bytes, pos: 0, what })
    }

    fn take(&mut self, n: usize) -> Parse<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| format!("{} is cut short ({n} bytes needed at byte {} of {})", self.what, self.pos, self.bytes.len()))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn skip(&mut self, n: usize) -> Parse<()> {
        self.take(n).map(|_| ())
    }

    fn u8(&mut self) -> Parse<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Parse<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap_or_default()))
    }

    fn u32(&mut self) -> Parse<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }

    fn u64(&mut self) -> Parse<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }

    /// Bytes up to the next newline (GLOBAL's operands), without it.
    fn line(&mut self) -> Parse<&'a [u8]> {
        let rest = &self.bytes[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or_else(|| format!("{} ends inside a GLOBAL name", self.what))?;
        let line = &rest[..n];
        self.pos += n + 1;
        Ok(line)
    }
}

// ---------------------------------------------------------------------------------------------
// The pickle machine

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    StorageType(StoredDtype),
}

/// The only functions a state dict's pickle may name, and what each stands for.
fn resolve_global(module: &str, name: &str) -> Parse<Global> {
    match (module, name) {
        ("collections", "OrderedDict") => Ok(Global::OrderedDict),
        ("torch._utils", "_rebuild_tensor_v2") => Ok(Global::RebuildTensorV2),
        ("torch", "FloatStorage") => Ok(Global::StorageType(StoredDtype::F32)),
        ("torch", "HalfStorage") => Ok(Global::StorageType(StoredDtype::F16)),
        ("torch", "BFloat16Storage") => Ok(Global::StorageType(StoredDtype::BF16)),
        ("torch", storage) if storage.ends_with("Storage") => Err(format!(
            "tensors of storage type torch.{} are not supported (only FloatStorage, HalfStorage, BFloat16Storage: F32, F16, BF16)",
            storage.escape_debug()
        )),
        _ => Err(format!(
            "refusing to run {}.{}: a state dict needs only collections.OrderedDict, torch._utils._rebuild_tensor_v2 \
             and torch's Float/Half/BFloat16 storage types, and nothing is ever run",
            module.escape_debug(),
            name.escape_debug()
        )),
    }
}

struct Storage {
    dtype: StoredDtype,
    key: Rc<str>,
    numel: usize,
}

struct RawTensor {
    storage: Rc<Storage>,
    offset: i64,
    size: Vec<i64>,
    stride: Vec<i64>,
}

#[derive(Clone)]
struct Seq {
    items: Vec<Value>,
    depth: u32,
}

#[derive(Clone)]
struct Pairs {
    items: Vec<(Value, Value)>,
    depth: u32,
}

#[derive(Clone)]
enum Value {
    None,
    Bool,
    Int(i64),
    Float,
    Str(Rc<str>),
    Tuple(Rc<Seq>),
    List(Rc<Seq>),
    /// A dict or an OrderedDict, in insertion order.
    Dict(Rc<Pairs>),
    Global(Global),
    Storage(Rc<Storage>),
    Tensor(Rc<RawTensor>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool => "a bool",
            Value::Int(_) => "an int",
            Value::Float => "a float",
            Value::Str(_) => "a string",
            Value::Tuple(_) => "a tuple",
            Value::List(_) => "a list",
            Value::Dict(_) => "a dict",
            Value::Global(_) => "a global",
            Value::Storage(_) => "a storage",
            Value::Tensor(_) => "a tensor",
        }
    }

    fn depth(&self) -> u32 {
        match self {
            Value::Tuple(s) | Value::List(s) => s.depth,
            Value::Dict(d) => d.depth,
            _ => 0,
        }
    }

    fn tuple(items: Vec<Value>) -> Parse<Value> {
        let depth = nested_depth(items.iter().map(Value::depth).max().unwrap_or(0))?;
        Ok(Value::Tuple(Rc::new(Seq { items, depth })))
    }
}

fn nested_depth(inner: u32) -> Parse<u32> {
    if inner >= MAX_DEPTH {
        return Err(format!("containers nest deeper than {MAX_DEPTH}"));
    }
    Ok(inner + 1)
}

struct Machine<'a> {
    r: Reader<'a>,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    /// Work done so far (one unit an opcode, one an element copied), against `budget`.
    work: usize,
    budget: usize,
}

impl<'a> Machine<'a> {
    fn new(pickle: &'a [u8]) -> Self {
        let budget = pickle.len().saturating_mul(8).saturating_add(1 << 16);
        Machine {
            r: Reader { bytes: pickle, pos: 0, what: "the pickle" },
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            work: 0,
            budget,
        }
    }

    /// Runs to STOP and returns the pickled object.
    fn run(mut self) -> Parse<Value> {
        loop {
            let at = self.r.pos;
            let op = self.r.u8()?;
            match self.step(op) {
                Ok(Some(value)) => return Ok(value),
                Ok(None) => {}
                Err(e) => return Err(format!("byte {at} (opcode 0x{op:02x}): {e}")),
            }
        }
    }

    fn charge(&mut self, units: usize) -> Parse<()> {
        self.work = self.work.saturating_add(units);
        if self.work > self.budget {
            return Err("the pickle does more work than a state dict of its size could need".into());
        }
        Ok(())
    }

    fn pop(&mut self) -> Parse<Value> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err("pops past a MARK".into());
        }
        self.stack.pop().ok_or_else(|| "pops an empty stack".into())
    }

    fn pop_mark(&mut self) -> Parse<Vec<Value>> {
        let mark = self.marks.pop().ok_or("no MARK to pop to")?;
        if mark > self.stack.len() {
            return Err("the stack is shorter than its MARK".into());
        }
        Ok(self.stack.split_off(mark))
    }

    fn top(&mut self) -> Parse<&mut Value> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err("no object above the MARK".into());
        }
        self.stack.last_mut().ok_or_else(|| "empty stack".into())
    }

    fn memo_get(&self, index: u32) -> Parse<Value> {
        self.memo.get(&index).cloned().ok_or_else(|| format!("memo entry {index} was never stored"))
    }

    fn memo_put(&mut self, index: u32) -> Parse<()> {
        let value = self.stack.last().cloned().ok_or("memoizes an empty stack")?;
        self.memo.insert(index, value);
        Ok(())
    }

    fn string(&mut self, len: u64) -> Parse<Value> {
        let len = usize::try_from(len).map_err(|_| "string longer than the pickle".to_string())?;
        let bytes = self.r.take(len)?;
        let text = std::str::from_utf8(bytes).map_err(|_| "a string is not UTF-8".to_string())?;
        Ok(Value::Str(text.into()))
    }

    /// One opcode; Some(object) at STOP.
    fn step(&mut self, op: u8) -> Parse<Option<Value>> {
        self.charge(1)?;
        let value = match op {
            // PROTO: torch.save writes 2; 3 to 5 only add opcodes.
            0x80 => match self.r.u8()? {
                2..=5 => return Ok(None),
                v => return Err(format!("pickle protocol {v} is not supported")),
            },
            // FRAME: the length of the next frame, which changes nothing here.
            0x95 => {
                self.r.skip(8)?;
                return Ok(None);
            }
            b'.' => {
                let value = self.pop()?;
                return Ok(Some(value));
            }
            b'(' => {
                self.marks.push(self.stack.len());
                return Ok(None);
            }
            b'0' => {
                self.pop()?;
                return Ok(None);
            }
            b'1' => {
                self.pop_mark()?;
                return Ok(None);
            }
            b'q' => {
                let i = self.r.u8()?;
                self.memo_put(u32::from(i))?;
                return Ok(None);
            }
            b'r' => {
                let i = self.r.u32()?;
                self.memo_put(i)?;
                return Ok(None);
            }
            0x94 => {
                let i = u32::try_from(self.memo.len()).map_err(|_| "memo too large".to_string())?;
                self.memo_put(i)?;
                return Ok(None);
            }
            b'h' => {
                let i = self.r.u8()?;
                self.memo_get(u32::from(i))?
            }
            b'j' => {
                let i = self.r.u32()?;
                self.memo_get(i)?
            }
            b'}' => Value::Dict(Rc::new(Pairs { items: Vec::new(), depth: 1 })),
            b')' => Value::tuple(Vec::new())?,
            b']' => Value::List(Rc::new(Seq { items: Vec::new(), depth: 1 })),
            b'N' => Value::None,
            0x88 | 0x89 => Value::Bool,
            b'J' => Value::Int(i64::from(self.r.u32()? as i32)),
            b'K' => Value::Int(i64::from(self.r.u8()?)),
            b'M' => Value::Int(i64::from(self.r.u16()?)),
            0x8a => {
                let n = usize::from(self.r.u8()?);
                if n > 8 {
                    return Err(format!("a {n}-byte integer is larger than any size or offset"));
                }
                let bytes = self.r.take(n)?;
                let mut buf = if bytes.last().is_some_and(|&b| b & 0x80 != 0) { [0xFF; 8] } else { [0; 8] };
                buf[..n].copy_from_slice(bytes);
                Value::Int(i64::from_le_bytes(buf))
            }
            b'G' => {
                self.r.skip(8)?;
                Value::Float
            }
            0x8c => {
                let n = self.r.u8()?;
                self.string(u64::from(n))?
            }
            b'X' => {
                let n = self.r.u32()?;
                self.string(u64::from(n))?
            }
            0x8d => {
                let n = self.r.u64()?;
                self.string(n)?
            }
            b'c' => {
                let module = std::str::from_utf8(self.r.line()?).map_err(|_| "a GLOBAL name is not UTF-8".to_string())?;
                let name = std::str::from_utf8(self.r.line()?).map_err(|_| "a GLOBAL name is not UTF-8".to_string())?;
                Value::Global(resolve_global(module, name)?)
            }
            0x93 => {
                let (name, module) = (self.pop()?, self.pop()?);
                match (&module, &name) {
                    (Value::Str(module), Value::Str(name)) => Value::Global(resolve_global(module, name)?),
                    _ => return Err("STACK_GLOBAL needs two strings".into()),
                }
            }
            b't' => {
                let items = self.pop_mark()?;
                Value::tuple(items)?
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let mut items = (0..n).map(|_| self.pop()).collect::<Parse<Vec<_>>>()?;
                items.reverse();
                Value::tuple(items)?
            }
            b'R' => {
                let (args, callable) = (self.pop()?, self.pop()?);
                self.call(callable, args)?
            }
            b'Q' => {
                let pid = self.pop()?;
                persistent_storage(pid)?
            }
            b's' => {
                let (value, key) = (self.pop()?, self.pop()?);
                self.set_items(vec![key, value])?;
                return Ok(None);
            }
            b'u' => {
                let items = self.pop_mark()?;
                self.set_items(items)?;
                return Ok(None);
            }
            b'a' => {
                let value = self.pop()?;
                self.append(vec![value])?;
                return Ok(None);
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.append(items)?;
                return Ok(None);
            }
            b'b' => {
                // BUILD on an OrderedDict sets attributes (`_metadata` of a module's state
                // dict), not items: checked for shape and dropped.
                let state = self.pop()?;
                match (self.top()?, &state) {
                    (Value::Dict(_), Value::Dict(_) | Value::None) => return Ok(None),
                    (target, _) => return Err(format!("BUILD of {} with {} is not part of a state dict", target.kind(), state.kind())),
                }
            }
            other => return Err(format!("opcode 0x{other:02x} is not one torch.save writes for a state dict")),
        };
        self.stack.push(value);
        Ok(None)
    }

    /// SETITEM(S): `items` are key, value, key, value, ... for the dict on top of the stack.
    fn set_items(&mut self, items: Vec<Value>) -> Parse<()> {
        if items.len() % 2 != 0 {
            return Err("SETITEMS with an odd number of objects".into());
        }
        let copy = match self.top()? {
            Value::Dict(d) if Rc::strong_count(d) > 1 => d.items.len(),
            Value::Dict(_) => 0,
            other => return Err(format!("SETITEM on {}", other.kind())),
        };
        self.charge(copy + items.len())?;
        let Value::Dict(dict) = self.top()? else { unreachable!("checked above") };
        let dict = Rc::make_mut(dict);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            dict.depth = dict.depth.max(nested_depth(k.depth().max(v.depth()))?);
            dict.items.push((k, v));
        }
        Ok(())
    }

    /// APPEND(S) to the list on top of the stack.
    fn append(&mut self, items: Vec<Value>) -> Parse<()> {
        let copy = match self.top()? {
            Value::List(s) if Rc::strong_count(s) > 1 => s.items.len(),
            Value::List(_) => 0,
            other => return Err(format!("APPEND to {}", other.kind())),
        };
        self.charge(copy + items.len())?;
        let Value::List(list) = self.top()? else { unreachable!("checked above") };
        let list = Rc::make_mut(list);
        for v in items {
            list.depth = list.depth.max(nested_depth(v.depth())?);
            list.items.push(v);
        }
        Ok(())
    }

    /// REDUCE: the two calls a state dict makes, neither of which runs anything.
    fn call(&mut self, callable: Value, args: Value) -> Parse<Value> {
        let Value::Tuple(args) = args else { return Err(format!("REDUCE with {} for arguments", args.kind())) };
        match callable {
            Value::Global(Global::OrderedDict) if args.items.is_empty() => Ok(Value::Dict(Rc::new(Pairs { items: Vec::new(), depth: 1 }))),
            Value::Global(Global::OrderedDict) => Err("OrderedDict(...) with arguments is not part of a state dict".into()),
            Value::Global(Global::RebuildTensorV2) => rebuild_tensor(&args.items),
            Value::Global(Global::StorageType(_)) => Err("a storage type is called, which torch.save never does".into()),
            other => Err(format!("REDUCE calls {}", other.kind())),
        }
    }
}

/// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[,
/// metadata])`, recorded, not run.
fn rebuild_tensor(args: &[Value]) -> Parse<Value> {
    let ints = |v: &Value, what: &str| -> Parse<Vec<i64>> {
        let Value::Tuple(t) = v else { return Err(format!("_rebuild_tensor_v2: {what} is {}, not a tuple", v.kind())) };
        t.items.iter().map(|x| if let Value::Int(i) = x { Ok(*i) } else { Err(format!("_rebuild_tensor_v2: {what} holds {}", x.kind())) }).collect()
    };
    match args {
        [Value::Storage(storage), Value::Int(offset), size, stride, Value::Bool, Value::Dict(_), rest @ ..]
            if rest.is_empty() || matches!(rest, [Value::Dict(_)]) =>
        {
            let (size, stride) = (ints(size, "size")?, ints(stride, "stride")?);
            Ok(Value::Tensor(Rc::new(RawTensor { storage: storage.clone(), offset: *offset, size, stride })))
        }
        _ => Err(format!(
            "_rebuild_tensor_v2 with arguments ({}) is not a tensor torch.save wrote",
            args.iter().map(Value::kind).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// BINPERSID: `('storage', <storage type>, key, location, numel)`.
fn persistent_storage(pid: Value) -> Parse<Value> {
    if let Value::Tuple(t) = &pid {
        if let [Value::Str(tag), Value::Global(Global::StorageType(dtype)), Value::Str(key), Value::Str(_), Value::Int(numel)] = t.items.as_slice() {
            if &**tag == "storage" {
                let numel = usize::try_from(*numel).map_err(|_| format!("storage `{key}` has a negative size"))?;
                return Ok(Value::Storage(Rc::new(Storage { dtype: *dtype, key: key.clone(), numel })));
            }
        }
    }
    Err("a persistent id that is not ('storage', <storage type>, key, location, numel)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/torch_bin")
    }

    fn read(name: &str) -> Vec<u8> {
        std::fs::read(data_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn expected() -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(data_dir().join("expected.json")).unwrap()).unwrap()
    }

    fn values(file: &[u8], t: &TorchTensor) -> Vec<f32> {
        let bytes = &file[t.bytes.clone()];
        match t.dtype {
            StoredDtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
            StoredDtype::F16 => bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes(b.try_into().unwrap()).to_f32()).collect(),
            StoredDtype::BF16 => bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes(b.try_into().unwrap()).to_f32()).collect(),
        }
    }

    /// A stored zip of `entries`, as torch.save lays it out (for hand-made pickles).
    fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let (mut out, mut central) = (Vec::new(), Vec::new());
        for (name, data) in entries {
            let offset = out.len() as u32;
            let header = |sig: u32, central: bool| {
                let mut h = sig.to_le_bytes().to_vec();
                if central {
                    h.extend(20u16.to_le_bytes());
                }
                h.extend([20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
                h.extend(crc32(data).to_le_bytes());
                h.extend((data.len() as u32).to_le_bytes());
                h.extend((data.len() as u32).to_le_bytes());
                h.extend((name.len() as u16).to_le_bytes());
                h.extend(0u16.to_le_bytes());
                if central {
                    h.extend([0; 6]);
                    h.extend(0u32.to_le_bytes());
                    h.extend(offset.to_le_bytes());
                }
                h.extend(name.as_bytes());
                h
            };
            out.extend(header(LOCAL_HEADER, false));
            out.extend(*data);
            central.extend(header(CENTRAL_HEADER, true));
        }
        let cd_offset = out.len() as u32;
        out.extend(&central);
        out.extend(END_OF_CENTRAL_DIR.to_le_bytes());
        out.extend([0; 4]);
        out.extend((entries.len() as u16).to_le_bytes());
        out.extend((entries.len() as u16).to_le_bytes());
        out.extend((central.len() as u32).to_le_bytes());
        out.extend(cd_offset.to_le_bytes());
        out.extend([0; 2]);
        out
    }

    /// `pickle` as archive/data.pkl, with one 16-byte storage archive/data/0.
    fn with_pickle(pickle: &[u8]) -> Vec<u8> {
        zip(&[("archive/data.pkl", pickle), ("archive/byteorder", b"little"), ("archive/data/0", &[0u8; 16])])
    }

    fn err(file: &[u8]) -> String {
        err_named(file, "test.bin")
    }

    fn err_named(file: &[u8], name: &str) -> String {
        match read_state_dict(file, name) {
            Ok(_) => panic!("read a file it should refuse"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn torch_bin_tensors_match_what_torch_recorded() {
        let want = expected();
        for name in ["state_dict.bin", "state_dict_protocol4.bin", "state_dict_zip64.bin"] {
            let file = read(name);
            let dict = read_state_dict(&file, name).unwrap_or_else(|e| panic!("{name}: {e}"));
            let tensors = want["files"][name]["tensors"].as_object().unwrap();
            let mut got_names: Vec<&str> = dict.tensors.iter().map(|(n, _)| n.as_str()).collect();
            got_names.sort_unstable();
            let want_names: Vec<&str> = tensors.keys().map(|k| k.as_str()).collect();
            assert_eq!(got_names, want_names, "{name}");
            let mut bases: HashMap<u64, usize> = HashMap::new();
            for (tensor_name, t) in &dict.tensors {
                let w = &tensors[tensor_name];
                let dtype = match w["dtype"].as_str().unwrap() {
                    "F32" => StoredDtype::F32,
                    "F16" => StoredDtype::F16,
                    _ => StoredDtype::BF16,
                };
                assert_eq!(t.dtype, dtype, "{name} {tensor_name}");
                let shape: Vec<usize> = w["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
                assert_eq!(t.shape, shape, "{name} {tensor_name}");
                let want_values: Vec<f32> = w["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
                assert_eq!(values(&file, t), want_values, "{name} {tensor_name}");
                // Tensors of one storage start at the same base, offset by their storage offset.
                let width = if dtype == StoredDtype::F32 { 4 } else { 2 };
                let base = t.bytes.start - w["storage_offset"].as_u64().unwrap() as usize * width;
                let group = w["storage_group"].as_u64().unwrap();
                assert_eq!(*bases.entry(group).or_insert(base), base, "{name} {tensor_name}: storage group {group}");
            }
            let distinct: HashSet<usize> = bases.values().copied().collect();
            assert_eq!(distinct.len(), bases.len(), "{name}: different storages at one place");
        }
    }

    #[test]
    fn torch_bin_refusals_name_the_reason() {
        let want = expected();
        let files = want["files"].as_object().unwrap();
        for (name, w) in files {
            let e = || err_named(&read(name), name);
            if let Some(tensor) = w.get("error_tensor").and_then(|t| t.as_str()) {
                let e = e();
                assert!(e.contains(&format!("`{tensor}`")) && e.contains("not contiguous") && e.contains(name), "{e}");
            } else if let Some(global) = w.get("refused_global").and_then(|t| t.as_str()) {
                let e = e();
                assert!(e.contains(&format!("refusing to run {global}")) && e.contains(name), "{e}");
            } else if w.get("error").and_then(|t| t.as_str()) == Some("legacy") {
                let e = e();
                assert!(e.contains("legacy") && e.contains("safetensors") && e.contains(name), "{e}");
            } else if w.get("error").and_then(|t| t.as_str()) == Some("compressed") {
                let e = e();
                assert!(e.contains("is compressed") && e.contains("zip entry") && e.contains(name), "{e}");
            }
        }
        for refused in ["non_contiguous.bin", "legacy.bin", "compressed.bin", "forbidden_global.bin", "forbidden_stack_global.bin"] {
            assert!(files.contains_key(refused), "expected.json lacks {refused}");
        }
    }

    #[test]
    fn torch_bin_truncated_or_corrupted_is_an_error_never_a_panic() {
        let file = read("state_dict.bin");
        read_state_dict(&file, "ok").unwrap();
        // Cut anywhere: the end record is gone, or what it points at lies outside.
        for len in 0..file.len() {
            assert!(read_state_dict(&file[..len], "cut").is_err(), "truncated to {len} bytes");
        }
        // The pickle cut anywhere, inside a well-formed zip: no STOP, or a dangling operand.
        let dict = Zip::parse(&file).unwrap();
        let pkl = dict.find("state_dict/data.pkl").unwrap().unwrap();
        let pickle = &file[pkl];
        for len in 0..pickle.len() {
            assert!(read_state_dict(&with_pickle(&pickle[..len]), "cut pickle").is_err(), "pickle cut to {len} bytes");
        }
        // Any byte changed: an error or a state dict, never a panic; a changed pickle (CRC) or
        // central directory signature is always an error.
        let sigs: Vec<usize> = (0..file.len() - 3).filter(|&i| matches!(le32(&file, i), Some(CENTRAL_HEADER | END_OF_CENTRAL_DIR))).collect();
        let pickle_start = file.windows(pickle.len()).position(|w| w == pickle).unwrap();
        for i in 0..file.len() {
            for v in [0x00, 0xFF, file[i] ^ 0x01, file[i] ^ 0x80] {
                if v == file[i] {
                    continue;
                }
                let mut bad = file.clone();
                bad[i] = v;
                let result = read_state_dict(&bad, "corrupt");
                let must_fail = (pickle_start..pickle_start + pickle.len()).contains(&i) || sigs.iter().any(|&s| (s..s + 4).contains(&i));
                if must_fail {
                    assert!(result.is_err(), "byte {i} set to {v:#x} was not noticed");
                }
            }
        }
    }

    #[test]
    fn torch_bin_hostile_pickles_are_errors() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            // deep nesting: TUPLE1 applied 100000 times
            ([b"\x80\x02)".as_slice(), &[0x85; 100_000], b"."].concat(), "nest deeper"),
            // quadratic copying: a memoized list appended to over and over
            ([b"\x80\x02]q\x00".as_slice(), &b"h\x00Naq\x000".repeat(50_000), b"."].concat(), "work"),
            // an integer too wide for any size
            (b"\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01.".to_vec(), "9-byte integer"),
            // a string longer than the pickle
            (b"\x80\x02X\xff\xff\xff\x7fabc.".to_vec(), "cut short"),
            // popping below a MARK
            (b"\x80\x02N(0.".to_vec(), "MARK"),
            // an unknown opcode (INST, protocol 0)
            (b"\x80\x02ios\nsystem\n.".to_vec(), "opcode 0x69"),
            // a storage type of another dtype
            (b"\x80\x02ctorch\nLongStorage\n.".to_vec(), "torch.LongStorage"),
            // a state dict whose value is not a tensor
            (b"\x80\x02}X\x01\x00\x00\x00aK\x01s.".to_vec(), "not a tensor"),
            // a memo entry never stored
            (b"\x80\x02h\x05.".to_vec(), "memo entry 5"),
            // a persistent id of another shape
            (b"\x80\x02NQ.".to_vec(), "persistent id"),
        ];
        for (pickle, needle) in cases {
            let e = err(&with_pickle(&pickle));
            assert!(e.contains(needle), "expected `{needle}` in: {e}");
        }
    }

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
    }

    #[test]
    fn torch_bin_state_spaces_folder_opens_with_the_same_weights() {
        use crate::model::checkpoint::{Checkpoint, TensorSource};
        use crate::model::weights::{load_weights, HostSink};
        let hf = Checkpoint::open(&fixture("mamba1-tiny")).unwrap();
        let ss = Checkpoint::open(&fixture("mamba1-tiny-state-spaces")).unwrap();
        let bytes = std::fs::read(fixture("mamba1-tiny").join("model.safetensors")).unwrap();
        let shapes = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(shapes.len(), hf.names().unwrap().len());
        for (name, view) in shapes.tensors() {
            let ss_name = if name == "backbone.embeddings.weight" { "backbone.embedding.weight" } else { name.as_str() };
            let (a, b) = (hf.tensor(&name, view.shape()).unwrap(), ss.tensor(ss_name, view.shape()).unwrap());
            assert_eq!((a.dtype, &a.bytes), (b.dtype, &b.bytes), "{name}");
        }
        assert_eq!(ss.names().unwrap().len(), shapes.len() + 1, "the state-spaces file adds lm_head.weight");
        // The tied LM head is stored under its own name and shares the embedding's bytes.
        let shape = [ss.config.vocab_size, ss.config.d_model];
        let (emb, head) = (ss.tensor("backbone.embedding.weight", &shape).unwrap(), ss.tensor("lm_head.weight", &shape).unwrap());
        assert_eq!(emb.bytes.as_ptr(), head.bytes.as_ptr());
        assert_eq!(ss.stored_bytes(), hf.stored_bytes());
        let (w_hf, w_ss) = (load_weights(&hf, &mut HostSink).unwrap(), load_weights(&ss, &mut HostSink).unwrap());
        assert_eq!((w_hf.embedding, w_hf.norm_f), (w_ss.embedding, w_ss.norm_f));
        // Errors name the file and the tensor.
        let e = ss.tensor("backbone.norm_f.weight", &[3]).err().unwrap().to_string();
        assert!(e.contains("backbone.norm_f.weight") && e.contains("pytorch_model.bin"), "{e}");
    }

    #[test]
    fn torch_bin_is_read_only_where_there_is_no_safetensors() {
        use crate::model::checkpoint::Checkpoint;
        let dir = std::env::temp_dir().join(format!("mamba-wgpu-torch-bin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = fixture("mamba1-tiny");
        std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
        std::fs::write(dir.join("pytorch_model.bin"), b"not a checkpoint").unwrap();
        let e = Checkpoint::open(&dir).err().unwrap().to_string();
        assert!(e.contains("pytorch_model.bin") && e.contains("not a PyTorch checkpoint"), "{e}");
        // With both, safetensors wins: the broken .bin is not even opened.
        std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
        let opened = Checkpoint::open(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        opened.unwrap();
    }

    /// A tensor on storage "0" (4 f32 elements) with the given offset, size and stride.
    fn one_tensor(offset: u8, size: &[u8], stride: &[u8]) -> Vec<u8> {
        let tuple = |v: &[u8]| -> Vec<u8> { [b"(".as_slice(), &v.iter().flat_map(|&x| [b'K', x]).collect::<Vec<_>>(), b"t"].concat() };
        [
            b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n(".as_slice(),
            b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQ",
            &[b'K', offset],
            &tuple(size),
            &tuple(stride),
            b"\x89ccollections\nOrderedDict\n)Rt",
            b"Rs.",
        ]
        .concat()
    }

    #[test]
    fn torch_bin_checks_offsets_shapes_and_storage_sizes() {
        let file = with_pickle(&one_tensor(1, &[3], &[1]));
        let ok = read_state_dict(&file, "t").unwrap();
        let entry_start = Zip::parse(&file).unwrap().find("archive/data/0").unwrap().unwrap().start;
        assert_eq!(ok.tensors[0].1.bytes, entry_start + 4..entry_start + 16);
        assert_eq!(ok.data_bytes, 16);
        for (pickle, needle) in [
            (one_tensor(2, &[3], &[1]), "outside its storage"),
            (one_tensor(0, &[2, 2], &[1, 2]), "not contiguous"),
            (one_tensor(0, &[2, 1], &[2, 1]), "not contiguous"),
            (one_tensor(0, &[2], &[1, 1]), "differ in length"),
        ] {
            let e = err(&with_pickle(&pickle));
            assert!(e.contains(needle) && e.contains("`w`") && e.contains("test.bin"), "expected `{needle}`: {e}");
        }
        // Strides of size-1 dimensions are free, as in torch.
        read_state_dict(&with_pickle(&one_tensor(0, &[1, 4], &[9, 1])), "t").unwrap();
        // The storage entry must hold exactly numel x 4 bytes.
        let short = zip(&[("archive/data.pkl", &one_tensor(0, &[3], &[1])), ("archive/data/0", &[0u8; 12])]);
        assert!(err(&short).contains("holds 12 bytes"));
        let missing = zip(&[("archive/data.pkl", &one_tensor(0, &[3], &[1]))]);
        assert!(err(&missing).contains("archive/data/0"));
        let big_endian = zip(&[("archive/data.pkl", &one_tensor(0, &[3], &[1])), ("archive/byteorder", b"big")]);
        assert!(err(&big_endian).contains("little-endian"));
    }
}
