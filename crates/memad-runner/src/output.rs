//! The run folder and atomic result files.
//!
//! A run works in `runs/<name>/<timestamp>.partial/` and is renamed to
//! `runs/<name>/<timestamp>/` when it finishes, so a folder without `.partial` is always a
//! complete run; every file inside is written to `*.tmp` and renamed. The process working in
//! a run folder holds an exclusive `flock` on its `log.txt` (released when it exits, however
//! it ends), so a second `memad run` never resumes a folder that is still being written.
use anyhow::Context;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// [`memad_core::io::write_atomic`] with the path in the error.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    memad_core::io::write_atomic(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// One tidy result row (`metrics.csv`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MetricRow {
    pub run: String,
    pub commit: String,
    pub method: String,
    /// [`crate::experiment::Experiment::memory_kind`]; `-` in rows written before the
    /// column existed.
    #[serde(default = "no_memory_column")]
    pub memory: String,
    pub backbone: String,
    pub dataset: String,
    pub category: String,
    pub setting: String,
    pub seed: u64,
    pub epoch: usize,
    pub metric: String,
    pub value: f64,
}

fn no_memory_column() -> String {
    "-".into()
}

/// CSV text of `rows` (with a header).
pub fn csv_text<T: serde::Serialize>(rows: &[T]) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r)?;
    }
    Ok(w.into_inner()?)
}

/// A run folder being written.
pub struct RunDir {
    pub partial: PathBuf,
    pub final_path: PathBuf,
    log: fs::File,
}

impl RunDir {
    /// Creates `<root>/<name>/<stamp>.partial/`, or `<stamp>-2.partial/`, `-3`, ... when a
    /// run of that stamp (finished or not) exists already: two runs started within the same
    /// second never share a folder.
    pub fn create(root: &Path, name: &str, stamp: &str) -> anyhow::Result<Self> {
        let parent = root.join(name);
        fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
        let mut k = 1;
        let (final_path, partial) = loop {
            let s = match k {
                1 => stamp.to_string(),
                k => format!("{stamp}-{k}"),
            };
            let (done, partial) = (parent.join(&s), parent.join(format!("{s}.partial")));
            k += 1;
            if done.exists() {
                continue;
            }
            // `create_dir` claims the name atomically against a concurrent run.
            match fs::create_dir(&partial) {
                Ok(()) => break (done, partial),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("creating {}", partial.display())),
            }
        };
        fs::create_dir_all(partial.join("checkpoints"))
            .with_context(|| format!("creating {}", partial.display()))?;
        let log = fs::File::create(partial.join("log.txt"))?;
        anyhow::ensure!(
            try_lock(&log),
            "{} is in use by another process",
            partial.display()
        );
        Ok(RunDir {
            partial,
            final_path,
            log,
        })
    }

    /// Opens an existing `<stamp>.partial/` folder to continue it (the log is appended to);
    /// `None` when another process holds it.
    pub fn reopen(partial: &Path) -> anyhow::Result<Option<Self>> {
        let name = partial.file_name().unwrap_or_default().to_string_lossy();
        let stamp = name
            .strip_suffix(".partial")
            .with_context(|| format!("{} is not a .partial folder", partial.display()))?;
        let final_path = partial.with_file_name(stamp);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(partial.join("log.txt"))
            .with_context(|| format!("opening {}", partial.join("log.txt").display()))?;
        if !try_lock(&log) {
            return Ok(None);
        }
        fs::create_dir_all(partial.join("checkpoints"))?;
        Ok(Some(RunDir {
            partial: partial.to_path_buf(),
            final_path,
            log,
        }))
    }

    /// The time stamp the folder is named by.
    pub fn stamp(&self) -> String {
        self.final_path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.partial.join(file)
    }

    pub fn write(&self, file: &str, bytes: &[u8]) -> anyhow::Result<()> {
        write_atomic(&self.path(file), bytes)
    }

    /// Appends a line to `log.txt` (flushed at once).
    pub fn log(&mut self, line: &str) {
        let _ = writeln!(self.log, "{line}").and_then(|_| self.log.flush());
    }

    /// Renames the folder to its final name.
    pub fn finish(self) -> anyhow::Result<PathBuf> {
        fs::rename(&self.partial, &self.final_path).with_context(|| {
            format!(
                "renaming {} to {}",
                self.partial.display(),
                self.final_path.display()
            )
        })?;
        Ok(self.final_path)
    }
}

