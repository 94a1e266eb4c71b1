//! A minimal MAT-file level 5 reader: exactly what CUHK Avenue's ground truth (a cell array
//! of 2-D pixel masks) and Liu et al.'s frame labels (a cell array of 2 x K frame ranges)
//! need, with clear errors for everything else.
//!
//! The format (MathWorks, "MAT-File Format", level 5; written by MATLAB's `save` up to
//! `-v7` and by scipy's `savemat`):
//!
//! ```text
//! header      128 bytes: 116 bytes of text, 8 subsystem offset, u16 version 0x0100,
//!             2 bytes endian indicator "IM" (little-endian; "MI" is big-endian)
//! element     tag (u32 type, u32 byte count) + data padded to 8 bytes, or a "small"
//!             element: (u16 byte count << 16 | u16 type) + up to 4 bytes in one 8-byte word
//! variable    miMATRIX (14): array flags (miUINT32: class in bits 0-7, complex 0x800,
//!             logical 0x200), dimensions (miINT32), name (miINT8), then for a numeric or
//!             logical class the real part (any numeric element type), for a cell array one
//!             miMATRIX per cell in column-major order
//! compressed  miCOMPRESSED (15): zlib data that inflates to one miMATRIX element (MATLAB's
//!             default since v7); not padded
//! ```
//!
//! Data is column-major; matrices are returned row-major. Supported: little-endian files;
//! cell arrays of real 2-D double, single, integer or logical matrices, read as non-zero
//! flags. Not supported, each an error saying so: MAT v7.3 (an HDF5 file: re-save with
//! `save(..., '-v7')`), v4, big-endian files, and other classes (struct, char, sparse,
//! complex). Cells are decoded one at a time from the stream, so a large compressed
//! variable is never held whole in memory.
use crate::error::{DataError, Result};
use flate2::read::ZlibDecoder;
use std::io::{self, BufReader, Read};
use std::path::Path;

/// Element types.
const MI_INT8: u32 = 1;
const MI_UINT32: u32 = 6;
const MI_INT32: u32 = 5;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;

/// Array classes.
const MX_CELL: u8 = 1;
const FLAG_COMPLEX: u32 = 0x0800;
const FLAG_LOGICAL: u32 = 0x0200;

/// A 2-D matrix's values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueMatrix {
    pub rows: usize,
    pub cols: usize,
    /// `rows * cols` values, row `r` at `r * cols..(r + 1) * cols`.
    pub data: Vec<f64>,
}

/// One cell as stored: a real 2-D matrix of element type `kind`, column-major bytes.
struct Cell {
    rows: usize,
    cols: usize,
    kind: u32,
    data: Vec<u8>,
}

impl Cell {
    /// The bytes of one value.
    fn size(&self) -> usize {
        numeric_type(self.kind).map_or(1, |(size, _)| size)
    }

    /// Non-zero values as flags, row-major.
    fn flags(&self) -> FlagMatrix {
        let (rows, cols, size) = (self.rows, self.cols, self.size());
        let float = numeric_type(self.kind).is_some_and(|(_, float)| float);
        // Non-zero, with -0.0 as zero: the bits below a float's sign bit.
        let nonzero = |c: &[u8]| match (float, size) {
            (true, 4) => u32::from_le_bytes([c[0], c[1], c[2], c[3]]) << 1 != 0,
            (true, _) => {
                u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) << 1 != 0
            }
            _ => c.iter().any(|&b| b != 0),
        };
        // Column c of the column-major data holds (0..rows, c); masks are mostly zero, so
        // all-zero columns are skipped whole.
        let mut flags = vec![false; rows * cols];
        if rows > 0 {
            for (c, column) in self.data.chunks_exact(rows * size).enumerate() {
                if all_zero(column) {
                    continue;
                }
                for (row, value) in column.chunks_exact(size).enumerate() {
                    flags[row * cols + c] = nonzero(value);
                }
            }
        }
        FlagMatrix {
            rows,
            cols,
            data: flags,
        }
    }

    /// The values as `f64`, row-major.
    fn values(&self) -> ValueMatrix {
        let (rows, cols, size) = (self.rows, self.cols, self.size());
        let value = |c: &[u8]| -> f64 {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            match self.kind {
                1 => c[0] as i8 as f64,
                2 => c[0] as f64,
                3 => i16::from_le_bytes([c[0], c[1]]) as f64,
                4 => u16::from_le_bytes([c[0], c[1]]) as f64,
                5 => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
                6 => u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
                7 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
                12 => i64::from_le_bytes(b) as f64,
                13 => u64::from_le_bytes(b) as f64,
                _ => f64::from_le_bytes(b),
            }
        };
        let mut data = vec![0.0; rows * cols];
        for (i, c) in self.data.chunks_exact(size).enumerate() {
            // Column-major index i is (i % rows, i / rows).
            data[(i % rows) * cols + i / rows] = value(c);
        }
        ValueMatrix { rows, cols, data }
    }
}

