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

    fn pyramid(&self, x: &Tensor, train: bool) -> FeaturePyramid {
        let levels = self.exec.run(&N::normalize(x), |x| {
            self.net.features(x, &self.level_names, train)
        });
        FeaturePyramid { levels }
    }
}
