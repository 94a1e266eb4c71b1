//! ResNet-18/34/50 (He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition",
//! CVPR 2016) and Wide ResNet-50-2 (Zagoruyko & Komodakis, "Wide Residual Networks",
//! BMVC 2016), as torchvision implements them (`torchvision.models.resnet`, 0.26).
//!
//! Semantics of the reference: a stem of 7x7 stride-2 conv (padding 3), batch norm, ReLU and
//! 3x3 stride-2 max pool (padding 1); four stages of basic blocks (ResNet-18/34: two 3x3
//! convs) or bottlenecks (ResNet-50, WRN-50-2: 1x1, 3x3, 1x1 with 4x expansion), the
//! stride of a stage's first block on its 3x3 conv ("ResNet v1.5"); a projection shortcut
//! (1x1 conv with the block's stride, then batch norm) where the stride or the width
//! changes; ReLU after the residual sum; convs without bias, batch norm eps 1e-5. WRN-50-2
//! doubles the bottleneck's inner width (torchvision's `width_per_group = 128`) and keeps
//! ResNet-50's block outputs. The classifier is global average pooling and `fc`; a
//! checkpoint without `fc.*` (a backbone saved without its head, as self-supervised ResNets
//! often are) builds the network without it, and [`ResNet::logits`] is then `None`.
//! Variables are named exactly as torchvision's state_dict keys: `conv1`, `bn1`,
//! `layerS.B.convK` / `layerS.B.bnK` (K = 1, 2, and 3 in bottlenecks),
//! `layerS.B.downsample.0` (conv) / `.1` (batch norm), `fc`.
//!
//! Input normalisation (torchvision's, [`imagenet_normalize`]): `(x - mean) / std` per
//! channel, ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225), for RGB `x`
//! in `[0, 1]`.
//!
//! Pyramid levels are the stage outputs, `[B, C, ceil(H/stride), ceil(W/stride)]` for a
//! `[B, 3, H, W]` input:
//!
//! | level | stride | C: ResNet-18/34 | C: ResNet-50, WRN-50-2 |
//! |---|---|---|---|
//! | `layer1` | 4 | 64 | 256 |
//! | `layer2` | 8 | 128 | 512 |
//! | `layer3` | 16 | 256 | 1024 |
//! | `layer4` | 32 | 512 | 2048 |
//!
//! Parity with torchvision: `tests/torchvision_parity.rs`.
use crate::config::{check_levels, check_weights, BackboneConfig};
use crate::frozen::{Frozen, Network};
use crate::weights::{has_tensors_under, resolve_weights};
use memad_core::{
    parse_section, to_toml_value, Backbone, BuildContext, ConfigError, FeatureLevel, LevelSpec,
    Registry, Result,
};
use tch::nn::{self, Module};
use tch::Tensor;

/// The four torchvision ResNets memad provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResNetVariant {
    ResNet18,
    ResNet34,
    ResNet50,
    WideResNet50x2,
}

impl ResNetVariant {
    pub const ALL: [ResNetVariant; 4] = [
        ResNetVariant::ResNet18,
        ResNetVariant::ResNet34,
        ResNetVariant::ResNet50,
        ResNetVariant::WideResNet50x2,
    ];

