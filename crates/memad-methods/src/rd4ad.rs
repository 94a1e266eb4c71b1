//! RD4AD: "Anomaly Detection via Reverse Distillation from One-Class Embedding",
//! Deng & Li, CVPR 2022. Reference code: github.com/hq-deng/RD4AD.
//!
//! A frozen ImageNet teacher `E` gives levels `f_T^k`, `k = 1..K` (WideResNet-50-2 layer1..3
//! in the paper). The one-class bottleneck embedding `phi` (OCBE: multi-scale fusion + a
//! ResNet stage, [`memad_decoders::Ocbe`]) compresses them, and the student decoder `D`
//! (reversed ResNet, [`memad_decoders::ReverseDecoder`]) reconstructs `f_S^k = D_k(phi(E(x)))`.
//!
//! - Training: `L = sum_k mean_b [1 - cos(vec f_T^k, vec f_S^k)]` (the official code's
//!   flattened form, `loss = "flattened"`), or the paper's per-pixel form (Eq. 2)
//!   `sum_k mean_{h,w} [1 - cos(f_T^k(h,w), f_S^k(h,w))]` (`loss = "per_pixel"`).
//! - Scoring (Eq. 1 and 3): `M^k(h,w) = 1 - cos(f_T^k(h,w), f_S^k(h,w))`, upsampled bilinearly
//!   to the input size and summed over k, smoothed with a Gaussian (sigma 4); the image
//!   score is the maximum of the smoothed map.
//! - Paper settings: WideResNet-50-2, 256x256, Adam lr 0.005, betas (0.5, 0.999), batch 16,
//!   200 epochs, embedding 2048, OCE 3 blocks, decoder stages 3/4/6 blocks.
//!
//! Deviations: the teacher is any registered backbone (channel counts of the OCBE and the
//! decoder are derived from its levels, which must be consecutive stride-2 levels); the
//! defaults of this file are the paper's WideResNet-50-2 shapes. `experiments/quickstart.toml`
//! uses EfficientNet-Lite0 (the ImageNet weights available offline) with a smaller decoder.
//! Against the official code (hq-deng/RD4AD): its ground-truth masks (bilinear, then > 0.5)
//! are `[data] mask_resize = "bilinear_half"`, which the paper files set (the default,
//! `nearest`, keeps thin defects the bilinear resize averages away); an image's label is its
//! folder's (the official `test.py` takes the maximum of the resized mask: they differ only
//! where a defect vanishes in the resize). The student starts as the official one does
//! ([`memad_decoders::init`]): convolutions Kaiming-normal (fan-out), the 2x2 transposed
//! convolutions PyTorch's default (`de_resnet.py` re-initialises only `nn.Conv2d`),
//! BatchNorm weight 1 and bias 0 (runs before 2026-12-06 used tch's defaults: Kaiming-uniform
//! fan-in, BatchNorm weights `U(0, 1)`). The paper's PRO (93.9) is
//! the official `test.py`'s mean of per-image PROs over 200 thresholds per image: the
//! metric `aupro_rd4ad` ([`memad_metrics::aupro_rd4ad`]), not the pooled `aupro`.
use crate::anomaly_map::{gaussian_blur, max_score, upsample_and_sum};
use memad_core::precision::full_precision;
use memad_core::{
    parse_section, to_toml_value, AnomalyOutput, Backbone, Batch, BuildContext, ConfigError,
    CoreError, LossTerm, Method, Registry, Result, TrainOutput,
};
use memad_decoders::{Ocbe, OcbeConfig, ReverseDecoder, ReverseDecoderConfig};
use memad_losses::{cosine_distance_map, cosine_distillation, CosineForm};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossForm {
    Flattened,
    PerPixel,
}

