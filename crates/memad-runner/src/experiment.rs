//! Experiment files: one TOML file = one experiment.
//!
//! Parsing is strict (`deny_unknown_fields` everywhere, errors name the file and the key
//! path); [`load`] resolves every section through the registry so the returned
//! [`Experiment`] has every default filled in, and [`Experiment::to_toml`] is what the run
//! folder stores.
use memad_core::precision::Precision;
use memad_core::registry::kind_of;
use memad_core::{parse_section, ConfigError, MethodEntry, Registry};
use memad_data::catalog::{DatasetCatalog, DatasetEntry, DatasetFormat};
pub use memad_data::image_io::{MaskResize, ResizeFilter, ResizeShape};
pub use memad_data::video::ClipMode;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Metric names `[eval] metrics` accepts, in report order. `aupro` is MVTec AD's (FPR limit
/// 0.3), `auspro` MVTec LOCO AD's saturated PRO (FPR limit 0.05, `mvtec_loco` only),
/// `aupro_rd4ad` the per-image PRO of RD4AD's official evaluation (its paper's PRO). The
/// `frame_*` metrics are the video protocol (frames grouped by video;
/// `eval.video_normalization` applies).
pub const METRICS: [&str; 12] = [
    "image_auroc",
    "image_ap",
    "image_f1_max",
    "pixel_auroc",
    "pixel_ap",
    "pixel_f1_max",
    "aupro",
    "auspro",
    "aupro_rd4ad",
    "frame_auroc_micro",
    "frame_auroc_macro",
    "class_accuracy",
];

/// The default of `[eval] metrics`: every image and pixel metric (the image metrics alone
/// for a method without anomaly maps).
const IMAGE_METRICS: usize = 7;

/// Whether a metric of [`METRICS`] is computed from anomaly maps (and masks).
pub fn is_pixel_metric(metric: &str) -> bool {
    metric.starts_with("pixel_") || metric.starts_with("aupro") || metric == "auspro"
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Runs go to `runs/<name>/<timestamp>/`; defaults to the file stem.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub seed: u64,
    /// `auto` (CUDA when available), `cpu`, `cuda`, `cuda:N`.
    #[serde(default = "d_device")]
    pub device: String,
    /// `fp32`, or `bf16`: training steps and scoring under autocast to bfloat16 on the run's
    /// device (variables, gradients and optimizer state stay fp32; see
    /// `memad_core::precision`). Fitted-once methods (PatchCore) fit in fp32.
    #[serde(default)]
    pub precision: Precision,
    /// Convolution weights of the trained model in channels-last memory (the frozen
    /// backbone has its own `[method.backbone] channels_last`).
    #[serde(default)]
    pub channels_last: bool,
    /// CUDA only: cuDNN times its convolution algorithms on the first batch of each shape
    /// and keeps the fastest (`torch.backends.cudnn.benchmark`). Faster for fixed shapes,
    /// but the choice may differ between runs, so results are no longer bitwise repeatable.
    #[serde(default)]
    pub cudnn_benchmark: bool,
    /// CUDA only: scoring of full test batches is captured once in a CUDA graph and replayed
    /// (`memad_cuda::GraphedScorer`); training steps run eagerly. Needs a method whose
    /// scoring never waits for the host (the run stops with an error naming this switch
    /// otherwise). Off the GPU every batch is scored eagerly.
    #[serde(default)]
    pub cuda_graphs: bool,
    pub data: DataConfig,
    /// The method section; its `kind` picks the registered method that validates the rest.
    pub method: toml::Value,
    pub train: TrainConfig,
    #[serde(default)]
    pub eval: EvalConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A name from `datasets.toml`.
    pub dataset: String,
    /// Categories to run; empty = all of the dataset.
    #[serde(default)]
    pub categories: Vec<String>,
    /// `one_class`: one model per category; `multi_class`: one model trained on the union
    /// of the categories' training sets (the unified protocol), evaluated per category, each
    /// sample carrying its category index as `Batch::class`.
    #[serde(default)]
    pub setting: Setting,
    /// Side of the square model input.
    pub image_size: u32,
    /// Decode at `resize x resize` (or with the shorter side at `resize`: `resize_shape`),
    /// then centre-crop to `image_size` (PatchCore's "resize 256, crop 224"); absent: decode
    /// at `image_size`, no crop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<u32>,
    /// What `resize` sets (only with it): `square` (the default: both sides, a non-square
    /// image is stretched) or `shorter_side` (the shorter side; the longer one becomes
    /// `int(resize * long / short)`, the aspect ratio kept, as torchvision's `Resize(256)`
    /// in PatchCore's official code), then the centre crop to `image_size`, of masks too.
    /// The same on square images. Written to config.toml only as `shorter_side`, so that
    /// earlier runs keep their config hash.
    #[serde(default, skip_serializing_if = "ResizeShape::is_square")]
    pub resize_shape: ResizeShape,
    /// The filter images are resized with, as the method's official code resizes them:
    /// `antialiased_bilinear` (the default: PIL's and torchvision's bilinear; RD4AD,
    /// PatchCore, anomalib), `bilinear` (OpenCV's `INTER_LINEAR`, no antialiasing: MNAD's
    /// official loader) or `antialiased_bicubic` (MATLAB's `imresize`: MemAE's official
    /// preprocessing). They differ by up to 20-30 grey levels on UCSD Ped2 frames. Masks
    /// follow `mask_resize`. Written to config.toml only when not the default, so that
    /// earlier runs keep their config hash.
    #[serde(default, skip_serializing_if = "ResizeFilter::is_default")]
    pub resize_filter: ResizeFilter,
    /// How test masks are brought to the input size: `nearest` (the default; written to
    /// config.toml only when another is chosen, so earlier runs keep their config hash),
    /// `bilinear_half` (RD4AD's official `gt > 0.5`) or `bilinear_full` (PatchCore's official
    /// `astype(int)`: wholly covered pixels only).
    #[serde(default, skip_serializing_if = "MaskResize::is_nearest")]
    pub mask_resize: MaskResize,
    pub batch_size: usize,
    #[serde(default = "d_eval_batch")]
    pub eval_batch_size: usize,
    /// Classification datasets (MNIST, Fashion-MNIST, CIFAR-10) only: the share of labelled
    /// anomalies (other classes, `label = 1` in training batches) in the training set; 0 is
    /// the one-class protocol, > 0 the unbalanced one. Methods that ignore labels train on
    /// them as if normal.
    #[serde(default)]
    pub anomaly_fraction: f64,
    /// A folder caching decoded, resized images (and masks) across epochs and runs; none when
    /// absent. Safe to share between experiments: entries are keyed by source path, size,
    /// mtime (on Unix inode and ctime too), target size (with `resize_shape = "shorter_side"`
    /// the shape and crop too: those entries are stored cropped) and resize filter. Nothing evicts
    /// entries whose key no longer matches (a re-written or moved dataset): delete the folder
    /// to reclaim them; on a file system without stable inode numbers entries never match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<std::path::PathBuf>,
    /// Anomalies pasted into training images, for methods trained on them (MDD-Net):
    /// `kind = "draem"` (Perlin-noise masks, the default settings of DRAEM) or `"cutpaste"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthesis: Option<memad_data::synthesis::SynthesisConfig>,
    /// Video datasets only: samples are clips of consecutive frames instead of single frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip: Option<ClipConfig>,
    /// A part of each category only (`memad run --smoke` sets it): checks that a
    /// configuration runs end to end; its numbers are not the dataset's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<SubsetConfig>,
}

