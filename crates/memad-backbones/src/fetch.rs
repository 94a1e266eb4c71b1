//! Getting torchvision's checkpoints onto the machine: download (verified against the
//! SHA-256 prefix in the file name, as torchvision's `check_hash`), then conversion into
//! memad's weights cache.
//!
//! Downloads go to `$TORCH_HOME/hub/checkpoints` (shared with torchvision) through a
//! temporary file in that folder, renamed only once its hash is right. `MEMAD_OFFLINE=1`
//! turns downloading off; a failed download (no network, an HTTP error) reports where to
//! put the file by hand. Conversion runs `tools/convert_pth.py` with the torch venv's python
//! (`./dev setup`), as `memad weights import` does, and keeps the result only once it loads
//! strictly into the arch.
use crate::weights::{memad_cache_dir, missing_torchvision, TorchvisionCheckpoint};
use memad_core::{CoreError, Result};
use sha2::{Digest, Sha256};
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// torchvision's model zoo: [`TorchvisionCheckpoint::url`] is `<this>/<file>`.
pub const TORCHVISION_BASE_URL: &str = "https://download.pytorch.org/models";

/// The project's converter, embedded so the binary works from any folder.
const CONVERT_PTH: &str = include_str!("../../../tools/convert_pth.py");
/// The torch venv of `./dev setup`, under memad's cache folder.
const TORCH_VENV_PYTHON: &str = "torch-2.11.0/venv/bin/python";

/// Whether `MEMAD_OFFLINE` (its value given) turns downloading off: set and neither empty
/// nor `0`.
pub fn offline_requested(value: Option<&OsStr>) -> bool {
    value.is_some_and(|v| !v.is_empty() && v != "0")
}

/// Whether downloading is off in this process (`MEMAD_OFFLINE=1`).
pub fn offline() -> bool {
    offline_requested(std::env::var_os("MEMAD_OFFLINE").as_deref())
}

/// The hex SHA-256 prefix in a torchvision file name: the part after the last `-` up to the
/// next `.` (`wide_resnet50_2-95faca4d.pth` -> `95faca4d`); `None` when that is not
/// lowercase hex.
pub fn sha256_prefix(file: &str) -> Option<&str> {
    let (_, tail) = file.rsplit_once('-')?;
    let hex = tail.split('.').next()?;
    let is_hex = hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (!hex.is_empty() && is_hex).then_some(hex)
}

