//! MSCM: Jezequel, Vu, Beaudet & Histace, "Anomaly Detection via Multi-Scale Contrasted
//! Memory", arXiv 2211.09041 (2022; extended as "Unified Anomaly Detection via Multi-Scale
//! Contrasted Memory", IEEE TIP 2026). No reference code is public.
//!
//! What comes from the paper's abstract (v1 and v2, the only text of it found here): a
//! two-stage detector. Stage 1 learns an encoder and memories of normal prototypes at
//! several scales with a "memory-augmented contrastive learning"; stage 2 trains an "anomaly
//! distance detector" on the spatial deviation maps between the prototypes and the
//! observations; the score is the detector's output. The same model covers the one-class
//! setting and the unbalanced one (a few labelled anomalies). Not verified here (earlier
//! notes credited them to summaries of the full text that could not be found again): that
//! the memory is a modern Hopfield layer with a variance term against collapse, that
//! labelled anomalies are pushed away from the memories, that the encoder is ResNet-18 class.
//! Everything below is this file's reading of that outline.
//!
//! What this file implements (every choice below is a config key; the rest is inferred):
//! - Input: `[B, 3, H, W]` in `[0, 1]`, reduced to grey (channel mean) for `channels = 1`.
//! - Encoder (`[method.encoder]`): a small ResNet trained from scratch: a 3x3 stem
//!   (`widths[0]` channels, stride `stem_stride`, BN, ReLU), then one stage per entry of
//!   `widths` of `blocks[i]` basic blocks (two 3x3 conv + BN, identity or 1x1-conv
//!   shortcut), stride 1 for the first stage and 2 after (28 px, stem stride 1:
//!   28 -> 14 -> 7; stem stride 2: 14 -> 7 -> 4). Stage `i`'s output `F_i` is scale `i`;
//!   `scales` lists the stages that get a memory.
//! - Stage 1 (epochs `1..=stage1_epochs`): two views `v1, v2` of each image by tensor
//!   augmentations (`[method.augment]`: random resized crop and horizontal flip through one
//!   affine grid per image, brightness and contrast jitter, optional Gaussian noise).
//!   `z = g(GAP(F_last))` (projection MLP `C -> C -> projection_dim`), normalised;
//!   `L_nt = NT-Xent(z_1, z_2; ntxent_temperature)` over the `2B` views (SimCLR).
//!   For each scale `s`, the local features of the normal images' views (`[2B' h w, C_s]`)
//!   query the scale's [`ContrastMemory`] (crate `memory-contrast`): `contrast_s` (each
//!   local feature pulled to its nearest prototype, pushed from the others, temperature
//!   `memory.temperature`) and `usage_s` (KL of the mean soft assignment to uniform: every
//!   prototype used); labelled anomalies (`batch.label == 1`) add `repel_s` (their local
//!   features pushed below cosine `memory.anomaly_margin` to every prototype).
//!   Optionally (`sample_contrast_weight > 0`, off by default) each scale's local features
//!   are also contrasted against the other samples: `sample_contrast_s`
//!   ([`local_global_contrast`]: each local feature pulled to the pooled feature of its
//!   image's other view, pushed from the other images' pooled views).
//!   `L_1 = ntxent_weight L_nt + sample_contrast_weight sum_s L_sc,s + sum_s (contrast_s +
//!   usage_s + repel_s)` (the memory weights are in `[method.memory]`).
//! - Stage 2 (the remaining epochs): the encoder, projection and memories run in evaluation
//!   mode under `no_grad` (no gradient reaches them; Adam skips variables without one), so
//!   only the detector learns. Deviation maps per scale (`detector.deviation`):
//!   `distance`: `D_s(h, w) = 1 - max_k cos(F_s(h, w), m_k)` (`[B, 1, h, w]`), or `residual`:
//!   `F^_s(h, w) - m^_k*` (`[B, C_s, h, w]`). The detector average-pools every map to the
//!   coarsest scale's size, concatenates them, applies conv3x3 -> ReLU -> conv3x3 -> ReLU
//!   (`detector.hidden` channels) and global average pooling, appends the mean and maximum
//!   over positions of each scale's deviation magnitude, and a linear layer gives the
//!   anomaly logit. Loss `bce`: binary cross-entropy with logits, normal images 0 and
//!   anomalies 1. The anomalies are pseudo-anomalies made from the batch's normal images (one
//!   per normal image, its kind drawn uniformly from `detector.pseudo_anomalies`: `rotate`
//!   by 90/180/270 degrees, `cutpaste` (a rectangle of 1/4 to 1/2 of the side moved within
//!   the same image by up to 3/8 of the side; where the source window passes the border it
//!   repeats the border pixels, so part of the time the paste is partly background, an
//!   erase rather than a move), `shuffle` (the four quadrants permuted, every quadrant
//!   moved), `noise`
//!   (Gaussian, std `detector.noise_std`)) plus, in the unbalanced setting, the batch's
//!   labelled anomalies.
//! - Score: the detector's logit. No anomaly map.
//!
//! Consequences of these choices, stated so they are not read as the paper's:
//! - By default local features are contrasted only with the prototypes of their scale; the
//!   only contrast between samples (and the only tie between the two views) is NT-Xent on
//!   the pooled last stage. `sample_contrast_weight` adds a per-scale contrast between
//!   samples (local to global: the two views' crops do not match position by position, so a
//!   local feature's positive is its image's other view pooled); how the paper contrasts
//!   local features "against other samples" is not known here. On Fashion-MNIST (seed 0)
//!   it does not help: mean AUROC 88.6 / 88.1 / 86.1 at weights 0.1 / 0.3 / 1 against 88.7
//!   without (`docs/results.md`), so the paper files keep it off.
//! - The memory's attention read (`output = a M^`, a Hopfield-style retrieval) plays no part
//!   in the loss or the score: it feeds only the memory-usage plots. The memory acts as a
//!   set of prototypes scored by the nearest cosine.
//! - `memory.anomaly_weight` and `memory.anomaly_margin` act only when the training set has
//!   labelled anomalies (the unbalanced setting); in one-class runs they change nothing.
//! - Fixed, not configurable: one memory temperature and set of weights for all scales
//!   (only `slots` is per scale), the detector's two convolutions and mean/max features,
//!   the cut-paste sizes and offsets, the rotation angles, the projection's hidden width (=
//!   `C`), the prototypes' `N(0, 1)` start. The detector shares `train.lr`, the optimizer
//!   and the schedule with stage 1: a cosine schedule spans both stages, so the detector
//!   trains in its low-rate tail (the paper files use a constant rate).
//! - The MNIST files keep the horizontal flip and the `rotate` pseudo-anomaly: a rotated 0,
//!   1 or 8 (and a 6 turned into a 9) is labelled anomalous while it looks normal; drop them
//!   there (`augment.flip = false`, `detector.pseudo_anomalies` without `rotate`) for a
//!   digit-aware protocol. Fashion-MNIST has the same, milder, case: bags and trousers
//!   turned 180 degrees look much like upright ones.
//! - Logged terms: `ntxent` is logged with its weight applied, as the memory terms are, so
//!   the terms in `losses.csv` add up to the loss.
//! - Unbalanced setting: the labelled anomalies are drawn from the other classes' training
//!   images without stratification (class 0, seed 0: 26 to 47 per class), and the draw
//!   follows the run's seed, so a spread over seeds mixes initialisation with which
//!   anomalies were drawn.
//! - A stage-2 epoch whose batches hold no anomalous example (no pseudo-anomalies listed,
//!   no labelled anomaly) is an error: its detector would learn a constant. The config check
//!   (`check_data`, so `memad check` too) refuses `detector.pseudo_anomalies = []` unless
//!   `data.anomaly_fraction > 0`; a fraction that draws no anomaly (it rounds to none) fails
//!   the run when the next epoch starts or, after the last, in `finalize` (before the
//!   checkpoint is saved) and when scoring. The epoch's counts are state (`stage2_batches`,
//!   `stage2_anomalies`), so a resumed run fails alike.
//!
//! The no-memory ablation is `kind = "contrastive"`: the same encoder, augmentations and
//! NT-Xent stage 1 with no memory (a `[method.memory]` section is an error); in stage 2 the
//! reference of each scale is the mean normal feature: the running mean of the normalised
//! local features of the normal training images of stage 2 (the encoder is frozen then),
//! `mu_s` (its running sum saved as state `reference_sum_s<i>`, with `reference_count`; state
//! is looked up by name); the deviation maps are `1 - cos(F_s, mu_s)` or
//! `F^_s - mu^_s`: a one-prototype, not-learned memory, so the detector, its inputs' shapes
//! and its training are identical. The mean is updated in the step that uses it, so the
//! detector's first stage-2 batches see a mean of few images (the first, of its own batch).
//!
//! Deviations and unknowns: the paper's memory layer (a modern Hopfield layer with a
//! variance term against collapse, by the unverified summaries above), its encoder, scales,
//! prototype counts, temperatures, loss weights, augmentations, detector architecture and
//! pseudo-anomalies are not known here; all of the above are this file's choices, sized for
//! 28/32 px and CPUs.
//! BatchNorm starts as PyTorch's (weight 1, bias 0; tch's default draws the weight from
//! `U(0, 1)`).
//!
//! Reproduce (Fashion-MNIST, one-class, image AUROC per class; `docs/results.md`: mean
//! 0.887 / 0.864 for MSCM against 0.837 / 0.838 for the ablation, seeds 0 / 1, at
//! `8fd7de8`; 0.878 / 0.876 against 0.850 / 0.855 at `9e961a8`, before BatchNorm started at
//! weight 1, libtorch was reseeded each epoch, Adam's bias correction counted each
//! variable's own updates and cut-paste copied whole pixels; unbalanced 5%, seed 0: 0.924
//! against 0.867 at `fc9074c`):
//! `OMP_NUM_THREADS=1 memad run experiments/paper/mscm_fashion_mnist.toml` and
//! `OMP_NUM_THREADS=1 memad run experiments/paper/contrastive_fashion_mnist.toml` (475 s and
//! 436 s for the ten classes on a 2-core VM; one intra-op thread is 10x faster there).
use memad_core::precision::full_precision;
use memad_core::{
    parse_section, to_toml_value, AnomalyOutput, Batch, BuildContext, ConfigError, CoreError,
    LossTerm, Memory, MemoryUsage, Method, Progress, Registry, Result, TrainOutput,
};
use memory_contrast::{l2_normalise, ContrastMemory, ContrastMemoryConfig};
use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, nn::ModuleT, Device, Kind, Tensor};

/// `kind` of the full method.
pub const KIND_MSCM: &str = "mscm";
/// `kind` of the no-memory ablation.
pub const KIND_CONTRASTIVE: &str = "contrastive";

/// State names: the ablation's image count and both kinds' stage-2 counts.
const REFERENCE_COUNT: &str = "reference_count";
const STAGE2_BATCHES: &str = "stage2_batches";
const STAGE2_ANOMALIES: &str = "stage2_anomalies";

/// `[method.encoder]`: the ResNet-style encoder trained from scratch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderConfig {
    /// Output channels of each stage (the first is also the stem's).
    #[serde(default = "d_widths")]
    pub widths: Vec<i64>,
    /// Basic blocks per stage.
    #[serde(default = "d_blocks")]
    pub blocks: Vec<usize>,
    /// Stride of the stem convolution (2 halves every scale's size and the cost).
    #[serde(default = "d_stem_stride")]
    pub stem_stride: i64,
}