/// Takes an exclusive, non-blocking `flock` on `file`; `false` when another open file
/// holds it.
fn try_lock(file: &fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a valid descriptor owned by `file`; no memory is passed.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// The peak resident set size of this process so far, in bytes (`getrusage`'s
/// `ru_maxrss`, KiB on Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0;
    (ok && usage.ru_maxrss > 0).then(|| usage.ru_maxrss as u64 * 1024)
}

/// UTC `YYYY-MM-DDTHH-MM-SS` (a folder name), from the system clock.
pub fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}-{:02}-{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The commit this binary was built from (`build.rs`): 12 hex digits, then `-dirty-` and a
/// fingerprint of the difference when tracked files differed from it at build time,
/// `unknown` when built outside a git checkout. The
/// `commit` of every result row and `run.toml`: the code that produced the numbers.
pub const BUILD_COMMIT: &str = env!("MEMAD_BUILD_COMMIT");

include!("git_commit.rs");

/// `HEAD` of the git checkout around the current folder (written as [`BUILD_COMMIT`]), or
/// `None` outside one: where the experiment files came from, which may differ from the
/// binary's commit.
pub fn checkout_commit() -> Option<String> {
    describe_checkout(Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dirty_checkout_is_told_apart_by_its_difference() {
        let repo = tempfile::tempdir().unwrap();
        let dir = repo.path();
        let git = |args: &[&str]| {
            let ok = (std::process::Command::new("git"))
                .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                .args(args)
                .current_dir(dir)
                .output()
                .unwrap()
                .status
                .success();
            assert!(ok, "git {args:?}");
        };
        git(&["init", "-q"]);
        std::fs::write(dir.join("a.rs"), "1\n").unwrap();
        git(&["add", "a.rs"]);
        git(&["commit", "-q", "-m", "a"]);
        let clean = describe_checkout(dir).unwrap();
        assert_eq!(clean.len(), 12, "{clean}");
        std::fs::write(dir.join("a.rs"), "2\n").unwrap();
        let first = describe_checkout(dir).unwrap();
        std::fs::write(dir.join("a.rs"), "3\n").unwrap();
        let second = describe_checkout(dir).unwrap();
        assert!(first.starts_with(&format!("{clean}-dirty-")), "{first}");
        assert_eq!(first.len(), 12 + 7 + 8, "{first}");
        assert_ne!(first, second);
        std::fs::write(dir.join("a.rs"), "2\n").unwrap();
        assert_eq!(
            describe_checkout(dir).unwrap(),
            first,
            "the same edit, the same name"
        );
        std::fs::write(dir.join("b.rs"), "untracked\n").unwrap();
        std::fs::write(dir.join("a.rs"), "1\n").unwrap();
        assert_eq!(
            describe_checkout(dir).unwrap(),
            clean,
            "untracked files do not count"
        );
        let outside = tempfile::tempdir().unwrap();
        assert_eq!(describe_checkout(outside.path()), None);
    }

    #[test]
    fn a_partial_folder_in_use_is_not_reopened() {
        let root = tempfile::tempdir().unwrap();
        let first = RunDir::create(root.path(), "exp", "2026-01-01T00-00-00").unwrap();
        let partial = first.partial.clone();
        assert!(
            RunDir::reopen(&partial).unwrap().is_none(),
            "held by `first`"
        );
        drop(first);
        let mut again = RunDir::reopen(&partial).unwrap().expect("free again");
        assert_eq!(again.stamp(), "2026-01-01T00-00-00");
        again.log("second session");
        let done = again.finish().unwrap();
        assert!(done.ends_with("exp/2026-01-01T00-00-00"));
        assert!(peak_rss_bytes().unwrap() > 1 << 20);
    }

    #[test]
    fn runs_started_in_the_same_second_get_their_own_folders() {
        let root = tempfile::tempdir().unwrap();
        let stamp = "2026-01-01T00-00-00";
        let first = RunDir::create(root.path(), "exp", stamp).unwrap();
        first.finish().unwrap();
        let second = RunDir::create(root.path(), "exp", stamp).unwrap();
        let third = RunDir::create(root.path(), "exp", stamp).unwrap();
        assert_eq!(second.stamp(), format!("{stamp}-2"));
        assert_eq!(third.stamp(), format!("{stamp}-3"));
        assert!(second.partial.ends_with(format!("exp/{stamp}-2.partial")));
    }

    #[test]
    fn timestamp_shape() {
        let t = timestamp();
        assert_eq!(t.len(), 19, "{t}");
        assert!(t.starts_with("20"), "{t}");
    }
}