impl DataConfig {
    /// How images and masks become the model input: decoded at `resize` (as `resize_shape`
    /// says) and centre-cropped to `image_size`, or decoded at `image_size`.
    pub fn geometry(&self) -> memad_data::image_io::Geometry {
        match self.resize {
            Some(resize) => memad_data::image_io::Geometry {
                resize,
                shape: self.resize_shape,
                crop: Some(self.image_size),
                filter: self.resize_filter,
            },
            None => memad_data::image_io::Geometry {
                filter: self.resize_filter,
                ..memad_data::image_io::Geometry::square(self.image_size)
            },
        }
    }
}

/// `[data.subset]`: samples kept of each category, picked evenly spaced through its lists
/// (`CategorySplit::subset`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubsetConfig {
    /// Training samples.
    pub train: usize,
    /// Test samples of each type: `good`, and each defect type.
    pub test_per_type: usize,
}

/// How models and categories relate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Setting {
    #[default]
    OneClass,
    MultiClass,
}

/// `[data.clip]`: how frames are grouped into samples (the input is `[B, 3 * frames, S, S]`,
/// frames in time order).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipConfig {
    /// Frames per sample (MNAD prediction: 5 = 4 past frames + the target; MemAE: 16).
    pub frames: usize,
    /// `predict` (past frames + the frame scored last), `centred` (the scored frame in the
    /// middle, the window clamped at the video's ends: every frame scored) or
    /// `centred_valid` (only windows wholly inside the video, as the official MemAE).
    pub mode: ClipMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    Adam,
    AdamW,
    Sgd,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: usize,
    pub optimizer: OptimizerKind,
    pub lr: f64,
    /// Adam's and AdamW's betas; SGD does not use them.
    #[serde(default = "d_betas")]
    pub betas: [f64; 2],
    /// SGD's momentum (PyTorch's `momentum`, 0 when not given: the resolved config of an SGD
    /// run always holds it). Adam and AdamW ignore it and their resolved config leaves it
    /// out, as SGD ignores `betas`: a sweep over the optimizer keeps SGD's momentum in its
    /// base, and the config hashes of Adam runs do not change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,
    #[serde(default)]
    pub weight_decay: f64,
    /// Learning rate per step: `constant`, or `cosine` (PyTorch's `CosineAnnealingLR` over
    /// all steps of training, from `lr` down to `min_lr`).
    #[serde(default)]
    pub schedule: ScheduleKind,
    /// The cosine schedule's last learning rate (`eta_min`).
    #[serde(default)]
    pub min_lr: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    #[default]
    Constant,
    Cosine,
}