fn d_widths() -> Vec<i64> {
    vec![16, 32, 64]
}
fn d_blocks() -> Vec<usize> {
    vec![1, 1, 1]
}
fn d_stem_stride() -> i64 {
    1
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            widths: d_widths(),
            blocks: d_blocks(),
            stem_stride: d_stem_stride(),
        }
    }
}

/// `[method.augment]`: the stage-1 views (SimCLR-style, on tensors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentConfig {
    /// Random resized crop: range of the crop's area, as a fraction of the image.
    #[serde(default = "d_crop_scale")]
    pub crop_scale: [f64; 2],
    /// Random resized crop: range of the aspect ratio (width / height), drawn log-uniformly.
    #[serde(default = "d_crop_ratio")]
    pub crop_ratio: [f64; 2],
    /// Horizontal flip with probability 1/2.
    #[serde(default = "d_true")]
    pub flip: bool,
    /// Brightness factor drawn in `[1 - b, 1 + b]`.
    #[serde(default = "d_jitter")]
    pub brightness: f64,
    /// Contrast factor drawn in `[1 - c, 1 + c]` (around each view's mean).
    #[serde(default = "d_jitter")]
    pub contrast: f64,
    /// Standard deviation of additive Gaussian noise (0 = none).
    #[serde(default)]
    pub noise: f64,
}

fn d_crop_scale() -> [f64; 2] {
    [0.4, 1.0]
}
fn d_crop_ratio() -> [f64; 2] {
    [0.75, 4.0 / 3.0]
}
fn d_true() -> bool {
    true
}
fn d_jitter() -> f64 {
    0.4
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            crop_scale: d_crop_scale(),
            crop_ratio: d_crop_ratio(),
            flip: true,
            brightness: d_jitter(),
            contrast: d_jitter(),
            noise: 0.0,
        }
    }
}

/// `[method.memory]` (`kind = "mscm"` only): one [`ContrastMemory`] per scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemorySection {
    /// Prototypes per scale, one entry per `scales` entry (default 16 each).
    #[serde(default)]
    pub slots: Vec<i64>,
    #[serde(default = "d_memory_temperature")]
    pub temperature: f64,
    #[serde(default = "d_one")]
    pub contrast_weight: f64,
    #[serde(default = "d_one")]
    pub usage_weight: f64,
    #[serde(default = "d_one")]
    pub anomaly_weight: f64,
    #[serde(default = "d_margin")]
    pub anomaly_margin: f64,
}

fn d_memory_temperature() -> f64 {
    0.1
}
fn d_one() -> f64 {
    1.0
}
fn d_margin() -> f64 {
    0.5
}
const DEFAULT_SLOTS: i64 = 16;

impl MemorySection {
    fn defaults() -> Self {
        Self {
            slots: Vec::new(),
            temperature: d_memory_temperature(),
            contrast_weight: 1.0,
            usage_weight: 1.0,
            anomaly_weight: 1.0,
            anomaly_margin: d_margin(),
        }
    }

    /// The memory config of scale number `i` (of width `dim`).
    fn scale(&self, i: usize, dim: i64) -> ContrastMemoryConfig {
        ContrastMemoryConfig {
            slots: self.slots[i],
            dim,
            temperature: self.temperature,
            contrast_weight: self.contrast_weight,
            usage_weight: self.usage_weight,
            anomaly_weight: self.anomaly_weight,
            anomaly_margin: self.anomaly_margin,
        }
    }
}

/// What the detector sees per scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Deviation {
    /// `1 - cos` to the nearest prototype (or the mean): one channel per scale.
    Distance,
    /// Normalised feature minus the normalised nearest prototype (or mean): `C_s` channels.
    Residual,
}

/// Synthetic anomalies made from normal images for the stage-2 detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PseudoAnomaly {
    /// Rotation by 90, 180 or 270 degrees.
    Rotate,
    /// A rectangle (1/4 to 1/2 of the side) of the image moved elsewhere in it.
    Cutpaste,
    /// The four quadrants permuted (every quadrant moved).
    Shuffle,
    /// Additive Gaussian noise of std `detector.noise_std`.
    Noise,
}

/// `[method.detector]`: the stage-2 anomaly distance detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    #[serde(default = "d_deviation")]
    pub deviation: Deviation,
    /// Channels of the detector's two convolutions.
    #[serde(default = "d_hidden")]
    pub hidden: i64,
    /// Kinds of pseudo-anomalies, one drawn per normal image; empty = only the batch's
    /// labelled anomalies (unbalanced setting: refused without `data.anomaly_fraction > 0`).
    #[serde(default = "d_pseudo")]
    pub pseudo_anomalies: Vec<PseudoAnomaly>,
    /// Std of the `noise` pseudo-anomaly, in `[0, 1]` pixel units.
    #[serde(default = "d_noise_std")]
    pub noise_std: f64,
}

fn d_deviation() -> Deviation {
    Deviation::Distance
}
fn d_hidden() -> i64 {
    32
}
fn d_pseudo() -> Vec<PseudoAnomaly> {
    vec![
        PseudoAnomaly::Rotate,
        PseudoAnomaly::Cutpaste,
        PseudoAnomaly::Shuffle,
    ]
}
fn d_noise_std() -> f64 {
    0.2
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            deviation: d_deviation(),
            hidden: d_hidden(),
            pseudo_anomalies: d_pseudo(),
            noise_std: d_noise_std(),
        }
    }
}

/// A resolved `[method]` section with `kind = "mscm"` or `kind = "contrastive"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MscmConfig {
    pub kind: String,
    /// Image channels the encoder sees: 1 (grey, the channel mean) or 3 (RGB).
    #[serde(default = "d_channels")]
    pub channels: i64,
    /// Epochs of stage 1 (contrastive + memory); the remaining `train.epochs` train the
    /// detector (stage 2). Must be smaller than `train.epochs`.
    pub stage1_epochs: usize,
    /// Encoder stages (0-based) whose feature maps are the scales.
    #[serde(default = "d_scales")]
    pub scales: Vec<usize>,
    /// Output width of the projection head of NT-Xent.
    #[serde(default = "d_projection_dim")]
    pub projection_dim: i64,
    #[serde(default = "d_ntxent_temperature")]
    pub ntxent_temperature: f64,
    #[serde(default = "d_one")]
    pub ntxent_weight: f64,
    /// Weight of the stage-1 contrast between samples at every scale
    /// ([`local_global_contrast`], temperature `ntxent_temperature`); 0 (the default, left
    /// out of the resolved config so that earlier runs keep their config hash) turns it off.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sample_contrast_weight: f64,
    #[serde(default)]
    pub encoder: EncoderConfig,
    #[serde(default)]
    pub augment: AugmentConfig,
    /// `kind = "mscm"`: the memories (filled with defaults); `contrastive`: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemorySection>,
    #[serde(default)]
    pub detector: DetectorConfig,
}

fn d_channels() -> i64 {
    1
}
fn d_scales() -> Vec<usize> {
    vec![0, 1, 2]
}
fn d_projection_dim() -> i64 {
    64
}
fn d_ntxent_temperature() -> f64 {
    0.5
}

impl MscmConfig {
    /// Whether this is the full method (memories) rather than the no-memory ablation.
    pub fn has_memory(&self) -> bool {
        self.kind == KIND_MSCM
    }
}

