//! File writing shared by every crate that produces results.
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` through `<path>.tmp`, flushed to disk, then renamed: a reader
/// (or a run interrupted half-way) never sees a partial file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_leaves_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("memad-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("metrics.csv");
        write_atomic(&p, b"a,b\n").unwrap();
        write_atomic(&p, b"c,d\n").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"c,d\n");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