impl TrainConfig {
    /// The schedule the runner applies per step.
    pub fn lr_schedule(&self) -> memad_core::optim::LrSchedule {
        match self.schedule {
            ScheduleKind::Constant => memad_core::optim::LrSchedule::Constant,
            ScheduleKind::Cosine => memad_core::optim::LrSchedule::Cosine {
                min_lr: self.min_lr,
            },
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Names from [`METRICS`]. The default: every image and pixel metric the method gives
    /// (no pixel metric for a method without anomaly maps).
    #[serde(default = "d_metrics")]
    pub metrics: Vec<String>,
    /// Per-video score normalisation for the `frame_*` metrics: `none`, or `min_max` (each
    /// video's scores, or each weighted part of a combined score, mapped to `[0, 1]`, as
    /// MNAD and MemAE evaluate).
    #[serde(default)]
    pub video_normalization: VideoNormalizationConfig,
    /// Columns of the anomaly-map overlay grid written per category
    /// (`overlays/<category>.png`: inputs, maps with the ground-truth contour), for methods
    /// that localise; 0 writes none.
    #[serde(default = "d_overlays")]
    pub overlays: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoNormalizationConfig {
    #[default]
    None,
    MinMax,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            metrics: d_metrics(),
            video_normalization: VideoNormalizationConfig::None,
            overlays: d_overlays(),
        }
    }
}

fn d_device() -> String {
    "auto".into()
}
fn d_overlays() -> usize {
    8
}
fn d_eval_batch() -> usize {
    16
}
/// Adam's betas when `train.betas` is not given (PyTorch's).
pub(crate) const DEFAULT_BETAS: [f64; 2] = [0.9, 0.999];
fn d_betas() -> [f64; 2] {
    DEFAULT_BETAS
}
fn d_metrics() -> Vec<String> {
    METRICS[..IMAGE_METRICS]
        .iter()
        .map(|m| m.to_string())
        .collect()
}

/// A parsed, resolved experiment and what it refers to.
#[derive(Debug)]
pub struct Loaded {
    pub experiment: Experiment,
    pub dataset: DatasetEntry,
}

/// Refuses a category named `mean`, the name of the mean row and column of memad's result
/// tables, where the two would be mixed up.
pub fn check_category_names(dataset: &DatasetEntry, categories: &[String]) -> anyhow::Result<()> {
    if let Some(c) = categories.iter().find(|c| c.as_str() == "mean") {
        anyhow::bail!(
            "dataset `{}` has a category named `{c}`, the name of the mean row and column of \
             memad's result tables, where the two would be mixed up: rename its folder under \
             {} (or link it under another name)",
            dataset.name,
            dataset.root.display()
        );
    }
    Ok(())
}

impl Loaded {
    /// What `memad check` can say of this machine without reading images or training:
    /// an error for a category the dataset's folder does not have (named by the experiment,
    /// or listed in `datasets.toml` when the experiment names none) or a CUDA-only backbone precision with `device = "cpu"`, and notes for
    /// what a run here would not find (a run elsewhere may): the CUDA device the experiment
    /// asks for or its backbone precision needs, the dataset's root (nothing for a synthetic
    /// dataset not generated yet), the backbone's weights in `weights_dir` or torchvision's
    /// hub folder (a run downloads torchvision's checkpoints), and the DRAEM synthesis's
    /// `texture_dir`.
    pub fn check_on_disk(&self, weights_dir: &Path) -> anyhow::Result<Vec<String>> {
        let mut notes = self.device_notes()?;
        notes.extend(self.weights_notes(weights_dir));
        if let Some(synthesis) = &self.experiment.data.synthesis {
            if let Err(e) = memad_data::synthesis::build(synthesis) {
                notes.push(format!("data.synthesis: {e}"));
            }
        }
        let dataset = &self.dataset;
        if dataset.to_generate().is_some() {
            return Ok(notes);
        }
        if !dataset.root.exists() {
            notes.push(format!(
                "dataset `{}`: its root {} does not exist on this machine",
                dataset.name,
                dataset.root.display()
            ));
            return Ok(notes);
        }
        // The categories a run reads: those named, else those `datasets.toml` lists (else
        // whatever is on disk): each must be on disk.
        let (key, wanted) = match (&self.experiment.data.categories, &dataset.categories) {
            (named, Some(listed)) if named.is_empty() => (
                format!("datasets.toml: {}.categories", dataset.name),
                listed,
            ),
            (named, _) => ("data.categories".to_string(), named),
        };
        let on_disk = dataset.categories_on_disk()?;
        check_category_names(dataset, if wanted.is_empty() { &on_disk } else { wanted })?;
        for (i, c) in wanted.iter().enumerate() {
            anyhow::ensure!(
                on_disk.contains(c),
                "{key}[{i}]: dataset `{}` at {} has no category `{c}`{}; it has: {}",
                dataset.name,
                dataset.root.display(),
                memad_data::did_you_mean(c, &on_disk),
                on_disk.join(", ")
            );
        }
        Ok(notes)
    }

    /// What an empty `data.categories` stands for, as a TOML comment for `memad check
    /// --resolved`: the dataset's categories where they are known here (listed in
    /// `datasets.toml`, generated, or found on disk); `None` when categories are named.
    pub fn all_categories_comment(&self) -> Option<String> {
        if !self.experiment.data.categories.is_empty() {
            return None;
        }
        let dataset = &self.dataset;
        let what = match dataset.category_names() {
            Ok(names) => format!("its {}: {}", names.len(), names.join(", ")),
            Err(e) => format!(
                "none can be listed here ({})",
                e.to_string().replace('\n', " ")
            ),
        };
        Some(format!(
            "# data.categories = [] runs every category of dataset `{}`; {what}",
            dataset.name
        ))
    }

    /// A note when `device` names a CUDA device this machine does not have, or when the
    /// backbone's CUDA-only `precision` would run on this machine's CPU; an error when it
    /// would on every machine (`device = "cpu"`).
    fn device_notes(&self) -> anyhow::Result<Vec<String>> {
        let device = match memad_core::device::select(&self.experiment.device) {
            Ok(device) => device,
            Err(e) => return Ok(vec![format!("device: {e}")]),
        };
        let backbone = self.experiment.method.get("backbone");
        let precision = (backbone.and_then(|b| b.get("precision"))).and_then(|v| v.as_str());
        let Some(precision) = precision.filter(|p| *p != "fp32" && !device.is_cuda()) else {
            return Ok(Vec::new());
        };
        let what = format!("method.backbone.precision = \"{precision}\" runs on CUDA only");
        anyhow::ensure!(
            self.experiment.device != "cpu",
            "{what} and device = \"cpu\": use precision = \"fp32\" or another device"
        );
        Ok(vec![format!(
            "{what}: a run on this machine (no CUDA device) fails when it builds the model"
        )])
    }

