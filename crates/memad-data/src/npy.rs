//! `.npy` files (NumPy format versions 1 to 3), as the video readers need them: flat label
//! vectors read whole, and single frames of `[T, H, W]` mask volumes read in place (a seek,
//! not the whole file: ShanghaiTech's pixel masks are ~100 MB per video).
//!
//! Values are bool, integer or float of 1 to 8 bytes, either byte order; they are read as
//! "non-zero" flags, which is all labels and masks need.
use crate::error::{DataError, Result};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// What the header of a `.npy` file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// `b` (bool), `i`, `u` or `f`.
    pub kind: u8,
    /// Bytes per value.
    pub item_size: usize,
    pub big_endian: bool,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
    /// Where the data starts in the file.
    pub data_offset: usize,
}

impl NpyHeader {
    /// The number of values. [`parse_header`] refuses a shape whose bytes, the header's
    /// included, overflow `usize`, so neither this nor `data_offset + count() * item_size`
    /// can; a header built by hand saturates.
    pub fn count(&self) -> usize {
        (self.shape.iter())
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .unwrap_or(usize::MAX)
    }

    /// Whether each value of `data` (whole values, this header's type) is non-zero.
    pub fn nonzero(&self, data: &[u8]) -> Vec<bool> {
        let size = self.item_size;
        data.chunks_exact(size)
            .map(|c| {
                let mut b = [0u8; 8];
                b[..size].copy_from_slice(c);
                if self.big_endian {
                    b[..size].reverse();
                }
                match (self.kind, size) {
                    (b'f', 4) => f32::from_le_bytes([b[0], b[1], b[2], b[3]]) != 0.0,
                    (b'f', _) => f64::from_le_bytes(b) != 0.0,
                    _ => u64::from_le_bytes(b) != 0,
                }
            })
            .collect()
    }
}

fn format_error(path: &Path, message: String) -> DataError {
    DataError::Format {
        path: path.to_path_buf(),
        message,
    }
}

/// Parses the header at the start of `bytes` (the file's first bytes, header included);
/// `path` names the file in errors.
pub fn parse_header(bytes: &[u8], path: &Path) -> Result<NpyHeader> {
    let fail = |message: String| format_error(path, message);
    if !bytes.starts_with(b"\x93NUMPY") || bytes.len() < 10 {
        return Err(fail("not a .npy file (no \\x93NUMPY magic)".into()));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(fail(format!("unsupported .npy version {v}"))),
    };
    let header = bytes
        .get(start..start + header_len)
        .map(String::from_utf8_lossy)
        .ok_or_else(|| fail("truncated .npy header".into()))?;
    let value_of = |key: &str| -> Option<String> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        let end = if rest.starts_with('(') {
            rest.find(')')? + 1
        } else {
            rest.find([',', '}'])?
        };
        Some(rest[..end].trim().trim_matches('\'').to_string())
    };
    let descr = value_of("descr").ok_or_else(|| fail(format!("no descr in {header}")))?;
    let (size, big_endian) = match descr.as_bytes().first() {
        Some(b'>') => (descr.get(2..).and_then(|s| s.parse::<usize>().ok()), true),
        Some(b'<' | b'|' | b'=') => (descr.get(2..).and_then(|s| s.parse::<usize>().ok()), false),
        _ => (None, false),
    };
    let kind = descr.as_bytes().get(1).copied().unwrap_or(0);
    let item_size = size
        .filter(|s| [1, 2, 4, 8].contains(s) && matches!(kind, b'b' | b'i' | b'u' | b'f'))
        .filter(|&s| kind != b'f' || s >= 4)
        .ok_or_else(|| {
            fail(format!(
                "unsupported dtype `{descr}` (bool, int, uint, float)"
            ))
        })?;
    let fortran_order = value_of("fortran_order").is_some_and(|v| v == "True");
    let shape_text = value_of("shape").ok_or_else(|| fail(format!("no shape in {header}")))?;
    let shape = shape_text
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| fail(format!("bad shape `{shape_text}`")))?;
    // The whole file's size, so that `count()`, and the byte sizes and offsets of its users,
    // cannot overflow (a plain product of `(2**40, 3, 2**30, 2**30)` is 0).
    let data_offset = start + header_len;
    (shape.iter())
        .try_fold(item_size, |a, &d| a.checked_mul(d))
        .and_then(|bytes| bytes.checked_add(data_offset))
        .ok_or_else(|| fail(format!("shape {shape:?} has too many elements")))?;
    Ok(NpyHeader {
        kind,
        item_size,
        big_endian,
        fortran_order,
        shape,
        data_offset,
    })
}

/// Reads only the header of the `.npy` file at `path`.
pub fn read_header(path: &Path) -> Result<NpyHeader> {
    let mut file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut bytes = vec![0u8; 12];
    let n = read_up_to(&mut file, &mut bytes).map_err(|e| DataError::io(path, e))?;
    bytes.truncate(n);
    // The header length is known once the fixed part is read; read the rest of it.
    let total = match bytes.get(6) {
        Some(1) if n >= 10 => 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize,
        Some(2 | 3) if n >= 12 => {
            12 + u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
        }
        _ => n,
    };
    if total > n {
        let mut rest = vec![0u8; total - n];
        let got = read_up_to(&mut file, &mut rest).map_err(|e| DataError::io(path, e))?;
        bytes.extend_from_slice(&rest[..got]);
    }
    parse_header(&bytes, path)
}