fn positive(x: f64) -> bool {
    x > 0.0 && x.is_finite()
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

fn non_negative(x: f64) -> bool {
    x >= 0.0 && x.is_finite()
}

/// Parses, validates and fills the defaults of a section found at `path`.
pub fn parse(section: &toml::Value, path: &str) -> std::result::Result<MscmConfig, ConfigError> {
    let mut cfg: MscmConfig = parse_section(section, path)?;
    let key = |k: &str| format!("{path}.{k}");
    if cfg.kind != KIND_MSCM && cfg.kind != KIND_CONTRASTIVE {
        return Err(ConfigError::new(
            key("kind"),
            format!("expected `{KIND_MSCM}` or `{KIND_CONTRASTIVE}`"),
        ));
    }
    if cfg.channels != 1 && cfg.channels != 3 {
        return Err(ConfigError::new(
            key("channels"),
            format!("must be 1 (grey) or 3 (RGB), got {}", cfg.channels),
        ));
    }
    let enc = &cfg.encoder;
    if enc.widths.is_empty() || enc.widths.iter().any(|&w| w < 1) {
        return Err(ConfigError::new(
            key("encoder.widths"),
            "needs at least one stage, every width >= 1",
        ));
    }
    if enc.blocks.len() != enc.widths.len() || enc.blocks.contains(&0) {
        return Err(ConfigError::new(
            key("encoder.blocks"),
            format!(
                "needs one block count >= 1 per stage ({}), got {:?}",
                enc.widths.len(),
                enc.blocks
            ),
        ));
    }
    if !(1..=4).contains(&enc.stem_stride) {
        return Err(ConfigError::new(
            key("encoder.stem_stride"),
            format!("must be in 1..=4, got {}", enc.stem_stride),
        ));
    }
    if cfg.stage1_epochs == 0 {
        return Err(ConfigError::new(
            key("stage1_epochs"),
            "must be at least 1: without stage 1 the encoder and prototypes stay as initialised",
        ));
    }
    let stages = enc.widths.len();
    let mut sorted = cfg.scales.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if cfg.scales.is_empty()
        || sorted.len() != cfg.scales.len()
        || sorted != cfg.scales
        || sorted.iter().any(|&s| s >= stages)
    {
        return Err(ConfigError::new(
            key("scales"),
            format!(
                "must list distinct encoder stages in increasing order, each < {stages}, got {:?}",
                cfg.scales
            ),
        ));
    }
    if cfg.projection_dim < 1 {
        return Err(ConfigError::new(
            key("projection_dim"),
            "must be at least 1",
        ));
    }
    if !positive(cfg.ntxent_temperature) {
        return Err(ConfigError::new(
            key("ntxent_temperature"),
            "must be finite and > 0",
        ));
    }
    for (name, weight) in [
        ("ntxent_weight", cfg.ntxent_weight),
        ("sample_contrast_weight", cfg.sample_contrast_weight),
    ] {
        if !non_negative(weight) {
            return Err(ConfigError::new(key(name), "must be finite and >= 0"));
        }
    }
    validate_augment(&cfg.augment, &key("augment"))?;
    let det = &cfg.detector;
    if det.hidden < 1 {
        return Err(ConfigError::new(
            key("detector.hidden"),
            "must be at least 1",
        ));
    }
    if !non_negative(det.noise_std) {
        return Err(ConfigError::new(
            key("detector.noise_std"),
            "must be finite and >= 0",
        ));
    }
    match (cfg.has_memory(), cfg.memory.take()) {
        (false, Some(_)) => {
            return Err(ConfigError::new(
                key("memory"),
                "the no-memory ablation (kind = \"contrastive\") has no memory: remove \
                 [method.memory] or use kind = \"mscm\"",
            ))
        }
        (false, None) => {}
        (true, memory) => {
            let mut memory = memory.unwrap_or_else(MemorySection::defaults);
            if memory.slots.is_empty() {
                memory.slots = vec![DEFAULT_SLOTS; cfg.scales.len()];
            }
            if memory.slots.len() != cfg.scales.len() || memory.slots.iter().any(|&k| k < 1) {
                return Err(ConfigError::new(
                    key("memory.slots"),
                    format!(
                        "needs one prototype count >= 1 per scale ({}), got {:?}",
                        cfg.scales.len(),
                        memory.slots
                    ),
                ));
            }
            for (i, &stage) in cfg.scales.iter().enumerate() {
                memory
                    .scale(i, cfg.encoder.widths[stage])
                    .validate(&key("memory"))?;
            }
            cfg.memory = Some(memory);
        }
    }
    Ok(cfg)
}

fn validate_augment(a: &AugmentConfig, path: &str) -> std::result::Result<(), ConfigError> {
    let key = |k: &str| format!("{path}.{k}");
    let [s0, s1] = a.crop_scale;
    if !(s0 > 0.0 && s0 <= s1 && s1 <= 1.0) {
        return Err(ConfigError::new(
            key("crop_scale"),
            format!("needs 0 < min <= max <= 1, got {:?}", a.crop_scale),
        ));
    }
    let [r0, r1] = a.crop_ratio;
    if !(r0 > 0.0 && r0 <= r1 && r1.is_finite()) {
        return Err(ConfigError::new(
            key("crop_ratio"),
            format!("needs 0 < min <= max, got {:?}", a.crop_ratio),
        ));
    }
    for (name, v) in [("brightness", a.brightness), ("contrast", a.contrast)] {
        if !(0.0..1.0).contains(&v) {
            return Err(ConfigError::new(
                key(name),
                format!("must be in [0, 1), got {v}"),
            ));
        }
    }
    if !non_negative(a.noise) {
        return Err(ConfigError::new(key("noise"), "must be finite and >= 0"));
    }
    Ok(())
}

/// Registry `min_epochs` (both kinds): the stage-1 epochs of the resolved section, and one
/// for stage 2 (the detector).
pub fn min_epochs(section: &toml::Value) -> (usize, Option<String>) {
    let stage1 = section
        .get("stage1_epochs")
        .and_then(toml::Value::as_integer);
    let stage1 = stage1.unwrap_or(0).max(0) as usize;
    let why = format!(
        "method.stage1_epochs = {stage1}, then one epoch of stage 2 (the detector): lower it \
         or raise train.epochs"
    );
    (stage1 + 1, Some(why))
}

/// Registry `check_data` (both kinds), on the resolved `[method]` and `[data]` sections:
/// - NT-Xent (and the sample contrast) contrasts each image's two views against the other
///   images of the batch; with one image per batch its only candidate is its own other
///   view, so the loss is 0 and stage 1 trains nothing through it. `data.batch_size` must
///   then be at least 2 (without either term, MSCM's stage 1 trains its memories alone and
///   takes any batch size).
/// - Stage 2's anomalous examples are the pseudo-anomalies and the labelled anomalies:
///   `method.detector.pseudo_anomalies = []` needs `data.anomaly_fraction > 0`, else the
///   detector sees normal images only and learns a constant.
pub fn check_data(
    method: &toml::Value,
    data: &toml::Value,
) -> std::result::Result<(), ConfigError> {
    let kind = method.get("kind").and_then(toml::Value::as_str);
    let kind = kind.unwrap_or(KIND_MSCM);
    let weight = |k: &str| method.get(k).and_then(toml::Value::as_float).unwrap_or(0.0);
    let contrast = weight("ntxent_weight") > 0.0 || weight("sample_contrast_weight") > 0.0;
    let batch = data.get("batch_size").and_then(toml::Value::as_integer);
    if let Some(b) = batch.filter(|&b| contrast && b < 2) {
        return Err(ConfigError::new(
            "data.batch_size",
            format!(
                "must be at least 2 for method `{kind}`: its stage-1 NT-Xent contrasts each \
                 image with the other images of the batch (with 1 image it has none: the loss \
                 is 0 and gives no gradient), got {b}"
            ),
        ));
    }
    let no_pseudo = (method.get("detector"))
        .and_then(|d| d.get("pseudo_anomalies"))
        .and_then(toml::Value::as_array)
        .is_some_and(|kinds| kinds.is_empty());
    let fraction = (data.get("anomaly_fraction"))
        .and_then(|f| f.as_float().or(f.as_integer().map(|i| i as f64)))
        .unwrap_or(0.0);
    if no_pseudo && fraction <= 0.0 {
        return Err(ConfigError::new(
            "method.detector.pseudo_anomalies",
            format!(
                "is empty and data.anomaly_fraction = {fraction}: the stage-2 detector of method \
                 `{kind}` would see no anomalous example and learn a constant; list \
                 pseudo-anomalies (rotate, cutpaste, shuffle, noise), or give labelled \
                 anomalies (data.anomaly_fraction > 0, the unbalanced setting)"
            ),
        ));
    }
    Ok(())
}

/// Registry `resolve` (both kinds).
pub fn resolve(
    section: &toml::Value,
    path: &str,
    _registry: &Registry,
) -> std::result::Result<toml::Value, ConfigError> {
    to_toml_value(&parse(section, path)?)
}

/// Registry `build` (both kinds).
pub fn build(
    section: &toml::Value,
    _registry: &Registry,
    ctx: &BuildContext,
) -> Result<Box<dyn Method>> {
    Ok(Box::new(Mscm::new(parse(section, "method")?, ctx)?))
}

// ------------------------------------------------------------------------------ encoder

fn conv3x3(path: nn::Path, c_in: i64, c_out: i64, stride: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        padding: 1,
        bias: false,
        ..Default::default()
    };
    nn::conv2d(path, c_in, c_out, 3, cfg)
}

/// A ResNet basic block: conv3x3(stride)-BN-ReLU-conv3x3-BN + shortcut, ReLU.
#[derive(Debug)]
struct BasicBlock {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    shortcut: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl BasicBlock {
    fn new(p: &nn::Path, c_in: i64, c_out: i64, stride: i64) -> Self {
        let shortcut = (stride != 1 || c_in != c_out).then(|| {
            let cfg = nn::ConvConfig {
                stride,
                bias: false,
                ..Default::default()
            };
            (
                nn::conv2d(p / "shortcut" / "conv", c_in, c_out, 1, cfg),
                memad_decoders::init::batch_norm2d(p / "shortcut" / "bn", c_out),
            )
        });
        BasicBlock {
            conv1: conv3x3(p / "conv1", c_in, c_out, stride),
            bn1: memad_decoders::init::batch_norm2d(p / "bn1", c_out),
            conv2: conv3x3(p / "conv2", c_out, c_out, 1),
            bn2: memad_decoders::init::batch_norm2d(p / "bn2", c_out),
            shortcut,
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let y = self.bn1.forward_t(&self.conv1.forward(x), train).relu();
        let y = self.bn2.forward_t(&self.conv2.forward(&y), train);
        let skip = match &self.shortcut {
            Some((conv, bn)) => bn.forward_t(&conv.forward(x), train),
            None => x.shallow_clone(),
        };
        (y + skip).relu()
    }
}

/// The encoder: stem, then stages (stride 1 first, 2 after).
#[derive(Debug)]
struct Encoder {
    stem: nn::Conv2D,
    stem_bn: nn::BatchNorm,
    stages: Vec<Vec<BasicBlock>>,
}

impl Encoder {
    fn new(p: &nn::Path, channels: i64, cfg: &EncoderConfig) -> Self {
        let mut c_in = cfg.widths[0];
        let mut stages = Vec::new();
        for (i, (&width, &blocks)) in cfg.widths.iter().zip(&cfg.blocks).enumerate() {
            let stage = p / format!("stage{i}");
            let mut list = Vec::new();
            for b in 0..blocks {
                let stride = if i > 0 && b == 0 { 2 } else { 1 };
                list.push(BasicBlock::new(&(&stage / b), c_in, width, stride));
                c_in = width;
            }
            stages.push(list);
        }
        Encoder {
            stem: conv3x3(p / "stem", channels, cfg.widths[0], cfg.stem_stride),
            stem_bn: memad_decoders::init::batch_norm2d(p / "stem_bn", cfg.widths[0]),
            stages,
        }
    }

    /// # Shapes
    /// `x`: `[B, channels, H, W]` -> one `[B, widths[i], H / (stem_stride 2^i), ..]` per
    /// stage (sizes rounded up).
    fn forward_t(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        let mut y = self.stem_bn.forward_t(&self.stem.forward(x), train).relu();
        let mut out = Vec::with_capacity(self.stages.len());
        for stage in &self.stages {
            for block in stage {
                y = block.forward_t(&y, train);
            }
            out.push(y.shallow_clone());
        }
        out
    }
}

// ----------------------------------------------------------------------------- detector

/// The anomaly distance detector on the per-scale deviation maps.
#[derive(Debug)]
struct Detector {
    conv1: nn::Conv2D,
    conv2: nn::Conv2D,
    head: nn::Linear,
}

impl Detector {
    fn new(p: &nn::Path, in_channels: i64, scales: i64, hidden: i64) -> Self {
        let cfg = nn::ConvConfig {
            padding: 1,
            ..Default::default()
        };
        Detector {
            conv1: nn::conv2d(p / "conv1", in_channels, hidden, 3, cfg),
            conv2: nn::conv2d(p / "conv2", hidden, hidden, 3, cfg),
            head: nn::linear(p / "head", hidden + 2 * scales, 1, Default::default()),
        }
    }