    /// A note when `method.backbone.weights` names no file on this machine.
    fn weights_notes(&self, weights_dir: &Path) -> Vec<String> {
        use memad_backbones::weights;
        let backbone = self.experiment.method.get("backbone");
        let field = |key| backbone.and_then(|b| b.get(key)).and_then(|v| v.as_str());
        let (Some(arch), Some(spec)) = (field("kind"), field("weights")) else {
            return Vec::new();
        };
        let hub = weights::torch_hub_checkpoints_dir();
        let err = match weights::resolve_weights_in(spec, weights_dir, arch, &hub) {
            Ok(_) => return Vec::new(),
            Err(e) => e,
        };
        let note = match weights::torchvision_checkpoint(spec, arch) {
            // Neither memad's copy nor torchvision's file: a run downloads it, unless offline.
            Ok(Some(c)) if !hub.join(c.file).exists() && !memad_backbones::fetch::offline() => {
                format!(
                    "`{spec}` is not on this machine yet: `memad run` downloads {} to {} and \
                     converts it (or now: `memad weights download torchvision:{}:{}`)",
                    c.url(),
                    hub.join(c.file).display(),
                    c.arch,
                    c.tag
                )
            }
            Ok(Some(c)) if !hub.join(c.file).exists() => weights::missing_torchvision(
                c,
                weights_dir,
                &hub,
                "downloading is off: MEMAD_OFFLINE is set",
            )
            .to_string(),
            _ => err.to_string(),
        };
        vec![format!("method.backbone.weights: {note}")]
    }
}

impl Experiment {
    /// `memad run --smoke`: the fewest epochs the method takes (`min_epochs`, the
    /// registry's `MethodEntry::min_epochs`: 1, MSCM's stages) on `2 * batch_size` training
    /// samples and two test samples of each type per category (`data.subset`, unless the
    /// file sets its own), named `<name>_smoke` so that its runs never mix with the real
    /// ones in a table.
    pub fn into_smoke(mut self, min_epochs: usize) -> Self {
        self.name = format!("{}_smoke", self.name);
        self.train.epochs = min_epochs.max(1);
        self.data.subset.get_or_insert(SubsetConfig {
            train: 2 * self.data.batch_size,
            test_per_type: 2,
        });
        self
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a resolved experiment serialises")
    }

    pub fn method_kind(&self) -> &str {
        self.method
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or("?")
    }

    /// The memory, for `metrics.csv`: `none` in a no-memory ablation (`use_memory = false`),
    /// else the `kind` of `[method.memory]` where the method takes a registered memory (MNAD,
    /// MemAE); `-` for the rest (a memory fixed by its method, or none).
    pub fn memory_kind(&self) -> &str {
        if self.method.get("use_memory").and_then(|u| u.as_bool()) == Some(false) {
            return "none";
        }
        self.method
            .get("memory")
            .and_then(|m| m.get("kind"))
            .and_then(|k| k.as_str())
            .unwrap_or("-")
    }

    pub fn backbone_kind(&self) -> &str {
        self.method
            .get("backbone")
            .and_then(|b| b.get("kind"))
            .and_then(|k| k.as_str())
            .unwrap_or("-")
    }
}

/// What `memad run` (and `memad sweep`) change of an experiment before it is checked:
/// `--smoke` ([`Experiment::into_smoke`]), then `--epochs`, so that either can satisfy a
/// method's fewest epochs ([`check_epochs`]) that the file's `train.epochs` does not.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOverrides {
    pub smoke: bool,
    pub epochs: Option<usize>,
}

/// Parses and resolves `path`; `catalog` resolves the dataset name.
pub fn load(path: &Path, registry: &Registry, catalog: &DatasetCatalog) -> anyhow::Result<Loaded> {
    load_with(path, registry, catalog, RunOverrides::default())
}

/// [`load`] with `overrides` applied before the checks.
pub fn load_with(
    path: &Path,
    registry: &Registry,
    catalog: &DatasetCatalog,
    overrides: RunOverrides,
) -> anyhow::Result<Loaded> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    load_text_with(&text, path, registry, catalog, overrides)
}

/// [`load`] of an experiment's `text`; errors name `path` as its file.
pub fn load_text(
    text: &str,
    path: &Path,
    registry: &Registry,
    catalog: &DatasetCatalog,
) -> anyhow::Result<Loaded> {
    load_text_with(text, path, registry, catalog, RunOverrides::default())
}

