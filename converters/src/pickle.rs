//! A Python pickle virtual machine (protocols 2-4, the opcodes `torch.save` and `paddle.save`
//! emit) that builds an object graph without running any code. Classes are not imported:
//! a `REDUCE`/`NEWOBJ` becomes an [`Object`] recording the callable, its arguments and any
//! `BUILD` state, and the format readers ([`crate::torch_checkpoint`], [`crate::numpy`])
//! interpret the objects they know. Containers are shared (`Rc`), as in Python, so a memoised
//! object later completed by `SETITEMS`/`BUILD` is seen complete wherever it is referenced.

use anyhow::{Context, Result, anyhow, bail, ensure};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// An unpickled value.
#[derive(Debug, Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Strings are shared like containers: a memoised string fetched again is not copied
    /// (a pickle of a 1 MB string fetched 5,000 times by 2-byte `BINGET`s asked for 5 GB).
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    List(Rc<RefCell<Vec<Value>>>),
    Tuple(Rc<[Value]>),
    /// Dicts (and `OrderedDict`s) in insertion order.
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    /// A module-level name (`GLOBAL` / `STACK_GLOBAL`): module, name.
    Global(Rc<str>, Rc<str>),
    /// What `persistent_load` would have been called with.
    Persistent(Rc<Value>),
    Object(Rc<Object>),
    Mark,
}

/// Dropped without recursion: a pickle of 2 bytes per level nests tuples (or lists, dicts,
/// objects) 200,000 deep in 400 KB, and the recursive drop overflowed the stack.
impl Drop for Value {
    fn drop(&mut self) {
        fn children(v: &mut Value, out: &mut Vec<Value>) {
            let take = |v: &mut Value| std::mem::replace(v, Value::None);
            match v {
                Value::List(l) => {
                    if let Some(l) = Rc::get_mut(l) {
                        out.append(l.get_mut());
                    }
                }
                Value::Dict(d) => {
                    if let Some(d) = Rc::get_mut(d) {
                        for (k, v) in d.get_mut().drain(..) {
                            out.push(k);
                            out.push(v);
                        }
                    }
                }
                Value::Tuple(t) => {
                    if let Some(t) = Rc::get_mut(t) {
                        out.extend(t.iter_mut().map(take));
                    }
                }
                Value::Persistent(p) => {
                    if let Some(p) = Rc::get_mut(p) {
                        out.push(take(p));
                    }
                }
                Value::Object(o) => {
                    if let Some(o) = Rc::get_mut(o) {
                        out.push(take(&mut o.func));
                        out.push(take(&mut o.args));
                        if let Some(s) = o.state.get_mut().take() {
                            out.push(s);
                        }
                    }
                }
                _ => {}
            }
        }
        let mut pending = Vec::new();
        children(self, &mut pending);
        while let Some(mut v) = pending.pop() {
            // `v`'s children move to `pending`, so dropping `v` itself recurses no further.
            children(&mut v, &mut pending);
        }
    }
}

/// The result of calling `func(*args)` (`REDUCE`, `NEWOBJ`), then `BUILD` with `state`.
#[derive(Debug)]
pub struct Object {
    pub func: Value,
    pub args: Value,
    pub state: RefCell<Option<Value>>,
}

impl Object {
    /// `(module, name)` when the callable is a global.
    pub fn global(&self) -> Option<(&str, &str)> {
        match &self.func {
            Value::Global(m, n) => Some((&**m, &**n)),
            _ => None,
        }
    }
}

