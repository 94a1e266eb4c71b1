//! The CIFAR-10 reader, for both downloads (Krizhevsky 2009):
//!
//! ```text
//! <root>/cifar-10-batches-bin/data_batch_{1..5}.bin, test_batch.bin
//!     10000 records of 1 label byte + 3072 pixel bytes (1024 R, 1024 G, 1024 B, row-major)
//! <root>/cifar-10-batches-py/data_batch_{1..5}, test_batch
//!     a Python pickle (protocol 2) of a dict with b'data' (numpy uint8 [10000, 3072], the
//!     same pixel layout) and b'labels' (a list of ints)
//! ```
//!
//! `<root>` may also be the `cifar-10-batches-*` folder itself; the binary version is used
//! when both are there. The pickle reader is a minimal unpickler for exactly that
//! structure (numpy's `_reconstruct` of a C-ordered uint8 array, as written by Python 2's
//! cPickle or by Python 3 with protocol 2..4, or numpy's `_frombuffer` of an in-band
//! BYTEARRAY8 buffer, as protocol 5 writes it); anything else is an error naming the file.
//! It runs no code. The one-class protocol on these is in [`crate::one_class`].
use crate::error::{DataError, Result};
use crate::one_class::{one_class_split, OneClassSplit};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// The ten CIFAR-10 classes, by label.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Bytes of one 32x32 RGB image.
pub const CIFAR10_IMAGE_BYTES: usize = 3 * 32 * 32;

/// Images and labels of one part (or one batch file).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cifar10Split {
    pub labels: Vec<u8>,
    /// `[N, 3, 32, 32]` bytes.
    pub pixels: Vec<u8>,
}

impl Cifar10Split {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The `[3, 32, 32]` bytes of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * CIFAR10_IMAGE_BYTES..(i + 1) * CIFAR10_IMAGE_BYTES]
    }

    /// Images `indices` as a `[N, 3, 32, 32]` float tensor in `[0, 1]` (on the CPU).
    pub fn images_tensor(&self, indices: &[usize]) -> Tensor {
        let mut bytes = Vec::with_capacity(indices.len() * CIFAR10_IMAGE_BYTES);
        for &i in indices {
            bytes.extend_from_slice(self.image(i));
        }
        Tensor::from_slice(&bytes)
            .reshape([indices.len() as i64, 3, 32, 32])
            .to_kind(Kind::Float)
            / 255.0
    }

    fn append(&mut self, other: Cifar10Split) {
        self.labels.extend(other.labels);
        self.pixels.extend(other.pixels);
    }
}

/// The training (5 batches) and test parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cifar10 {
    pub train: Cifar10Split,
    pub test: Cifar10Split,
}

impl Cifar10 {
    /// The one-class split with `normal_class` normal (see [`crate::one_class`]).
    pub fn one_class(&self, normal_class: u8) -> Result<OneClassSplit> {
        one_class_split(&self.train.labels, &self.test.labels, normal_class)
    }
}

/// Which of the two downloads a folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cifar10Layout {
    Binary,
    Python,
}

/// The batch folder under `root` and its layout; an error naming what was expected.
pub fn find_batches(root: &Path) -> Result<(PathBuf, Cifar10Layout)> {
    if !root.is_dir() {
        return Err(DataError::RootMissing {
            path: root.to_path_buf(),
        });
    }
    let candidates = [
        (
            root.to_path_buf(),
            "data_batch_1.bin",
            Cifar10Layout::Binary,
        ),
        (
            root.join("cifar-10-batches-bin"),
            "data_batch_1.bin",
            Cifar10Layout::Binary,
        ),
        (root.to_path_buf(), "data_batch_1", Cifar10Layout::Python),
        (
            root.join("cifar-10-batches-py"),
            "data_batch_1",
            Cifar10Layout::Python,
        ),
    ];
    candidates
        .into_iter()
        .find(|(dir, file, _)| dir.join(file).is_file())
        .map(|(dir, _, layout)| (dir, layout))
        .ok_or_else(|| DataError::Layout {
            path: root.to_path_buf(),
            message: "no CIFAR-10 batches: expected cifar-10-batches-bin/data_batch_1.bin or \
                      cifar-10-batches-py/data_batch_1 (or those files directly)"
                .into(),
        })
}