    /// # Shapes
    /// `maps`: per scale `[B, c_s, h_s, w_s]`, coarsest last; `magnitude`: per scale
    /// `[B, h_s w_s]` -> logits `[B]`.
    fn forward(&self, maps: &[Tensor], magnitude: &[Tensor]) -> Tensor {
        let coarsest = maps.last().expect("at least one scale").size();
        let size = [coarsest[2], coarsest[3]];
        let pooled: Vec<Tensor> = maps.iter().map(|m| m.adaptive_avg_pool2d(size)).collect();
        let y = self
            .conv2
            .forward(&self.conv1.forward(&Tensor::cat(&pooled, 1)).relu())
            .relu()
            .mean_dim([2, 3].as_slice(), false, Kind::Float);
        let mut features = vec![y];
        for m in magnitude {
            features.push(m.mean_dim(1, true, Kind::Float));
            features.push(m.amax([1], true));
        }
        self.head.forward(&Tensor::cat(&features, 1)).squeeze_dim(1)
    }
}

// ------------------------------------------------------------------------------- method

/// What each scale's deviation is measured against.
#[derive(Debug)]
enum References {
    /// MSCM: one learned prototype memory per scale.
    Memories(Vec<ContrastMemory>),
    /// The ablation: the running sum of the normalised normal features per scale (`[C_s]`)
    /// and the number of normal images they come from.
    Means { sums: Vec<Tensor>, count: i64 },
}

/// MSCM (`kind = "mscm"`) or its no-memory ablation (`kind = "contrastive"`).
pub struct Mscm {
    cfg: MscmConfig,
    vs: nn::VarStore,
    encoder: Encoder,
    projector: (nn::Linear, nn::Linear),
    references: References,
    detector: Detector,
    /// 1 or 2.
    stage: u8,
    /// The stage-2 batches of the epoch trained last (or in training), and the anomalous
    /// examples (pseudo or labelled) they held: a stage-2 epoch without any trains the
    /// detector toward a constant. Saved as state.
    stage2_batches: usize,
    stage2_anomalies: usize,
    device: Device,
}

/// Per-scale deviation maps and their magnitudes, detector inputs.
struct Deviations {
    /// `[B, c_s, h_s, w_s]` per scale.
    maps: Vec<Tensor>,
    /// `[B, h_s w_s]` per scale: the distance (`1 - cos`).
    magnitude: Vec<Tensor>,
}

/// `[B, C, h, w]` -> `[B h w, C]`.
fn flatten(f: &Tensor) -> Tensor {
    let c = f.size()[1];
    f.permute([0, 2, 3, 1]).reshape([-1, c])
}

/// A saved count: a non-negative integer scalar.
fn count_of(name: &str, t: &Tensor) -> Result<usize> {
    let value = match (t.dim(), t.is_floating_point()) {
        (0, false) => t.f_int64_value(&[]).ok(),
        _ => None,
    };
    value.and_then(|v| usize::try_from(v).ok()).ok_or_else(|| {
        CoreError::Invalid(format!(
            "`{name}` must be a non-negative integer scalar, got {:?} {:?}",
            t.size(),
            t.kind()
        ))
    })
}

/// `[B h w, c]` -> `[B, c, h, w]` with the spatial size of `like`.
fn unflatten(x: &Tensor, like: &Tensor) -> Tensor {
    let s = like.size();
    x.reshape([s[0], s[2], s[3], -1]).permute([0, 3, 1, 2])
}

impl Mscm {
    pub fn new(cfg: MscmConfig, ctx: &BuildContext) -> Result<Self> {
        if cfg
            .detector
            .pseudo_anomalies
            .contains(&PseudoAnomaly::Shuffle)
            && ctx.image_size % 2 != 0
        {
            return Err(CoreError::Invalid(format!(
                "method.detector.pseudo_anomalies: `shuffle` needs an even image_size, got {}",
                ctx.image_size
            )));
        }
        let vs = nn::VarStore::new(ctx.device);
        let root = vs.root();
        let encoder = Encoder::new(&(&root / "encoder"), cfg.channels, &cfg.encoder);
        let last = *cfg
            .encoder
            .widths
            .last()
            .expect("validated: at least one stage");
        let projector = (
            nn::linear(&root / "projector" / "0", last, last, Default::default()),
            nn::linear(
                &root / "projector" / "2",
                last,
                cfg.projection_dim,
                Default::default(),
            ),
        );
        let widths: Vec<i64> = cfg.scales.iter().map(|&s| cfg.encoder.widths[s]).collect();
        let references = match &cfg.memory {
            Some(memory) => References::Memories(
                cfg.scales
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        ContrastMemory::new(
                            &(&root / "memory" / format!("s{s}")),
                            &memory.scale(i, widths[i]),
                        )
                    })
                    .collect::<Result<_>>()?,
            ),
            None => References::Means {
                sums: widths
                    .iter()
                    .map(|&c| Tensor::zeros([c], (Kind::Float, ctx.device)))
                    .collect(),
                count: 0,
            },
        };
        let in_channels = match cfg.detector.deviation {
            Deviation::Distance => cfg.scales.len() as i64,
            Deviation::Residual => widths.iter().sum(),
        };
        let detector = Detector::new(
            &(&root / "detector"),
            in_channels,
            cfg.scales.len() as i64,
            cfg.detector.hidden,
        );
        Ok(Mscm {
            cfg,
            vs,
            encoder,
            projector,
            references,
            detector,
            stage: 1,
            stage2_batches: 0,
            stage2_anomalies: 0,
            device: ctx.device,
        })
    }

    pub fn config(&self) -> &MscmConfig {
        &self.cfg
    }

    /// The current stage (1: contrastive + memory, 2: detector).
    pub fn stage(&self) -> u8 {
        self.stage
    }

    /// The memories of the scales (empty for the ablation).
    pub fn memories(&self) -> &[ContrastMemory] {
        match &self.references {
            References::Memories(m) => m,
            References::Means { .. } => &[],
        }
    }

    /// `[B, 3 (or 1), H, W]` in `[0, 1]` -> `[B, channels, H, W]` in `[0, 1]`.
    fn prepare(&self, input: &Tensor) -> Result<Tensor> {
        let size = input.size();
        if size.len() != 4 {
            return Err(CoreError::Invalid(format!(
                "{} expects images [B, C, H, W], got {size:?}",
                self.cfg.kind
            )));
        }
        match (self.cfg.channels, size[1]) {
            (1, 1) | (3, 3) => Ok(input.to_kind(Kind::Float)),
            (1, 3) => Ok(input.mean_dim(1, true, Kind::Float)),
            (c, got) => Err(CoreError::Invalid(format!(
                "method.channels = {c} but the images have {got} channels"
            ))),
        }
    }

    /// The encoder's stage outputs for `[0, 1]` images (centred at 0 first).
    fn features(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        self.encoder.forward_t(&(x - 0.5), train)
    }

    /// The normalised projection `z` of NT-Xent, `[B, projection_dim]`.
    fn project(&self, last: &Tensor) -> Tensor {
        let pooled = last.mean_dim([2, 3].as_slice(), false, Kind::Float);
        let z = self
            .projector
            .1
            .forward(&self.projector.0.forward(&pooled).relu());
        l2_normalise(&z)
    }

    /// Adds the normal images' normalised local features to the ablation's running means.
    fn update_means(&mut self, scales: &[Tensor]) {
        if let References::Means { sums, count } = &mut self.references {
            for (sum, f) in sums.iter_mut().zip(scales) {
                *sum = &*sum + l2_normalise(&flatten(f)).sum_dim_intlist(0, false, Kind::Float);
            }
            *count += scales.first().map_or(0, |f| f.size()[0]);
        }
    }

    /// Deviation maps of the given scale features.
    fn deviations(&self, scales: &[Tensor]) -> Result<Deviations> {
        let mut maps = Vec::with_capacity(scales.len());
        let mut magnitude = Vec::with_capacity(scales.len());
        for (i, f) in scales.iter().enumerate() {
            let q = flatten(f);
            let (distance, residual) = match &self.references {
                References::Memories(memories) => {
                    let m = &memories[i];
                    let distance = m.nearest(&q).distance;
                    let residual = match self.cfg.detector.deviation {
                        Deviation::Residual => Some(m.residual(&q)),
                        Deviation::Distance => None,
                    };
                    (distance, residual)
                }
                References::Means { sums, count } => {
                    if *count == 0 {
                        return Err(CoreError::Invalid(
                            "the contrastive ablation has no mean normal feature yet: stage 2 \
                             saw no normal training image"
                                .into(),
                        ));
                    }
                    let mean = l2_normalise(&sums[i]);
                    let qn = l2_normalise(&q);
                    let distance = (-qn.matmul(&mean) + 1.0).clamp_min(0.0);
                    let residual = match self.cfg.detector.deviation {
                        Deviation::Residual => Some(qn - mean.unsqueeze(0)),
                        Deviation::Distance => None,
                    };
                    (distance, residual)
                }
            };
            let b = f.size()[0];
            let map = match residual {
                Some(r) => unflatten(&r, f),
                None => unflatten(&distance.unsqueeze(1), f),
            };
            maps.push(map);
            magnitude.push(distance.reshape([b, -1]));
        }
        Ok(Deviations { maps, magnitude })
    }

    /// The scale features (in order of `scales`) of the encoder's outputs.
    fn select_scales(&self, all: &[Tensor]) -> Vec<Tensor> {
        self.cfg
            .scales
            .iter()
            .map(|&s| all[s].shallow_clone())
            .collect()
    }

    /// Detector logits of `[0, 1]` images with the frozen stage-1 model.
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        self.logits_of(&tch::no_grad(|| {
            self.select_scales(&self.features(x, false))
        }))
    }

    /// Detector logits `[B]` of the scale features (in order of `scales`).
    fn logits_of(&self, scales: &[Tensor]) -> Result<Tensor> {
        let dev = tch::no_grad(|| self.deviations(scales))?;
        Ok(self.detector.forward(&dev.maps, &dev.magnitude))
    }

    /// How each scale's memory is addressed (`scale<s>`, the soft assignment of
    /// [`Memory::read`] averaged over a sample's positions, `[B, slots]`); empty for the
    /// ablation.
    fn memory_usage(&self, scales: &[Tensor]) -> Vec<MemoryUsage> {
        tch::no_grad(|| {
            (self.memories().iter().zip(&self.cfg.scales).zip(scales))
                .filter_map(|((memory, s), f)| {
                    let read = memory.read(&flatten(f), false);
                    let b = f.size()[0];
                    (read.attention.as_ref())
                        .map(|a| MemoryUsage::per_sample(format!("scale{s}"), a, b))
                })
                .collect()
        })
    }

    fn stage1_step(&mut self, batch: &Batch) -> Result<TrainOutput> {
        let x = self.prepare(&batch.input)?;
        let b = x.size()[0];
        let views = Tensor::cat(
            &[
                augment(&x, &self.cfg.augment),
                augment(&x, &self.cfg.augment),
            ],
            0,
        );
        let all = self.features(&views, true);
        let last = all.last().expect("at least one stage");
        let ntxent =
            nt_xent(&self.project(last), self.cfg.ntxent_temperature) * self.cfg.ntxent_weight;
        let mut terms = vec![LossTerm::new("ntxent", &ntxent)];
        let mut parts = vec![ntxent];
        if self.cfg.sample_contrast_weight > 0.0 {
            for &s in &self.cfg.scales {
                let t = local_global_contrast(&all[s], self.cfg.ntxent_temperature)
                    * self.cfg.sample_contrast_weight;
                terms.push(LossTerm::new(format!("sample_contrast_s{s}"), &t));
                parts.push(t);
            }
        }
        if let References::Memories(memories) = &self.references {
            let label = batch.label.repeat([2]);
            let normal = label.eq(0).nonzero().squeeze_dim(1);
            let anomalous = label.eq(1).nonzero().squeeze_dim(1);
            for (&s, memory) in self.cfg.scales.iter().zip(memories) {
                let f = &all[s];
                let q = if anomalous.size()[0] > 0 {
                    flatten(&f.index_select(0, &normal))
                } else {
                    flatten(f)
                };
                let mut scale_terms = memory.training_losses(&q);
                if anomalous.size()[0] > 0 {
                    let a = flatten(&f.index_select(0, &anomalous));
                    scale_terms.push(("repel".into(), memory.repel(&a)));
                }
                for (name, t) in scale_terms {
                    terms.push(LossTerm::new(format!("{name}_s{s}"), &t));
                    parts.push(t);
                }
            }
        }
        debug_assert_eq!(all[0].size()[0], 2 * b);
        Ok(TrainOutput {
            loss: Tensor::stack(&parts, 0).sum(Kind::Float),
            terms,
        })
    }

    /// An error when the stage-2 epoch trained last held no anomalous example: its detector
    /// learned a constant. `check_data` refuses `detector.pseudo_anomalies = []` without
    /// labelled anomalies; this catches labelled anomalies asked for and none drawn (a
    /// `data.anomaly_fraction` that rounds to none). The counts are state, so a resumed run
    /// or a checkpoint fails it too.
    fn check_stage2_anomalies(&self) -> Result<()> {
        if self.stage2_batches > 0 && self.stage2_anomalies == 0 {
            return Err(CoreError::Invalid(format!(
                "{}: the {} batches of a stage-2 epoch held no anomalous example \
                 (method.detector.pseudo_anomalies is empty and the training set held no \
                 labelled anomaly): the detector learned a constant; list pseudo-anomalies, or \
                 raise data.anomaly_fraction so that the training set gets labelled anomalies",
                self.cfg.kind, self.stage2_batches
            )));
        }
        Ok(())
    }

    fn stage2_step(&mut self, batch: &Batch) -> Result<TrainOutput> {
        let x = self.prepare(&batch.input)?;
        let label = &batch.label;
        let normal = x.index_select(0, &label.eq(0).nonzero().squeeze_dim(1));
        let labelled = x.index_select(0, &label.eq(1).nonzero().squeeze_dim(1));
        let n = normal.size()[0];
        if matches!(self.references, References::Means { .. }) && n > 0 {
            let scales = tch::no_grad(|| self.select_scales(&self.features(&normal, false)));
            self.update_means(&scales);
        }
        let pseudo = if self.cfg.detector.pseudo_anomalies.is_empty() || n == 0 {
            None
        } else {
            Some(pseudo_anomalies(&normal, &self.cfg.detector)?)
        };
        let mut inputs = vec![normal];
        inputs.extend(pseudo);
        inputs.push(labelled);
        let inputs = Tensor::cat(&inputs, 0);
        let total = inputs.size()[0];
        let target = Tensor::cat(
            &[
                Tensor::zeros([n], (Kind::Float, self.device)),
                Tensor::ones([total - n], (Kind::Float, self.device)),
            ],
            0,
        );
        self.stage2_batches += 1;
        self.stage2_anomalies += (total - n) as usize;
        let logits = self.logits(&inputs)?;
        let bce = logits.binary_cross_entropy_with_logits::<Tensor>(
            &target,
            None,
            None,
            tch::Reduction::Mean,
        );
        Ok(TrainOutput {
            terms: vec![LossTerm::new("bce", &bce)],
            loss: bce,
        })
    }
}