/// [`load_text`] with `overrides` applied before the checks.
pub fn load_text_with(
    text: &str,
    path: &Path,
    registry: &Registry,
    catalog: &DatasetCatalog,
    overrides: RunOverrides,
) -> anyhow::Result<Loaded> {
    let mut experiment = resolve(text, path, registry).map_err(|e| e.in_file(path))?;
    if overrides.smoke {
        let least = min_epochs(&experiment, registry).map_err(|e| e.in_file(path))?;
        experiment = experiment.into_smoke(least);
    }
    if let Some(e) = overrides.epochs {
        experiment.train.epochs = e;
    }
    match (check_epochs(&experiment, registry), overrides.epochs) {
        (Ok(()), _) => {}
        (Err(err), Some(e)) => return Err(anyhow::Error::new(err).context(format!("--epochs {e}"))),
        (Err(err), None) => return Err(err.in_file(path).into()),
    }
    let dataset = catalog
        .get(&experiment.data.dataset)
        .map_err(|e| ConfigError::new("data.dataset", e.to_string()).in_file(path))?
        .clone();
    if let Some(known) = &dataset.categories {
        for (i, c) in experiment.data.categories.iter().enumerate() {
            if !known.contains(c) {
                let msg = format!(
                    "unknown category `{c}` of dataset `{}`{}; known: {}",
                    dataset.name,
                    memad_data::did_you_mean(c, known),
                    known.join(", ")
                );
                return Err(ConfigError::new(format!("data.categories[{i}]"), msg)
                    .in_file(path)
                    .into());
            }
        }
    }
    let video = dataset.format.is_video();
    let not_video = |key: &str, what: &str| {
        let msg = format!(
            "{what} needs a video dataset; `{}` has format {}",
            dataset.name, dataset.format
        );
        Err(ConfigError::new(key, msg).in_file(path).into())
    };
    if experiment.data.clip.is_some() && !video {
        return not_video("data.clip", "[data.clip]");
    }
    if experiment.eval.video_normalization != VideoNormalizationConfig::None && !video {
        return not_video(
            "eval.video_normalization",
            "per-video score normalisation (for the frame_* metrics)",
        );
    }
    let classes = matches!(
        dataset.format,
        DatasetFormat::MnistIdx | DatasetFormat::Cifar10
    );
    if experiment.data.anomaly_fraction > 0.0 && !classes {
        let msg = format!(
            "labelled training anomalies need a classification dataset (mnist_idx, cifar10); \
             `{}` has format {}",
            dataset.name, dataset.format
        );
        return Err(ConfigError::new("data.anomaly_fraction", msg)
            .in_file(path)
            .into());
    }
    if experiment.data.setting == Setting::MultiClass && classes {
        let msg = format!(
            "`{}` is a classification dataset: its categories share one test set, so there is \
             no multi-class unified protocol; use setting = \"one_class\"",
            dataset.name
        );
        return Err(ConfigError::new("data.setting", msg).in_file(path).into());
    }
    if let Some(i) = (experiment.eval.metrics.iter()).position(|m| classes && is_pixel_metric(m)) {
        let msg = format!(
            "`{}` is a classification dataset (one-class protocol): it has no pixel masks; \
             use image_auroc, image_ap, image_f1_max",
            dataset.name
        );
        return Err(ConfigError::new(format!("eval.metrics[{i}]"), msg)
            .in_file(path)
            .into());
    }
    if let Some(i) = (experiment.eval.metrics.iter()).position(|m| m == "auspro") {
        if dataset.format != DatasetFormat::MvtecLoco {
            let msg = format!(
                "auspro (saturated PRO) needs the per-region saturation thresholds of MVTec \
                 LOCO AD (format mvtec_loco); `{}` has format {}: use aupro",
                dataset.name, dataset.format
            );
            return Err(ConfigError::new(format!("eval.metrics[{i}]"), msg)
                .in_file(path)
                .into());
        }
    }
    if let Some(i) = (experiment.eval.metrics.iter()).position(|m| m.starts_with("frame_")) {
        if !video {
            return not_video(&format!("eval.metrics[{i}]"), "a frame_* metric");
        }
    }
    Ok(Loaded {
        experiment,
        dataset,
    })
}

/// Parses `text` and fills every default; nothing is built.
pub fn resolve(text: &str, path: &Path, registry: &Registry) -> Result<Experiment, ConfigError> {
    let value: toml::Value = toml::from_str(text)
        .map_err(|e| ConfigError::new("", memad_core::toml_syntax_error(text, &e)))?;
    let mut experiment: Experiment = parse_section(&value, "")?;
    match experiment.train.optimizer {
        OptimizerKind::Sgd => _ = experiment.train.momentum.get_or_insert(0.0),
        OptimizerKind::Adam | OptimizerKind::AdamW => experiment.train.momentum = None,
    }
    if experiment.name.is_empty() {
        experiment.name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
    }
    let entry = registry.method(kind_of(&experiment.method, "method")?, "method.kind")?;
    experiment.method = (entry.resolve)(&experiment.method, "method", registry)?;
    let metrics_given = (value.get("eval")).is_some_and(|e| e.get("metrics").is_some());
    if !metrics_given && !entry.anomaly_maps {
        experiment.eval.metrics.retain(|m| !is_pixel_metric(m));
    }
    validate(&experiment)?;
    let multiple = (entry.image_multiple)(&experiment.method);
    if i64::from(experiment.data.image_size) % multiple != 0 {
        let msg = format!(
            "must be a multiple of {multiple} for method `{}` (its feature maps are up to \
             {multiple} times smaller), got {}",
            entry.kind, experiment.data.image_size
        );
        return Err(ConfigError::new("data.image_size", msg));
    }
    match (
        entry.synthetic_anomalies,
        experiment.data.synthesis.is_some(),
    ) {
        (true, false) => {
            let msg = format!(
                "method `{}` trains on synthesized anomalies: add a [data.synthesis] section \
                 (kind = \"draem\" or \"cutpaste\")",
                entry.kind
            );
            return Err(ConfigError::new("data.synthesis", msg));
        }
        (false, true) => {
            let msg = format!(
                "method `{}` does not train on synthesized anomalies; remove [data.synthesis]",
                entry.kind
            );
            return Err(ConfigError::new("data.synthesis", msg));
        }
        _ => {}
    }
    check_outputs(&experiment, entry)?;
    let data = toml::Value::try_from(&experiment.data)
        .map_err(|e| ConfigError::new("data", e.to_string()))?;
    (entry.check_data)(&experiment.method, &data)?;
    Ok(experiment)
}

/// Refuses a metric the method's scores cannot give (the registry's `anomaly_maps` and
/// `class_predictions`): the run would leave it out of `metrics.csv`.
fn check_outputs(e: &Experiment, entry: &MethodEntry) -> Result<(), ConfigError> {
    for (i, m) in e.eval.metrics.iter().enumerate() {
        let why = if is_pixel_metric(m) && !entry.anomaly_maps {
            "it gives no anomaly maps (one score per image): use image or frame metrics"
        } else if m == "class_accuracy" && !entry.class_predictions {
            "it predicts no classes (MDD-Net does, with its class-aware memory)"
        } else {
            continue;
        };
        return Err(ConfigError::new(
            format!("eval.metrics[{i}]"),
            format!(
                "`{m}` cannot be computed for method `{}`: {why}",
                entry.kind
            ),
        ));
    }
    Ok(())
}