impl Value {
    /// A short description for error messages (never the contents of big buffers).
    pub fn describe(&self) -> String {
        match self {
            Self::Bytes(b) => format!("bytes ({} bytes)", b.len()),
            Self::Str(s) if s.len() > 40 => format!("a string ({} bytes)", s.len()),
            Self::List(l) => format!("a list ({} items)", l.borrow().len()),
            Self::Tuple(t) => format!("a tuple ({} items)", t.len()),
            Self::Dict(d) => format!("a dict ({} items)", d.borrow().len()),
            Self::Global(m, n) => format!("the global {m}.{n}"),
            Self::Persistent(_) => "a persistent id".into(),
            Self::Object(o) => match o.global() {
                Some((m, n)) => format!("a {m}.{n}(...) object"),
                None => "an object".into(),
            },
            other => format!("{other:?}"),
        }
    }

    /// Items of a tuple or list.
    pub fn items(&self) -> Option<Vec<Value>> {
        match self {
            Self::Tuple(t) => Some(t.to_vec()),
            Self::List(l) => Some(l.borrow().clone()),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// The non-negative ints of a tuple or list (shapes, strides).
pub fn usize_list(v: &Value) -> Result<Vec<usize>> {
    v.items()
        .ok_or_else(|| anyhow!("expected a tuple of ints, found {}", v.describe()))?
        .iter()
        .map(|x| match x {
            Value::Int(i) if *i >= 0 => Ok(*i as usize),
            other => Err(anyhow!(
                "expected a non-negative int, found {}",
                other.describe()
            )),
        })
        .collect()
}

/// The bytes (plus 64 per entry) all flattened names may take: shared (memoised) dicts
/// nested in each other make the flattened tree exponential in the pickle's size.
const LEAF_NAME_BYTES: usize = 16 << 20;
const LEAF_BUDGET_MSG: &str =
    "the nested dicts flatten to more than 16 MiB of names and entries (shared or cyclic dicts?)";

/// Nested dicts flattened to dotted names (`{"teacher": {"backbone.x": t}}` ->
/// `teacher.backbone.x`), leaves in the file's order. Keys that are not strings or ints are
/// skipped.
pub fn dict_leaves(root: &Value) -> Result<Vec<(String, Value)>> {
    fn walk(
        v: &Value,
        prefix: String,
        depth: usize,
        budget: &mut usize,
        out: &mut Vec<(String, Value)>,
    ) -> Result<()> {
        let Value::Dict(items) = v else {
            out.push((prefix, v.clone()));
            return Ok(());
        };
        ensure!(depth < 64, "dicts nested more than 64 deep");
        for (k, v) in items.borrow().iter() {
            let key = match k {
                Value::Str(s) => s.to_string(),
                Value::Int(i) => i.to_string(),
                _ => continue,
            };
            // A leaf costs its name plus about 64 bytes (the entry, the name's allocation).
            *budget = budget
                .checked_sub(64 + prefix.len() + key.len())
                .ok_or_else(|| anyhow!("{LEAF_BUDGET_MSG}"))?;
            let name = if prefix.is_empty() {
                key
            } else {
                format!("{prefix}.{key}")
            };
            walk(v, name, depth + 1, budget, out)?;
        }
        Ok(())
    }
    let mut out = Vec::new();
    let mut budget = LEAF_NAME_BYTES;
    walk(root, String::new(), 0, &mut budget, &mut out)?;
    Ok(out)
}

/// Runs the pickle in `data` and returns the unpickled root value.
pub fn unpickle(data: &[u8]) -> Result<Value> {
    let mut stack: Vec<Value> = Vec::new();
    let mut memo: HashMap<u32, Value> = HashMap::new();
    let mut pos = 0usize;
    let take = |pos: &mut usize, n: usize| -> Result<&[u8]> {
        let s = pos
            .checked_add(n)
            .and_then(|end| data.get(*pos..end))
            .ok_or_else(|| anyhow!("pickle truncated at byte {pos}"))?;
        *pos += n;
        Ok(s)
    };
    let u32_at = |pos: &mut usize| -> Result<u32> {
        Ok(u32::from_le_bytes(take(pos, 4)?.try_into().unwrap()))
    };
    let u64_at = |pos: &mut usize| -> Result<usize> {
        let n = u64::from_le_bytes(take(pos, 8)?.try_into().unwrap());
        usize::try_from(n).map_err(|_| anyhow!("pickle length {n} too large"))
    };
    let pop = |stack: &mut Vec<Value>| stack.pop().ok_or_else(|| anyhow!("pickle stack underflow"));
    let pop_mark = |stack: &mut Vec<Value>| -> Result<Vec<Value>> {
        let at = stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or_else(|| anyhow!("pickle MARK missing"))?;
        let items = stack.split_off(at + 1);
        stack.pop();
        Ok(items)
    };
    let top = |stack: &Vec<Value>| {
        stack
            .last()
            .cloned()
            .ok_or_else(|| anyhow!("pickle memo store on an empty stack"))
    };
    loop {
        let at = pos;
        let op = take(&mut pos, 1)?[0];
        match op {
            0x80 => {
                let proto = take(&mut pos, 1)?[0];
                ensure!(proto <= 5, "unknown pickle protocol {proto}");
            }
            0x95 => {
                take(&mut pos, 8)?; // FRAME: only a read-ahead hint
            }
            b'.' => return pop(&mut stack),
            b'}' => stack.push(Value::Dict(Default::default())),
            b']' => stack.push(Value::List(Default::default())),
            b')' => stack.push(Value::Tuple(Rc::new([]))),
            b'(' => stack.push(Value::Mark),
            b'N' => stack.push(Value::None),
            0x88 => stack.push(Value::Bool(true)),
            0x89 => stack.push(Value::Bool(false)),
            b'K' => stack.push(Value::Int(take(&mut pos, 1)?[0] as i64)),
            b'M' => {
                let b = take(&mut pos, 2)?;
                stack.push(Value::Int(u16::from_le_bytes([b[0], b[1]]) as i64))
            }
            b'J' => stack.push(Value::Int(u32_at(&mut pos)? as i32 as i64)),
            0x8a | 0x8b => {
                let n = match op {
                    0x8a => take(&mut pos, 1)?[0] as usize,
                    _ => u32_at(&mut pos)? as usize,
                };
                let b = take(&mut pos, n)?;
                ensure!(n <= 8, "pickled int of {n} bytes is too large");
                let fill = if b.last().is_some_and(|x| x & 0x80 != 0) {
                    0xFF
                } else {
                    0
                };
                let mut v = [fill; 8];
                v[..n].copy_from_slice(b);
                stack.push(Value::Int(i64::from_le_bytes(v)));
            }
            b'G' => {
                let b = take(&mut pos, 8)?;
                stack.push(Value::Float(f64::from_be_bytes(b.try_into().unwrap())))
            }
            // Strings and bytes: 1-, 4- or 8-byte lengths.
            0x8c | b'X' | 0x8d | b'C' | b'B' | 0x8e | b'U' | b'T' => {
                let n = match op {
                    0x8c | b'C' | b'U' => take(&mut pos, 1)?[0] as usize,
                    b'X' | b'B' | b'T' => u32_at(&mut pos)? as usize,
                    _ => u64_at(&mut pos)?,
                };
                let b = take(&mut pos, n)?;
                stack.push(match op {
                    0x8c | b'X' | 0x8d => Value::Str(
                        std::str::from_utf8(b)
                            .context("pickle string is not UTF-8")?
                            .into(),
                    ),
                    _ => Value::Bytes(b.into()),
                });
            }
            b'q' | b'r' | 0x94 => {
                let k = match op {
                    b'q' => take(&mut pos, 1)?[0] as u32,
                    b'r' => u32_at(&mut pos)?,
                    _ => memo.len() as u32,
                };
                memo.insert(k, top(&stack)?);
            }
            b'h' | b'j' => {
                let k = match op {
                    b'h' => take(&mut pos, 1)?[0] as u32,
                    _ => u32_at(&mut pos)?,
                };
                let v = memo
                    .get(&k)
                    .ok_or_else(|| anyhow!("pickle memo {k} missing"))?;
                stack.push(v.clone());
            }
            b'c' => {
                let mut line = || -> Result<String> {
                    let rest = &data[pos..];
                    let n = rest
                        .iter()
                        .position(|&b| b == b'\n')
                        .ok_or_else(|| anyhow!("pickle truncated in a GLOBAL"))?;
                    pos += n + 1;
                    Ok(String::from_utf8_lossy(&rest[..n]).into_owned())
                };
                let module = line()?;
                let name = line()?;
                stack.push(Value::Global(module.into(), name.into()));
            }
            0x93 => {
                let name = pop(&mut stack)?;
                let module = pop(&mut stack)?;
                match (&module, &name) {
                    (Value::Str(m), Value::Str(n)) => {
                        stack.push(Value::Global(m.clone(), n.clone()))
                    }
                    _ => bail!("STACK_GLOBAL without strings"),
                }
            }
            b't' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::Tuple(items.into()));
            }
            b'l' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::List(Rc::new(RefCell::new(items))));
            }
            b'd' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::Dict(Default::default()));
                set_items(&stack, items);
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                ensure!(stack.len() >= n, "pickle stack underflow");
                let items = stack.split_off(stack.len() - n);
                stack.push(Value::Tuple(items.into()));
            }
            b's' => {
                let v = pop(&mut stack)?;
                let k = pop(&mut stack)?;
                ensure!(!stack.is_empty(), "SETITEM without a dict");
                set_items(&stack, vec![k, v]);
            }
            b'u' => {
                let items = pop_mark(&mut stack)?;
                ensure!(!stack.is_empty(), "SETITEMS without a dict");
                set_items(&stack, items);
            }
            b'a' | b'e' => {
                let items = match op {
                    b'a' => vec![pop(&mut stack)?],
                    _ => pop_mark(&mut stack)?,
                };
                if let Some(Value::List(l)) = stack.last() {
                    l.borrow_mut().extend(items);
                }
            }
            b'0' => {
                pop(&mut stack)?;
            }
            b'1' => {
                pop_mark(&mut stack)?;
            }
            b'2' => stack.push(top(&stack)?),
            b'Q' => {
                let pid = pop(&mut stack)?;
                stack.push(Value::Persistent(Rc::new(pid)));
            }
            b'R' => {
                let args = pop(&mut stack)?;
                let func = pop(&mut stack)?;
                stack.push(reduce(func, args)?);
            }
            0x81 | 0x92 => {
                if op == 0x92 {
                    pop(&mut stack)?; // NEWOBJ_EX keyword arguments
                }
                let args = pop(&mut stack)?;
                let cls = pop(&mut stack)?;
                stack.push(object(cls, args));
            }
            b'b' => {
                let state = pop(&mut stack)?;
                // BUILD on anything else (an OrderedDict's `_metadata`) is dropped.
                if let Some(Value::Object(o)) = stack.last() {
                    *o.state.borrow_mut() = Some(state);
                }
            }
            other => bail!("unsupported pickle opcode {other:#04x} at byte {at}"),
        }
    }
}