/// A 2-D matrix as non-zero flags, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagMatrix {
    pub rows: usize,
    pub cols: usize,
    /// `rows * cols` flags, row `r` at `r * cols..(r + 1) * cols`.
    pub data: Vec<bool>,
}

/// The name of array class `class` (for messages).
fn class_name(class: u8) -> &'static str {
    match class {
        1 => "cell",
        2 => "struct",
        3 => "object",
        4 => "char",
        5 => "sparse",
        6 => "double",
        7 => "single",
        8 => "int8",
        9 => "uint8",
        10 => "int16",
        11 => "uint16",
        12 => "int32",
        13 => "uint32",
        14 => "int64",
        15 => "uint64",
        _ => "unknown class",
    }
}

/// Bytes per value of numeric element type `kind`, and whether it is a float.
fn numeric_type(kind: u32) -> Option<(usize, bool)> {
    match kind {
        1 | 2 => Some((1, false)),   // miINT8, miUINT8
        3 | 4 => Some((2, false)),   // miINT16, miUINT16
        5 | 6 => Some((4, false)),   // miINT32, miUINT32
        7 => Some((4, true)),        // miSINGLE
        9 => Some((8, true)),        // miDOUBLE
        12 | 13 => Some((8, false)), // miINT64, miUINT64
        _ => None,
    }
}

/// Whether every byte of `bytes` is zero (an OR of 8-byte words: fast on the mostly-zero
/// data of masks).
fn all_zero(bytes: &[u8]) -> bool {
    let words = bytes.chunks_exact(8);
    let tail = words.remainder();
    let or = words.fold(0u64, |acc, w| {
        acc | u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]])
    });
    or == 0 && tail.iter().all(|&b| b == 0)
}

/// An element tag; `small` holds the data of a small element.
struct Tag {
    kind: u32,
    bytes: usize,
    small: Option<[u8; 4]>,
}

fn u32_at(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Reads a tag; `None` at the end of the stream.
fn read_tag(r: &mut impl Read) -> io::Result<Option<Tag>> {
    let mut first = [0u8; 4];
    let mut n = 0;
    while n < 4 {
        match r.read(&mut first[n..])? {
            0 if n == 0 => return Ok(None),
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            k => n += k,
        }
    }
    let word = u32_at(&first);
    let mut second = [0u8; 4];
    r.read_exact(&mut second)?;
    Ok(Some(if word >> 16 != 0 {
        Tag {
            kind: word & 0xFFFF,
            bytes: (word >> 16) as usize,
            small: Some(second),
        }
    } else {
        Tag {
            kind: word,
            bytes: u32_at(&second) as usize,
            small: None,
        }
    }))
}

/// Skips `n` bytes.
fn skip(r: &mut impl Read, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut r.take(n), &mut io::sink())?;
    if copied < n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// The padding after `bytes` of element data.
fn padding(bytes: usize) -> u64 {
    ((8 - bytes % 8) % 8) as u64
}

/// The data of the element `tag` (its padding skipped).
fn read_data(r: &mut impl Read, tag: &Tag) -> io::Result<Vec<u8>> {
    if let Some(small) = tag.small {
        return Ok(small[..tag.bytes.min(4)].to_vec());
    }
    let mut data = vec![0u8; tag.bytes];
    r.read_exact(&mut data)?;
    skip(r, padding(tag.bytes))?;
    Ok(data)
}

/// Array flags, dimensions and name: the start of every miMATRIX.
struct MatrixHead {
    class: u8,
    flags: u32,
    dims: Vec<usize>,
    name: String,
}

/// The file being read, for errors ([`DataError::Format`] naming it).
struct Ctx<'a> {
    path: &'a Path,
}