/// The `[method]` section of an experiment with `kind = "rd4ad"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rd4adConfig {
    pub kind: String,
    /// The teacher: a backbone section (`kind`, `weights`, `levels`).
    pub backbone: toml::Value,
    /// Channels of the one-class embedding (2048 in the paper).
    #[serde(default = "d_embed")]
    pub embed_channels: i64,
    /// Bottlenecks in the OCE stage (3 in the paper).
    #[serde(default = "d_oce_blocks")]
    pub oce_blocks: usize,
    /// Bottlenecks per decoder stage, coarsest first (`[3, 4, 6]` in the paper).
    #[serde(default = "d_decoder_blocks")]
    pub decoder_blocks: Vec<usize>,
    /// Bottleneck width / output channels (0.5: the "wide" ResNet of the paper).
    #[serde(default = "d_width_ratio")]
    pub width_ratio: f64,
    #[serde(default = "d_loss")]
    pub loss: LossForm,
    /// Gaussian sigma of the anomaly map, in input pixels (4 in the paper).
    #[serde(default = "d_sigma")]
    pub map_sigma: f64,
}

fn d_embed() -> i64 {
    2048
}
fn d_oce_blocks() -> usize {
    3
}
fn d_decoder_blocks() -> Vec<usize> {
    vec![3, 4, 6]
}
fn d_width_ratio() -> f64 {
    0.5
}
fn d_loss() -> LossForm {
    LossForm::Flattened
}
fn d_sigma() -> f64 {
    4.0
}

fn parse(
    section: &toml::Value,
    path: &str,
    registry: &Registry,
) -> std::result::Result<Rd4adConfig, ConfigError> {
    let mut cfg: Rd4adConfig = parse_section(section, path)?;
    cfg.backbone = resolve_student(&cfg.backbone, &cfg.student(), path, registry)?;
    Ok(cfg)
}

impl Rd4adConfig {
    fn student(&self) -> StudentShape {
        StudentShape {
            embed_channels: self.embed_channels,
            oce_blocks: self.oce_blocks,
            decoder_blocks: self.decoder_blocks.clone(),
            width_ratio: self.width_ratio,
            map_sigma: self.map_sigma,
        }
    }
}

/// The student of reverse distillation (OCBE and decoder shapes), shared with MDD-Net.
#[derive(Debug, Clone)]
pub(crate) struct StudentShape {
    pub embed_channels: i64,
    pub oce_blocks: usize,
    pub decoder_blocks: Vec<usize>,
    pub width_ratio: f64,
    pub map_sigma: f64,
}

/// Resolves the teacher section of the method at `path` (returned) and checks `shape`
/// against the teacher's levels.
pub(crate) fn resolve_student(
    backbone: &toml::Value,
    shape: &StudentShape,
    path: &str,
    registry: &Registry,
) -> std::result::Result<toml::Value, ConfigError> {
    let backbone = registry.resolve_backbone(backbone, &format!("{path}.backbone"))?;
    let levels = backbone
        .get("levels")
        .and_then(|l| l.as_array())
        .map_or(0, Vec::len);
    if shape.decoder_blocks.len() != levels {
        return Err(ConfigError::new(
            format!("{path}.decoder_blocks"),
            format!(
                "needs one block count per teacher level ({levels}), got {}",
                shape.decoder_blocks.len()
            ),
        ));
    }
    if shape.oce_blocks == 0 {
        return Err(ConfigError::new(
            format!("{path}.oce_blocks"),
            "must be at least 1",
        ));
    }
    if let Some(i) = shape.decoder_blocks.iter().position(|&b| b == 0) {
        return Err(ConfigError::new(
            format!("{path}.decoder_blocks[{i}]"),
            "must be at least 1",
        ));
    }
    let key = |k: &str| format!("{path}.{k}");
    if shape.embed_channels < 1 {
        return Err(ConfigError::new(
            key("embed_channels"),
            "must be at least 1",
        ));
    }
    if !(shape.width_ratio.is_finite() && shape.width_ratio > 0.0) {
        return Err(ConfigError::new(key("width_ratio"), "must be positive"));
    }
    if !(shape.map_sigma.is_finite() && shape.map_sigma >= 0.0) {
        return Err(ConfigError::new(key("map_sigma"), "must be >= 0"));
    }
    Ok(backbone)
}