    pub fn kind(self) -> &'static str {
        match self {
            ResNetVariant::ResNet18 => "resnet18",
            ResNetVariant::ResNet34 => "resnet34",
            ResNetVariant::ResNet50 => "resnet50",
            ResNetVariant::WideResNet50x2 => "wide_resnet50_2",
        }
    }

    pub fn summary(self) -> &'static str {
        match self {
            ResNetVariant::ResNet18 => "ResNet-18 (torchvision), layer1..layer4 (64..512 ch)",
            ResNetVariant::ResNet34 => "ResNet-34 (torchvision), layer1..layer4 (64..512 ch)",
            ResNetVariant::ResNet50 => "ResNet-50 (torchvision), layer1..layer4 (256..2048 ch)",
            ResNetVariant::WideResNet50x2 => {
                "Wide ResNet-50-2 (torchvision), layer1..layer4 (256..2048 ch)"
            }
        }
    }

    pub fn from_kind(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.kind() == kind)
    }

    /// Blocks per stage.
    fn blocks(self) -> [usize; 4] {
        match self {
            ResNetVariant::ResNet18 => [2, 2, 2, 2],
            _ => [3, 4, 6, 3],
        }
    }

    fn bottleneck(self) -> bool {
        matches!(
            self,
            ResNetVariant::ResNet50 | ResNetVariant::WideResNet50x2
        )
    }

    /// Output channels of a stage's blocks per its `planes` (64, 128, 256, 512).
    fn expansion(self) -> i64 {
        if self.bottleneck() {
            4
        } else {
            1
        }
    }

    /// torchvision's `width_per_group`: the bottleneck's inner width is
    /// `planes * width_per_group / 64`.
    fn width_per_group(self) -> i64 {
        match self {
            ResNetVariant::WideResNet50x2 => 128,
            _ => 64,
        }
    }

    /// The pyramid levels, finest first.
    pub fn level_specs(self) -> Vec<LevelSpec> {
        PLANES
            .iter()
            .enumerate()
            .map(|(s, planes)| LevelSpec {
                name: format!("layer{}", s + 1),
                channels: planes * self.expansion(),
                stride: 4 << s,
            })
            .collect()
    }
}

const PLANES: [i64; 4] = [64, 128, 256, 512];
const STEM: i64 = 64;
const BN_EPS: f64 = 1e-5;
const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// torchvision's input normalisation (ResNets, MobileNetV2).
///
/// # Shapes
/// `x`: `[B, 3, H, W]`, RGB in `[0, 1]` -> `(x - mean) / std`, same shape, kind and device.
pub fn imagenet_normalize(x: &Tensor) -> Tensor {
    let stat = |name: &str, v: [f32; 3]| {
        memad_core::constant::constant(name, x.device(), x.kind(), || {
            Tensor::from_slice(&v).view([1, 3, 1, 1])
        })
    };
    (x - stat("imagenet_mean", IMAGENET_MEAN)) / stat("imagenet_std", IMAGENET_STD)
}

/// A conv without bias, padded by `kernel / 2` (torchvision's `conv3x3`, `conv1x1` and stem).
fn conv(p: nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        padding: kernel / 2,
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
            momentum: 0.1,
            ..Default::default()
        },
    )
}

