//! NumPy `.npz` (zip of `.npy`) and `.npy` reading, for `memad metrics`.
//!
//! `.npy`: format versions 1-3, C order, little-endian `b1 i1 i2 i4 i8 u1 u2 u4 u8 f2 f4 f8`,
//! unicode `<U*` and byte `|S*` strings (trailing NULs stripped, as NumPy does). Zip:
//! stored or deflated entries (`flate2`), zip64 sizes and offsets, CRC-32 checked. Arrays
//! are converted while they stream in, to the type the caller asks for, so an array costs
//! its converted size only.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, ensure, Context, Result};

use flate2::read::DeflateDecoder;
use flate2::Crc;

/// A NumPy element type this reader understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    Bool,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    F16,
    F32,
    F64,
    /// `<U n`: `n` UCS-4 code points.
    Unicode(usize),
    /// `|S n`: `n` bytes.
    Bytes(usize),
}

impl Dtype {
    /// Parses a `descr` such as `<f4`, `|b1`, `<U12`.
    pub fn parse(descr: &str) -> Result<Dtype> {
        let unsupported = || {
            anyhow!(
                "unsupported dtype '{descr}' (supported: bool, int8-64, uint8-64, \
                 float16/32/64 little-endian, unicode and byte strings)"
            )
        };
        let (order, kind) = match descr.as_bytes() {
            [o, k, ..] => (*o, *k),
            _ => return Err(unsupported()),
        };
        if kind == b'O' {
            bail!(
                "unsupported dtype '{descr}' (Python objects; save strings as \
                 np.array(names, dtype=str))"
            );
        }
        let n: usize = descr[2..].parse().map_err(|_| unsupported())?;
        let dtype = match (kind, n) {
            (b'b', 1) => Dtype::Bool,
            (b'i', 1) => Dtype::I8,
            (b'i', 2) => Dtype::I16,
            (b'i', 4) => Dtype::I32,
            (b'i', 8) => Dtype::I64,
            (b'u', 1) => Dtype::U8,
            (b'u', 2) => Dtype::U16,
            (b'u', 4) => Dtype::U32,
            (b'u', 8) => Dtype::U64,
            (b'f', 2) => Dtype::F16,
            (b'f', 4) => Dtype::F32,
            (b'f', 8) => Dtype::F64,
            (b'U', n) if n > 0 => Dtype::Unicode(n),
            (b'S', n) if n > 0 => Dtype::Bytes(n),
            _ => return Err(unsupported()),
        };
        let single_bytes = dtype.size() == 1 || matches!(dtype, Dtype::Bytes(_));
        match order {
            b'<' | b'|' | b'=' => Ok(dtype),
            b'>' if single_bytes => Ok(dtype),
            b'>' => bail!("unsupported dtype '{descr}' (big-endian; save little-endian)"),
            _ => Err(unsupported()),
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::Bool | Dtype::I8 | Dtype::U8 => 1,
            Dtype::I16 | Dtype::U16 | Dtype::F16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::I64 | Dtype::U64 | Dtype::F64 => 8,
            Dtype::Unicode(n) => 4 * n,
            Dtype::Bytes(n) => n,
        }
    }

    fn is_text(self) -> bool {
        matches!(self, Dtype::Unicode(_) | Dtype::Bytes(_))
    }

    fn is_float(self) -> bool {
        matches!(self, Dtype::F16 | Dtype::F32 | Dtype::F64)
    }
}

/// NumPy's names: `bool`, `int8` ... `float64`, `<U6`, `|S2`.
impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Dtype::Bool => "bool",
            Dtype::I8 => "int8",
            Dtype::I16 => "int16",
            Dtype::I32 => "int32",
            Dtype::I64 => "int64",
            Dtype::U8 => "uint8",
            Dtype::U16 => "uint16",
            Dtype::U32 => "uint32",
            Dtype::U64 => "uint64",
            Dtype::F16 => "float16",
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
            Dtype::Unicode(n) => return write!(f, "<U{n}"),
            Dtype::Bytes(n) => return write!(f, "|S{n}"),
        };
        f.write_str(name)
    }
}

/// A decoded array: its shape (C order) and elements.
#[derive(Debug, Clone, PartialEq)]
pub struct Array<T> {
    pub shape: Vec<usize>,
    pub dtype: Dtype,
    pub data: Vec<T>,
}

/// A type `.npy` elements convert to.
pub trait Element: Sized {
    /// What is expected, for errors ("numbers").
    const EXPECTED: &'static str;
    /// Whether elements of `dtype` convert to `Self`.
    fn accepts(dtype: Dtype) -> bool;
    /// Appends the elements in `bytes`, a whole number of `dtype` items.
    fn extend(out: &mut Vec<Self>, dtype: Dtype, bytes: &[u8]);
}

/// Conversions from the numeric dtypes.
trait FromNumber {
    fn from_f32(x: f32) -> Self;
    fn from_f64(x: f64) -> Self;
    fn from_i64(x: i64) -> Self;
    fn from_u64(x: u64) -> Self;
}

/// Numbers as `f32` (`f64` and 64-bit integers rounded).
impl FromNumber for f32 {
    fn from_f32(x: f32) -> Self {
        x
    }
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn from_i64(x: i64) -> Self {
        x as f32
    }
    fn from_u64(x: u64) -> Self {
        x as f32
    }
}

/// Numbers as `f64` (exact, but for 64-bit integers beyond 2^53).
impl FromNumber for f64 {
    fn from_f32(x: f32) -> Self {
        x.into()
    }
    fn from_f64(x: f64) -> Self {
        x
    }
    fn from_i64(x: i64) -> Self {
        x as f64
    }
    fn from_u64(x: u64) -> Self {
        x as f64
    }
}

/// `f16` bits to `f32` (exact).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let frac = u32::from(h & 0x3ff);
    let bits = match exp {
        0 if frac == 0 => sign,
        0 => {
            // Subnormal: frac * 2^-24, exact in f32.
            let v = frac as f32 / 16_777_216.0;
            return if sign == 0 { v } else { -v };
        }
        0x1f => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 112) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

