//! How a frozen backbone runs its pyramid forward: memory format (`channels_last`) and
//! floating-point type (`precision`) of `[method.backbone]`.
//!
//! The defaults (`channels_last = false`, `precision = "fp32"`) change nothing: the input
//! goes to the network as given and the levels come back as computed. Otherwise the
//! variables are converted once at build time ([`Execution::prepare`]), the normalised input
//! at each call, and every level is returned as a contiguous fp32 `[B, C, H, W]` tensor.
//!
//! tch 0.24 has no `MemoryFormat` argument: a channels-last tensor is made as libtorch
//! stores one, `[B, C, H, W]` sizes over NHWC-ordered memory (permute to NHWC, make it
//! contiguous, permute the view back), which libtorch's convolutions recognise by strides.
//! Reduced precision is a cast of the frozen weights and input, not autocast: tch binds only
//! autocast's on/off switch (whose CUDA type is fp16), not its type, so `bf16` could not be
//! had that way.
use crate::config::{BackboneConfig, Precision};
use memad_core::precision::make_channels_last;
pub use memad_core::precision::{channels_last, is_channels_last};
use memad_core::{ConfigError, FeatureLevel, Result};
use tch::{nn::VarStore, Device, Kind, Tensor};

/// The memory format and type a frozen backbone runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Execution {
    channels_last: bool,
    precision: Precision,
}

impl Execution {
    /// The execution `config` asks for on `device`. `bf16`/`fp16` off CUDA is an error at
    /// `<path>.precision`.
    pub fn new(config: &BackboneConfig, device: Device, path: &str) -> Result<Self> {
        if config.precision != Precision::Fp32 && !device.is_cuda() {
            return Err(ConfigError::new(
                format!("{path}.precision"),
                format!(
                    "precision = \"{}\" runs on CUDA only and this backbone is built on {:?}; \
                     use precision = \"fp32\" (the default) here",
                    config.precision.name(),
                    device
                ),
            )
            .into());
        }
        Ok(Self::unchecked(config.channels_last, config.precision))
    }

    /// Any combination, whatever the device (tests run reduced precision on the CPU).
    pub(crate) fn unchecked(channels_last: bool, precision: Precision) -> Self {
        Self {
            channels_last,
            precision,
        }
    }

    fn is_default(&self) -> bool {
        !self.channels_last && self.precision == Precision::Fp32
    }

    /// Converts the (loaded, frozen) variables of `vs`: to the precision's type, and 4-D
    /// ones (convolution weights) to channels-last memory.
    pub fn prepare(&self, vs: &mut VarStore) {
        if self.precision != Precision::Fp32 {
            vs.set_kind(self.precision.kind());
        }
        if self.channels_last {
            make_channels_last(vs);
        }
    }