/// A basic block or a bottleneck: its (conv, batch norm) pairs with ReLU between them, the
/// shortcut added after the last batch norm, then ReLU.
#[derive(Debug)]
struct Block {
    /// `convK` / `bnK`, K = 1, 2 (basic) or 1, 2, 3 (bottleneck).
    convs: Vec<(nn::Conv2D, nn::BatchNorm)>,
    /// `downsample.0` / `downsample.1`.
    downsample: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl Block {
    /// `planes`: the stage's base width; the block outputs `planes * expansion` channels.
    fn new(p: nn::Path, variant: ResNetVariant, input: i64, planes: i64, stride: i64) -> Self {
        let output = planes * variant.expansion();
        // (input, output, kernel, stride) of each conv.
        let shapes = if variant.bottleneck() {
            let width = planes * variant.width_per_group() / 64;
            vec![
                (input, width, 1, 1),
                (width, width, 3, stride),
                (width, output, 1, 1),
            ]
        } else {
            vec![(input, planes, 3, stride), (planes, planes, 3, 1)]
        };
        let convs = shapes
            .into_iter()
            .enumerate()
            .map(|(k, (c_in, c_out, kernel, s))| {
                (
                    conv(&p / format!("conv{}", k + 1), c_in, c_out, kernel, s),
                    bn(&p / format!("bn{}", k + 1), c_out),
                )
            })
            .collect();
        let downsample = (stride != 1 || input != output).then(|| {
            let d = &p / "downsample";
            (conv(&d / 0, input, output, 1, stride), bn(&d / 1, output))
        });
        Block { convs, downsample }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let last = self.convs.len() - 1;
        let mut h = x.shallow_clone();
        for (k, (c, b)) in self.convs.iter().enumerate() {
            h = c.forward(&h).apply_t(b, train);
            if k < last {
                h = h.relu();
            }
        }
        let shortcut = match &self.downsample {
            Some((c, b)) => c.forward(x).apply_t(b, train),
            None => x.shallow_clone(),
        };
        (h + shortcut).relu()
    }
}

/// A torchvision ResNet, with its classifier when the weights have one (kept so ImageNet
/// logits can be checked).
#[derive(Debug)]
pub struct ResNet {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    /// `layer1`..`layer4`: each stage's level and blocks.
    stages: Vec<(LevelSpec, Vec<Block>)>,
    fc: Option<nn::Linear>,
}

impl ResNet {
    /// Builds the network under `p` (use the VarStore root so names match the checkpoint);
    /// `classifier`: whether to create `fc` (false for weights saved without it).
    pub fn new(p: &nn::Path, variant: ResNetVariant, classifier: bool) -> Self {
        let mut input = STEM;
        let mut stages = Vec::new();
        for (s, (spec, repeats)) in variant
            .level_specs()
            .into_iter()
            .zip(variant.blocks())
            .enumerate()
        {
            let stage = p / spec.name.as_str();
            let blocks = (0..repeats)
                .map(|b| {
                    let stride = if s > 0 && b == 0 { 2 } else { 1 };
                    let block = Block::new(&stage / b, variant, input, PLANES[s], stride);
                    input = spec.channels;
                    block
                })
                .collect();
            stages.push((spec, blocks));
        }
        ResNet {
            conv1: conv(p / "conv1", 3, STEM, 7, 2),
            bn1: bn(p / "bn1", STEM),
            stages,
            fc: classifier.then(|| nn::linear(p / "fc", input, 1000, Default::default())),
        }
    }

    fn stem(&self, x: &Tensor, train: bool) -> Tensor {
        x.apply(&self.conv1)
            .apply_t(&self.bn1, train)
            .relu()
            .max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)
    }

    /// # Shapes
    /// `x`: `[B, 3, H, W]` already normalised -> ImageNet logits `[B, 1000]` (eval mode);
    /// `None` when built without the classifier.
    pub fn logits(&self, x: &Tensor) -> Option<Tensor> {
        let fc = self.fc.as_ref()?;
        let mut h = self.stem(x, false);
        for block in self.stages.iter().flat_map(|(_, blocks)| blocks) {
            h = block.forward(&h, false);
        }
        Some(h.mean_dim(&[2i64, 3][..], false, None).apply(fc))
    }
}

impl Network for ResNet {
    fn available_levels(&self) -> Vec<LevelSpec> {
        self.stages.iter().map(|(spec, _)| spec.clone()).collect()
    }

    /// `[B,3,H,W]` in `[0,1]` -> torchvision's normalised input.
    fn normalize(x: &Tensor) -> Tensor {
        imagenet_normalize(x)
    }

