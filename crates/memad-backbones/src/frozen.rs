//! The registry's frozen [`Backbone`]: any [`Network`] of this crate in a VarStore of its
//! own, its weights loaded strictly, frozen, prepared for its [`Execution`] (channels-last,
//! precision), returning the levels its config names.
use crate::config::BackboneConfig;
use crate::execution::Execution;
use crate::weights::{load_safetensors, WeightsSource};
use memad_core::{Backbone, BuildContext, FeatureLevel, FeaturePyramid, LevelSpec, Result};
use tch::{nn, Tensor};

/// What a network of this crate gives [`Frozen`] (and parity tests).
pub trait Network {
    /// Every level this network can return, finest first.
    fn available_levels(&self) -> Vec<LevelSpec>;

    /// `[B, 3, H, W]` RGB in `[0, 1]` -> the input the reference weights were trained on.
    fn normalize(x: &Tensor) -> Tensor;

    /// # Shapes
    /// `x`: `[B, 3, H, W]` already normalised. Returns the requested levels (names from
    /// [`Network::available_levels`]), stopping after the last one.
    fn features(&self, x: &Tensor, levels: &[String], train: bool) -> Vec<FeatureLevel>;
}

/// A network owning its frozen VarStore, as the registry builds it.
pub struct Frozen<N> {
    _vs: nn::VarStore,
    net: N,
    exec: Execution,
    levels: Vec<LevelSpec>,
    level_names: Vec<String>,
}

impl<N: Network + 'static> Frozen<N> {
    /// `make` builds the network under the root of a new VarStore on `ctx.device`; a
    /// `WeightsSource::File` is loaded into it (every tensor, by name and shape).
    pub fn build(
        config: BackboneConfig,
        ctx: &BuildContext,
        weights: &WeightsSource,
        make: impl FnOnce(&nn::Path) -> N,
    ) -> Result<Box<dyn Backbone>> {
        let exec = Execution::new(&config, ctx.device, "backbone")?;
        let mut vs = nn::VarStore::new(ctx.device);
        let net = make(&vs.root());
        if let WeightsSource::File(path) = weights {
            load_safetensors(&mut vs, path)?;
        }
        vs.freeze();
        exec.prepare(&mut vs);
        let levels = (net.available_levels().into_iter())
            .filter(|l| config.levels.contains(&l.name))
            .collect();
        Ok(Box::new(Frozen {
            _vs: vs,
            net,
            exec,
            levels,
            level_names: config.levels,
        }))
    }
}

impl<N: Network> Backbone for Frozen<N> {
    fn levels(&self) -> &[LevelSpec] {
        &self.levels
    }

    /// Eval mode under no-grad, whatever the caller does.
    fn pyramid(&self, x: &Tensor) -> FeaturePyramid {
        let levels = tch::no_grad(|| {
            self.exec.run(&N::normalize(x), |x| {
                self.net.features(x, &self.level_names, false)
            })
        });
        FeaturePyramid { levels }
    }
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind, Tensor};

    /// A frozen teacher runs in eval mode under no-grad whatever its input: no graph, even
    /// from an input that requires gradients, and each image's features independent of the
    /// rest of the batch (batch-norm running statistics).
    #[test]
    fn pyramid_is_eval_mode_without_gradients() {
        let dir = tempfile::tempdir().unwrap();
        let backbone =
            crate::build_backbone("resnet18", "random", None, dir.path(), Device::Cpu).unwrap();
        let x = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let both = backbone.pyramid(&x);
        let first = backbone.pyramid(&x.narrow(0, 0, 1));
        for (level, alone) in both.levels.iter().zip(&first.levels) {
            assert!(!level.features.requires_grad(), "{}", level.name);
            let diff = (level.features.narrow(0, 0, 1) - &alone.features)
                .abs()
                .max()
                .double_value(&[]);
            // Relative to the level's scale: batch sizes 1 and 2 may take other kernels.
            let scale = alone.features.abs().max().double_value(&[]).max(1.0);
            assert!(
                diff < 1e-5 * scale,
                "{}: {diff} (scale {scale})",
                level.name
            );
        }
    }

    /// A build error names the key where the section sits in the experiment.
    #[test]
    fn build_errors_name_the_key_in_the_experiment() {
        let mut registry = memad_core::Registry::default();
        crate::register(&mut registry);
        let section: toml::Value = toml::from_str(
            "kind = \"resnet18\"\nweights = \"random\"\nlevels = [\"layer1\"]\nprecision = \"bf16\"",
        )
        .unwrap();
        let ctx = memad_core::BuildContext {
            device: Device::Cpu,
            weights_dir: std::env::temp_dir(),
            image_size: 32,
            classes: 1,
        };
        let e = registry
            .build_backbone(&section, "method.backbone", &ctx)
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("method.backbone.precision: "), "{e}");
    }
}