impl Method for Mscm {
    fn trainable(&self) -> &nn::VarStore {
        &self.vs
    }

    fn start_epoch(&mut self, epoch: usize, epochs: usize) -> Result<()> {
        if self.cfg.stage1_epochs >= epochs {
            return Err(CoreError::Invalid(format!(
                "method.stage1_epochs = {} leaves no epoch of train.epochs = {epochs} for stage 2 \
                 (the detector): lower it or raise train.epochs",
                self.cfg.stage1_epochs
            )));
        }
        self.check_stage2_anomalies()?;
        (self.stage2_batches, self.stage2_anomalies) = (0, 0);
        self.stage = if epoch <= self.cfg.stage1_epochs {
            1
        } else {
            2
        };
        Ok(())
    }

    fn train_step(&mut self, batch: &Batch) -> Result<TrainOutput> {
        match self.stage {
            1 => self.stage1_step(batch),
            _ => self.stage2_step(batch),
        }
    }

    /// The last stage-2 epoch's counts fail it here too, before the runner saves the
    /// checkpoint: a run cannot finish with a constant detector.
    fn finalize(&mut self, _progress: Progress<'_>) -> Result<()> {
        self.check_stage2_anomalies()
    }

    /// Both kinds: the counts of the stage-2 epoch trained last (`stage2_batches`,
    /// `stage2_anomalies`, int64 scalars), so that a resumed run or a checkpoint keeps
    /// failing `check_stage2_anomalies`. The ablation also: its running sums of normalised
    /// normal features (`reference_sum_s<i>` `[C_s]`) and their image count
    /// (`reference_count`, int64 scalar), so that a resumed stage 2 goes on summing where
    /// it stopped.
    fn state(&self) -> Vec<(String, Tensor)> {
        let mut state: Vec<(String, Tensor)> = Vec::new();
        if let References::Means { sums, count } = &self.references {
            state.extend(
                (self.cfg.scales.iter().zip(sums))
                    .map(|(s, sum)| (format!("reference_sum_s{s}"), sum.shallow_clone())),
            );
            state.push((REFERENCE_COUNT.into(), Tensor::from(*count)));
        }
        state.push((
            STAGE2_BATCHES.into(),
            Tensor::from(self.stage2_batches as i64),
        ));
        state.push((
            STAGE2_ANOMALIES.into(),
            Tensor::from(self.stage2_anomalies as i64),
        ));
        state
    }

    /// Restores [`Method::state`] by name, in any order (a safetensors file reads back in
    /// hash order). The stage-2 counts may be absent (checkpoints saved before they were):
    /// the check then has nothing to go on.
    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let expected: Vec<String> = self.state().into_iter().map(|(n, _)| n).collect();
        let optional = [STAGE2_BATCHES, STAGE2_ANOMALIES];
        let given = |name: &str| state.iter().find(|(n, _)| n == name).map(|(_, t)| t);
        let unexpected: Vec<&str> = (state.iter())
            .map(|(n, _)| n.as_str())
            .filter(|n| !expected.iter().any(|e| e == n))
            .collect();
        let missing: Vec<&str> = (expected.iter())
            .map(String::as_str)
            .filter(|n| given(n).is_none() && !optional.contains(n))
            .collect();
        if !unexpected.is_empty() || !missing.is_empty() {
            return Err(CoreError::Invalid(format!(
                "{} state: missing {missing:?}, unexpected {unexpected:?} (expected {expected:?})",
                self.cfg.kind
            )));
        }
        let counter = |name: &str| -> Result<Option<usize>> {
            given(name).map(|t| count_of(name, t)).transpose()
        };
        let batches = counter(STAGE2_BATCHES)?.unwrap_or(0);
        let anomalies = counter(STAGE2_ANOMALIES)?.unwrap_or(0);
        if let References::Means { sums, count } = &mut self.references {
            let mut loaded = Vec::with_capacity(sums.len());
            for (s, sum) in self.cfg.scales.iter().zip(sums.iter()) {
                let name = format!("reference_sum_s{s}");
                let saved = given(&name).expect("checked above: present");
                if saved.size() != sum.size() {
                    return Err(CoreError::Invalid(format!(
                        "`{name}`: {:?} saved, {:?} in the model",
                        saved.size(),
                        sum.size()
                    )));
                }
                loaded.push(saved.to_kind(Kind::Float)); // on the device: the runner moves it
            }
            let saved_count = count_of(REFERENCE_COUNT, given(REFERENCE_COUNT).expect("checked"))?;
            *sums = loaded;
            *count = saved_count as i64;
        }
        (self.stage2_batches, self.stage2_anomalies) = (batches, anomalies);
        Ok(())
    }

    fn score(&self, batch: &Batch) -> Result<AnomalyOutput> {
        self.check_stage2_anomalies()?;
        let x = self.prepare(&batch.input)?;
        let scales = tch::no_grad(|| self.select_scales(&self.features(&x, false)));
        // The head in float32 under bf16/fp16 autocast too: bf16 logits hold a few hundred
        // distinct values, and their ties would change the metrics.
        let scales: Vec<Tensor> = scales.iter().map(|s| s.to_kind(Kind::Float)).collect();
        let image_score = full_precision(self.device, || self.logits_of(&scales))?;
        Ok(AnomalyOutput {
            image_score,
            anomaly_map: None,
            parts: Vec::new(),
            class_prediction: None,
            memory_usage: self.memory_usage(&scales),
        })
    }
}

// -------------------------------------------------------------------- tensor functions

/// NT-Xent (SimCLR) of `2B` normalised projections, view `i` paired with `i + B`.
///
/// # Shapes
/// `z`: `[2B, P]`, rows L2-normalised -> scalar.
pub fn nt_xent(z: &Tensor, temperature: f64) -> Tensor {
    let n = z.size()[0];
    let b = n / 2;
    let eye = Tensor::eye(n, (Kind::Bool, z.device()));
    let logits = (z.matmul(&z.tr()) / temperature).masked_fill(&eye, -1e9);
    let idx = Tensor::arange(n, (Kind::Int64, z.device()));
    let target = (idx + b).remainder(n);
    logits.cross_entropy_for_logits(&target)
}

/// The contrast between samples at one scale (local to global): each local feature of view
/// `v` of sample `i` is pulled to the pooled feature of `i`'s other view and pushed from the
/// pooled features of the other samples' views. With `l^` the normalised local features and
/// `g^_j` the normalised global average pools of the `2B` views,
/// `L_sc = mean_{n,p} -log softmax_j(l^_{n,p} . g^_j / t)[(n + B) mod 2B]`, `j = n` left out
/// (a view's own pool), as NT-Xent leaves out a view's own projection.
///
/// # Shapes
/// `f`: `[2B, C, h, w]`, the `B` first views then the `B` second ones -> scalar.
pub fn local_global_contrast(f: &Tensor, temperature: f64) -> Tensor {
    let size = f.size();
    let (n, c) = (size[0], size[1]);
    let pooled = l2_normalise(&f.mean_dim([2, 3].as_slice(), false, Kind::Float)); // [2B, C]
    let local = l2_normalise(&f.permute([0, 2, 3, 1]).reshape([n, -1, c])); // [2B, P, C]
    let positions = local.size()[1];
    let own = Tensor::eye(n, (Kind::Bool, f.device())).unsqueeze(1);
    let logits = (local.matmul(&pooled.tr()) / temperature).masked_fill(&own, -1e9);
    let other_view = (Tensor::arange(n, (Kind::Int64, f.device())) + n / 2).remainder(n);
    let target = other_view.unsqueeze(1).expand([n, positions], false);
    logits
        .reshape([n * positions, n])
        .cross_entropy_for_logits(&target.reshape([-1]))
}

/// `[n]` uniform draws in `[lo, hi)` on `device`.
fn uniform(n: i64, lo: f64, hi: f64, device: Device) -> Tensor {
    Tensor::rand([n], (Kind::Float, device)) * (hi - lo) + lo
}

/// Two stage-1 views' worth of augmentation: random resized crop + flip (one affine grid per
/// image, bilinear, zero padding), brightness and contrast jitter, noise; clamped to
/// `[0, 1]`.
///
/// # Shapes
/// `x`: `[B, C, H, W]` in `[0, 1]` -> same.
pub fn augment(x: &Tensor, cfg: &AugmentConfig) -> Tensor {
    let size = x.size();
    let (b, device) = (size[0], x.device());
    let area = uniform(b, cfg.crop_scale[0], cfg.crop_scale[1], device);
    let ratio = uniform(b, cfg.crop_ratio[0].ln(), cfg.crop_ratio[1].ln(), device).exp();
    let w = (&area * &ratio).sqrt().clamp_max(1.0);
    let h = (&area / &ratio).sqrt().clamp_max(1.0);
    let cx = uniform(b, -1.0, 1.0, device) * (-&w + 1.0);
    let cy = uniform(b, -1.0, 1.0, device) * (-&h + 1.0);
    let sx = if cfg.flip {
        let sign = Tensor::rand([b], (Kind::Float, device))
            .lt(0.5)
            .to_kind(Kind::Float)
            * 2.0
            - 1.0;
        &w * sign
    } else {
        w.shallow_clone()
    };
    let zero = Tensor::zeros([b], (Kind::Float, device));
    let theta = Tensor::stack(&[sx, zero.shallow_clone(), cx, zero, h, cy], 1).reshape([b, 2, 3]);
    let grid = Tensor::affine_grid_generator(&theta, size.as_slice(), false);
    let mut out = x.grid_sampler(&grid, 0, 0, false);
    if cfg.brightness > 0.0 {
        let f = uniform(b, 1.0 - cfg.brightness, 1.0 + cfg.brightness, device);
        out *= f.reshape([b, 1, 1, 1]);
    }
    if cfg.contrast > 0.0 {
        let f = uniform(b, 1.0 - cfg.contrast, 1.0 + cfg.contrast, device).reshape([b, 1, 1, 1]);
        let mean = out.mean_dim([1, 2, 3].as_slice(), true, Kind::Float);
        out = (&out - &mean) * f + mean;
    }
    if cfg.noise > 0.0 {
        out = &out + out.randn_like() * cfg.noise;
    }
    out.clamp(0.0, 1.0)
}

/// `[B]` float masks `[B, 1, 1, 1]` selecting, for each of `kinds` options, the images whose
/// draw is that option.
fn choice_masks(b: i64, kinds: i64, device: Device) -> Vec<Tensor> {
    let draw = Tensor::randint(kinds, [b], (Kind::Int64, device));
    (0..kinds)
        .map(|k| draw.eq(k).to_kind(Kind::Float).reshape([b, 1, 1, 1]))
        .collect()
}

