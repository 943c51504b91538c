//! The restricted pickle machine that reads `data.pkl`: only the opcodes torch.save writes for
//! a state dict, and only the globals of [`resolve_global`]'s allow-list, none of them run.

use std::collections::HashMap;
use std::rc::Rc;

use super::reader::Reader;
use super::Parse;
use crate::model::checkpoint::StoredDtype;

/// Deepest nesting of containers in the pickle (a state dict needs 3).
pub const MAX_DEPTH: u32 = 32;

/// What an allowed global stands for.
#[derive(Clone, Copy)]
pub(super) enum Global {
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

/// A storage's persistent id: its data is the zip entry `<archive>/data/<key>`.
pub(super) struct Storage {
    pub(super) dtype: StoredDtype,
    pub(super) key: Rc<str>,
    pub(super) numel: usize,
}

/// The arguments of a `_rebuild_tensor_v2` call, unchecked.
pub(super) struct RawTensor {
    pub(super) storage: Rc<Storage>,
    pub(super) offset: i64,
    pub(super) size: Vec<i64>,
    pub(super) stride: Vec<i64>,
}

/// A tuple's or list's items, and how deep containers nest in them (itself included).
#[derive(Clone)]
pub(super) struct Seq {
    items: Vec<Value>,
    depth: u32,
}

/// A dict's items in insertion order, and how deep containers nest in them (itself included).
#[derive(Clone)]
pub(super) struct Pairs {
    pub(super) items: Vec<(Value, Value)>,
    depth: u32,
}

/// An unpickled object; scalars that a state dict never needs to read carry no value.
#[derive(Clone)]
pub(super) enum Value {
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
    pub(super) fn kind(&self) -> &'static str {
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

/// The pickle machine: a stack, its MARKs and the memo.
pub(super) struct Machine<'a> {
    r: Reader<'a>,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    /// Work done so far (one unit an opcode, one an element copied), against `budget`.
    work: usize,
    budget: usize,
}

impl<'a> Machine<'a> {
    pub(super) fn new(pickle: &'a [u8]) -> Self {
        let budget = pickle.len().saturating_mul(8).saturating_add(1 << 16);
        Machine { r: Reader::new(pickle, "the pickle"), stack: Vec::new(), marks: Vec::new(), memo: HashMap::new(), work: 0, budget }
    }

    /// Runs to STOP and returns the pickled object.
    pub(super) fn run(mut self) -> Parse<Value> {
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
        if !items.len().is_multiple_of(2) {
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