/// Why a download did not produce a file.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The server could not be reached or did not send the file (no network, HTTP error,
    /// connection cut).
    #[error("downloading {url} failed: {message}")]
    Network { url: String, message: String },
    /// The file arrived but its SHA-256 does not start with the prefix in its name; the
    /// temporary file was deleted.
    #[error(
        "downloaded {url} but its SHA-256 is {actual}, not starting with {expected} as its name \
         says (a corrupted or altered download); the file was deleted, nothing was kept"
    )]
    Checksum {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Downloads `<base_url>/<file>` to `<hub_checkpoints>/<file>` with a progress bar on
/// stderr, unless that file is already there; returns its path.
///
/// The bytes go to `<file>.<pid>.partial` in the same folder while their SHA-256 is
/// computed; when `file` names a hash prefix ([`sha256_prefix`]) the digest must start with
/// it, else the partial file is deleted ([`DownloadError::Checksum`]). The complete file is
/// renamed into place, so `<file>` is never seen half-written.
pub fn download_checkpoint(
    file: &str,
    base_url: &str,
    hub_checkpoints: &Path,
) -> std::result::Result<PathBuf, DownloadError> {
    let dest = hub_checkpoints.join(file);
    if dest.is_file() {
        return Ok(dest);
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DownloadError::Io { path, source }
    };
    std::fs::create_dir_all(hub_checkpoints).map_err(io(hub_checkpoints))?;
    let url = format!("{}/{file}", base_url.trim_end_matches('/'));
    let partial = hub_checkpoints.join(format!("{file}.{}.partial", std::process::id()));
    let result = fetch_to(&url, &partial).and_then(|digest| {
        if let Some(expected) = sha256_prefix(file) {
            if !digest.starts_with(expected) {
                return Err(DownloadError::Checksum {
                    url: url.clone(),
                    expected: expected.to_string(),
                    actual: digest,
                });
            }
        }
        std::fs::rename(&partial, &dest).map_err(io(&dest))
    });
    match result {
        Ok(()) => Ok(dest),
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// Refuses a hub file whose SHA-256 does not start with the prefix in its name
/// ([`sha256_prefix`]), as torchvision's `check_hash` does; a name without one passes.
fn check_hash_prefix(pth: &Path, checkpoint: &TorchvisionCheckpoint) -> Result<()> {
    let Some(expected) = sha256_prefix(checkpoint.file) else {
        return Ok(());
    };
    let io = |error| CoreError::Io {
        path: pth.to_path_buf(),
        error,
    };
    let mut file = std::fs::File::open(pth).map_err(io)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(io)?;
    let actual = hex(&hasher.finalize());
    if actual.starts_with(expected) {
        return Ok(());
    }
    Err(CoreError::Weights {
        path: pth.to_path_buf(),
        message: format!(
            "its SHA-256 is {actual}, not starting with {expected} as its name says: this is \
             not torchvision's {} {} file ({}); delete it (memad then downloads it again) or \
             replace it with that file (your own weights: `memad weights import FILE --arch {}`)",
            checkpoint.arch,
            checkpoint.tag,
            checkpoint.url(),
            checkpoint.arch
        ),
    })
}

/// Lowercase hex of a digest.
fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// GETs `url` into `out` (created), showing progress; the lowercase hex SHA-256 of the body.
fn fetch_to(url: &str, out: &Path) -> std::result::Result<String, DownloadError> {
    let network = |message: String| DownloadError::Network {
        url: url.to_string(),
        message,
    };
    let agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .build()
        .new_agent();
    let response = agent.get(url).call().map_err(|e| network(e.to_string()))?;
    let body = response.into_body();
    let length = body.content_length();
    let mut reader = body.into_reader();
    eprintln!("downloading {url} to {}", out.display());
    let bar = match length {
        Some(n) => indicatif::ProgressBar::new(n).with_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("a valid progress template"),
        ),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let io = |source| DownloadError::Io {
        path: out.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::create(out).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = reader
            .read(&mut buffer)
            .map_err(|e| network(e.to_string()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        file.write_all(&buffer[..n]).map_err(io)?;
        bar.inc(n as u64);
    }
    file.sync_all().map_err(io)?;
    bar.finish_and_clear();
    Ok(hex(&hasher.finalize()))
}

/// memad's converted copy of `checkpoint`, made if absent: its `.pth` is taken from
/// `hub_checkpoints` (a file already there must match the SHA-256 prefix in its name, as a
/// download must), downloaded first from `<base_url>/<file>` when missing and `base_url`
/// is given (`None`: offline), then converted ([`convert_pth`]) and verified to load
/// strictly into `checkpoint.arch` before it is renamed into `weights_dir`.
///
/// Errors: offline or a failed download give the message of the offline resolution (the
/// cause, where to put torchvision's file, its URL); a wrong checksum names the URL (or the
/// hub file) and both hashes; a hub file that does not convert or load names that file and says to delete or
/// replace it.
pub fn fetch_torchvision(
    checkpoint: &TorchvisionCheckpoint,
    weights_dir: &Path,
    hub_checkpoints: &Path,
    base_url: Option<&str>,
) -> Result<PathBuf> {
    let converted = weights_dir.join(format!("{}.safetensors", checkpoint.cache_name));
    if converted.is_file() {
        return Ok(converted);
    }
    let pth = hub_checkpoints.join(checkpoint.file);
    if pth.is_file() {
        // Placed by hand or by another program: checked as a download is, so that another
        // checkpoint under torchvision's name (one that loads, e.g. fine-tuned) is not
        // taken for the ImageNet weights.
        check_hash_prefix(&pth, checkpoint)?;
    } else {
        let Some(base_url) = base_url else {
            return Err(missing_torchvision(
                checkpoint,
                weights_dir,
                hub_checkpoints,
                "downloading is off: MEMAD_OFFLINE is set",
            ));
        };
        match download_checkpoint(checkpoint.file, base_url, hub_checkpoints) {
            Ok(_) => {}
            Err(DownloadError::Network { url, message }) => {
                return Err(missing_torchvision(
                    checkpoint,
                    weights_dir,
                    hub_checkpoints,
                    &format!("downloading {url} failed: {message}"),
                ))
            }
            Err(e @ DownloadError::Checksum { .. }) => {
                return Err(CoreError::Weights {
                    path: pth,
                    message: e.to_string(),
                })
            }
            Err(DownloadError::Io { path, source }) => {
                return Err(CoreError::Io {
                    path,
                    error: source,
                })
            }
        }
    }
    std::fs::create_dir_all(weights_dir).map_err(|error| CoreError::Io {
        path: weights_dir.to_path_buf(),
        error,
    })?;
    let tmp = weights_dir.join(format!(
        "{}.{}.converting.safetensors",
        checkpoint.cache_name,
        std::process::id()
    ));
    let result = convert_pth(&pth, &tmp, None)
        .and_then(|()| check_loads(checkpoint.arch, &tmp, &pth))
        .map_err(|e| match e {
            // memad never replaces a file in the hub folder (`download_checkpoint`).
            CoreError::Weights { path, message } => CoreError::Weights {
                path,
                message: format!(
                    "{message}\n  this is not torchvision's {} {} file ({}): delete it (memad \
                     then downloads it again) or replace it with that file",
                    checkpoint.arch,
                    checkpoint.tag,
                    checkpoint.url()
                ),
            },
            e => e,
        })
        .and_then(|()| {
            std::fs::rename(&tmp, &converted).map_err(|error| CoreError::Io {
                path: converted.clone(),
                error,
            })
        });
    match result {
        Ok(()) => {
            eprintln!(
                "converted {} for memad: {}",
                pth.display(),
                converted.display()
            );
            Ok(converted)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// The torch venv's python that converts `.pth` files: `$MEMAD_PYTHON`, else
/// `$MEMAD_CACHE/torch-2.11.0/venv/bin/python` (`~/.cache/memad` by default).
pub fn venv_python() -> Result<PathBuf> {
    let python = std::env::var_os("MEMAD_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| memad_cache_dir().join(TORCH_VENV_PYTHON));
    if python.exists() {
        Ok(python)
    } else {
        Err(CoreError::Invalid(format!(
            "the torch python {} does not exist (it converts .pth checkpoints); run \
             `./dev setup` (or set MEMAD_PYTHON to a python with torch and safetensors)",
            python.display()
        )))
    }
}

/// Loads the safetensors file `file` strictly into the backbone `arch` (built on the CPU);
/// an error names `source`, the file `file` was made from, instead of `file`.
pub fn check_loads(arch: &str, file: &Path, source: &Path) -> Result<()> {
    let spec = file
        .to_str()
        .ok_or_else(|| CoreError::Invalid(format!("{}: not a UTF-8 path", file.display())))?;
    let weights_dir = file.parent().unwrap_or(Path::new("."));
    match crate::build_backbone(arch, spec, None, weights_dir, tch::Device::Cpu) {
        Ok(_) => Ok(()),
        Err(CoreError::Weights { path, message }) if path == file => Err(CoreError::Weights {
            path: source.to_path_buf(),
            message,
        }),
        Err(e) => Err(e),
    }
}

/// Makes `path` readable by everyone (mode 0644), as `tools/convert_pth.py` leaves its
/// output: safetensors writes 0600, which would keep the rest of a lab out of a shared
/// weights cache.
pub fn make_readable(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::Permissions::from_mode(0o644);
        std::fs::set_permissions(path, mode).map_err(|error| CoreError::Io {
            path: path.to_path_buf(),
            error,
        })?;
    }
    Ok(())
}

/// Converts the PyTorch checkpoint `pth` (zip or legacy format; a state_dict, a dict holding
/// one under `state_dict`, or under `key` when given) to the safetensors file `out` (mode
/// 0644), names unchanged, with `tools/convert_pth.py` run by [`venv_python`].
pub fn convert_pth(pth: &Path, out: &Path, key: Option<&str>) -> Result<()> {
    let python = venv_python()?;
    let mut command = Command::new(&python);
    command
        .arg("-c")
        .arg(CONVERT_PTH)
        .arg("--pth")
        .arg(pth)
        .arg("--out")
        .arg(out);
    if let Some(key) = key {
        command.arg("--key").arg(key);
    }
    let output = command.output().map_err(|error| CoreError::Io {
        path: python.clone(),
        error,
    })?;
    if output.status.success() {
        return Ok(()); // written 0644 by the script
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut last: Vec<_> = stderr.lines().rev().take(6).collect();
    last.reverse();
    // `convert_pth.py` exits with 3 when the file is no usable checkpoint; anything else is
    // a failure of the converter's environment (a missing module, a full disk), which says
    // nothing of the file.
    if output.status.code() == Some(NOT_A_CHECKPOINT) {
        return Err(CoreError::Weights {
            path: pth.to_path_buf(),
            message: last.join("\n"),
        });
    }
    Err(CoreError::Invalid(format!(
        "converting {}: the converter ({} tools/convert_pth.py) failed ({}), not because of \
         the file:\n{}",
        pth.display(),
        python.display(),
        output.status,
        last.join("\n")
    )))
}

/// `tools/convert_pth.py`'s exit status for a file that is no usable checkpoint.
const NOT_A_CHECKPOINT: i32 = 3;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    /// Serves `files` (name -> bytes) over HTTP/1.1 at the returned base URL
    /// (`http://127.0.0.1:<port>`), 404 for other paths, on a thread that lives as long as
    /// the test process.
    pub(crate) fn serve(files: HashMap<String, Vec<u8>>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                loop {
                    let mut header = String::new();
                    match reader.read_line(&mut header) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if header == "\r\n" => break,
                        Ok(_) => {}
                    }
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let name = path.trim_start_matches('/');
                let (status, body) = match files.get(name) {
                    Some(bytes) => ("200 OK", bytes.as_slice()),
                    None => ("404 Not Found", &b"not here"[..]),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: \
                     application/octet-stream\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(body);
                let _ = stream.flush();
            }
        });
        base
    }

    pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
        hex(&Sha256::digest(bytes))
    }

    /// A named file for the server: `<stem>-<first 8 hex of its SHA-256>.pth`.
    fn honest(stem: &str, bytes: &[u8]) -> String {
        format!("{stem}-{}.pth", &sha256_hex(bytes)[..8])
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[test]
    fn hash_prefixes_and_the_offline_switch() {
        assert_eq!(
            sha256_prefix("wide_resnet50_2-95faca4d.pth"),
            Some("95faca4d")
        );
        assert_eq!(sha256_prefix("a-b-0123abcd.pth"), Some("0123abcd"));
        assert_eq!(sha256_prefix("resnet18.pth"), None);
        assert_eq!(sha256_prefix("x-NOTHEX.pth"), None);
        assert_eq!(sha256_prefix("x-.pth"), None);
        for c in crate::weights::TORCHVISION_CHECKPOINTS {
            let prefix = sha256_prefix(c.file).unwrap();
            assert_eq!(prefix.len(), 8, "{}", c.file);
            assert_eq!(c.url(), format!("{TORCHVISION_BASE_URL}/{}", c.file));
        }
        assert!(offline_requested(Some(OsStr::new("1"))));
        assert!(offline_requested(Some(OsStr::new("true"))));
        assert!(!offline_requested(Some(OsStr::new("0"))));
        assert!(!offline_requested(Some(OsStr::new(""))));
        assert!(!offline_requested(None));
    }

    #[test]
    fn download_verifies_the_hash_and_keeps_nothing_of_a_bad_file() {
        // Pseudo-random bytes, several buffers long.
        let bytes: Vec<u8> = (0u32..300_000)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let good = honest("tiny", &bytes);
        let bad = "tiny-00000000.pth".to_string();
        let base = serve(HashMap::from([
            (good.clone(), bytes.clone()),
            (bad.clone(), bytes.clone()),
        ]));
        let dir = tempfile::tempdir().unwrap();
        let hub = dir.path().join("hub/checkpoints");

        let path = download_checkpoint(&good, &base, &hub).unwrap();
        assert_eq!(path, hub.join(&good));
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert_eq!(listing(&hub), [good.as_str()]);

        let err = download_checkpoint(&bad, &base, &hub).unwrap_err();
        let message = err.to_string();
        let url = format!("{base}/{bad}");
        for part in [url.as_str(), "00000000", sha256_hex(&bytes).as_str()] {
            assert!(message.contains(part), "{part} not in {message}");
        }
        assert!(matches!(err, DownloadError::Checksum { .. }));
        assert_eq!(
            listing(&hub),
            [good.as_str()],
            "the bad file left something"
        );

        // Not on the server: an HTTP error, nothing written.
        let err = download_checkpoint("absent-12345678.pth", &base, &hub).unwrap_err();
        assert!(matches!(err, DownloadError::Network { .. }), "{err}");
        assert!(err.to_string().contains("404"), "{err}");
        assert_eq!(listing(&hub), [good]);
    }

    #[test]
    fn unreachable_server_gives_the_offline_message() {
        // Port 1: nothing listens there, and no parallel test binds it (they take port 0,
        // an ephemeral one, which a port freed here could become).
        let base = "http://127.0.0.1:1".to_string();
        let dir = tempfile::tempdir().unwrap();
        let (weights, hub) = (dir.path().join("weights"), dir.path().join("hub"));
        let checkpoint = crate::weights::TORCHVISION_CHECKPOINTS[0];
        for (base_url, cause) in [
            (
                Some(base.as_str()),
                format!("downloading {base}/resnet18-f37072fd.pth failed"),
            ),
            (None, "downloading is off: MEMAD_OFFLINE is set".to_string()),
        ] {
            let err = fetch_torchvision(&checkpoint, &weights, &hub, base_url).unwrap_err();
            let message = err.to_string();
            let pth = hub.join(checkpoint.file);
            for part in [
                cause.as_str(),
                &format!(
                    "put torchvision's file resnet18-f37072fd.pth at {} (from {}",
                    pth.display(),
                    checkpoint.url()
                ),
                "memad converts it on next use",
                "`memad weights import FILE --arch resnet18`",
            ] {
                assert!(message.contains(part), "{part} not in {message}");
            }
            assert!(!message.contains("./dev"), "{message}");
            assert!(listing(&hub).is_empty());
        }
    }

    #[test]
    fn a_hub_file_placed_by_hand_is_checked_against_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let (weights, hub) = (dir.path().join("weights"), dir.path().join("hub"));
        std::fs::create_dir_all(&hub).unwrap();
        let bytes = b"fine-tuned weights saved under torchvision's name".to_vec();
        let checkpoint = TorchvisionCheckpoint {
            arch: "resnet18",
            tag: "TEST",
            file: "resnet18-0123abcd.pth",
            cache_name: "resnet18_test",
        };
        std::fs::write(hub.join(checkpoint.file), &bytes).unwrap();
        let err = fetch_torchvision(&checkpoint, &weights, &hub, None)
            .unwrap_err()
            .to_string();
        for part in [
            hub.join(checkpoint.file).display().to_string(),
            format!("its SHA-256 is {}", sha256_hex(&bytes)),
            "not starting with 0123abcd".to_string(),
            format!(
                "not torchvision's resnet18 TEST file ({})",
                checkpoint.url()
            ),
            "`memad weights import FILE --arch resnet18`".to_string(),
        ] {
            assert!(err.contains(&part), "{part} not in {err}");
        }
        assert!(!weights.exists(), "nothing converted");
        // The hub file is left alone: memad never deletes what it did not download.
        assert_eq!(std::fs::read(hub.join(checkpoint.file)).unwrap(), bytes);
    }

    /// A torchvision-layout resnet18 checkpoint (random init) made by the torch venv.
    const MAKE_RESNET18: &str = r#"
import sys, torch, torchvision
torch.manual_seed(0)
torch.save(torchvision.models.resnet18().state_dict(), sys.argv[1])
"#;

    #[test]
    fn fetch_downloads_converts_verifies_and_then_works_offline() {
        let python = venv_python().expect("the torch venv (./dev setup)");
        let dir = tempfile::tempdir().unwrap();
        let made = dir.path().join("r18.pth");
        let status = Command::new(python)
            .arg("-c")
            .arg(MAKE_RESNET18)
            .arg(&made)
            .status()
            .unwrap();
        assert!(status.success());
        let bytes = std::fs::read(&made).unwrap();
        let file: &'static str = Box::leak(honest("resnet18", &bytes).into_boxed_str());
        let checkpoint = TorchvisionCheckpoint {
            arch: "resnet18",
            tag: "TEST",
            file,
            cache_name: "resnet18_test",
        };
        // Served under its true name, and as a resnet34 checkpoint (does not load).
        let r34: &'static str = Box::leak(honest("resnet34", &bytes).into_boxed_str());
        let base = serve(HashMap::from([
            (file.to_string(), bytes.clone()),
            (r34.to_string(), bytes.clone()),
        ]));
        let (weights, hub) = (dir.path().join("weights"), dir.path().join("hub"));

        let converted = fetch_torchvision(&checkpoint, &weights, &hub, Some(&base)).unwrap();
        assert_eq!(converted, weights.join("resnet18_test.safetensors"));
        assert_eq!(std::fs::read(hub.join(file)).unwrap(), bytes);
        assert_eq!(listing(&weights), ["resnet18_test.safetensors"]);
        // Readable by a lab sharing the cache (Python's safetensors writes 0600).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&converted).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644, "{mode:o}");
        }
        let names = crate::weights::safetensors_names(&converted).unwrap();
        assert!(names.contains("layer4.1.bn2.running_var"), "{names:?}");
        // The values are the checkpoint's: the backbone loads them strictly.
        crate::build_backbone(
            "resnet18",
            converted.to_str().unwrap(),
            None,
            &weights,
            tch::Device::Cpu,
        )
        .unwrap();
        // Offline now: the converted copy is found without the server.
        assert_eq!(
            fetch_torchvision(&checkpoint, &weights, &hub, None).unwrap(),
            converted
        );

        // Downloaded fine but not resnet34 weights: named tensors, nothing in the cache.
        let wrong = TorchvisionCheckpoint {
            arch: "resnet34",
            tag: "TEST",
            file: r34,
            cache_name: "resnet34_test",
        };
        let err = fetch_torchvision(&wrong, &weights, &hub, Some(&base))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing (80)"), "{err}");
        // The hub file is named (not memad's deleted temporary file), with what to do: memad
        // never downloads a file that is there.
        let hub_file = hub.join(r34);
        assert!(
            err.starts_with(&format!(
                "weights {}: checkpoint does not match the model:",
                hub_file.display()
            )),
            "{err}"
        );
        assert!(
            err.ends_with(&format!(
                "this is not torchvision's resnet34 TEST file ({}): delete it (memad then \
                 downloads it again) or replace it with that file",
                wrong.url()
            )),
            "{err}"
        );
        assert!(!err.contains("converting"), "{err}");
        assert_eq!(listing(&weights), ["resnet18_test.safetensors"]);
    }
}