/// Fills `buf` as far as the reader goes; the number of bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Reads the whole `.npy` file at `path` as non-zero flags (any shape, file order).
pub fn read_nonzero(path: &Path) -> Result<(NpyHeader, Vec<bool>)> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let header = parse_header(&bytes, path)?;
    let data = &bytes[header.data_offset..];
    if data.len() != header.count() * header.item_size {
        return Err(format_error(
            path,
            format!(
                "{} data bytes for shape {:?} of {}-byte values",
                data.len(),
                header.shape,
                header.item_size
            ),
        ));
    }
    let flags = header.nonzero(data);
    Ok((header, flags))
}

/// Checks that `header` (of `path`) is a C-order `[T, H, W]` volume; returns `(T, H, W)`.
pub fn volume_shape(header: &NpyHeader, path: &Path) -> Result<(usize, usize, usize)> {
    match header.shape[..] {
        [t, h, w] if !header.fortran_order => Ok((t, h, w)),
        [_, _, _] => Err(format_error(
            path,
            "Fortran-order volume; expected C order [T, H, W]".into(),
        )),
        _ => Err(format_error(
            path,
            format!("shape {:?}; expected a [T, H, W] volume", header.shape),
        )),
    }
}

/// Frame `index` of the `[T, H, W]` volume at `path`, read in place: `(H, W, flags)`, the
/// flags row-major.
pub fn read_frame_nonzero(path: &Path, index: usize) -> Result<(usize, usize, Vec<bool>)> {
    let header = read_header(path)?;
    let (t, h, w) = volume_shape(&header, path)?;
    if index >= t {
        return Err(format_error(
            path,
            format!("frame {index} of a volume of {t} frames"),
        ));
    }
    let frame_bytes = h * w * header.item_size;
    let mut file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    file.seek(SeekFrom::Start(
        (header.data_offset + index * frame_bytes) as u64,
    ))
    .map_err(|e| DataError::io(path, e))?;
    let mut data = vec![0u8; frame_bytes];
    file.read_exact(&mut data).map_err(|e| {
        format_error(
            path,
            format!("truncated: frame {index} of shape {:?}: {e}", header.shape),
        )
    })?;
    Ok((h, w, header.nonzero(&data)))
}

/// A `.npy` file's bytes: `values` (one byte each, or little-endian i64 when `i64`) of
/// `shape`, C order. For tests and fixtures.
pub fn encode(shape: &[usize], values: &[u8], i64_values: bool) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let descr = if i64_values { "<i8" } else { "|u1" };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(header.len() as u16).to_le_bytes());
    b.extend_from_slice(header.as_bytes());
    for &v in values {
        if i64_values {
            b.extend_from_slice(&(v as i64).to_le_bytes());
        } else {
            b.push(v);
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_frames_read_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.npy");
        // 3 frames of 2 x 3; frame 1 has (0, 2) and (1, 0) set.
        let mut values = vec![0u8; 18];
        values[6 + 2] = 1;
        values[6 + 3] = 1;
        values[12] = 1;
        std::fs::write(&path, encode(&[3, 2, 3], &values, false)).unwrap();
        let header = read_header(&path).unwrap();
        assert_eq!(header.shape, [3, 2, 3]);
        assert_eq!((header.kind, header.item_size), (b'u', 1));
        assert_eq!(header.data_offset, 128, "header padded to 64 bytes");
        let (h, w, flags) = read_frame_nonzero(&path, 1).unwrap();
        assert_eq!((h, w), (2, 3));
        assert_eq!(flags, [false, false, true, true, false, false]);
        let err = read_frame_nonzero(&path, 3).unwrap_err().to_string();
        assert!(err.contains("frame 3 of a volume of 3 frames"), "{err}");

        std::fs::write(&path, encode(&[4], &[0, 1, 0, 2], true)).unwrap();
        let (header, flags) = read_nonzero(&path).unwrap();
        assert_eq!((header.kind, header.item_size), (b'i', 8));
        assert_eq!(flags, [false, true, false, true]);
        let err = read_frame_nonzero(&path, 0).unwrap_err().to_string();
        assert!(err.contains("expected a [T, H, W] volume"), "{err}");
    }

    #[test]
    fn float_zero_and_bad_files() {
        let h = NpyHeader {
            kind: b'f',
            item_size: 4,
            big_endian: true,
            fortran_order: false,
            shape: vec![3],
            data_offset: 0,
        };
        let data = [0x80, 0, 0, 0, 0x3f, 0x80, 0, 0, 0, 0, 0, 0];
        assert_eq!(h.nonzero(&data), [false, true, false], "-0.0 is zero");
        let p = Path::new("x.npy");
        let err = parse_header(b"PK\x03\x04", p).unwrap_err().to_string();
        assert!(err.contains("x.npy") && err.contains("magic"), "{err}");
        let mut bad = encode(&[2], &[0, 1], false);
        let at = bad.windows(3).position(|w| w == b"|u1").unwrap();
        bad[at..at + 3].copy_from_slice(b"<c8");
        let err = parse_header(&bad, p).unwrap_err().to_string();
        assert!(err.contains("unsupported dtype `<c8`"), "{err}");
    }

    #[test]
    fn shapes_with_too_many_elements_are_refused() {
        // 2^40 * 3 * 2^30 * 2^30 values wrap to 0 in a plain product, so a file with no data
        // would pass a size check; 2^61 values fit as a count but not as 8-byte values.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.npy");
        for (shape, i64_values) in [
            (vec![1 << 40, 3, 1 << 30, 1 << 30], false),
            (vec![1 << 61], true),
        ] {
            std::fs::write(&path, encode(&shape, &[], i64_values)).unwrap();
            let want = format!("{}: shape {shape:?} has too many elements", path.display());
            assert_eq!(read_header(&path).unwrap_err().to_string(), want);
            assert_eq!(read_nonzero(&path).unwrap_err().to_string(), want);
            assert_eq!(read_frame_nonzero(&path, 0).unwrap_err().to_string(), want);
        }
    }
}