fn extend_numbers<T: FromNumber>(out: &mut Vec<T>, dtype: Dtype, bytes: &[u8]) {
    macro_rules! le {
        ($t:ty, $conv:expr) => {
            out.extend(
                bytes
                    .chunks_exact(std::mem::size_of::<$t>())
                    .map(|b| $conv(<$t>::from_le_bytes(b.try_into().unwrap()))),
            )
        };
    }
    match dtype {
        Dtype::Bool | Dtype::U8 => out.extend(bytes.iter().map(|&b| T::from_u64(b.into()))),
        Dtype::I8 => out.extend(bytes.iter().map(|&b| T::from_i64((b as i8).into()))),
        Dtype::I16 => le!(i16, |x: i16| T::from_i64(x.into())),
        Dtype::I32 => le!(i32, |x: i32| T::from_i64(x.into())),
        Dtype::I64 => le!(i64, T::from_i64),
        Dtype::U16 => le!(u16, |x: u16| T::from_u64(x.into())),
        Dtype::U32 => le!(u32, |x: u32| T::from_u64(x.into())),
        Dtype::U64 => le!(u64, T::from_u64),
        Dtype::F16 => le!(u16, |x: u16| T::from_f32(f16_to_f32(x))),
        Dtype::F32 => le!(f32, T::from_f32),
        Dtype::F64 => le!(f64, T::from_f64),
        Dtype::Unicode(_) | Dtype::Bytes(_) => {} // excluded by `accepts`
    }
}

/// `f32` and `f64`: any numeric dtype.
macro_rules! float_element {
    ($($t:ty),*) => {$(
        impl Element for $t {
            const EXPECTED: &'static str = "numbers";
            fn accepts(dtype: Dtype) -> bool {
                !dtype.is_text()
            }
            fn extend(out: &mut Vec<Self>, dtype: Dtype, bytes: &[u8]) {
                extend_numbers(out, dtype, bytes)
            }
        }
    )*};
}
float_element!(f32, f64);

/// A mask pixel: 0 is normal, 1 or 255 anomalous (booleans, 0/1 and 0/255 masks); any other
/// value (a soft mask's, NaN) is `Other`, for the caller to refuse by position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskPixel {
    Normal,
    Anomalous,
    Other,
}

impl FromNumber for MaskPixel {
    fn from_f32(x: f32) -> Self {
        Self::from_f64(x.into())
    }
    fn from_f64(x: f64) -> Self {
        if x == 0.0 {
            MaskPixel::Normal
        } else if x == 1.0 || x == 255.0 {
            MaskPixel::Anomalous
        } else {
            MaskPixel::Other
        }
    }
    fn from_i64(x: i64) -> Self {
        Self::from_f64(x as f64)
    }
    fn from_u64(x: u64) -> Self {
        Self::from_f64(x as f64)
    }
}

impl Element for MaskPixel {
    const EXPECTED: &'static str = "numbers or booleans";
    fn accepts(dtype: Dtype) -> bool {
        !dtype.is_text()
    }
    fn extend(out: &mut Vec<Self>, dtype: Dtype, bytes: &[u8]) {
        extend_numbers(out, dtype, bytes)
    }
}

/// A category name: an integer or a string (integers sort numerically).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    Int(i128),
    Text(String),
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Category::Int(i) => write!(f, "{i}"),
            Category::Text(s) => f.write_str(s),
        }
    }
}

impl FromNumber for Category {
    fn from_f32(x: f32) -> Self {
        Category::Int(x as i128) // floats are excluded by `accepts`
    }
    fn from_f64(x: f64) -> Self {
        Category::Int(x as i128)
    }
    fn from_i64(x: i64) -> Self {
        Category::Int(x.into())
    }
    fn from_u64(x: u64) -> Self {
        Category::Int(x.into())
    }
}

impl Element for Category {
    const EXPECTED: &'static str = "strings or integers";
    fn accepts(dtype: Dtype) -> bool {
        !dtype.is_float()
    }
    fn extend(out: &mut Vec<Self>, dtype: Dtype, bytes: &[u8]) {
        match dtype {
            Dtype::Unicode(_) => out.extend(bytes.chunks_exact(dtype.size()).map(|item| {
                let chars = item
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes(c.try_into().unwrap()));
                let text: String = chars
                    .map(|c| char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER))
                    .collect();
                Category::Text(text.trim_end_matches('\0').to_string())
            })),
            Dtype::Bytes(_) => out.extend(bytes.chunks_exact(dtype.size()).map(|item| {
                let end = item.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
                Category::Text(String::from_utf8_lossy(&item[..end]).into_owned())
            })),
            _ => extend_numbers(out, dtype, bytes),
        }
    }
}

const MAGIC: &[u8] = b"\x93NUMPY";
/// Longest `.npy` header accepted.
const MAX_HEADER: usize = 1 << 20;

/// Bytes of the whole header that `buf` (its start) announces; while too short to
/// tell, the bytes needed to know more.
fn header_need(buf: &[u8]) -> Result<usize> {
    if buf.len() < 8 {
        return Ok(8);
    }
    ensure!(
        buf.starts_with(MAGIC),
        "not a .npy array (no \\x93NUMPY magic)"
    );
    let prefix = match buf[6] {
        1 => 10,
        2 | 3 => 12,
        v => bail!(".npy format version {v} is not supported (1 to 3 are)"),
    };
    if buf.len() < prefix {
        return Ok(prefix);
    }
    let len = if prefix == 10 {
        usize::from(u16::from_le_bytes([buf[8], buf[9]]))
    } else {
        u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize
    };
    ensure!(len <= MAX_HEADER, ".npy header of {len} bytes is too long");
    Ok(prefix + len)
}

/// A Python literal of a `.npy` header.
#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Str(String),
    Bool(bool),
    Int(u64),
    Tuple(Vec<Lit>),
    /// Anything else (a list, e.g. a structured dtype), as written.
    Other(String),
}

/// A parser of the header's Python dict literal.
struct Literal<'a> {
    s: &'a str,
    pos: usize,
}