impl Ctx<'_> {
    fn fail(&self, message: impl Into<String>) -> DataError {
        DataError::Format {
            path: self.path.to_path_buf(),
            message: message.into(),
        }
    }

    fn io(&self, what: &str, e: io::Error) -> DataError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            self.fail(format!("truncated MAT file (in {what})"))
        } else {
            self.fail(format!("reading {what}: {e}"))
        }
    }

    fn expect_tag(&self, r: &mut impl Read, what: &str) -> Result<Tag> {
        read_tag(r)
            .map_err(|e| self.io(what, e))?
            .ok_or_else(|| self.fail(format!("truncated MAT file (no {what})")))
    }

    fn head(&self, r: &mut impl Read, what: &str) -> Result<MatrixHead> {
        let tag = self.expect_tag(r, what)?;
        let flags = read_data(r, &tag).map_err(|e| self.io(what, e))?;
        if tag.kind != MI_UINT32 || flags.len() != 8 {
            return Err(self.fail(format!("{what}: malformed array flags")));
        }
        let word = u32_at(&flags);
        let tag = self.expect_tag(r, what)?;
        let dims = read_data(r, &tag).map_err(|e| self.io(what, e))?;
        if tag.kind != MI_INT32 || dims.len() % 4 != 0 {
            return Err(self.fail(format!("{what}: malformed dimensions")));
        }
        let dims = dims
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]).max(0) as usize)
            .collect();
        let tag = self.expect_tag(r, what)?;
        let name = read_data(r, &tag).map_err(|e| self.io(what, e))?;
        if tag.kind != MI_INT8 {
            return Err(self.fail(format!("{what}: malformed array name")));
        }
        Ok(MatrixHead {
            class: (word & 0xFF) as u8,
            flags: word,
            dims,
            name: String::from_utf8_lossy(&name).into_owned(),
        })
    }

    /// One cell (an miMATRIX element of `bytes` bytes, its tag read). MATLAB writes an empty
    /// array (`[]`) as an miMATRIX of no bytes: a 0 x 0 matrix.
    fn cell(&self, r: &mut impl Read, bytes: usize, what: &str) -> Result<Cell> {
        if bytes == 0 {
            return Ok(Cell {
                rows: 0,
                cols: 0,
                kind: MI_INT8,
                data: Vec::new(),
            });
        }
        let mut r = r.take(bytes as u64);
        let head = self.head(&mut r, what)?;
        let numeric = (6..=15).contains(&head.class);
        if !numeric || head.flags & FLAG_COMPLEX != 0 {
            let class = if head.flags & FLAG_COMPLEX != 0 {
                "complex"
            } else {
                class_name(head.class)
            };
            return Err(self.fail(format!(
                "{what} is a {class} array; only real numeric or logical matrices are supported"
            )));
        }
        let (rows, cols) = match head.dims[..] {
            [rows, cols] => (rows, cols),
            _ => {
                return Err(self.fail(format!(
                    "{what} has {} dimensions {:?}; expected a 2-D matrix",
                    head.dims.len(),
                    head.dims
                )))
            }
        };
        let tag = self.expect_tag(&mut r, what)?;
        let (size, _) = numeric_type(tag.kind)
            .ok_or_else(|| self.fail(format!("{what}: unsupported data type {}", tag.kind)))?;
        let data = read_data(&mut r, &tag).map_err(|e| self.io(what, e))?;
        if data.len() != rows * cols * size {
            return Err(self.fail(format!(
                "{what}: {} data bytes for a {rows} x {cols} matrix of {size}-byte values",
                data.len()
            )));
        }
        let rest = r.limit();
        skip(&mut r, rest).map_err(|e| self.io(what, e))?;
        Ok(Cell {
            rows,
            cols,
            kind: tag.kind,
            data,
        })
    }
}