/// Registry `image_multiple` of RD4AD and MDD-Net: twice the stride of the teacher's
/// coarsest level (the OCBE embedding's stride), from the resolved `backbone` section;
/// 1 for a backbone whose levels are not known without building it.
pub fn image_multiple(section: &toml::Value) -> i64 {
    let backbone = section.get("backbone");
    let kind = backbone
        .and_then(|b| b.get("kind"))
        .and_then(|k| k.as_str());
    let last = (backbone
        .and_then(|b| b.get("levels"))
        .and_then(|l| l.as_array()))
    .and_then(|levels| levels.last())
    .and_then(|l| l.as_str());
    let (Some(kind), Some(last)) = (kind, last) else {
        return 1;
    };
    (memad_backbones::available_levels(kind)
        .unwrap_or_default()
        .iter())
    .find(|l| l.name == last)
    .map_or(1, |l| 2 * l.stride)
}

/// Checks that the teacher's levels are consecutive stride-2 levels and that the image size
/// is a multiple of the embedding's stride; returns the levels' channels, finest first.
pub(crate) fn check_teacher(
    method: &str,
    teacher: &dyn Backbone,
    image_size: i64,
) -> Result<Vec<i64>> {
    let levels = teacher.levels();
    if levels.windows(2).any(|w| w[1].stride != 2 * w[0].stride) {
        return Err(CoreError::Invalid(format!(
            "{method} needs teacher levels at consecutive strides (x2 each), got {:?}",
            levels.iter().map(|l| &l.name).collect::<Vec<_>>()
        )));
    }
    let coarsest = levels.last().map_or(1, |l| l.stride) * 2;
    if image_size % coarsest != 0 {
        return Err(CoreError::Invalid(format!(
            "image_size {image_size} must be a multiple of {coarsest} (the embedding's stride)"
        )));
    }
    Ok(levels.iter().map(|l| l.channels).collect())
}

pub(crate) fn build_ocbe(p: nn::Path, level_channels: &[i64], shape: &StudentShape) -> Ocbe {
    Ocbe::new(
        p,
        &OcbeConfig {
            level_channels: level_channels.to_vec(),
            embed_channels: shape.embed_channels,
            width_ratio: shape.width_ratio,
            blocks: shape.oce_blocks,
        },
    )
}

pub(crate) fn build_decoder(
    p: nn::Path,
    level_channels: &[i64],
    shape: &StudentShape,
) -> ReverseDecoder {
    ReverseDecoder::new(
        p,
        &ReverseDecoderConfig {
            embed_channels: shape.embed_channels,
            level_channels: level_channels.to_vec(),
            blocks: shape.decoder_blocks.clone(),
            width_ratio: shape.width_ratio,
        },
    )
}

/// The frozen teacher's levels of `x`, without gradient: `[B, C_k, H_k, W_k]`, finest first.
pub(crate) fn teacher_features(teacher: &dyn Backbone, x: &Tensor) -> Vec<Tensor> {
    tch::no_grad(|| {
        teacher
            .pyramid(x)
            .levels
            .into_iter()
            .map(|l| l.features)
            .collect()
    })
}

/// `sum_k up(1 - cos(a_k, b_k))` at `size`, smoothed with a Gaussian of `sigma`:
/// `[B, 1, H, W]` float32, under bf16/fp16 autocast too (a map in bf16 would hold a few
/// hundred distinct values, and its ties would change the metrics).
pub(crate) fn distance_map(a: &[Tensor], b: &[Tensor], size: [i64; 2], sigma: f64) -> Tensor {
    full_precision(a[0].device(), || {
        let maps: Vec<Tensor> = a
            .iter()
            .zip(b)
            .map(|(a, b)| cosine_distance_map(&a.to_kind(Kind::Float), &b.to_kind(Kind::Float)))
            .collect();
        gaussian_blur(&upsample_and_sum(&maps, size), sigma)
    })
}