/// Reads both parts of CIFAR-10 under `root`.
pub fn read_cifar10(root: &Path) -> Result<Cifar10> {
    let (dir, layout) = find_batches(root)?;
    let (ext, read): (&str, fn(&Path) -> Result<Cifar10Split>) = match layout {
        Cifar10Layout::Binary => (".bin", read_bin_batch),
        Cifar10Layout::Python => ("", read_py_batch),
    };
    let mut train = Cifar10Split::default();
    for i in 1..=5 {
        train.append(read(&dir.join(format!("data_batch_{i}{ext}")))?);
    }
    let test = read(&dir.join(format!("test_batch{ext}")))?;
    Ok(Cifar10 { train, test })
}

fn format_error(path: &Path, message: impl Into<String>) -> DataError {
    DataError::Format {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn check_labels(path: &Path, labels: &[u8]) -> Result<()> {
    match labels.iter().position(|&l| l >= 10) {
        Some(i) => Err(format_error(
            path,
            format!(
                "label {} of image {i} is not a CIFAR-10 class (0..9)",
                labels[i]
            ),
        )),
        None => Ok(()),
    }
}

/// Reads one binary batch: records of 1 label byte and 3072 pixel bytes.
pub fn read_bin_batch(path: &Path) -> Result<Cifar10Split> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let record = 1 + CIFAR10_IMAGE_BYTES;
    if bytes.is_empty() || bytes.len() % record != 0 {
        return Err(format_error(
            path,
            format!(
                "{} bytes is not a whole number of {record}-byte records (1 label + 3072 pixels)",
                bytes.len()
            ),
        ));
    }
    let n = bytes.len() / record;
    let mut split = Cifar10Split {
        labels: Vec::with_capacity(n),
        pixels: Vec::with_capacity(n * CIFAR10_IMAGE_BYTES),
    };
    for r in bytes.chunks_exact(record) {
        split.labels.push(r[0]);
        split.pixels.extend_from_slice(&r[1..]);
    }
    check_labels(path, &split.labels)?;
    Ok(split)
}

/// Reads one Python batch (a pickled dict with `data` and `labels`).
pub fn read_py_batch(path: &Path) -> Result<Cifar10Split> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let fail = |m: String| format_error(path, format!("not a CIFAR-10 python batch: {m}"));
    let value = Unpickler::new(&bytes).run().map_err(&fail)?;
    let Value::Dict(items) = value else {
        return Err(fail("the pickle does not hold a dict".into()));
    };
    let get = |key: &str| {
        items
            .iter()
            .find(|(k, _)| k.as_text() == Some(key))
            .map(|(_, v)| v)
            .ok_or_else(|| fail(format!("no `{key}` key")))
    };
    let (rows, cols, pixels) = uint8_matrix(get("data")?).map_err(&fail)?;
    if cols != CIFAR10_IMAGE_BYTES {
        return Err(fail(format!(
            "data is [{rows}, {cols}], expected [N, 3072]"
        )));
    }
    let Value::List(items) = get("labels")? else {
        return Err(fail("`labels` is not a list".into()));
    };
    let labels = items
        .iter()
        .map(|v| match v {
            Value::Int(i) => u8::try_from(*i).map_err(|_| fail(format!("label {i}"))),
            other => Err(fail(format!("label {other:?} is not an int"))),
        })
        .collect::<Result<Vec<u8>>>()?;
    if labels.len() != rows {
        return Err(fail(format!("{} labels for {rows} images", labels.len())));
    }
    check_labels(path, &labels)?;
    Ok(Cifar10Split { labels, pixels })
}