/// The nine permutations of four quadrants that move every quadrant.
const DERANGEMENTS: [[i64; 4]; 9] = [
    [1, 0, 3, 2],
    [1, 2, 3, 0],
    [1, 3, 0, 2],
    [2, 0, 3, 1],
    [2, 3, 0, 1],
    [2, 3, 1, 0],
    [3, 0, 1, 2],
    [3, 2, 0, 1],
    [3, 2, 1, 0],
];

/// One pseudo-anomaly per image, its kind drawn uniformly from `cfg.pseudo_anomalies`.
///
/// # Shapes
/// `x`: `[B, C, H, W]` in `[0, 1]` (square, even side for `shuffle`) -> same.
pub fn pseudo_anomalies(x: &Tensor, cfg: &DetectorConfig) -> Result<Tensor> {
    let kinds = &cfg.pseudo_anomalies;
    if kinds.is_empty() {
        return Err(CoreError::Invalid(
            "no pseudo-anomaly kind configured".into(),
        ));
    }
    let size = x.size();
    if size[2] != size[3] {
        return Err(CoreError::Invalid(format!(
            "pseudo-anomalies need square images, got {size:?}"
        )));
    }
    let b = size[0];
    let masks = choice_masks(b, kinds.len() as i64, x.device());
    let mut out = x.zeros_like();
    for (kind, mask) in kinds.iter().zip(&masks) {
        let made = match kind {
            PseudoAnomaly::Rotate => rotate(x),
            PseudoAnomaly::Cutpaste => cutpaste(x),
            PseudoAnomaly::Shuffle => shuffle(x)?,
            PseudoAnomaly::Noise => (x + x.randn_like() * cfg.noise_std).clamp(0.0, 1.0),
        };
        out += made * mask;
    }
    Ok(out)
}

/// Each image rotated by 90, 180 or 270 degrees (drawn per image).
fn rotate(x: &Tensor) -> Tensor {
    let b = x.size()[0];
    let masks = choice_masks(b, 3, x.device());
    masks
        .iter()
        .enumerate()
        .map(|(k, m)| x.rot90(k as i64 + 1, [2, 3]) * m)
        .reduce(|a, c| a + c)
        .expect("three rotations")
}

/// A rectangle of each image (sides 1/4 to 1/2 of the image's) replaced by a copy of the
/// content 1/8 to 3/8 of the side away (whole pixels) in each direction.
fn cutpaste(x: &Tensor) -> Tensor {
    let size = x.size();
    let (b, s, device) = (size[0], size[2] as f64, x.device());
    let ph = (uniform(b, 0.25, 0.5, device) * s).floor();
    let pw = (uniform(b, 0.25, 0.5, device) * s).floor();
    let y0 = (Tensor::rand([b], (Kind::Float, device)) * (-&ph + s)).floor();
    let x0 = (Tensor::rand([b], (Kind::Float, device)) * (-&pw + s)).floor();
    // Source offset of 1/8 to 3/8 of the side, either way, in whole pixels (normalised
    // coordinates, 2 / s per pixel), so the sampled content is an exact copy, not blurred.
    let shift = |n: i64| {
        let sign = Tensor::rand([n], (Kind::Float, device))
            .lt(0.5)
            .to_kind(Kind::Float)
            * 2.0
            - 1.0;
        (uniform(n, 0.25, 0.75, device) * sign * (s / 2.0)).round() * (2.0 / s)
    };
    let (tx, ty) = (shift(b), shift(b));
    let one = Tensor::ones([b], (Kind::Float, device));
    let zero = Tensor::zeros([b], (Kind::Float, device));
    let theta = Tensor::stack(
        &[one.shallow_clone(), zero.shallow_clone(), tx, zero, one, ty],
        1,
    )
    .reshape([b, 2, 3]);
    let grid = Tensor::affine_grid_generator(&theta, size.as_slice(), false);
    let moved = x.grid_sampler(&grid, 0, 1, false);
    let coords = Tensor::arange(size[2], (Kind::Float, device)).reshape([1, -1]);
    let inside = |start: &Tensor, len: &Tensor| {
        coords
            .ge_tensor(&start.reshape([b, 1]))
            .logical_and(&coords.lt_tensor(&(start + len).reshape([b, 1])))
            .to_kind(Kind::Float)
    };
    let rows = inside(&y0, &ph).reshape([b, 1, -1, 1]);
    let cols = inside(&x0, &pw).reshape([b, 1, 1, -1]);
    let mask = rows * cols;
    x * (-&mask + 1.0) + moved * mask
}