impl LossForm {
    pub(crate) fn cosine_form(self) -> CosineForm {
        match self {
            LossForm::Flattened => CosineForm::Flattened,
            LossForm::PerPixel => CosineForm::PerPixel,
        }
    }
}

/// Registry `resolve`.
pub fn resolve(
    section: &toml::Value,
    path: &str,
    registry: &Registry,
) -> std::result::Result<toml::Value, ConfigError> {
    to_toml_value(&parse(section, path, registry)?)
}

/// Registry `build`.
pub fn build(
    section: &toml::Value,
    registry: &Registry,
    ctx: &BuildContext,
) -> Result<Box<dyn Method>> {
    let cfg = parse(section, "method", registry)?;
    let teacher = registry.build_backbone(&cfg.backbone, "method.backbone", ctx)?;
    Ok(Box::new(Rd4ad::new(cfg, teacher, ctx)?))
}

pub struct Rd4ad {
    cfg: Rd4adConfig,
    teacher: Box<dyn Backbone>,
    vs: nn::VarStore,
    ocbe: Ocbe,
    decoder: ReverseDecoder,
}

impl Rd4ad {
    pub fn new(cfg: Rd4adConfig, teacher: Box<dyn Backbone>, ctx: &BuildContext) -> Result<Self> {
        let level_channels = check_teacher("rd4ad", teacher.as_ref(), ctx.image_size)?;
        let vs = nn::VarStore::new(ctx.device);
        let shape = cfg.student();
        let ocbe = build_ocbe(vs.root() / "bn", &level_channels, &shape);
        let decoder = build_decoder(vs.root() / "decoder", &level_channels, &shape);
        Ok(Rd4ad {
            cfg,
            teacher,
            vs,
            ocbe,
            decoder,
        })
    }

    /// Teacher levels (no gradient) and the student's reconstructions.
    fn forward(&self, x: &Tensor, train: bool) -> (Vec<Tensor>, Vec<Tensor>) {
        let teacher = teacher_features(self.teacher.as_ref(), x);
        let refs: Vec<&Tensor> = teacher.iter().collect();
        let student = self
            .decoder
            .forward_t(&self.ocbe.forward_t(&refs, train), train);
        (teacher, student)
    }
}

impl Method for Rd4ad {
    fn trainable(&self) -> &nn::VarStore {
        &self.vs
    }

    fn train_step(&mut self, batch: &Batch) -> Result<TrainOutput> {
        let (teacher, student) = self.forward(&batch.input, true);
        let form = self.cfg.loss.cosine_form();
        let mut terms = Vec::new();
        let mut per_level = Vec::new();
        for ((t, s), spec) in teacher.iter().zip(&student).zip(self.teacher.levels()) {
            let term = cosine_distillation(&[t], std::slice::from_ref(s), form);
            terms.push(LossTerm::new(format!("cos_{}", spec.name), &term));
            per_level.push(term);
        }
        let loss = Tensor::stack(&per_level, 0).sum(None::<tch::Kind>);
        Ok(TrainOutput { loss, terms })
    }