impl Literal<'_> {
    fn peek(&mut self) -> Option<u8> {
        let rest = &self.s[self.pos..];
        self.pos += rest.len() - rest.trim_start().len();
        self.s.as_bytes().get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> Result<()> {
        ensure!(
            self.peek() == Some(c),
            "expected '{}' at byte {} of the .npy header {:?}",
            c as char,
            self.pos,
            self.s
        );
        self.pos += 1;
        Ok(())
    }

    fn value(&mut self) -> Result<Lit> {
        let start = self.pos;
        match self.peek() {
            Some(q @ (b'\'' | b'"')) => {
                let body = &self.s[self.pos + 1..];
                let end = body
                    .bytes()
                    .position(|b| b == q)
                    .with_context(|| format!("unterminated string in {:?}", self.s))?;
                self.pos += end + 2;
                Ok(Lit::Str(body[..end].to_string()))
            }
            Some(open @ (b'(' | b'[')) => {
                let close = if open == b'(' { b')' } else { b']' };
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek() != Some(close) {
                    items.push(self.value()?);
                    if self.peek() == Some(b',') {
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
                self.expect(close)?;
                Ok(if open == b'(' {
                    Lit::Tuple(items)
                } else {
                    Lit::Other(self.s[start..self.pos].to_string())
                })
            }
            Some(b'0'..=b'9') => {
                let rest = &self.s[self.pos..];
                let end = rest
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len());
                self.pos += end;
                if self.s[self.pos..].starts_with('L') {
                    self.pos += 1; // Python 2 long
                }
                Ok(Lit::Int(rest[..end].parse()?))
            }
            _ => {
                for (word, v) in [("True", true), ("False", false)] {
                    if self.s[self.pos..].starts_with(word) {
                        self.pos += word.len();
                        return Ok(Lit::Bool(v));
                    }
                }
                bail!("unexpected value at byte {} of {:?}", self.pos, self.s)
            }
        }
    }

    /// The `{key: value, ...}` dict.
    fn dict(&mut self) -> Result<Vec<(String, Lit)>> {
        self.expect(b'{')?;
        let mut items = Vec::new();
        while self.peek() != Some(b'}') {
            let Lit::Str(key) = self.value()? else {
                bail!("non-string key in the .npy header {:?}", self.s);
            };
            self.expect(b':')?;
            items.push((key, self.value()?));
            if self.peek() == Some(b',') {
                self.pos += 1;
            } else {
                break;
            }
        }
        self.expect(b'}')?;
        Ok(items)
    }
}

/// Dtype and shape from a `.npy` header dict such as
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`.
pub fn parse_header(text: &str) -> Result<(Dtype, Vec<usize>)> {
    let items = Literal { s: text, pos: 0 }.dict()?;
    let get = |key: &str| {
        items
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .with_context(|| format!("the .npy header {text:?} has no '{key}'"))
    };
    let dtype = match get("descr")? {
        Lit::Str(d) => Dtype::parse(d)?,
        Lit::Other(raw) => {
            bail!("unsupported dtype {raw} (structured arrays are not supported)")
        }
        other => bail!("unsupported dtype {other:?}"),
    };
    match get("fortran_order")? {
        Lit::Bool(false) => {}
        Lit::Bool(true) => {
            bail!("Fortran-order arrays are not supported; save np.ascontiguousarray(a) instead")
        }
        other => bail!("bad fortran_order {other:?}"),
    }
    let Lit::Tuple(dims) = get("shape")? else {
        bail!("bad shape in the .npy header {text:?}");
    };
    let shape = dims
        .iter()
        .map(|d| match d {
            Lit::Int(n) => usize::try_from(*n).map_err(|_| anyhow!("dimension {n} too large")),
            _ => bail!("bad shape in the .npy header {text:?}"),
        })
        .collect::<Result<Vec<usize>>>()?;
    Ok((dtype, shape))
}

/// A `.npy` decoder fed its bytes in pieces of any size.
pub struct Decoder<T> {
    header: Vec<u8>,
    /// Dtype, shape, element count, once the header is read.
    layout: Option<(Dtype, Vec<usize>, usize)>,
    /// Bytes of a partial element.
    carry: Vec<u8>,
    data: Vec<T>,
    /// Size of the whole `.npy`, if known (checked against the header).
    total: Option<u64>,
}

impl<T: Element> Decoder<T> {
    /// A decoder for a `.npy` of `total` bytes, if known.
    pub fn new(total: Option<u64>) -> Self {
        Decoder {
            header: Vec::new(),
            layout: None,
            carry: Vec::new(),
            data: Vec::new(),
            total,
        }
    }

    /// Consumes the next bytes.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<()> {
        while self.layout.is_none() {
            let need = header_need(&self.header)?;
            if self.header.len() >= need {
                self.start_data(need)?;
                break;
            }
            let take = (need - self.header.len()).min(bytes.len());
            if take == 0 {
                return Ok(());
            }
            self.header.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        let Some((dtype, _, count)) = &self.layout else {
            unreachable!("the loop above sets the layout")
        };
        let (dtype, count, item) = (*dtype, *count, dtype.size());
        let arrived = (self.carry.len() + bytes.len()) / item;
        ensure!(
            self.data.len() + arrived <= count,
            "more data than the shape announces"
        );
        if !self.carry.is_empty() {
            let take = (item - self.carry.len()).min(bytes.len());
            self.carry.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.carry.len() < item {
                return Ok(());
            }
            T::extend(&mut self.data, dtype, &self.carry);
            self.carry.clear();
        }
        let whole = bytes.len() / item * item;
        T::extend(&mut self.data, dtype, &bytes[..whole]);
        self.carry.extend_from_slice(&bytes[whole..]);
        Ok(())
    }

    fn start_data(&mut self, header_len: usize) -> Result<()> {
        let prefix = if self.header[6] == 1 { 10 } else { 12 };
        let text = std::str::from_utf8(&self.header[prefix..header_len])
            .context("the .npy header is not text")?;
        let (dtype, shape) = parse_header(text)?;
        ensure!(
            T::accepts(dtype),
            "unsupported dtype {dtype} here ({} expected)",
            T::EXPECTED
        );
        let too_many = || format!("shape {shape:?} has too many elements");
        let count = (shape.iter())
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .with_context(too_many)?;
        // The whole `.npy`'s size.
        let announced = (count.checked_mul(dtype.size()))
            .and_then(|b| b.checked_add(header_len))
            .with_context(too_many)?;
        if let Some(total) = self.total {
            ensure!(
                announced as u64 == total,
                "the .npy holds {total} bytes but its header announces {announced} ({dtype} x \
                 {shape:?})"
            );
        }
        self.data.reserve_exact(count);
        self.layout = Some((dtype, shape, count));
        Ok(())
    }

    /// The array, once every byte has been fed.
    pub fn finish(self) -> Result<Array<T>> {
        let Some((dtype, shape, count)) = self.layout else {
            bail!("truncated .npy: incomplete header");
        };
        ensure!(
            self.data.len() == count && self.carry.is_empty(),
            "truncated .npy: shape {shape:?} needs {count} elements, got {}",
            self.data.len()
        );
        Ok(Array {
            shape,
            dtype,
            data: self.data,
        })
    }
}

/// Decodes a whole `.npy` held in memory.
#[cfg(test)]
pub fn parse_npy<T: Element>(bytes: &[u8]) -> Result<Array<T>> {
    let mut d = Decoder::new(Some(bytes.len() as u64));
    d.feed(bytes)?;
    d.finish()
}

/// One member of the zip archive.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    flags: u16,
    method: u16,
    crc: u32,
    compressed: u64,
    size: u64,
    offset: u64,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// An open `.npz` file.
pub struct Npz {
    path: PathBuf,
    file: File,
    entries: Vec<Entry>,
}

impl Npz {
    /// Opens `path` and reads its zip directory.
    pub fn open(path: &Path) -> Result<Npz> {
        let inner = || -> Result<Npz> {
            let mut file = File::open(path)?;
            let entries = read_directory(&mut file)?;
            // Two members for one array: which one is read is the reader's choice (NumPy
            // takes the last copy, or `x` over `x.npy`), so refuse rather than pick.
            let mut seen = HashMap::new();
            for e in &entries {
                let key = e.name.strip_suffix(".npy").unwrap_or(&e.name);
                match seen.insert(key, &e.name) {
                    Some(first) if *first == e.name => bail!(
                        "zip member `{first}` appears more than once (NumPy reads the last \
                         copy): write the file again with one copy of each array"
                    ),
                    Some(first) => bail!(
                        "zip members `{first}` and `{}` both hold array `{key}`: write the file \
                         again with one of them",
                        e.name
                    ),
                    None => {}
                }
            }
            Ok(Npz {
                path: path.to_path_buf(),
                file,
                entries,
            })
        };
        inner().with_context(|| format!("reading {}", path.display()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The array names (member names without `.npy`).
    pub fn keys(&self) -> Vec<&str> {
        self.entries
            .iter()
            .map(|e| e.name.strip_suffix(".npy").unwrap_or(&e.name))
            .collect()
    }

    fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.name.strip_suffix(".npy") == Some(key))
            .or_else(|| self.entries.iter().find(|e| e.name == key))
    }

    /// Whether the archive holds array `key`.
    pub fn has(&self, key: &str) -> bool {
        self.entry(key).is_some()
    }

    /// Array `key` converted to `T`, `None` if absent.
    pub fn get<T: Element>(&mut self, key: &str) -> Result<Option<Array<T>>> {
        let Some(entry) = self.entry(key).cloned() else {
            return Ok(None);
        };
        let mut read = || -> Result<Array<T>> {
            let mut decoder = Decoder::new(Some(entry.size));
            self.read_entry(&entry, &mut |b| decoder.feed(b))?;
            decoder.finish()
        };
        read()
            .map(Some)
            .with_context(|| format!("{}: array `{key}`", self.path.display()))
    }

    /// The dtype of array `key`, from its `.npy` header alone; `None` if absent.
    pub fn dtype(&mut self, key: &str) -> Result<Option<Dtype>> {
        let Some(entry) = self.entry(key).cloned() else {
            return Ok(None);
        };
        let (mut header, mut dtype) = (Vec::new(), None);
        // The sink stops the reading (with an error) once the header is in.
        let read = self.read_entry(&entry, &mut |bytes| {
            header.extend_from_slice(bytes);
            let need = header_need(&header)?;
            if header.len() < need {
                return Ok(());
            }
            let prefix = if header[6] == 1 { 10 } else { 12 };
            let text = std::str::from_utf8(&header[prefix..need])
                .context("the .npy header is not text")?;
            dtype = Some(parse_header(text)?.0);
            bail!("header read")
        });
        match (dtype, read) {
            (Some(d), _) => Ok(Some(d)),
            (None, Err(e)) => Err(e),
            (None, Ok(())) => Err(anyhow!("truncated .npy: incomplete header")),
        }
        .with_context(|| format!("{}: array `{key}`", self.path.display()))
    }

    /// Array `key` converted to `T`; an error naming the keys present if absent.
    pub fn require<T: Element>(&mut self, key: &str) -> Result<Array<T>> {
        if let Some(a) = self.get(key)? {
            return Ok(a);
        }
        let keys: Vec<String> = self.keys().into_iter().map(String::from).collect();
        bail!(
            "{}: no array `{key}`{}; it holds: {}",
            self.path.display(),
            memad_data::did_you_mean(key, &keys),
            match keys.join(", ") {
                k if k.is_empty() => "nothing".to_string(),
                k => k,
            }
        )
    }

    /// Streams the uncompressed bytes of `e` into `sink`, checking size and CRC-32.
    fn read_entry(&mut self, e: &Entry, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        ensure!(e.flags & 1 == 0, "encrypted zip members are not supported");
        let mut local = [0u8; 30];
        self.file.seek(SeekFrom::Start(e.offset))?;
        self.file.read_exact(&mut local)?;
        ensure!(local.starts_with(b"PK\x03\x04"), "bad zip local header");
        let skip = u64::from(u16_at(&local, 26)) + u64::from(u16_at(&local, 28));
        self.file.seek(SeekFrom::Current(skip as i64))?;
        let stored = (&self.file).take(e.compressed);
        let mut src: Box<dyn Read + '_> = match e.method {
            0 => Box::new(stored),
            8 => Box::new(DeflateDecoder::new(stored)),
            m => bail!("zip compression method {m} is not supported (stored and deflate are)"),
        };
        let (mut crc, mut size) = (Crc::new(), 0u64);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err).with_context(|| format!("zip member {}", e.name)),
            };
            crc.update(&buf[..n]);
            size += n as u64;
            sink(&buf[..n])?;
        }
        ensure!(
            size == e.size,
            "zip member {} holds {size} bytes, its directory says {}",
            e.name,
            e.size
        );
        ensure!(
            crc.sum() == e.crc,
            "zip member {} fails its CRC check: the file is corrupt",
            e.name
        );
        Ok(())
    }
}

/// The central directory of the zip `file`.
fn read_directory(file: &mut File) -> Result<Vec<Entry>> {
    let len = file.seek(SeekFrom::End(0))?;
    let tail_len = len.min(22 + 65535 + 20);
    let mut tail = vec![0u8; tail_len as usize];
    file.seek(SeekFrom::Start(len - tail_len))?;
    file.read_exact(&mut tail)?;
    let eocd = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&p| tail[p..].starts_with(b"PK\x05\x06"))
        .context("not a zip (.npz) file: no end-of-directory record")?;
    let (mut count, mut cd_size, mut cd_offset) = (
        u64::from(u16_at(&tail, eocd + 10)),
        u64::from(u32_at(&tail, eocd + 12)),
        u64::from(u32_at(&tail, eocd + 16)),
    );
    if count == 0xffff || cd_size == 0xffff_ffff || cd_offset == 0xffff_ffff {
        let locator = eocd
            .checked_sub(20)
            .filter(|&l| tail[l..].starts_with(b"PK\x06\x07"))
            .context("zip64 archive without its locator")?;
        let mut record = [0u8; 56];
        file.seek(SeekFrom::Start(u64_at(&tail, locator + 8)))?;
        file.read_exact(&mut record)?;
        ensure!(
            record.starts_with(b"PK\x06\x06"),
            "bad zip64 directory record"
        );
        (count, cd_size, cd_offset) = (
            u64_at(&record, 32),
            u64_at(&record, 40),
            u64_at(&record, 48),
        );
    }
    ensure!(
        cd_offset.checked_add(cd_size).is_some_and(|end| end <= len) && cd_size < 1 << 30,
        "corrupt zip directory"
    );
    let mut cd = vec![0u8; cd_size as usize];
    file.seek(SeekFrom::Start(cd_offset))?;
    file.read_exact(&mut cd)?;
    let mut entries = Vec::new();
    let mut p = 0;
    for _ in 0..count {
        ensure!(
            cd.len() >= p + 46 && cd[p..].starts_with(b"PK\x01\x02"),
            "corrupt zip directory"
        );
        let name_len = usize::from(u16_at(&cd, p + 28));
        let extra_len = usize::from(u16_at(&cd, p + 30));
        let comment_len = usize::from(u16_at(&cd, p + 32));
        let end = p + 46 + name_len + extra_len + comment_len;
        ensure!(cd.len() >= end, "corrupt zip directory");
        let mut entry = Entry {
            name: String::from_utf8_lossy(&cd[p + 46..p + 46 + name_len]).into_owned(),
            flags: u16_at(&cd, p + 8),
            method: u16_at(&cd, p + 10),
            crc: u32_at(&cd, p + 16),
            compressed: u32_at(&cd, p + 20).into(),
            size: u32_at(&cd, p + 24).into(),
            offset: u32_at(&cd, p + 42).into(),
        };
        // The zip64 extra field holds, in order, those of the three that overflowed.
        let mut extra = &cd[p + 46 + name_len..p + 46 + name_len + extra_len];
        while extra.len() >= 4 {
            let (id, n) = (u16_at(extra, 0), usize::from(u16_at(extra, 2)));
            let data = extra.get(4..4 + n).context("corrupt zip extra field")?;
            if id == 1 {
                let mut values = data.chunks_exact(8).map(|c| u64_at(c, 0));
                for field in [&mut entry.size, &mut entry.compressed, &mut entry.offset] {
                    if *field == 0xffff_ffff {
                        *field = values.next().context("corrupt zip64 extra field")?;
                    }
                }
            }
            extra = &extra[4 + n..];
        }
        entries.push(entry);
        p = end;
    }
    Ok(entries)
}

/// `.npy` and `.npz` files built byte by byte, for the tests here and in `metrics_cmd`.
#[cfg(test)]
pub(crate) mod test_files {
    use std::path::{Path, PathBuf};

    /// A version-1 `.npy` as NumPy writes it (header padded to a multiple of 64 bytes).
    pub(crate) fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    pub(crate) fn f32_npy(shape: &str, values: &[f32]) -> Vec<u8> {
        npy(
            "<f4",
            shape,
            &le_bytes(values.iter().map(|v| v.to_le_bytes())),
        )
    }

    pub(crate) fn le_bytes<const K: usize>(items: impl Iterator<Item = [u8; K]>) -> Vec<u8> {
        items.flatten().collect()
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = flate2::Crc::new();
        crc.update(bytes);
        crc.sum()
    }

    /// A zip of stored members; with `zip64`, sizes and offsets are in zip64 fields.
    pub(crate) fn zip(members: &[(&str, Vec<u8>)], zip64: bool) -> Vec<u8> {
        let (mut out, mut central) = (Vec::new(), Vec::new());
        for (name, data) in members {
            let offset = out.len() as u32;
            let (crc, size) = (crc32(data), data.len() as u32);
            out.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00");
            for v in [crc, size, size] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(data);
            central
                .extend_from_slice(b"PK\x01\x02\x14\x00\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00");
            let big = |v: u32| if zip64 { u32::MAX } else { v };
            for v in [crc, big(size), big(size)] {
                central.extend_from_slice(&v.to_le_bytes());
            }
            let extra_len: u16 = if zip64 { 28 } else { 0 };
            for v in [name.len() as u16, extra_len, 0, 0, 0, 0, 0] {
                central.extend_from_slice(&v.to_le_bytes());
            }
            central.extend_from_slice(&big(offset).to_le_bytes());
            central.extend_from_slice(name.as_bytes());
            if zip64 {
                central.extend_from_slice(&[1, 0, 24, 0]);
                for v in [size as u64, size as u64, offset as u64] {
                    central.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        let (cd_offset, cd_size) = (out.len(), central.len());
        out.extend_from_slice(&central);
        let n = members.len() as u16;
        if zip64 {
            let record = out.len() as u64;
            out.extend_from_slice(b"PK\x06\x06");
            out.extend_from_slice(&44u64.to_le_bytes());
            out.extend_from_slice(&[45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            for v in [n as u64, n as u64, cd_size as u64, cd_offset as u64] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(b"PK\x06\x07\x00\x00\x00\x00");
            out.extend_from_slice(&record.to_le_bytes());
            out.extend_from_slice(&1u32.to_le_bytes());
        }
        out.extend_from_slice(b"PK\x05\x06\x00\x00\x00\x00");
        let (count, size, offset) = if zip64 {
            (u16::MAX, u32::MAX, u32::MAX)
        } else {
            (n, cd_size as u32, cd_offset as u32)
        };
        for v in [count, count] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out
    }

    pub(crate) fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    pub(crate) fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_files::{f32_npy, le_bytes, npy, unhex, write, zip};
    use super::*;

    /// `np.savez_compressed`: `image_scores` (f8), `categories` (<U6), `masks` (bool [4,2,3]).
    const NPZ_DEFLATED: &str = concat!(
        "504b03042d0000000800000021007c548acfffffffffffffffff10001400696d6167655f73636f72",
        "65732e6e707901001000a00000000000000057000000000000009bec17ea1b10c9c850c650ad9e92",
        "5a9c5ca46ea5a06e9366a1aea3a09e965f54529498179f5f94920a12774bcc294e058a17672416a4",
        "02f91a263a9a3a0ab50a1400ae59334160a7fdd93320f0c61ec2bf09a55fda0300504b03042d0000",
        "000800000021001134c06fffffffffffffffff0e00140063617465676f726965732e6e7079010010",
        "00e00000000000000060000000000000009bec17ea1b10c9c850c650ad9e925a9c5ca46ea5a06e13",
        "6aa6aea3a09e965f54529498179f5f94920a12774bcc294e058a17672416a402f91a263a9a3a0ab5",
        "0a1400ae6206068664202e02e254202e6780802420ce07e21228ce81ca93aa1e00504b03042d0000",
        "0008000000210052dc8749ffffffffffffffff090014006d61736b732e6e70790100100098000000",
        "0000000052000000000000009bec17ea1b10c9c850c650ad9e925a9c5ca46ea5a05e9364a8aea3a0",
        "9e965f54529498179f5f94920a12774bcc294e058a17672416a402f91a263a0a463a0ac69a3a0ab5",
        "0ae4012e06086064648001080b00504b01022d032d0000000800000021007c548acf57000000a000",
        "0000100000000000000000000000800100000000696d6167655f73636f7265732e6e7079504b0102",
        "2d032d0000000800000021001134c06f60000000e00000000e000000000000000000000080019900",
        "000063617465676f726965732e6e7079504b01022d032d00000008000000210052dc874952000000",
        "980000000900000000000000000000008001390100006d61736b732e6e7079504b05060000000003",
        "000300b1000000c60100000000",
    );
    /// `np.savez`: `x = arange(3, dtype=int16)`, `s = [b"ab", b"c"]` (|S2).
    const NPZ_STORED: &str = concat!(
        "504b03042d0000000000000021006acff251ffffffffffffffff05001400782e6e70790100100086",
        "000000000000008600000000000000934e554d5059010076007b276465736372273a20273c693227",
        "2c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028332c292c",
        "207d2020202020202020202020202020202020202020202020202020202020202020202020202020",
        "202020202020202020202020202020202020202020200a000001000200504b03042d000000000000",
        "002100b635f1d7ffffffffffffffff05001400732e6e707901001000840000000000000084000000",
        "00000000934e554d5059010076007b276465736372273a20277c5332272c2027666f727472616e5f",
        "6f72646572273a2046616c73652c20277368617065273a2028322c292c207d202020202020202020",
        "20202020202020202020202020202020202020202020202020202020202020202020202020202020",
        "20202020202020202020200a61626300504b01022d032d0000000000000021006acff25186000000",
        "86000000050000000000000000000000800100000000782e6e7079504b01022d032d000000000000",
        "002100b635f1d784000000840000000500000000000000000000008001bd000000732e6e7079504b",
        "0506000000000200020066000000780100000000",
    );
    #[test]
    fn parses_dtypes_and_names_unsupported_ones() {
        let ok = [
            ("|b1", Dtype::Bool),
            ("|i1", Dtype::I8),
            ("<i2", Dtype::I16),
            ("<i4", Dtype::I32),
            ("<i8", Dtype::I64),
            ("|u1", Dtype::U8),
            ("<u2", Dtype::U16),
            ("<u4", Dtype::U32),
            ("<u8", Dtype::U64),
            ("<f2", Dtype::F16),
            ("<f4", Dtype::F32),
            ("<f8", Dtype::F64),
            ("<U7", Dtype::Unicode(7)),
            ("|S3", Dtype::Bytes(3)),
            (">S3", Dtype::Bytes(3)),
        ];
        for (descr, dtype) in ok {
            assert_eq!(Dtype::parse(descr).unwrap(), dtype, "{descr}");
        }
        assert_eq!(Dtype::Unicode(7).size(), 28);
        assert_eq!(Dtype::F16.to_string(), "float16");
        for descr in ["<c8", "|O", "|O8", "|V8", "<f3", "<U0", "f4", ""] {
            let e = Dtype::parse(descr).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("unsupported dtype '{descr}'")),
                "{e}"
            );
        }
        let e = Dtype::parse(">f4").unwrap_err().to_string();
        assert!(e.contains("'>f4'") && e.contains("big-endian"), "{e}");
    }

    #[test]
    fn parses_headers() {
        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }          \n";
        assert_eq!(parse_header(h).unwrap(), (Dtype::F32, vec![2, 3]));
        let h = "{\"shape\": (3L,), \"fortran_order\": False, \"descr\": \"|b1\"}";
        assert_eq!(parse_header(h).unwrap(), (Dtype::Bool, vec![3]));
        let h = "{'descr': '<i8', 'fortran_order': False, 'shape': ()}";
        assert_eq!(parse_header(h).unwrap(), (Dtype::I64, vec![]));
        let h = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }";
        assert!(parse_header(h).unwrap_err().to_string().contains("Fortran"));
        let h = "{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, 'shape': (2,), }";
        let e = parse_header(h).unwrap_err().to_string();
        assert!(
            e.contains("[('a', '<f4'), ('b', '<i4')]") && e.contains("structured"),
            "{e}"
        );
        let h = "{'descr': '<f4', 'fortran_order': False}";
        assert!(parse_header(h)
            .unwrap_err()
            .to_string()
            .contains("no 'shape'"));
    }

    #[test]
    fn decodes_every_numeric_dtype() {
        let want = [0.0f32, 1.0, 2.0, 100.0];
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("|b1", vec![0, 1, 1, 1]),
            ("|i1", vec![0, 1, 2, 100]),
            ("|u1", vec![0, 1, 2, 100]),
            (
                "<i2",
                le_bytes([0i16, 1, 2, 100].map(i16::to_le_bytes).into_iter()),
            ),
            (
                "<u2",
                le_bytes([0u16, 1, 2, 100].map(u16::to_le_bytes).into_iter()),
            ),
            (
                "<i4",
                le_bytes([0i32, 1, 2, 100].map(i32::to_le_bytes).into_iter()),
            ),
            (
                "<u4",
                le_bytes([0u32, 1, 2, 100].map(u32::to_le_bytes).into_iter()),
            ),
            (
                "<i8",
                le_bytes([0i64, 1, 2, 100].map(i64::to_le_bytes).into_iter()),
            ),
            (
                "<u8",
                le_bytes([0u64, 1, 2, 100].map(u64::to_le_bytes).into_iter()),
            ),
            (
                "<f2",
                le_bytes(
                    [0u16, 0x3c00, 0x4000, 0x5640]
                        .map(u16::to_le_bytes)
                        .into_iter(),
                ),
            ),
            ("<f4", le_bytes(want.map(f32::to_le_bytes).into_iter())),
            (
                "<f8",
                le_bytes([0f64, 1.0, 2.0, 100.0].map(f64::to_le_bytes).into_iter()),
            ),
        ];
        for (descr, data) in cases {
            let bytes = npy(descr, "(2, 2)", &data);
            let a: Array<f32> = parse_npy(&bytes).unwrap();
            let expect = if descr == "|b1" {
                [0.0, 1.0, 1.0, 1.0]
            } else {
                want
            };
            assert_eq!((a.shape, a.data), (vec![2, 2], expect.to_vec()), "{descr}");
            // 2 and 100 are no mask values; a bool is true whatever its byte.
            let b: Array<MaskPixel> = parse_npy(&bytes).unwrap();
            use MaskPixel::{Anomalous, Normal, Other};
            let mask = match descr {
                "|b1" => [Normal, Anomalous, Anomalous, Anomalous],
                _ => [Normal, Anomalous, Other, Other],
            };
            assert_eq!(b.data, mask, "{descr}");
            // Any split into pieces gives the same array.
            let mut d = Decoder::<f32>::new(None);
            bytes.chunks(3).for_each(|c| d.feed(c).unwrap());
            assert_eq!(d.finish().unwrap().data, expect, "{descr}");
        }
        let negative = npy("|i1", "(2,)", &[0xff, 0x80]);
        assert_eq!(parse_npy::<f32>(&negative).unwrap().data, [-1.0, -128.0]);
    }

    #[test]
    fn decodes_half_floats_exactly() {
        let halves = [
            0x3c00u16, 0xc000, 0x0001, 0x8001, 0x7c00, 0x8000, 0x7bff, 0x3555,
        ];
        let bytes = npy(
            "<f2",
            "(8,)",
            &le_bytes(halves.map(u16::to_le_bytes).into_iter()),
        );
        let got = parse_npy::<f32>(&bytes).unwrap().data;
        let want = [
            1.0,
            -2.0,
            2f32.powi(-24),
            -(2f32.powi(-24)),
            f32::INFINITY,
            -0.0,
            65504.0,
            0.333_251_95,
        ];
        assert_eq!(got, want);
        assert!(got[5].is_sign_negative());
        let nan = npy("<f2", "(1,)", &0x7e00u16.to_le_bytes());
        assert!(parse_npy::<f32>(&nan).unwrap().data[0].is_nan());
    }

    #[test]
    fn decodes_categories_from_strings_and_integers() {
        let mut unicode = Vec::new();
        for s in ["bottle", "ab", "é"] {
            let mut chars: Vec<u32> = s.chars().map(u32::from).collect();
            chars.resize(6, 0);
            unicode.extend(le_bytes(chars.into_iter().map(u32::to_le_bytes)));
        }
        let a: Array<Category> = parse_npy(&npy("<U6", "(3,)", &unicode)).unwrap();
        let text = |s: &str| Category::Text(s.into());
        assert_eq!(a.data, [text("bottle"), text("ab"), text("é")]);
        let a: Array<Category> = parse_npy(&npy("|S3", "(2,)", b"ab\0cde")).unwrap();
        assert_eq!(a.data, [text("ab"), text("cde")]);
        let ints = le_bytes([3i64, -1].map(i64::to_le_bytes).into_iter());
        let a: Array<Category> = parse_npy(&npy("<i8", "(2,)", &ints)).unwrap();
        assert_eq!(a.data, [Category::Int(3), Category::Int(-1)]);
        let e = parse_npy::<Category>(&f32_npy("(1,)", &[1.0])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsupported dtype float32 here (strings or integers expected)"
        );
        let e = parse_npy::<f32>(&npy("|S3", "(2,)", b"ab\0cde")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsupported dtype |S3 here (numbers expected)"
        );
    }

    #[test]
    fn npy_length_errors() {
        let bytes = f32_npy("(3,)", &[1.0, 2.0, 3.0]);
        let e = parse_npy::<f32>(&bytes[..bytes.len() - 2]).unwrap_err();
        assert!(e.to_string().contains("announces"), "{e}");
        let mut d = Decoder::<f32>::new(None);
        d.feed(&bytes[..bytes.len() - 2]).unwrap();
        let e = d.finish().unwrap_err().to_string();
        assert_eq!(e, "truncated .npy: shape [3] needs 3 elements, got 2");
        let mut d = Decoder::<f32>::new(None);
        let e = d.feed(&[bytes.as_slice(), &[0; 4]].concat()).unwrap_err();
        assert_eq!(e.to_string(), "more data than the shape announces");
        let e = parse_npy::<f32>(b"PK\x03\x04 not an npy").unwrap_err();
        assert!(e.to_string().contains("magic"), "{e}");
    }

    #[test]
    fn shapes_with_too_many_elements_are_refused() {
        // 2^40 * 3 * 2^30 * 2^30 elements wrap to 0 in a plain product; 2^62 float32s fit
        // as a count but not as bytes.
        for shape in [
            "(1099511627776, 3, 1073741824, 1073741824)",
            "(4611686018427387904,)",
        ] {
            let e = parse_npy::<f32>(&npy("<f4", shape, &[])).unwrap_err();
            let dims = shape.trim_matches(['(', ')', ',']);
            assert_eq!(
                e.to_string(),
                format!("shape [{dims}] has too many elements"),
                "{shape}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let huge = npy("<f4", "(1099511627776, 3, 1073741824, 1073741824)", &[]);
        let path = write(dir.path(), "huge.npz", &zip(&[("x.npy", huge)], false));
        let e = Npz::open(&path).unwrap().require::<f32>("x").unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            format!(
                "{}: array `x`: shape [1099511627776, 3, 1073741824, 1073741824] has too many \
                 elements",
                path.display()
            )
        );
    }

    #[test]
    fn duplicate_members_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (f32_npy("(2,)", &[0.1, 0.9]), f32_npy("(2,)", &[0.9, 0.1]));
        // NumPy reads the last copy of a member written twice, and `x` over `x.npy`.
        let twice = [
            ("image_scores.npy", a.clone()),
            ("image_scores.npy", b.clone()),
        ];
        let path = write(dir.path(), "twice.npz", &zip(&twice, false));
        assert_eq!(
            format!("{:#}", Npz::open(&path).err().unwrap()),
            format!(
                "reading {}: zip member `image_scores.npy` appears more than once (NumPy reads \
                 the last copy): write the file again with one copy of each array",
                path.display()
            )
        );
        let both = [("x.npy", a.clone()), ("x", b)];
        let path = write(dir.path(), "both.npz", &zip(&both, false));
        assert_eq!(
            format!("{:#}", Npz::open(&path).err().unwrap()),
            format!(
                "reading {}: zip members `x.npy` and `x` both hold array `x`: write the file \
                 again with one of them",
                path.display()
            )
        );
        let distinct = [("x.npy", a.clone()), ("y.npy", a)];
        let path = write(dir.path(), "distinct.npz", &zip(&distinct, false));
        assert_eq!(Npz::open(&path).unwrap().keys(), ["x", "y"]);
    }

    #[test]
    fn reads_numpy_written_npz_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "c.npz", &unhex(NPZ_DEFLATED));
        let mut z = Npz::open(&path).unwrap();
        assert_eq!(z.keys(), ["image_scores", "categories", "masks"]);
        let scores = z.require::<f32>("image_scores").unwrap();
        assert_eq!(
            (scores.dtype, scores.data),
            (Dtype::F64, vec![0.1, 0.9, 0.4, 0.8])
        );
        // The dtype alone, from the header of a deflated member.
        assert_eq!(z.dtype("image_scores").unwrap(), Some(Dtype::F64));
        assert_eq!(z.dtype("masks").unwrap(), Some(Dtype::Bool));
        assert_eq!(z.dtype("nothing").unwrap(), None);
        let c = z.require::<Category>("categories").unwrap();
        assert_eq!(c.dtype, Dtype::Unicode(6));
        assert_eq!(
            c.data[..2],
            [
                Category::Text("screw".into()),
                Category::Text("bottle".into())
            ]
        );
        let masks = z.require::<MaskPixel>("masks").unwrap();
        assert_eq!(masks.shape, [4, 2, 3]);
        let marked: Vec<usize> = (0..24)
            .filter(|&i| masks.data[i] == MaskPixel::Anomalous)
            .collect();
        assert_eq!(marked, [7, 8, 18]);
        assert!(!masks.data.contains(&MaskPixel::Other));

        let path = write(dir.path(), "s.npz", &unhex(NPZ_STORED));
        let mut z = Npz::open(&path).unwrap();
        assert_eq!(z.require::<f32>("x").unwrap().data, [0.0, 1.0, 2.0]);
        let s = z.require::<Category>("s").unwrap().data;
        assert_eq!(s, [Category::Text("ab".into()), Category::Text("c".into())]);
        assert!(z.get::<f32>("y").unwrap().is_none());
        let e = z.require::<f32>("image_scores").unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}: no array `image_scores`; it holds: x, s",
                path.display()
            )
        );
    }

    #[test]
    fn reads_zip64_and_detects_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let members = [
            ("a.npy", f32_npy("(3,)", &[1.0, 2.5, -3.0])),
            ("b.npy", npy("|b1", "(2,)", &[0, 1])),
        ];
        for zip64 in [false, true] {
            let path = write(dir.path(), "z.npz", &zip(&members, zip64));
            let mut z = Npz::open(&path).unwrap();
            assert_eq!(z.require::<f32>("a").unwrap().data, [1.0, 2.5, -3.0]);
            assert_eq!(
                z.require::<MaskPixel>("b").unwrap().data,
                [MaskPixel::Normal, MaskPixel::Anomalous]
            );
        }
        let mut bytes = zip(&members, false);
        let at = members[0].1.len() + 30 + 5 - 4; // inside a's data
        bytes[at] ^= 1;
        let path = write(dir.path(), "bad.npz", &bytes);
        let e = Npz::open(&path).unwrap().require::<f32>("a").unwrap_err();
        assert!(format!("{e:#}").contains("CRC"), "{e:#}");
        // Deflated members (`np.savez_compressed`) damaged inside their compressed data: one
        // that inflates to other bytes of the same length fails the CRC, one that no longer
        // inflates is named corrupt.
        let at = 30 + "image_scores.npy".len() + 20;
        for (offset, flip) in [(67, 0x02), (0, 0xff)] {
            let mut bytes = unhex(NPZ_DEFLATED);
            bytes[at + offset] ^= flip;
            let path = write(dir.path(), "bad_deflated.npz", &bytes);
            let e = Npz::open(&path)
                .unwrap()
                .require::<f32>("image_scores")
                .unwrap_err();
            let e = format!("{e:#}");
            assert!(
                e.contains("image_scores.npy") && e.contains("corrupt"),
                "{e}"
            );
        }
        let path = write(dir.path(), "no.npz", b"hello");
        let e = Npz::open(&path).err().unwrap();
        assert!(format!("{e:#}").contains("not a zip"), "{e:#}");
    }
}