/// The (rows, cols, bytes) of an unpickled 2-D C-ordered uint8 numpy array.
fn uint8_matrix(value: &Value) -> std::result::Result<(usize, usize, Vec<u8>), String> {
    let not = || "`data` is not a numpy uint8 array".to_string();
    // Protocol 5 writes a contiguous array as `numpy._core.numeric._frombuffer(buffer,
    // dtype, shape, order)`, the buffer in band (BYTEARRAY8); older protocols as
    // `multiarray._reconstruct(...)` then BUILD with the state (version, shape, dtype,
    // is_fortran, data).
    let (shape, dtype, fortran, data) = match value {
        Value::Reduce(callable, args) => {
            match &**callable {
                Value::Global(m, n) if m.ends_with("numeric") && n == "_frombuffer" => {}
                _ => return Err(not()),
            }
            let Value::Tuple(args) = &**args else {
                return Err(not());
            };
            let [data, dtype, Value::Tuple(shape), order] = &args[..] else {
                return Err(format!(
                    "unexpected numpy _frombuffer arguments ({} items)",
                    args.len()
                ));
            };
            let fortran = order.as_text() == Some("F");
            (shape, dtype, fortran, data)
        }
        Value::Built(obj, state) => {
            let Value::Reduce(callable, _) = &**obj else {
                return Err(not());
            };
            match &**callable {
                Value::Global(m, n) if m.ends_with("multiarray") && n == "_reconstruct" => {}
                _ => return Err(not()),
            }
            let Value::Tuple(state) = &**state else {
                return Err(not());
            };
            let [_, Value::Tuple(shape), dtype, fortran, data] = &state[..] else {
                return Err(format!("unexpected ndarray state of {} items", state.len()));
            };
            (shape, dtype, matches!(fortran, Value::Bool(true)), data)
        }
        _ => return Err(not()),
    };
    let dims: Vec<usize> = shape
        .iter()
        .map(|d| match d {
            Value::Int(i) => usize::try_from(*i).map_err(|_| not()),
            _ => Err(not()),
        })
        .collect::<std::result::Result<_, _>>()?;
    let [rows, cols] = dims[..] else {
        return Err(format!("`data` has shape {dims:?}, expected 2 dimensions"));
    };
    let dtype_name = match dtype {
        Value::Built(d, _) => match &**d {
            Value::Reduce(_, args) => match &**args {
                Value::Tuple(a) => a.first().and_then(Value::as_text).map(String::from),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    };
    if !matches!(dtype_name.as_deref(), Some("u1" | "|u1" | "uint8")) {
        return Err(format!("`data` has dtype {dtype_name:?}, expected uint8"));
    }
    if fortran && rows > 1 && cols > 1 {
        return Err("`data` is in Fortran order".into());
    }
    let bytes = match data {
        Value::Bytes(b) => b.clone(),
        _ => return Err("`data` holds no raw bytes".into()),
    };
    if bytes.len() != rows * cols {
        return Err(format!(
            "`data` is [{rows}, {cols}] but holds {} bytes",
            bytes.len()
        ));
    }
    Ok((rows, cols, bytes))
}

/// The values the unpickler builds; objects stay as what made them (`Reduce`, `Built`).
#[derive(Debug, Clone, PartialEq)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Python 3 `bytes` and Python 2 `str`.
    Bytes(Vec<u8>),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    Reduce(Box<Value>, Box<Value>),
    Built(Box<Value>, Box<Value>),
    Mark,
}

impl Value {
    fn as_text(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
}

/// A stack machine for the pickle opcodes numpy arrays, dicts, lists and strings use.
struct Unpickler<'a> {
    bytes: &'a [u8],
    at: usize,
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
}

type Step<T> = std::result::Result<T, String>;

impl<'a> Unpickler<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Unpickler {
            bytes,
            at: 0,
            stack: Vec::new(),
            memo: HashMap::new(),
        }
    }

    fn take(&mut self, n: usize) -> Step<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| format!("truncated pickle at byte {}", self.at))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn uint(&mut self, n: usize) -> Step<usize> {
        let b = self.take(n)?;
        Ok(b.iter()
            .rev()
            .fold(0usize, |acc, &x| (acc << 8) | x as usize))
    }

    fn line(&mut self) -> Step<String> {
        let rest = &self.bytes[self.at..];
        let end = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or("truncated pickle: unterminated line")?;
        self.at += end + 1;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }

    fn pop(&mut self) -> Step<Value> {
        self.stack
            .pop()
            .ok_or_else(|| "pickle stack underflow".into())
    }

    fn pop_mark(&mut self) -> Step<Vec<Value>> {
        let at = self
            .stack
            .iter()
            .rposition(|v| *v == Value::Mark)
            .ok_or("pickle MARK missing")?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }

    fn top(&mut self) -> Step<&mut Value> {
        self.stack
            .last_mut()
            .ok_or_else(|| "pickle stack underflow".into())
    }

    fn text(b: &[u8]) -> Step<Value> {
        String::from_utf8(b.to_vec())
            .map(Value::Str)
            .map_err(|_| "invalid UTF-8 in a pickled str".into())
    }

    fn run(mut self) -> Step<Value> {
        loop {
            let op = self.take(1)?[0];
            match op {
                0x80 => {
                    let v = self.take(1)?[0];
                    if v > 5 {
                        return Err(format!("unsupported pickle protocol {v}"));
                    }
                }
                0x95 => {
                    self.take(8)?;
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(Value::Mark),
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b']' => self.stack.push(Value::List(Vec::new())),
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err("pickle stack underflow".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items));
                }
                b'q' | b'r' | 0x94 => {
                    let key = match op {
                        b'q' => self.uint(1)?,
                        b'r' => self.uint(4)?,
                        _ => self.memo.len(),
                    } as u32;
                    let v = self.top()?.clone();
                    self.memo.insert(key, v);
                }
                b'h' | b'j' => {
                    let key = self.uint(if op == b'h' { 1 } else { 4 })? as u32;
                    let v = self
                        .memo
                        .get(&key)
                        .cloned()
                        .ok_or_else(|| format!("pickle memo {key} missing"))?;
                    self.stack.push(v);
                }
                // BYTEARRAY8 (0x96) is how protocol 5 writes numpy's in-band buffers.
                b'U' | b'T' | b'C' | b'B' | 0x8e | 0x96 => {
                    let n = match op {
                        b'U' | b'C' => self.uint(1)?,
                        0x8e | 0x96 => self.uint(8)?,
                        _ => self.uint(4)?,
                    };
                    let b = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(b));
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        0x8c => self.uint(1)?,
                        0x8d => self.uint(8)?,
                        _ => self.uint(4)?,
                    };
                    let b = self.take(n)?;
                    self.stack.push(Self::text(b)?);
                }
                b'K' => {
                    let v = self.uint(1)? as i64;
                    self.stack.push(Value::Int(v));
                }
                b'M' => {
                    let v = self.uint(2)? as i64;
                    self.stack.push(Value::Int(v));
                }
                b'J' => {
                    let v = self.uint(4)? as u32 as i32 as i64;
                    self.stack.push(Value::Int(v));
                }
                0x8a => {
                    let n = self.uint(1)?;
                    let b = self.take(n)?;
                    if n > 8 {
                        return Err("pickled int too large".into());
                    }
                    let mut v: i64 = 0;
                    for (i, &x) in b.iter().enumerate() {
                        v |= (x as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.stack.push(Value::Int(v));
                }
                b'G' => {
                    let b = self.take(8)?;
                    let v = f64::from_be_bytes(b.try_into().expect("8 bytes"));
                    self.stack.push(Value::Float(v));
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(module, name));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(m, n)),
                        _ => return Err("STACK_GLOBAL of non-strings".into()),
                    }
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = match (&callable, &args) {
                        // Python 3 protocol 2 writes bytes as _codecs.encode(str, 'latin1').
                        (Value::Global(m, n), Value::Tuple(a))
                            if m == "_codecs" && n == "encode" =>
                        {
                            match &a[..] {
                                [Value::Str(s), Value::Str(enc)] if enc == "latin1" => {
                                    let b: Option<Vec<u8>> =
                                        s.chars().map(|c| u8::try_from(c).ok()).collect();
                                    Value::Bytes(b.ok_or("non-latin1 bytes")?)
                                }
                                _ => return Err("unsupported _codecs.encode call".into()),
                            }
                        }
                        _ => Value::Reduce(Box::new(callable), Box::new(args)),
                    };
                    self.stack.push(v);
                }
                b'b' => {
                    let state = self.pop()?;
                    let obj = self.pop()?;
                    self.stack
                        .push(Value::Built(Box::new(obj), Box::new(state)));
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    match self.top()? {
                        Value::Dict(d) => d.push((k, v)),
                        _ => return Err("SETITEM on a non-dict".into()),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err("SETITEMS with an odd number of items".into());
                    }
                    let mut it = items.into_iter();
                    let Value::Dict(d) = self.top()? else {
                        return Err("SETITEMS on a non-dict".into());
                    };
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        d.push((k, v));
                    }
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top()? {
                        Value::List(l) => l.push(v),
                        _ => return Err("APPEND on a non-list".into()),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::List(l) => l.extend(items),
                        _ => return Err("APPENDS on a non-list".into()),
                    }
                }
                0x97 | 0x98 => {
                    return Err(format!(
                        "pickle opcode 0x{op:02x} ({}) at byte {} refers to an out-of-band \
                         buffer, which a pickle file cannot hold: write the batch with \
                         pickle.dump(obj, f, protocol=5) without buffer_callback (or with \
                         protocol 2..4)",
                        if op == 0x97 {
                            "NEXT_BUFFER"
                        } else {
                            "READONLY_BUFFER"
                        },
                        self.at - 1
                    ))
                }
                other => {
                    return Err(format!(
                        "unsupported pickle opcode 0x{other:02x} at byte {} (expected protocol \
                         2..5 of a dict of a numpy array and a list)",
                        self.at - 1
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpickles_basic_values() {
        // pickle.dumps({'a': [1, -2, 300, 70000], b'b': (True, None, 1.5)}, protocol=2)
        let p = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffM,\x01J\x70\x11\x01\x00eU\x01bq\x03\x88NG?\xf8\x00\x00\x00\x00\x00\x00\x87q\x04u.";
        let v = Unpickler::new(p).run().unwrap();
        assert_eq!(
            v,
            Value::Dict(vec![
                (
                    Value::Str("a".into()),
                    Value::List(vec![
                        Value::Int(1),
                        Value::Int(-2),
                        Value::Int(300),
                        Value::Int(70000)
                    ])
                ),
                (
                    Value::Bytes(b"b".to_vec()),
                    Value::Tuple(vec![Value::Bool(true), Value::None, Value::Float(1.5)])
                ),
            ])
        );
        assert!(Unpickler::new(b"\x80\x02}q\x00(").run().is_err());
        assert!(Unpickler::new(b"\x80\x02\xff").run().is_err());
    }

    /// The bytes of numpy 2.4's `pickle.dumps({b'data': a, b'labels': [3, 7]}, protocol=5)`
    /// for `a = (np.arange(2 * 3072) % 251).astype(np.uint8).reshape(2, 3072)`.
    fn protocol5_batch() -> Vec<u8> {
        let mut p = b"\x80\x05\x95\x93\x18\x00\x00\x00\x00\x00\x00}\x94(C\x04data\x94\x8c\x13numpy._core.numeric\x94\x8c\x0b_frombuffer\x94\x93\x94(".to_vec();
        p.extend_from_slice(b"\x96\x00\x18\x00\x00\x00\x00\x00\x00");
        p.extend((0..2 * 3072).map(|i| (i % 251) as u8));
        p.extend_from_slice(b"\x94\x8c\x05numpy\x94\x8c\x05dtype\x94\x93\x94\x8c\x02u1\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01|\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94bK\x02M\x00\x0c\x86\x94\x8c\x01C\x94t\x94R\x94C\x06labels\x94]\x94(K\x03K\x07eu.");
        p
    }

    #[test]
    fn reads_a_protocol_5_batch_written_by_numpy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data_batch_1");
        std::fs::write(&path, protocol5_batch()).unwrap();
        let split = read_py_batch(&path).unwrap();
        assert_eq!(split.labels, [3, 7]);
        assert_eq!(split.len(), 2);
        assert_eq!(split.image(1)[0], (3072 % 251) as u8);
        assert_eq!(split.pixels.len(), 2 * 3072);
        // Fortran order is refused, as with _reconstruct.
        let mut fortran = protocol5_batch();
        let at = fortran.len() - 27;
        assert_eq!(&fortran[at..at + 3], b"\x8c\x01C");
        fortran[at + 2] = b'F';
        std::fs::write(&path, fortran).unwrap();
        let err = read_py_batch(&path).unwrap_err().to_string();
        assert!(err.contains("Fortran order"), "{err}");
    }

    #[test]
    fn out_of_band_buffers_are_refused_with_a_clear_message() {
        for (op, name) in [(0x97u8, "NEXT_BUFFER"), (0x98, "READONLY_BUFFER")] {
            let err = Unpickler::new(&[0x80, 0x05, op, b'.']).run().unwrap_err();
            assert!(err.contains(name), "{err}");
            assert!(err.contains("out-of-band buffer"), "{err}");
            assert!(err.contains("without buffer_callback"), "{err}");
        }
    }
}