/// Checks the 128-byte header of a MAT file.
fn check_header(header: &[u8], ctx: &Ctx) -> Result<()> {
    if header.len() < 128 {
        return Err(ctx.fail("not a MAT file: shorter than the 128-byte header"));
    }
    let version = u16::from_le_bytes([header[124], header[125]]);
    if header.starts_with(b"MATLAB 7.3") || version == 0x0200 {
        return Err(ctx.fail(
            "MAT v7.3 files are HDF5 and not supported; re-save it in MATLAB with \
             save(file, 'volLabel', '-v7')",
        ));
    }
    match &header[126..128] {
        b"IM" if version == 0x0100 => Ok(()),
        b"MI" => Err(ctx.fail("big-endian MAT files are not supported")),
        _ => Err(ctx.fail(
            "not a MAT v5 file (no MAT v5 header; MAT v4 and other formats are not supported)",
        )),
    }
}

/// What [`read_cell_flags`] found for one top-level variable.
enum Found {
    /// The variable was read: its number of cells.
    Cells(usize),
    /// Another variable: its name and class.
    Other(String, u8),
}

/// Reads variable `name` of the MAT v5 file at `path`, a cell array of real 2-D numeric or
/// logical matrices, passing each cell (column-major cell order: 1..T for a 1 x T array) as
/// non-zero flags to `each` with its 0-based index. Returns the number of cells; an empty
/// cell is an error.
///
/// # Shapes
/// Each [`FlagMatrix`] is `rows x cols` as in MATLAB (`H x W` for masks), row-major.
pub fn read_cell_flags(
    path: &Path,
    name: &str,
    mut each: impl FnMut(usize, FlagMatrix) -> Result<()>,
) -> Result<usize> {
    read_cells(path, name, |k, cell| match cell.data.is_empty() {
        // A mask per frame (Avenue's `volLabel`): an empty one is no mask.
        true => Err(Ctx { path }.fail(format!("`{name}` cell {} is empty", k + 1))),
        false => each(k, cell.flags()),
    })
}

/// [`read_cell_flags`] with each cell's values (as `f64`) instead of flags.
pub fn read_cell_values(
    path: &Path,
    name: &str,
    mut each: impl FnMut(usize, ValueMatrix) -> Result<()>,
) -> Result<usize> {
    read_cells(path, name, |k, cell| each(k, cell.values()))
}

fn read_cells(
    path: &Path,
    name: &str,
    mut each: impl FnMut(usize, Cell) -> Result<()>,
) -> Result<usize> {
    let ctx = Ctx { path };
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut r = BufReader::with_capacity(1 << 16, file);
    let mut header = Vec::with_capacity(128);
    (&mut r)
        .take(128)
        .read_to_end(&mut header)
        .map_err(|e| DataError::io(path, e))?;
    check_header(&header, &ctx)?;
    let mut others = Vec::new();
    while let Some(tag) = read_tag(&mut r).map_err(|e| ctx.io("an element tag", e))? {
        let found = match tag.kind {
            MI_COMPRESSED => {
                let mut compressed = (&mut r).take(tag.bytes as u64);
                let found = {
                    let mut z = BufReader::new(ZlibDecoder::new(&mut compressed));
                    let inner = ctx.expect_tag(&mut z, "a compressed element")?;
                    if inner.kind != MI_MATRIX {
                        None
                    } else {
                        Some(variable(&mut z, inner.bytes, name, &ctx, &mut each)?)
                    }
                };
                let rest = compressed.limit();
                skip(&mut compressed, rest).map_err(|e| ctx.io("a compressed element", e))?;
                found
            }
            MI_MATRIX if tag.small.is_none() => {
                let mut element = (&mut r).take(tag.bytes as u64);
                let found = variable(&mut element, tag.bytes, name, &ctx, &mut each)?;
                let rest = element.limit();
                skip(&mut element, rest).map_err(|e| ctx.io("a variable", e))?;
                skip(&mut r, padding(tag.bytes)).map_err(|e| ctx.io("a variable", e))?;
                Some(found)
            }
            _ => {
                if tag.small.is_none() {
                    skip(&mut r, tag.bytes as u64 + padding(tag.bytes))
                        .map_err(|e| ctx.io("an element", e))?;
                }
                None
            }
        };
        match found {
            Some(Found::Cells(n)) => return Ok(n),
            Some(Found::Other(other, class)) => {
                others.push(format!("{other} ({})", class_name(class)))
            }
            None => {}
        }
    }
    Err(ctx.fail(format!(
        "no variable `{name}`; the file holds: {}",
        if others.is_empty() {
            "(none)".to_string()
        } else {
            others.join(", ")
        }
    )))
}