/// `SETITEM(S)`: key/value pairs into the dict on top of the stack (dropped for other objects,
/// whose `__setitem__` we do not model).
fn set_items(stack: &[Value], items: Vec<Value>) {
    if let Some(Value::Dict(d)) = stack.last() {
        let mut d = d.borrow_mut();
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            d.push((k, v));
        }
    }
}

fn object(func: Value, args: Value) -> Value {
    Value::Object(Rc::new(Object {
        func,
        args,
        state: RefCell::new(None),
    }))
}

/// `func(*args)`: builtins whose result is plain data are evaluated, everything else is kept
/// as an [`Object`] for the format readers.
fn reduce(func: Value, args: Value) -> Result<Value> {
    let Value::Global(module, name) = &func else {
        return Ok(object(func, args));
    };
    let arg0 = || args.items().and_then(|a| a.into_iter().next());
    Ok(match (&**module, &**name) {
        ("collections", "OrderedDict") => Value::Dict(Default::default()),
        // Protocol 2 writes bytes as `_codecs.encode(latin-1 str, "latin1")`.
        ("_codecs", "encode") => match &arg0() {
            Some(Value::Str(s)) => Value::Bytes(
                s.chars()
                    .map(|c| u8::try_from(c).map_err(|_| anyhow!("non-latin-1 bytes in pickle")))
                    .collect::<Result<Vec<u8>>>()?
                    .into(),
            ),
            _ => bail!("unexpected arguments to _codecs.encode"),
        },
        ("builtins" | "__builtin__", "bytes") if arg0().is_none() => Value::Bytes(Rc::new([])),
        ("builtins" | "__builtin__", "tuple" | "list") => {
            let items = match arg0() {
                Some(v) => v
                    .items()
                    .ok_or_else(|| anyhow!("{module}.{name} of {}", v.describe()))?,
                None => Vec::new(),
            };
            match &**name {
                "tuple" => Value::Tuple(items.into()),
                _ => Value::List(Rc::new(RefCell::new(items))),
            }
        }
        _ => object(func, args),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memoised_objects_are_shared_and_errors_do_not_panic() {
        // d = {}; x = {"a": d}; d["k"] = 1, pickled with d memoised before it is filled:
        // PROTO 2, EMPTY_DICT, MARK, "a", EMPTY_DICT, BINPUT 0, SETITEMS, ...
        let p = b"\x80\x02}(X\x01\x00\x00\x00a}q\x00uX\x01\x00\x00\x00bh\x00s\
                  h\x00X\x01\x00\x00\x00kK\x01s0.";
        let root = unpickle(p).unwrap();
        let leaves = dict_leaves(&root).unwrap();
        let names: Vec<_> = leaves.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a.k", "b.k"]);
        for cut in 0..p.len() {
            assert!(unpickle(&p[..cut]).is_err(), "cut at {cut}");
        }
        assert!(unpickle(b"PK\x03\x04garbage").is_err());
    }

    #[test]
    fn hostile_nesting_and_sharing_are_bounded() {
        // 200,000 nested tuples in 400 KB: dropping them must not overflow the stack.
        let n = 200_000;
        let mut p = b"\x80\x02".to_vec();
        p.extend(std::iter::repeat_n(b'(', n));
        p.extend(std::iter::repeat_n(b't', n));
        p.push(b'.');
        drop(unpickle(&p).unwrap());
        // A 1 MiB string memoised and fetched 5,000 times is shared, not copied.
        let mut p = b"\x80\x02X\x00\x00\x10\x00".to_vec();
        p.extend(std::iter::repeat_n(b'a', 1 << 20));
        p.extend(b"q\x00(");
        for _ in 0..5000 {
            p.extend(b"h\x00");
        }
        p.extend(b"l.");
        let root = unpickle(&p).unwrap();
        let Value::List(l) = &root else {
            panic!("not a list")
        };
        let l = l.borrow();
        let (Value::Str(a), Value::Str(b)) = (&l[0], &l[4999]) else {
            panic!("not strings")
        };
        assert!(Rc::ptr_eq(a, b));
        // d0 = {}; d(k+1) = {"a": dk, "b": dk}: 2^60 leaves from 60 shared dicts.
        let mut p = b"\x80\x02}q\x00".to_vec();
        for k in 0..60u8 {
            p.extend(b"}(X\x01\x00\x00\x00ah");
            p.push(k);
            p.extend(b"X\x01\x00\x00\x00bh");
            p.push(k);
            p.extend(b"uq");
            p.push(k + 1);
        }
        p.push(b'.');
        let e = dict_leaves(&unpickle(&p).unwrap()).unwrap_err();
        assert!(e.to_string().contains("16 MiB of names"), "{e}");
    }
}