/// Refuses fewer `train.epochs` than the method takes ([`min_epochs`]): the method's own
/// check would stop a run only at its first epoch, after every file was read. Checked at
/// load, after `--smoke` and `--epochs` ([`RunOverrides`]).
pub(crate) fn check_epochs(e: &Experiment, registry: &Registry) -> Result<(), ConfigError> {
    let entry = registry.method(kind_of(&e.method, "method")?, "method.kind")?;
    let (least, why) = (entry.min_epochs)(&e.method);
    match e.train.epochs < least {
        true => Err(ConfigError::new(
            "train.epochs",
            format!(
                "must be at least {least} for method `{}`{}, got {}",
                entry.kind,
                why.map_or(String::new(), |w| format!(" ({w})")),
                e.train.epochs
            ),
        )),
        false => Ok(()),
    }
}

/// The fewest epochs the experiment's method takes (`MethodEntry::min_epochs`).
pub(crate) fn min_epochs(e: &Experiment, registry: &Registry) -> Result<usize, ConfigError> {
    let entry = registry.method(kind_of(&e.method, "method")?, "method.kind")?;
    Ok((entry.min_epochs)(&e.method).0)
}

/// The largest `data.image_size` and `data.resize`.
const MAX_IMAGE_SIZE: u32 = 4096;

fn validate(e: &Experiment) -> Result<(), ConfigError> {
    let positive = [
        ("data.image_size", e.data.image_size as usize),
        ("data.batch_size", e.data.batch_size),
        ("data.eval_batch_size", e.data.eval_batch_size),
        ("train.epochs", e.train.epochs),
    ];
    for (key, v) in positive {
        if v == 0 {
            return Err(ConfigError::new(key, "must be at least 1"));
        }
    }
    // A typo's extra digit would otherwise abort the process allocating the resized image
    // (`resize = 100000`: 30 GB) after the run folder exists.
    for (key, size) in [
        ("data.image_size", Some(e.data.image_size)),
        ("data.resize", e.data.resize),
    ] {
        if size.is_some_and(|s| s > MAX_IMAGE_SIZE) {
            let msg = format!(
                "at most {MAX_IMAGE_SIZE} (one {MAX_IMAGE_SIZE} x {MAX_IMAGE_SIZE} RGB image is \
                 192 MiB as float32), got {}",
                size.unwrap_or_default()
            );
            return Err(ConfigError::new(key, msg));
        }
    }
    if let Some(cache) = &e.data.cache {
        if cache.as_os_str().is_empty() {
            let msg = "is empty: name a folder (e.g. \"cache/decoded\"), or remove the key \
                       for no cache";
            return Err(ConfigError::new("data.cache", msg));
        }
        if cache.is_file() {
            let msg = format!("{} is a file: name a folder", cache.display());
            return Err(ConfigError::new("data.cache", msg));
        }
    }
    if let Some(synthesis) = &e.data.synthesis {
        // The parameters, here; the texture folder at the run (it may be elsewhere).
        if let Err((key, msg)) = memad_data::synthesis::check_parameters(synthesis) {
            return Err(ConfigError::new(key, msg));
        }
    }
    if let Some(subset) = e.data.subset {
        for (key, v) in [
            ("train", subset.train),
            ("test_per_type", subset.test_per_type),
        ] {
            if v == 0 {
                return Err(ConfigError::new(
                    format!("data.subset.{key}"),
                    "must be at least 1",
                ));
            }
        }
    }
    if e.data.resize_shape == ResizeShape::ShorterSide && e.data.resize.is_none() {
        return Err(ConfigError::new(
            "data.resize_shape",
            "\"shorter_side\" needs data.resize, the size images are resized to before the \
             centre crop to data.image_size: add `resize = N` (N >= image_size, e.g. 256 for \
             image_size = 224) to [data], or remove resize_shape (without resize, images are \
             resized straight to image_size x image_size)",
        ));
    }
    if e.data.resize.is_some_and(|r| r < e.data.image_size) {
        let resized = match e.data.resize_shape {
            ResizeShape::Square => "images are resized",
            ResizeShape::ShorterSide => {
                "images are resized (their shorter side, resize_shape = \"shorter_side\")"
            }
        };
        return Err(ConfigError::new(
            "data.resize",
            format!(
                "must be at least data.image_size ({}): {resized}, then centre-cropped to it",
                e.data.image_size
            ),
        ));
    }
    if !(0.0..1.0).contains(&e.data.anomaly_fraction) {
        return Err(ConfigError::new(
            "data.anomaly_fraction",
            "must be in [0, 1)",
        ));
    }
    if let Some(clip) = &e.data.clip {
        let least = if clip.mode == ClipMode::Predict { 2 } else { 1 };
        if clip.frames < least {
            return Err(ConfigError::new(
                "data.clip.frames",
                format!(
                    "must be at least {least} for mode {}",
                    toml::Value::try_from(clip.mode).map_or(String::new(), |m| m.to_string())
                ),
            ));
        }
    }
    if !e.train.lr.is_finite() || e.train.lr <= 0.0 {
        return Err(ConfigError::new("train.lr", "must be positive and finite"));
    }
    if !(0.0..=e.train.lr).contains(&e.train.min_lr) {
        return Err(ConfigError::new("train.min_lr", "must be in [0, train.lr]"));
    }
    for (i, beta) in e.train.betas.iter().enumerate() {
        if !(0.0..1.0).contains(beta) {
            return Err(ConfigError::new(
                format!("train.betas[{i}]"),
                format!("must be in [0, 1), got {beta}"),
            ));
        }
    }
    if let Some(m) = e.train.momentum.filter(|m| !(0.0..1.0).contains(m)) {
        return Err(ConfigError::new(
            "train.momentum",
            format!("must be in [0, 1), got {m}"),
        ));
    }
    if !(e.train.weight_decay.is_finite() && e.train.weight_decay >= 0.0) {
        return Err(ConfigError::new(
            "train.weight_decay",
            format!("must be finite and >= 0, got {}", e.train.weight_decay),
        ));
    }
    // A name listed twice would train and score a category twice (and weigh it twice in
    // the printed mean), or compute a metric twice.
    no_repeats(&e.data.categories, "data.categories")?;
    no_repeats(&e.eval.metrics, "eval.metrics")?;
    if e.eval.metrics.is_empty() {
        return Err(ConfigError::new(
            "eval.metrics",
            format!("name at least one metric; known: {}", METRICS.join(", ")),
        ));
    }
    for (i, m) in e.eval.metrics.iter().enumerate() {
        if !METRICS.contains(&m.as_str()) {
            return Err(ConfigError::new(
                format!("eval.metrics[{i}]"),
                format!("unknown metric `{m}`; known: {}", METRICS.join(", ")),
            ));
        }
    }
    // It names a folder under the runs folder: `..` or `.` would name another one.
    if !e.name.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !(e.name.chars()).all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(ConfigError::new(
            "name",
            "start with a letter or digit, then use letters, digits, '-', '_' and '.' only \
             (it names a folder)",
        ));
    }
    memad_core::device::select(&e.device)
        .map(|_| ())
        .or_else(|err| match e.device.as_str() {
            // A CUDA device is a valid request on a machine without one; `run` reports it.
            d if d == "cuda" || d.starts_with("cuda:") && d[5..].parse::<usize>().is_ok() => Ok(()),
            _ => Err(ConfigError::new("device", err.to_string())),
        })
}