    /// Runs `forward` on the normalised input `x` in this execution's format and type.
    ///
    /// # Shapes
    /// `x`: `[B, 3, H, W]` fp32. Returns `forward`'s levels, as fp32 contiguous
    /// `[B, C, h, w]` tensors unless this is the default execution (then untouched).
    pub fn run(
        &self,
        x: &Tensor,
        forward: impl FnOnce(&Tensor) -> Vec<FeatureLevel>,
    ) -> Vec<FeatureLevel> {
        if self.is_default() {
            return forward(x);
        }
        let mut input = x.to_kind(self.precision.kind());
        if self.channels_last {
            input = channels_last(&input);
        }
        forward(&input)
            .into_iter()
            .map(|level| FeatureLevel {
                features: level.features.to_kind(Kind::Float).contiguous(),
                ..level
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Network as _;
    use crate::{EfficientNetLite, LiteVariant, MobileNetV2, ResNet, ResNetVariant};

    #[test]
    fn channels_last_keeps_values_and_sets_strides() {
        let t = Tensor::rand([2, 3, 4, 5], (Kind::Float, Device::Cpu));
        let c = channels_last(&t);
        assert_eq!(c.size(), t.size());
        assert_eq!(c.stride(), [60, 1, 15, 3]);
        assert!(is_channels_last(&c) && !is_channels_last(&t));
        assert!(c.equal(&t));
    }

    fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
        let scale = b.abs().max().double_value(&[]).max(1e-12);
        (a - b).abs().max().double_value(&[]) / scale
    }

    type Network = Box<dyn Fn(&Tensor) -> Vec<FeatureLevel>>;

    /// The network `arch` in `vs`, returning all its levels (eval mode).
    fn network(arch: &str, vs: &VarStore) -> Network {
        fn all<F: Fn(&Tensor, &[String]) -> Vec<FeatureLevel> + 'static>(
            levels: Vec<memad_core::LevelSpec>,
            features: F,
        ) -> Network {
            let names: Vec<String> = levels.into_iter().map(|l| l.name).collect();
            Box::new(move |x| features(x, &names))
        }
        match arch {
            "resnet18" => {
                let net = ResNet::new(&vs.root(), ResNetVariant::ResNet18, true);
                all(net.available_levels(), move |x, l| {
                    net.features(x, l, false)
                })
            }
            "mobilenet_v2" => {
                let net = MobileNetV2::new(&vs.root(), false);
                all(net.available_levels(), move |x, l| {
                    net.features(x, l, false)
                })
            }
            _ => {
                let net = EfficientNetLite::new(&vs.root(), LiteVariant::Lite0);
                all(net.available_levels(), move |x, l| {
                    net.features(x, l, false)
                })
            }
        }
    }

    /// Each arch (random init, CPU) in every execution against the default one.
    #[test]
    fn every_arch_matches_fp32_in_channels_last_and_stays_close_in_bf16() {
        tch::manual_seed(3);
        let x = Tensor::rand([2, 3, 64, 64], (Kind::Float, Device::Cpu));
        for arch in ["resnet18", "mobilenet_v2", "efficientnet_lite0"] {
            let reference_vs = VarStore::new(Device::Cpu);
            let reference_net = network(arch, &reference_vs);
            let reference = tch::no_grad(|| reference_net(&x));
            for (channels, precision, tolerance) in [
                (true, Precision::Fp32, 1e-5),
                (false, Precision::Bf16, 0.1),
                (true, Precision::Bf16, 0.1),
            ] {
                let mut vs = VarStore::new(Device::Cpu);
                let net = network(arch, &vs);
                vs.copy(&reference_vs).unwrap();
                vs.freeze();
                let exec = Execution::unchecked(channels, precision);
                exec.prepare(&mut vs);
                if channels {
                    let conv = vs
                        .variables()
                        .into_values()
                        .find(|v| v.dim() == 4 && v.size()[2] > 1)
                        .unwrap();
                    assert!(is_channels_last(&conv), "{arch}: weights not channels-last");
                }
                let got = tch::no_grad(|| exec.run(&x, |x| net(x)));
                assert_eq!(got.len(), reference.len());
                for (g, r) in got.iter().zip(&reference) {
                    let what = format!("{arch} {} {channels} {precision:?}", g.name);
                    assert_eq!(g.name, r.name);
                    assert_eq!(g.features.size(), r.features.size(), "{what}");
                    assert_eq!(g.features.kind(), Kind::Float, "{what}");
                    assert!(g.features.is_contiguous(), "{what}");
                    let rel = max_rel(&g.features, &r.features);
                    assert!(rel < tolerance, "{what}: max relative diff {rel}");
                    if precision == Precision::Bf16 {
                        assert!(rel > 0.0, "{what}: identical to fp32, bf16 did not run");
                    }
                }
            }
        }
    }

    #[test]
    fn reduced_precision_off_cuda_is_a_config_error() {
        let config = BackboneConfig {
            kind: "resnet18".into(),
            weights: "random".into(),
            levels: vec!["layer1".into()],
            channels_last: true,
            precision: Precision::Fp16,
        };
        let err = Execution::new(&config, Device::Cpu, "method.backbone")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("method.backbone.precision: precision = \"fp16\" runs on CUDA only"),
            "{err}"
        );
        let fp32 = BackboneConfig {
            precision: Precision::Fp32,
            ..config
        };
        assert_eq!(
            Execution::new(&fp32, Device::Cpu, "b").unwrap(),
            Execution::unchecked(true, Precision::Fp32)
        );
    }
}