    fn score(&self, batch: &Batch) -> Result<AnomalyOutput> {
        let size = batch.input.size();
        let (teacher, student) = self.forward(&batch.input, false);
        let map = distance_map(&teacher, &student, [size[2], size[3]], self.cfg.map_sigma);
        Ok(AnomalyOutput {
            image_score: max_score(&map),
            anomaly_map: Some(map),
            parts: Vec::new(),
            class_prediction: None,
            memory_usage: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_multiple_is_twice_the_teachers_coarsest_stride() {
        let section = |kind: &str, levels: &str| -> toml::Value {
            toml::from_str(&format!("[backbone]\nkind = \"{kind}\"\nlevels = {levels}")).unwrap()
        };
        let wrn = section("wide_resnet50_2", r#"["layer1", "layer2", "layer3"]"#);
        assert_eq!(image_multiple(&wrn), 32);
        let lite = section("efficientnet_lite0", r#"["stride4", "stride8"]"#);
        assert_eq!(image_multiple(&lite), 16);
        assert_eq!(image_multiple(&section("unknown", r#"["x"]"#)), 1);
    }

    /// A small RD4AD on a random EfficientNet-Lite0 teacher (32 px inputs), seeded.
    fn build_with(extra: &str) -> Rd4ad {
        let mut reg = Registry::default();
        memad_backbones::register(&mut reg);
        crate::register(&mut reg);
        let section: toml::Value = toml::from_str(&format!(
            "kind = \"rd4ad\"\nembed_channels = 16\noce_blocks = 1\n\
             decoder_blocks = [1, 1, 1]\nwidth_ratio = 1.0\n{extra}\n\
             [backbone]\nkind = \"efficientnet_lite0\"\nweights = \"random\"\n\
             levels = [\"stride4\", \"stride8\", \"stride16\"]\n"
        ))
        .unwrap();
        let ctx = BuildContext {
            device: tch::Device::Cpu,
            weights_dir: std::env::temp_dir(),
            image_size: 32,
            classes: 1,
        };
        tch::manual_seed(0);
        let cfg = parse(&section, "method", &reg).unwrap();
        let teacher = reg.build_backbone(&cfg.backbone, "backbone", &ctx).unwrap();
        Rd4ad::new(cfg, teacher, &ctx).unwrap()
    }

    #[test]
    fn each_loss_form_is_its_equation_per_level() {
        // A fixed input, not the global generator other tests draw from in parallel.
        let x = (Tensor::arange(2 * 3 * 32 * 32, (tch::Kind::Float, tch::Device::Cpu)) * 0.37)
            .sin()
            .reshape([2, 3, 32, 32]);
        let batch = Batch {
            input: x.shallow_clone(),
            label: Tensor::from_slice(&[0i64, 0]),
            mask: None,
            class: None,
            synthetic: None,
        };
        // mean_b [1 - cos(vec t, vec s)] and mean_{b,h,w} [1 - cos(t(h,w), s(h,w))].
        let flattened = |t: &Tensor, s: &Tensor| {
            Tensor::cosine_similarity(&t.reshape([2, -1]), &s.reshape([2, -1]), 1, 1e-8)
        };
        let per_pixel = |t: &Tensor, s: &Tensor| Tensor::cosine_similarity(t, s, 1, 1e-8);
        let distance = |cos: Tensor| (1f64 - cos).mean(None::<tch::Kind>).double_value(&[]);
        for (extra, per_pixel_form) in [("", false), ("loss = \"per_pixel\"", true)] {
            let mut m = build_with(extra);
            let out = m.train_step(&batch).unwrap();
            // The same outputs again (train mode: batch statistics, nothing updated).
            let (teacher, student) = m.forward(&x, true);
            let names: Vec<&str> = out.terms.iter().map(|t| t.name.as_str()).collect();
            assert_eq!(names, ["cos_stride4", "cos_stride8", "cos_stride16"]);
            // The forms can agree by chance on a 2x2 level; they must not agree on all.
            let mut largest_gap_to_other_form = 0f64;
            for ((term, t), s) in out.terms.iter().zip(&teacher).zip(&student) {
                let (flat, pixel) = (distance(flattened(t, s)), distance(per_pixel(t, s)));
                let (want, other) = match per_pixel_form {
                    true => (pixel, flat),
                    false => (flat, pixel),
                };
                let got = term.value.double_value(&[]);
                assert!((got - want).abs() < 1e-5, "{}: {got} vs {want}", term.name);
                largest_gap_to_other_form = largest_gap_to_other_form.max((got - other).abs());
            }
            assert!(
                largest_gap_to_other_form > 1e-3,
                "every level equals the other form too ({largest_gap_to_other_form})"
            );
            let sum: f64 = out.terms.iter().map(|t| t.value.double_value(&[])).sum();
            let loss = out.loss.double_value(&[]);
            assert!((loss - sum).abs() < 1e-5, "the loss sums its terms");
        }
    }
}