/// An entry of the list `key` that repeats an earlier one is an error naming both.
pub(crate) fn no_repeats(values: &[String], key: &str) -> Result<(), ConfigError> {
    for (i, v) in values.iter().enumerate() {
        if let Some(first) = values[..i].iter().position(|w| w == v) {
            return Err(ConfigError::new(
                format!("{key}[{i}]"),
                format!("`{v}` is listed twice (also {key}[{first}])"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PatchCore-like experiment whose `[data]` ends with `data` (no registry needed:
    /// [`validate`] and [`Experiment::to_toml`] only).
    fn experiment(data: &str) -> Experiment {
        toml::from_str(&format!(
            "name = \"x\"\ndevice = \"cpu\"\n[data]\ndataset = \"visa\"\nimage_size = 224\n\
             batch_size = 8\n{data}\n[method]\nkind = \"patchcore\"\n[train]\nepochs = 1\n\
             optimizer = \"adam\"\nlr = 0.001\n"
        ))
        .unwrap()
    }

    /// `--smoke` and `--epochs` apply before the check of a method's fewest epochs, so each
    /// can satisfy it where the file does not (MSCM: its stage-1 epochs and one more).
    #[test]
    fn smoke_and_epochs_apply_before_the_fewest_epochs_are_checked() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let path = root.join("experiments/paper/mscm_fashion_mnist.toml");
        let file = std::fs::read_to_string(&path).unwrap();
        assert!(
            file.contains("stage1_epochs = 4"),
            "the test edits that line"
        );
        let text = file.replacen("stage1_epochs = 4", "stage1_epochs = 10", 1);
        let catalog = DatasetCatalog::load(&root.join("datasets.toml")).unwrap();
        let registry = crate::registry();
        let load = |smoke, epochs| {
            let overrides = RunOverrides { smoke, epochs };
            load_text_with(&text, &path, &registry, &catalog, overrides)
        };
        let err = format!("{:#}", load(false, None).unwrap_err());
        assert!(
            err.contains("train.epochs: must be at least 11 for method `mscm`")
                && err.contains("got 7"),
            "{err}"
        );
        assert_eq!(load(false, Some(12)).unwrap().experiment.train.epochs, 12);
        let smoke = load(true, None).unwrap().experiment;
        assert_eq!(
            (smoke.train.epochs, smoke.name.as_str()),
            (11, "mscm_fashion_mnist_smoke")
        );
        let err = format!("{:#}", load(true, Some(3)).unwrap_err());
        assert!(
            err.starts_with("--epochs 3: train.epochs: must be at least 11"),
            "{err}"
        );
    }

    /// SGD's momentum is `train.momentum`, written into every SGD run's config; Adam runs
    /// keep their config (hence its hash) and ignore the key, so that a sweep over the
    /// optimizer can keep it in its base.
    #[test]
    fn sgd_momentum_is_its_own_key() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let path = root.join("experiments/quickstart.toml");
        let file = std::fs::read_to_string(&path).unwrap();
        assert!(
            file.contains("optimizer = \"adam\"\n"),
            "the test edits that line"
        );
        let registry = crate::registry();
        let with = |train: &str| {
            let text = file.replacen("optimizer = \"adam\"\n", train, 1);
            resolve(&text, &path, &registry)
        };
        let adam = with("optimizer = \"adam\"\n").unwrap();
        assert_eq!(adam.train.momentum, None);
        assert!(!adam.to_toml().contains("momentum"), "{}", adam.to_toml());
        let sgd = with("optimizer = \"sgd\"\n").unwrap();
        assert_eq!(sgd.train.momentum, Some(0.0));
        assert!(
            sgd.to_toml().contains("momentum = 0.0"),
            "{}",
            sgd.to_toml()
        );
        let sgd = with("optimizer = \"sgd\"\nmomentum = 0.9\n").unwrap();
        assert_eq!(sgd.train.momentum, Some(0.9));
        let again = resolve(&sgd.to_toml(), &path, &registry).unwrap();
        assert_eq!(again.to_toml(), sgd.to_toml());
        let err = with("optimizer = \"sgd\"\nmomentum = 1.0\n").unwrap_err();
        assert_eq!(
            (err.path.as_str(), err.message.as_str()),
            ("train.momentum", "must be in [0, 1), got 1")
        );
        let adam_w = with("optimizer = \"adam_w\"\nmomentum = 0.9\n").unwrap();
        assert_eq!(adam_w.train.momentum, None);
        let plain = with("optimizer = \"adam_w\"\n").unwrap();
        assert_eq!(adam_w.to_toml(), plain.to_toml());
    }

    #[test]
    fn resize_shape_is_written_only_when_not_the_default() {
        let none = experiment("resize = 256");
        let square = experiment("resize = 256\nresize_shape = \"square\"");
        let shorter = experiment("resize = 256\nresize_shape = \"shorter_side\"");
        for e in [&none, &square, &shorter] {
            validate(e).unwrap();
        }
        // Earlier runs (no key) keep their config.toml, hence their config hash.
        assert!(
            !none.to_toml().contains("resize_shape"),
            "{}",
            none.to_toml()
        );
        assert_eq!(square.to_toml(), none.to_toml());
        assert!(shorter
            .to_toml()
            .contains("resize_shape = \"shorter_side\""));
        // The same for the resize filter.
        assert!(!none.to_toml().contains("resize_filter"));
        let bilinear = experiment("resize_filter = \"bilinear\"");
        assert!(bilinear.to_toml().contains("resize_filter = \"bilinear\""));
        assert_eq!(bilinear.data.geometry().filter, ResizeFilter::Bilinear);
        let shorter_bicubic = experiment(
            "resize = 256\nresize_shape = \"shorter_side\"\nresize_filter = \"antialiased_bicubic\"",
        );
        assert_eq!(
            shorter_bicubic.data.geometry().filter,
            ResizeFilter::AntialiasedBicubic
        );
        assert_eq!(none.data.resize_shape, ResizeShape::Square);
        assert_eq!(shorter.data.resize_shape, ResizeShape::ShorterSide);
        // A written config reads back as itself.
        let again: Experiment = toml::from_str(&shorter.to_toml()).unwrap();
        assert_eq!(again.data.resize_shape, ResizeShape::ShorterSide);
        let g = shorter.data.geometry();
        assert_eq!(
            (g.resize, g.shape, g.crop),
            (256, ResizeShape::ShorterSide, Some(224))
        );
        assert_eq!(g.resized((1500, 1000)), (384, 256));
        let plain = experiment("").data.geometry();
        assert_eq!((plain.resize, plain.crop), (224, None));
    }

    #[test]
    fn synthesis_parameters_out_of_range_name_their_key() {
        let err = validate(&experiment(
            "[data.synthesis]\nkind = \"draem\"\nbeta_max = 1.5",
        ))
        .unwrap_err();
        assert_eq!(
            (err.path.as_str(), err.message.as_str()),
            ("data.synthesis.beta_max", "1.5 is outside [0, 1]")
        );
        let err = validate(&experiment(
            "[data.synthesis]\nkind = \"cutpaste\"\ncolour_jitter = -1.0",
        ))
        .unwrap_err();
        assert_eq!(err.path, "data.synthesis.colour_jitter");
        validate(&experiment("[data.synthesis]\nkind = \"draem\"")).unwrap();
    }

    #[test]
    fn video_normalization_needs_a_video_dataset() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let path = root.join("experiments/quickstart.toml");
        let text = std::fs::read_to_string(&path).unwrap() + "video_normalization = \"min_max\"\n";
        assert!(
            text.contains("[eval]")
                && text
                    .trim_end()
                    .ends_with("video_normalization = \"min_max\"")
        );
        let catalog = DatasetCatalog::load(&root.join("datasets.toml")).unwrap();
        let err = load_text(&text, &path, &crate::registry(), &catalog).unwrap_err();
        assert!(
            format!("{err:#}").contains("eval.video_normalization: per-video score normalisation"),
            "{err:#}"
        );
    }

    #[test]
    fn an_empty_cache_path_is_refused() {
        let err = validate(&experiment("cache = \"\"")).unwrap_err();
        assert_eq!(err.path, "data.cache");
        assert!(
            err.message.starts_with("is empty: name a folder"),
            "{}",
            err.message
        );
        let file = tempfile::NamedTempFile::new().unwrap();
        let e = experiment(&format!("cache = \"{}\"", file.path().display()));
        assert!(validate(&e)
            .unwrap_err()
            .message
            .ends_with("is a file: name a folder"));
    }

    #[test]
    fn image_sizes_past_4096_are_refused() {
        let err = validate(&experiment("resize = 100000")).unwrap_err();
        assert_eq!(err.path, "data.resize");
        assert_eq!(
            err.message,
            "at most 4096 (one 4096 x 4096 RGB image is 192 MiB as float32), got 100000"
        );
        validate(&experiment("resize = 4096")).unwrap();
    }

    #[test]
    fn resize_shape_needs_resize_and_room_for_the_crop() {
        let e = experiment("resize_shape = \"shorter_side\"");
        let err = validate(&e).unwrap_err();
        assert_eq!(err.path, "data.resize_shape");
        assert!(
            err.message.contains("\"shorter_side\" needs data.resize")
                && err.message.contains("add `resize = N`")
                && err.message.contains("or remove resize_shape"),
            "{}",
            err.message
        );
        // "square" is the default: without resize, images are resized straight to a square.
        let square = experiment("resize_shape = \"square\"");
        validate(&square).unwrap();
        assert_eq!(square.to_toml(), experiment("").to_toml());
        let e = experiment("resize = 200\nresize_shape = \"shorter_side\"");
        let err = validate(&e).unwrap_err();
        assert_eq!(err.path, "data.resize");
        assert!(
            err.message
                .contains("must be at least data.image_size (224)")
                && err.message.contains("their shorter side"),
            "{}",
            err.message
        );
        validate(&experiment("resize = 224\nresize_shape = \"shorter_side\"")).unwrap();
        let typo = "name = \"x\"\n[data]\nresize_shape = \"shorter\"\n";
        let err = toml::from_str::<Experiment>(typo).unwrap_err().to_string();
        assert!(
            err.contains("unknown variant `shorter`, expected `square` or `shorter_side`"),
            "{err}"
        );
    }
}