    fn features(&self, x: &Tensor, levels: &[String], train: bool) -> Vec<FeatureLevel> {
        let mut out = Vec::new();
        if levels.is_empty() {
            return out;
        }
        let mut h = self.stem(x, train);
        for (spec, blocks) in &self.stages {
            if out.len() == levels.len() {
                break;
            }
            for block in blocks {
                h = block.forward(&h, train);
            }
            if levels.contains(&spec.name) {
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
) -> std::result::Result<(ResNetVariant, BackboneConfig), ConfigError> {
    let config: BackboneConfig = parse_section(section, path)?;
    let variant = ResNetVariant::from_kind(&config.kind).ok_or_else(|| {
        ConfigError::new(
            format!("{path}.kind"),
            format!("not a torchvision ResNet: {}", config.kind),
        )
    })?;
    let available: Vec<String> = variant.level_specs().into_iter().map(|l| l.name).collect();
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

/// Registry `build`: the network on `ctx.device` with its weights, frozen. The classifier
/// is created when the checkpoint has one (or for random weights).
pub fn build(section: &toml::Value, ctx: &BuildContext) -> Result<Box<dyn Backbone>> {
    let (variant, config) = parse(section, "backbone")?;
    let weights = resolve_weights(&config.weights, &ctx.weights_dir, variant.kind())?;
    let classifier = has_tensors_under(&weights, "fc.")?;
    Frozen::build(config, ctx, &weights, |p| {
        ResNet::new(p, variant, classifier)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn trainable_parameters(variant: ResNetVariant) -> i64 {
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = ResNet::new(&vs.root(), variant, true);
        vs.trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum()
    }

    #[test]
    fn parameter_counts_match_torchvision() {
        // sum(p.numel() for p in torchvision.models.<arch>().parameters())
        assert_eq!(trainable_parameters(ResNetVariant::ResNet18), 11_689_512);
        assert_eq!(trainable_parameters(ResNetVariant::ResNet34), 21_797_672);
        assert_eq!(trainable_parameters(ResNetVariant::ResNet50), 25_557_032);
        assert_eq!(
            trainable_parameters(ResNetVariant::WideResNet50x2),
            68_883_240
        );
    }

    #[test]
    fn levels_shapes_and_early_stop() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = ResNet::new(&vs.root(), ResNetVariant::ResNet18, true);
        let x = Tensor::zeros([1, 3, 64, 48], (tch::Kind::Float, Device::Cpu));
        let all: Vec<String> = net.available_levels().into_iter().map(|l| l.name).collect();
        assert_eq!(all, ["layer1", "layer2", "layer3", "layer4"]);
        let out = net.features(&x, &all, false);
        let shapes: Vec<_> = out.iter().map(|l| l.features.size()).collect();
        assert_eq!(
            shapes,
            vec![
                vec![1, 64, 16, 12],
                vec![1, 128, 8, 6],
                vec![1, 256, 4, 3],
                vec![1, 512, 2, 2]
            ]
        );
        let out = net.features(&x, &["layer2".into()], false);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].name.as_str(), out[0].stride), ("layer2", 8));
    }

    #[test]
    fn bottleneck_level_channels() {
        let channels =
            |v: ResNetVariant| -> Vec<i64> { v.level_specs().iter().map(|l| l.channels).collect() };
        assert_eq!(channels(ResNetVariant::ResNet50), [256, 512, 1024, 2048]);
        assert_eq!(
            channels(ResNetVariant::WideResNet50x2),
            [256, 512, 1024, 2048]
        );
    }

    #[test]
    fn bad_level_is_a_config_error_naming_the_choices() {
        let v: toml::Value =
            toml::from_str("kind = \"wide_resnet50_2\"\nlevels = [\"layer2\", \"stride8\"]")
                .unwrap();
        let err = parse(&v, "method.backbone").unwrap_err();
        assert_eq!(err.path, "method.backbone.levels[1]");
        assert!(
            err.message.contains(
                "unknown level `stride8`; wide_resnet50_2 has layer1, layer2, layer3, layer4"
            ),
            "{}",
            err.message
        );
        let v: toml::Value =
            toml::from_str("kind = \"resnet18\"\nlevels = [\"layer3\", \"layer2\"]").unwrap();
        let err = parse(&v, "b").unwrap_err();
        assert_eq!(err.message, "levels must be distinct and finest first");
    }

    #[test]
    fn weights_of_another_arch_are_a_config_error() {
        let v: toml::Value = toml::from_str(
            "kind = \"resnet50\"\nweights = \"torchvision:wide_resnet50_2\"\nlevels = [\"layer2\"]",
        )
        .unwrap();
        let err = parse(&v, "method.backbone").unwrap_err();
        assert_eq!(err.path, "method.backbone.weights");
        assert!(
            err.message.contains("torchvision:resnet50:IMAGENET1K_V2"),
            "{}",
            err.message
        );
        let v: toml::Value = toml::from_str(
            "kind = \"resnet50\"\nweights = \"torchvision:resnet50:IMAGENET1K_V2\"\nlevels = [\"layer2\"]",
        )
        .unwrap();
        assert!(parse(&v, "method.backbone").is_ok());
    }
}