/// The four quadrants of each image permuted by a random derangement.
fn shuffle(x: &Tensor) -> Result<Tensor> {
    let size = x.size();
    if size[2] % 2 != 0 || size[3] % 2 != 0 {
        return Err(CoreError::Invalid(format!(
            "the `shuffle` pseudo-anomaly needs an even image side, got {size:?}"
        )));
    }
    let (b, h, w) = (size[0], size[2] / 2, size[3] / 2);
    let quads = [
        x.narrow(2, 0, h).narrow(3, 0, w),
        x.narrow(2, 0, h).narrow(3, w, w),
        x.narrow(2, h, h).narrow(3, 0, w),
        x.narrow(2, h, h).narrow(3, w, w),
    ];
    let masks = choice_masks(b, DERANGEMENTS.len() as i64, x.device());
    let mut out_quads: Vec<Tensor> = Vec::with_capacity(4);
    for j in 0..4 {
        let q = DERANGEMENTS
            .iter()
            .zip(&masks)
            .map(|(perm, m)| &quads[perm[j] as usize] * m)
            .reduce(|a, c| a + c)
            .expect("nine permutations");
        out_quads.push(q);
    }
    let top = Tensor::cat(&[&out_quads[0], &out_quads[1]], 3);
    let bottom = Tensor::cat(&[&out_quads[2], &out_quads[3]], 3);
    Ok(Tensor::cat(&[top, bottom], 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny model: two stages of 4 and 8 channels on 8x8 images; `extra` is TOML after
    /// the top-level keys (more keys, then tables).
    fn section(kind: &str, extra: &str) -> toml::Value {
        toml::from_str(&format!(
            "kind = \"{kind}\"\nstage1_epochs = 1\nscales = [0, 1]\nprojection_dim = 8\n\
             encoder = {{ widths = [4, 8], blocks = [1, 1] }}\n{extra}"
        ))
        .unwrap()
    }

    fn ctx() -> BuildContext {
        BuildContext {
            device: Device::Cpu,
            weights_dir: Default::default(),
            image_size: 8,
            classes: 1,
        }
    }

    fn model(kind: &str, extra: &str) -> Mscm {
        tch::manual_seed(0);
        Mscm::new(parse(&section(kind, extra), "method").unwrap(), &ctx()).unwrap()
    }

    fn batch(labels: &[i64]) -> Batch {
        let b = labels.len() as i64;
        Batch {
            input: Tensor::rand([b, 3, 8, 8], (Kind::Float, Device::Cpu)),
            label: Tensor::from_slice(labels),
            mask: None,
            class: None,
            synthetic: None,
        }
    }

    fn err_path(kind: &str, extra: &str) -> String {
        parse(&section(kind, extra), "method").unwrap_err().path
    }

    fn grads_defined(vs: &nn::VarStore, prefix: &str) -> (usize, usize) {
        let vars: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(n, t)| n.starts_with(prefix) && t.requires_grad())
            .collect();
        let defined = vars
            .iter()
            .filter(|(_, t)| {
                let g = t.grad();
                g.defined() && g.abs().sum(Kind::Double).double_value(&[]) > 0.0
            })
            .count();
        (defined, vars.len())
    }

    fn finite(values: &[f64]) -> bool {
        values.iter().all(|v| v.is_finite())
    }

    #[test]
    fn config_errors_name_the_key() {
        let missing: toml::Value = toml::from_str("kind = \"mscm\"").unwrap();
        let err = parse(&missing, "method").unwrap_err();
        assert!(err.to_string().contains("stage1_epochs"), "{err}");
        assert_eq!(err_path("mscm", "channels = 2"), "method.channels");
        assert_eq!(
            err_path("mscm", "[memory]\nslots = [4]"),
            "method.memory.slots"
        );
        assert_eq!(
            err_path("mscm", "[memory]\ntemperature = -1.0"),
            "method.memory.temperature"
        );
        assert_eq!(
            err_path("contrastive", "[memory]\nslots = [4, 4]"),
            "method.memory"
        );
        assert_eq!(
            err_path("mscm", "[augment]\ncrop_scale = [0.9, 0.5]"),
            "method.augment.crop_scale"
        );
        assert_eq!(
            err_path("mscm", "[detector]\nhidden = 0"),
            "method.detector.hidden"
        );
        assert_eq!(
            err_path("mscm", "[detector]\nhiden = 3"),
            "method.detector.hiden"
        );
        assert_eq!(
            err_path("mscm", "[detector]\npseudo_anomalies = [\"blur\"]"),
            "method.detector.pseudo_anomalies[0]"
        );
        let bad_scales: toml::Value = toml::from_str(
            "kind = \"mscm\"\nstage1_epochs = 1\nscales = [0, 3]\n[encoder]\nwidths = [4, 8]\nblocks = [1, 1]",
        )
        .unwrap();
        assert_eq!(
            parse(&bad_scales, "method").unwrap_err().path,
            "method.scales"
        );
        let bad_blocks: toml::Value = toml::from_str(
            "kind = \"mscm\"\nstage1_epochs = 1\n[encoder]\nwidths = [4, 8]\nblocks = [1]",
        )
        .unwrap();
        assert_eq!(
            parse(&bad_blocks, "method").unwrap_err().path,
            "method.encoder.blocks"
        );
        let bad_stride: toml::Value =
            toml::from_str("kind = \"mscm\"\nstage1_epochs = 1\n[encoder]\nstem_stride = 0")
                .unwrap();
        assert_eq!(
            parse(&bad_stride, "method").unwrap_err().path,
            "method.encoder.stem_stride"
        );
    }

    #[test]
    fn resolve_fills_defaults_per_kind() {
        let mscm = parse(
            &toml::from_str("kind = \"mscm\"\nstage1_epochs = 3").unwrap(),
            "m",
        )
        .unwrap();
        assert_eq!(mscm.scales, [0, 1, 2]);
        assert_eq!(mscm.encoder.widths, [16, 32, 64]);
        let memory = mscm.memory.as_ref().unwrap();
        assert_eq!(memory.slots, [16, 16, 16]);
        assert_eq!(memory.temperature, 0.1);
        assert_eq!(mscm.detector.pseudo_anomalies.len(), 3);
        // The resolved section parses again to the same config.
        let value = to_toml_value(&mscm).unwrap();
        assert_eq!(parse(&value, "m").unwrap(), mscm);
        // Off, the contrast between samples is left out (earlier runs keep their hash); on, in.
        assert!(value.get("sample_contrast_weight").is_none());
        let on = parse(
            &toml::from_str("kind = \"mscm\"\nstage1_epochs = 3\nsample_contrast_weight = 0.5")
                .unwrap(),
            "m",
        )
        .unwrap();
        let on = to_toml_value(&on).unwrap();
        assert_eq!(
            on.get("sample_contrast_weight").and_then(|v| v.as_float()),
            Some(0.5)
        );
        let ablation = parse(
            &toml::from_str("kind = \"contrastive\"\nstage1_epochs = 3").unwrap(),
            "m",
        )
        .unwrap();
        assert!(ablation.memory.is_none());
        assert!(to_toml_value(&ablation).unwrap().get("memory").is_none());
    }

    #[test]
    fn stages_switch_at_stage1_epochs_and_need_a_stage_2() {
        let mut m = model("mscm", "");
        assert_eq!(m.stage(), 1);
        m.start_epoch(1, 3).unwrap();
        assert_eq!(m.stage(), 1);
        m.start_epoch(2, 3).unwrap();
        assert_eq!(m.stage(), 2);
        let err = m.start_epoch(1, 1).unwrap_err().to_string();
        assert!(err.contains("stage1_epochs"), "{err}");
    }

    #[test]
    fn stage1_step_gives_named_finite_terms_and_trains_encoder_and_memories() {
        let mut m = model("mscm", "");
        m.start_epoch(1, 2).unwrap();
        let out = m.train_step(&batch(&[0, 0, 0, 1])).unwrap();
        let names: Vec<&str> = out.terms.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ntxent",
                "contrast_s0",
                "usage_s0",
                "repel_s0",
                "contrast_s1",
                "usage_s1",
                "repel_s1"
            ]
        );
        let (loss, values) = out.read();
        assert!(finite(&values), "{values:?}");
        // The loss is the sum of the (weighted) terms; NT-Xent of 8 views is near log 7.
        assert!((loss - values.iter().sum::<f64>()).abs() < 1e-4);
        assert!(values[0] > 0.5 && values[0] < 4.0);
        out.loss.backward();
        let (enc, enc_n) = grads_defined(m.trainable(), "encoder");
        assert_eq!(
            enc, enc_n,
            "every encoder variable gets a gradient in stage 1"
        );
        assert_eq!(grads_defined(m.trainable(), "memory"), (2, 2));
        assert_eq!(grads_defined(m.trainable(), "detector").0, 0);
        // Without labelled anomalies there is no repel term.
        let out = m.train_step(&batch(&[0, 0, 0])).unwrap();
        assert_eq!(out.terms.len(), 5);
    }

    #[test]
    fn stage2_step_trains_only_the_detector() {
        for kind in [KIND_MSCM, KIND_CONTRASTIVE] {
            for deviation in ["distance", "residual"] {
                let mut m = model(kind, &format!("[detector]\ndeviation = \"{deviation}\""));
                m.start_epoch(2, 2).unwrap();
                let out = m.train_step(&batch(&[0, 0, 1])).unwrap();
                assert_eq!(out.terms.len(), 1);
                assert_eq!(out.terms[0].name, "bce");
                let (_, values) = out.read();
                assert!(finite(&values));
                // A near-untrained detector: BCE near log 2.
                assert!((values[0] - 2f64.ln()).abs() < 0.5, "{values:?}");
                out.loss.backward();
                for frozen in ["encoder", "projector", "memory"] {
                    assert_eq!(
                        grads_defined(m.trainable(), frozen).0,
                        0,
                        "{kind} {deviation}: {frozen} got a gradient in stage 2"
                    );
                }
                let (det, det_n) = grads_defined(m.trainable(), "detector");
                assert_eq!((det, det_n), (6, 6), "{kind} {deviation}");
            }
        }
    }

    #[test]
    fn a_stage_2_epoch_without_anomalous_examples_is_an_error() {
        let mut m = model("mscm", "[detector]\npseudo_anomalies = []");
        m.start_epoch(2, 4).unwrap();
        // A labelled anomaly (the unbalanced setting) is enough.
        m.train_step(&batch(&[0, 1])).unwrap();
        m.start_epoch(3, 4).unwrap();
        m.train_step(&batch(&[0, 0])).unwrap();
        let msg = |e: CoreError| e.to_string();
        let err = msg(tch::no_grad(|| m.score(&batch(&[0]))).unwrap_err());
        assert!(
            err.contains("the 1 batches of a stage-2 epoch held no anomalous example")
                && err.contains("data.anomaly_fraction"),
            "{err}"
        );
        // The counts are state: a model restored from it (a resumed run after this epoch, a
        // checkpoint) fails alike, when the next epoch starts, in `finalize` (before the
        // runner saves the checkpoint) and when scoring.
        let state = m.state();
        let mut resumed = model("mscm", "[detector]\npseudo_anomalies = []");
        resumed.load_state(&state).unwrap();
        let start = resumed.start_epoch(4, 4).map_err(msg).unwrap_err();
        assert!(start.contains("no anomalous example"), "{start}");
        let mut resumed = model("mscm", "[detector]\npseudo_anomalies = []");
        resumed.load_state(&state).unwrap();
        let fin = resumed.finalize(&memad_core::no_progress).map_err(msg);
        assert!(fin.unwrap_err().contains("no anomalous example"));
        let score = tch::no_grad(|| resumed.score(&batch(&[0]))).map_err(msg);
        assert!(score.unwrap_err().contains("no anomalous example"));
        // Checkpoints saved before the counts were: nothing to check.
        let mut old = model("mscm", "[detector]\npseudo_anomalies = []");
        old.load_state(&[]).unwrap();
        old.finalize(&memad_core::no_progress).unwrap();
        let mut no_stage1 = section("mscm", "");
        (no_stage1.as_table_mut().unwrap()).insert("stage1_epochs".into(), 0.into());
        let err = parse(&no_stage1, "method").unwrap_err();
        assert_eq!(err.path, "method.stage1_epochs");
    }

    /// No pseudo-anomalies and no labelled anomalies: refused by the config check (`memad
    /// check`, before training), naming the key and what else gives stage 2 anomalies.
    #[test]
    fn no_pseudo_anomalies_need_labelled_ones() {
        let mut registry = Registry::default();
        crate::register(&mut registry);
        let check = |kind: &str, extra: &str, data: &str| {
            let method = resolve(&section(kind, extra), "method", &registry).unwrap();
            let data: toml::Value = toml::from_str(&format!("batch_size = 4\n{data}")).unwrap();
            (registry.method(kind, "method.kind").unwrap().check_data)(&method, &data)
        };
        let none = "[detector]\npseudo_anomalies = []";
        for kind in [KIND_MSCM, KIND_CONTRASTIVE] {
            for data in ["", "anomaly_fraction = 0.0"] {
                let err = check(kind, none, data).unwrap_err();
                assert_eq!(err.path, "method.detector.pseudo_anomalies");
                assert!(
                    err.message.contains(&format!("`{kind}`"))
                        && err.message.contains("learn a constant")
                        && err.message.contains("list pseudo-anomalies")
                        && err.message.contains("data.anomaly_fraction > 0"),
                    "{}",
                    err.message
                );
            }
            // Labelled anomalies (the unbalanced setting), or any pseudo-anomaly, will do.
            assert!(check(kind, none, "anomaly_fraction = 0.05").is_ok());
            assert!(check(kind, "[detector]\npseudo_anomalies = [\"noise\"]", "").is_ok());
            assert!(check(kind, "", "anomaly_fraction = 0.0").is_ok());
        }
    }

    #[test]
    fn cutpaste_copies_whole_pixels() {
        // Integer pixel values: a copy from a fractional offset would blend neighbours.
        let x = Tensor::arange(4 * 16 * 16, (Kind::Float, Device::Cpu)).reshape([4, 1, 16, 16]);
        tch::manual_seed(3);
        let out = cutpaste(&x);
        let off = (&out - out.round()).abs().max().double_value(&[]);
        assert!(off < 1e-3, "a value between pixels: {off}");
        assert!(
            out.ne_tensor(&x).any().int64_value(&[]) == 1,
            "nothing pasted"
        );
    }

    #[test]
    fn stem_stride_halves_every_scale() {
        let m = model("mscm", "");
        let x = Tensor::rand([2, 1, 8, 8], (Kind::Float, Device::Cpu));
        let sizes = |m: &Mscm| -> Vec<Vec<i64>> {
            m.features(&x, false).iter().map(|f| f.size()).collect()
        };
        assert_eq!(sizes(&m), [vec![2, 4, 8, 8], vec![2, 8, 4, 4]]);
        let mut cfg = parse(&section("mscm", ""), "method").unwrap();
        cfg.encoder.stem_stride = 2;
        let m = Mscm::new(cfg, &ctx()).unwrap();
        assert_eq!(sizes(&m), [vec![2, 4, 4, 4], vec![2, 8, 2, 2]]);
    }

    #[test]
    fn score_is_one_finite_logit_per_image() {
        let m = model("mscm", "");
        let b = batch(&[0, 1, 0, 0, 1]);
        let out = tch::no_grad(|| m.score(&b)).unwrap();
        assert_eq!(out.image_score.size(), [5]);
        assert!(out.image_score.isfinite().all().int64_value(&[]) == 1);
        assert!(out.anomaly_map.is_none());
        // The logit is the detector's forward of the deviation maps of the same images:
        // grey (channel mean, `channels = 1`), the frozen encoder's scales 0 and 1, and per
        // scale `D_s = 1 - max_k cos(F_s, m_k)` (`deviation = "distance"`), recomputed here
        // from the prototypes.
        let expected = tch::no_grad(|| {
            let grey = b.input.mean_dim(1, true, Kind::Float);
            let all = m.features(&grey, false);
            assert_eq!(all.len(), 2);
            let mut maps = Vec::new();
            let mut magnitude = Vec::new();
            for (f, memory) in all.iter().zip(m.memories()) {
                let s = f.size();
                let q = f.permute([0, 2, 3, 1]).reshape([-1, s[1]]);
                // `x / max(||x||, 1e-8)`: a position whose features the ReLU zeroed is at
                // cosine 0 to every prototype.
                let unit = |x: &Tensor| x / x.norm_scalaropt_dim(2.0, [1], true).clamp_min(1e-8);
                let cos = unit(&q).matmul(&unit(memory.prototypes()).tr());
                let distance = (-cos.amax([1], false) + 1.0).clamp_min(0.0); // [B h w]
                maps.push(distance.reshape([s[0], 1, s[2], s[3]]));
                magnitude.push(distance.reshape([s[0], -1]));
            }
            // The method's own deviations of the same scales agree with these.
            let dev = m.deviations(&m.select_scales(&all)).unwrap();
            for (ours, theirs) in maps.iter().zip(&dev.maps) {
                assert_eq!(ours.size(), theirs.size());
                assert!(
                    ours.allclose(theirs, 1e-5, 1e-6, false),
                    "max |diff| {}",
                    (ours - theirs).abs().max()
                );
            }
            m.detector.forward(&maps, &magnitude)
        });
        assert!(
            out.image_score.allclose(&expected, 1e-5, 1e-6, false),
            "{} vs {}",
            out.image_score,
            expected
        );
        // Not a constant: the five images get different logits.
        let logits = Vec::<f32>::try_from(&out.image_score).unwrap();
        assert!(logits.windows(2).any(|w| w[0] != w[1]), "{logits:?}");
    }

    /// What the registry declares of both kinds' scores (`memad check` refuses pixel
    /// metrics and `class_accuracy` from it) is what `score` gives.
    #[test]
    fn registry_declares_no_maps_and_no_classes() {
        let mut registry = Registry::default();
        crate::register(&mut registry);
        for kind in [KIND_MSCM, KIND_CONTRASTIVE] {
            let entry = registry.method(kind, "method.kind").unwrap();
            let mut m = model(kind, "");
            m.start_epoch(2, 2).unwrap(); // stage 2: the ablation's mean normal feature
            m.train_step(&batch(&[0, 0])).unwrap();
            let out = tch::no_grad(|| m.score(&batch(&[0, 1]))).unwrap();
            assert_eq!(entry.anomaly_maps, out.anomaly_map.is_some(), "{kind}");
            assert_eq!(
                entry.class_predictions,
                out.class_prediction.is_some(),
                "{kind}"
            );
        }
    }

    /// With one image per batch NT-Xent has no negative: it is 0 whatever the projections,
    /// so `check_data` refuses `data.batch_size = 1` while NT-Xent or the sample contrast
    /// is on.
    #[test]
    fn one_image_per_batch_is_refused_while_ntxent_is_on() {
        let z = l2_normalise(&Tensor::from_slice(&[1.0f32, 2., -3., 0.5]).reshape([2, 2]));
        assert_eq!(nt_xent(&z, 0.5).double_value(&[]), 0.0);
        let mut registry = Registry::default();
        crate::register(&mut registry);
        let data =
            |b: i64| -> toml::Value { toml::from_str(&format!("batch_size = {b}")).unwrap() };
        let check = |kind: &str, extra: &str, b: i64| {
            let method = resolve(&section(kind, extra), "method", &registry).unwrap();
            (registry.method(kind, "method.kind").unwrap().check_data)(&method, &data(b))
        };
        for kind in [KIND_MSCM, KIND_CONTRASTIVE] {
            let err = check(kind, "", 1).unwrap_err();
            assert_eq!(err.path, "data.batch_size");
            assert!(
                err.message.contains("must be at least 2")
                    && err.message.contains(&format!("`{kind}`"))
                    && err.message.contains("NT-Xent")
                    && err.message.contains("got 1"),
                "{}",
                err.message
            );
            assert!(check(kind, "", 2).is_ok());
            // The sample contrast alone needs other images too.
            let sample_only = "ntxent_weight = 0.0\nsample_contrast_weight = 0.5";
            assert_eq!(
                check(kind, sample_only, 1).unwrap_err().path,
                "data.batch_size"
            );
        }
        // Without either term MSCM's stage 1 trains its memories alone, on any batch.
        assert!(check(KIND_MSCM, "ntxent_weight = 0.0", 1).is_ok());
    }

    #[test]
    fn ablation_measures_against_the_mean_normal_feature() {
        let mut m = model("contrastive", "");
        assert!(m.memories().is_empty());
        // No mean before stage 2 has seen normal images.
        let msg = tch::no_grad(|| m.score(&batch(&[0])))
            .expect_err("no mean yet")
            .to_string();
        assert!(
            msg.contains("the contrastive ablation has no mean normal feature yet"),
            "{msg}"
        );
        m.start_epoch(2, 2).unwrap();
        m.train_step(&batch(&[0, 0, 0, 1])).unwrap();
        let state = m.state();
        let names: Vec<&str> = state.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "reference_sum_s0",
                "reference_sum_s1",
                "reference_count",
                "stage2_batches",
                "stage2_anomalies"
            ]
        );
        assert_eq!(state[1].1.size(), [8]);
        assert_eq!(state[2].1.int64_value(&[]), 3, "three normal images");
        assert_eq!(state[3].1.int64_value(&[]), 1, "one stage-2 batch");
        assert_eq!(state[4].1.int64_value(&[]), 4, "three pseudo, one labelled");
        let b = batch(&[0, 1]);
        let out = tch::no_grad(|| m.score(&b)).unwrap();
        assert_eq!(out.image_score.size(), [2]);
        // A checkpoint's state restores the means (the variables copied as the runner does).
        let mut loaded = model("contrastive", "");
        tch::no_grad(|| {
            let trained = m.trainable().variables();
            for (name, mut v) in loaded.trainable().variables() {
                v.copy_(&trained[&name]);
            }
        });
        loaded.load_state(&state).unwrap();
        let again = tch::no_grad(|| loaded.score(&b)).unwrap();
        assert!(again
            .image_score
            .allclose(&out.image_score, 1e-6, 1e-6, false));
        // By name, in any order: a safetensors file reads back in hash order.
        let reorders: [&[usize]; 3] = [&[4, 2, 0, 3, 1], &[2, 1, 0, 4, 3], &[1, 0, 2]];
        for order in reorders {
            let shuffled: Vec<(String, Tensor)> = (order.iter())
                .map(|&i| (state[i].0.clone(), state[i].1.shallow_clone()))
                .collect();
            let mut other = model("contrastive", "");
            tch::no_grad(|| {
                let trained = m.trainable().variables();
                for (name, mut v) in other.trainable().variables() {
                    v.copy_(&trained[&name]);
                }
            });
            other.load_state(&shuffled).unwrap();
            let scores = tch::no_grad(|| other.score(&b)).unwrap().image_score;
            assert!(
                scores.allclose(&out.image_score, 1e-6, 1e-6, false),
                "{order:?}"
            );
            assert_eq!(other.state()[2].1.int64_value(&[]), 3, "{order:?}");
        }
        // Missing and unexpected names are named.
        let mut partial: Vec<(String, Tensor)> = (state[..2].iter())
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect();
        let zeros = |n: i64| Tensor::zeros([n], (Kind::Float, Device::Cpu));
        partial.push(("reference_sum_s7".into(), zeros(8)));
        let msg = loaded.load_state(&partial).unwrap_err().to_string();
        assert!(
            msg.contains(
                "contrastive state: missing [\"reference_count\"], unexpected \
                 [\"reference_sum_s7\"]"
            ),
            "{msg}"
        );
        let mut wrong: Vec<(String, Tensor)> = (state[..3].iter())
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect();
        wrong[1].1 = zeros(3);
        let msg = loaded.load_state(&wrong).unwrap_err().to_string();
        assert!(msg.contains("`reference_sum_s1`: [3] saved, [8]"), "{msg}");
        // The scores are those of the state loaded last that loaded whole.
        let after = tch::no_grad(|| loaded.score(&b)).unwrap();
        assert!(
            after.image_score.equal(&again.image_score),
            "a failed load changed it"
        );
        // MSCM's state is the stage-2 counts alone: its prototypes are VarStore variables.
        let mscm_state = model("mscm", "").state();
        let names: Vec<&str> = mscm_state.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["stage2_batches", "stage2_anomalies"]);
        let msg = model("mscm", "")
            .load_state(&state)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(
                "mscm state: missing [], unexpected [\"reference_sum_s0\", \
                 \"reference_sum_s1\", \"reference_count\"]"
            ),
            "{msg}"
        );
        assert_eq!(model("mscm", "").memories().len(), 2);
    }

    #[test]
    fn local_global_contrast_by_hand() {
        // Two images, one position each, views identical: f = [a, b, a, b] with a . b = 0;
        // each local feature equals its own pool, which is left out: as NT-Xent by hand.
        let f = Tensor::from_slice(&[1.0f32, 0., 0., 1., 1., 0., 0., 1.]).reshape([4, 2, 1, 1]);
        let t = 0.5;
        let got = local_global_contrast(&f, t).double_value(&[]);
        let want = nt_xent(&f.reshape([4, 2]), t).double_value(&[]);
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        // Two positions per view: a local feature unlike its other view's pool costs more.
        let f = Tensor::from_slice(&[
            1.0f32, 1., 0., 0., /**/ 0., 0., 1., 1., /**/ 1., 0., 0., 1., /**/ 0.,
            1., 1., 0.,
        ])
        .reshape([4, 2, 1, 2]);
        let mixed = local_global_contrast(&f, t).double_value(&[]);
        assert!(mixed > want, "{mixed} vs {want}");
        // Gradients reach the features.
        let f = Tensor::randn([4, 3, 2, 2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        local_global_contrast(&f, t).backward();
        assert!(f.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }

    #[test]
    fn nt_xent_by_hand() {
        // Two images, views identical: z = [a, b, a, b] with a . b = 0.
        let z = Tensor::from_slice(&[1.0f32, 0., 0., 1., 1., 0., 0., 1.]).reshape([4, 2]);
        // Row 0: logits (masked self) [_, 0, 1/t, 0]; target 2.
        let t = 0.5;
        let want = -((1.0f64 / t).exp() / ((1.0f64 / t).exp() + 2.0)).ln();
        let got = nt_xent(&z, t).double_value(&[]);
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn augment_keeps_shape_and_range() {
        tch::manual_seed(1);
        let x = Tensor::rand([6, 1, 8, 8], (Kind::Float, Device::Cpu));
        let cfg = AugmentConfig {
            noise: 0.1,
            ..Default::default()
        };
        let y = augment(&x, &cfg);
        assert_eq!(y.size(), x.size());
        assert!(y.min().double_value(&[]) >= 0.0 && y.max().double_value(&[]) <= 1.0);
        assert!(!y.allclose(&x, 1e-3, 1e-3, false));
        // Without crop, flip, jitter or noise the view is the image.
        let identity = AugmentConfig {
            crop_scale: [1.0, 1.0],
            crop_ratio: [1.0, 1.0],
            flip: false,
            brightness: 0.0,
            contrast: 0.0,
            noise: 0.0,
        };
        assert!(augment(&x, &identity).allclose(&x, 1e-5, 1e-5, false));
    }

    #[test]
    fn pseudo_anomalies_by_kind() {
        tch::manual_seed(2);
        let x = Tensor::rand([5, 1, 8, 8], (Kind::Float, Device::Cpu));
        let only = |kind: PseudoAnomaly| DetectorConfig {
            pseudo_anomalies: vec![kind],
            ..Default::default()
        };
        let sorted = |t: &Tensor| t.reshape([5, -1]).sort(1, false).0;
        // Rotations and quadrant permutations move pixels without changing them.
        for kind in [PseudoAnomaly::Rotate, PseudoAnomaly::Shuffle] {
            let y = pseudo_anomalies(&x, &only(kind)).unwrap();
            assert!(
                sorted(&y).allclose(&sorted(&x), 1e-6, 1e-6, false),
                "{kind:?}"
            );
            let moved = (&y - &x).abs().reshape([5, -1]).amax([1], false);
            assert!(
                moved.min().double_value(&[]) > 0.0,
                "{kind:?}: an image unchanged"
            );
        }
        // Shuffle: quadrant values of a quadrant-constant image, every quadrant moved.
        let quads = Tensor::from_slice(&[0.0f32, 1., 2., 3.]).reshape([1, 1, 2, 2]);
        let img = quads.upsample_nearest2d([8, 8], None, None);
        let y = pseudo_anomalies(&img, &only(PseudoAnomaly::Shuffle)).unwrap();
        let corners: Vec<f32> = Vec::try_from(
            y.reshape([8, 8])
                .index_select(0, &Tensor::from_slice(&[0i64, 7]))
                .index_select(1, &Tensor::from_slice(&[0i64, 7]))
                .reshape([-1]),
        )
        .unwrap();
        for (i, c) in corners.iter().enumerate() {
            assert_ne!(*c, i as f32, "quadrant {i} stayed: {corners:?}");
        }
        // Cut-paste changes one rectangle of each image, no more than half a side squared.
        let y = pseudo_anomalies(&x, &only(PseudoAnomaly::Cutpaste)).unwrap();
        let changed = (&y - &x).abs().gt(1e-6).sum_dim_intlist(
            vec![1i64, 2, 3].as_slice(),
            false,
            Kind::Int64,
        );
        let changed: Vec<i64> = Vec::try_from(changed).unwrap();
        assert!(changed.iter().all(|&c| c > 0 && c <= 16), "{changed:?}");
        let err = pseudo_anomalies(
            &Tensor::rand([1, 1, 7, 7], (Kind::Float, Device::Cpu)),
            &only(PseudoAnomaly::Shuffle),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("the `shuffle` pseudo-anomaly needs an even image side, got [1, 1, 7, 7]"),
            "{err}"
        );
    }
}