/// Reads the miMATRIX of `bytes` bytes at `r` (its tag read): the cells of variable `name`,
/// or just the head of another variable.
fn variable(
    r: &mut impl Read,
    bytes: usize,
    name: &str,
    ctx: &Ctx,
    each: &mut impl FnMut(usize, Cell) -> Result<()>,
) -> Result<Found> {
    if bytes == 0 {
        return Ok(Found::Other(String::new(), 0));
    }
    let mut r = r.take(bytes as u64);
    let head = ctx.head(&mut r, "a variable")?;
    if head.name != name {
        return Ok(Found::Other(head.name, head.class));
    }
    if head.class != MX_CELL {
        let class = if head.flags & FLAG_LOGICAL != 0 {
            "logical"
        } else {
            class_name(head.class)
        };
        return Err(ctx.fail(format!(
            "`{name}` is a {class} array; expected a cell array of matrices"
        )));
    }
    let cells: usize = head.dims.iter().product();
    for k in 0..cells {
        let what = format!("`{name}` cell {}", k + 1);
        let tag = ctx.expect_tag(&mut r, &what)?;
        if tag.kind != MI_MATRIX || tag.small.is_some() {
            return Err(ctx.fail(format!("{what}: not a matrix element")));
        }
        let cell = ctx.cell(&mut r, tag.bytes, &what)?;
        skip(&mut r, padding(tag.bytes)).map_err(|e| ctx.io(&what, e))?;
        each(k, cell)?;
    }
    Ok(Found::Cells(cells))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text: &str, version: u16, endian: &[u8; 2]) -> Vec<u8> {
        let mut h = vec![b' '; 128];
        h[..text.len()].copy_from_slice(text.as_bytes());
        h[116..124].fill(0);
        h[124..126].copy_from_slice(&version.to_le_bytes());
        h[126..128].copy_from_slice(endian);
        h
    }

    fn element(kind: u32, data: &[u8]) -> Vec<u8> {
        let mut e = kind.to_le_bytes().to_vec();
        e.extend_from_slice(&(data.len() as u32).to_le_bytes());
        e.extend_from_slice(data);
        e.resize(e.len() + padding(data.len()) as usize, 0);
        e
    }

    /// A 2 x 3 cell array whose cells are 1 x 2 int16 matrices, in a hand-written file:
    /// covers the cell order, the small element format of the name and int16 data.
    fn hand_written(cells_class: u32) -> Vec<u8> {
        let mut cells = Vec::new();
        for k in 0..6u16 {
            let mut m = element(MI_UINT32, &[cells_class as u8, 0, 0, 0, 0, 0, 0, 0]);
            m.extend(element(MI_INT32, &[1, 0, 0, 0, 2, 0, 0, 0]));
            m.extend(element(MI_INT8, &[]));
            // column-major (0, 0), (0, 1): k-th cell is [k % 2, 0]
            let v = [(k % 2) as i16, 0];
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            m.extend(element(3, &bytes));
            cells.extend(element(MI_MATRIX, &m));
        }
        let mut var = element(MI_UINT32, &[MX_CELL, 0, 0, 0, 0, 0, 0, 0]);
        var.extend(element(MI_INT32, &[2, 0, 0, 0, 3, 0, 0, 0]));
        // "gt" as a small element: (2 bytes << 16) | miINT8, then the bytes.
        var.extend((2u32 << 16 | MI_INT8).to_le_bytes());
        var.extend(b"gt\0\0");
        var.extend(cells);
        let mut file = header("MATLAB 5.0 MAT-file, hand-written", 0x0100, b"IM");
        file.extend(element(MI_MATRIX, &var));
        file
    }

    #[test]
    fn hand_written_cells_in_column_major_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gt.mat");
        std::fs::write(&path, hand_written(10)).unwrap();
        let mut seen = Vec::new();
        let n = read_cell_flags(&path, "gt", |k, m| {
            assert_eq!((m.rows, m.cols), (1, 2));
            seen.push((k, m.data[0]));
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 6);
        assert_eq!(
            seen,
            [
                (0, false),
                (1, true),
                (2, false),
                (3, true),
                (4, false),
                (5, true)
            ]
        );
        let err = read_cell_flags(&path, "volLabel", |_, _| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no variable `volLabel`; the file holds: gt (cell)"),
            "{err}"
        );
        // Cells of class char (4) are refused.
        std::fs::write(&path, hand_written(4)).unwrap();
        let err = read_cell_flags(&path, "gt", |_, _| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`gt` cell 1 is a char array"), "{err}");
    }

    /// Liu et al.'s `gt` as MATLAB may write it: a `1 x 2` row for a video with one event,
    /// an empty array (an miMATRIX of no bytes) for one without, a `2 x K` matrix.
    #[test]
    fn frame_ranges_from_rows_empty_cells_and_matrices() {
        let double_matrix = |rows: u8, cols: u8, values: &[f64]| {
            let mut m = element(MI_UINT32, &[6, 0, 0, 0, 0, 0, 0, 0]); // mxDOUBLE_CLASS
            m.extend(element(MI_INT32, &[rows, 0, 0, 0, cols, 0, 0, 0]));
            m.extend(element(MI_INT8, &[]));
            let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
            m.extend(element(9, &bytes)); // miDOUBLE, column-major
            element(MI_MATRIX, &m)
        };
        let mut var = element(MI_UINT32, &[MX_CELL, 0, 0, 0, 0, 0, 0, 0]);
        var.extend(element(MI_INT32, &[1, 0, 0, 0, 3, 0, 0, 0]));
        var.extend((2u32 << 16 | MI_INT8).to_le_bytes());
        var.extend(b"gt\0\0");
        var.extend(double_matrix(1, 2, &[5.0, 9.0]));
        var.extend(element(MI_MATRIX, &[]));
        var.extend(double_matrix(2, 2, &[1.0, 3.0, 10.0, 12.0]));
        let mut file = header("MATLAB 5.0 MAT-file, hand-written", 0x0100, b"IM");
        file.extend(element(MI_MATRIX, &var));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gt.mat");
        std::fs::write(&path, file).unwrap();
        let ranges = crate::video::read_mat_ranges(&path).unwrap();
        assert_eq!(ranges, [vec![(5, 9)], vec![], vec![(1, 3), (10, 12)]]);
        // Read as masks (one per frame), an empty cell is an error.
        let err = read_cell_flags(&path, "gt", |_, _| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`gt` cell 2 is empty"), "{err}");
    }

    #[test]
    fn unsupported_files_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.mat");
        let cases: [(Vec<u8>, &str); 5] = [
            (
                header("MATLAB 7.3 MAT-file, Platform: GLNXA64", 0x0200, b"IM"),
                "MAT v7.3 files are HDF5 and not supported",
            ),
            (
                header("MATLAB 5.0 MAT-file", 0x0100, b"MI"),
                "big-endian MAT files are not supported",
            ),
            (vec![0u8; 40], "shorter than the 128-byte header"),
            (vec![0u8; 200], "not a MAT v5 file"),
            (
                header("MATLAB 5.0 MAT-file", 0x0100, b"IM"),
                "no variable `volLabel`; the file holds: (none)",
            ),
        ];
        for (bytes, expected) in cases {
            std::fs::write(&path, bytes).unwrap();
            let err = read_cell_flags(&path, "volLabel", |_, _| Ok(()))
                .unwrap_err()
                .to_string();
            assert!(err.contains("x.mat") && err.contains(expected), "{err}");
        }
        let mut truncated = hand_written(10);
        truncated.truncate(truncated.len() - 20);
        std::fs::write(&path, truncated).unwrap();
        let err = read_cell_flags(&path, "gt", |_, _| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("truncated MAT file"), "{err}");
    }
}
