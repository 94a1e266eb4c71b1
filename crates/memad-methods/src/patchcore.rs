//! PatchCore: "Towards Total Recall in Industrial Anomaly Detection", Roth et al., CVPR 2022.
//! Reference code: github.com/amazon-science/patchcore-inspection (`patchcore.py`,
//! `common.py`, `sampler.py`); anomalib's `models/image/patchcore` for the reweighting.
//!
//! A frozen ImageNet backbone (eval mode; WideResNet-50-2 `layer2` + `layer3` in the paper)
//! gives levels `f^j` of `C_j` channels; the finest level's grid `h x w` is the patch grid.
//!
//! - Locally aware patch features (paper Eq. 1-2, as the official `_embed`): for each level
//!   and position `(a, b)`, the `p x p` neighbourhood (`p = patch_size = 3`, stride 1, zero
//!   padding `(p-1)/2`) is unfolded into one vector `u^j(a,b)` of `C_j p^2` values
//!   (channel-major, as `torch.nn.Unfold`) and reduced to `pretrain_embed_dim = 1024` values
//!   by 1-D adaptive average pooling: `v^j(a,b) = AAP_1024(u^j(a,b))`. Coarser levels are
//!   upsampled bilinearly (`align_corners = false`) to `h x w`; the levels are concatenated
//!   per position and reduced again, `phi(h,w) = AAP_{target_embed_dim}([v^1; v^2; ...])`.
//!   (For WRN-50-2, `AAP` weighs the neighbourhood unevenly: `layer3`'s `1024 * 9 -> 1024`
//!   is the `p x p` mean of each channel, but `layer2`'s `512 * 9 -> 1024` bins of 4.5
//!   values give each channel two outputs, weighting the centre 0.2 and the eight others
//!   0.1; the final `2048 -> 1024` then averages pairs of dimensions: `layer2`'s halves back
//!   into one channel, `layer3`'s two channels into one. Not the paper's plain 3x3 average
//!   pool, which anomalib implements; the official code's numbers come from this.)
//! - Memory bank (Sec. 3.2, Alg. 1): every training patch feature collected, then a greedy
//!   k-center coreset of `int(N * coreset_ratio)` of them selected on a random projection
//!   ([`memory_bank::PatchBank`], `[method.memory]`: `coreset_ratio`, `projection_dim`).
//! - Patch score (Eq. 6): `s(h,w) = min_{m in M} ||phi(h,w) - m||_2`; `patch_distance =
//!   "squared"` squares it, as the official code's faiss distances (the paper files do).
//! - Anomaly map: the patch scores on the `h x w` grid, upsampled bilinearly to the input
//!   size, Gaussian blur sigma `map_sigma` (4 in the paper at 224 px).
//! - Image score: `image_score = "max"`: `s* = max_{h,w} s(h,w)` (what the official code
//!   reports), or `"reweighted"` (Eq. 7): with `m_test*` the patch of the largest score,
//!   `m*` its nearest bank item and `N_b(m*)` the `b = reweight_neighbours` nearest bank items
//!   of `m*` (`m*` itself included),
//!   `s = (1 - exp ||m_test* - m*|| / sum_{m in N_b(m*)} exp ||m_test* - m||) * s*`.
//!   The weight is a softmax over unscaled distances: where `m*`'s other neighbours lie
//!   farther from `m_test*` than `m*` by more than about 17 (distances between ImageNet
//!   features run to tens or hundreds), `m*`'s share is below float precision and `s`
//!   equals `s*`: `"reweighted"` then scores as `"max"` does (so does anomalib's
//!   implementation; the official code does not reweight). A bank of fewer than `b` items
//!   is an error (at fit time, before the coreset; and when a checkpoint's bank is loaded):
//!   Eq. 7 would silently use fewer neighbours, and with one item every image scores 0.
//!
//! Training is one pass over the training set without gradients ([`Training::FitOnce`]);
//! nothing is learned by gradient, so [`Method::trainable`] is an empty VarStore.
//!
//! Deviations:
//! - Pooling and upsampling are applied in the other order than in the official code
//!   (pool each level at its own resolution, then upsample the `pretrain_embed_dim` maps,
//!   instead of upsampling the `C_j p^2` unfolded maps first): both are linear maps acting on
//!   different axes, so the result is the same (checked by a test) at a fraction of the memory.
//! - None in the patch scores with `patch_distance = "squared"`, which the paper files set:
//!   the official code's faiss `IndexFlatL2` returns squared distances. The default is the
//!   paper's Euclidean Eq. 6 (the same image AUROC under `max`; the maps differ by the
//!   square before upsampling and blurring). With `image_score = "reweighted"` Eq. 7's
//!   weight keeps Euclidean distances (anomalib's) and multiplies the squared `s*`.
//! - Coreset: see [`memory_bank`] (Gaussian projection; Alg. 1's seeded start item
//!   by default, the official code's approximate start with `[method.memory] start =
//!   "approximate"`, which the paper files set). The bank's
//!   seed is drawn from libtorch's global generator at build time, which the runner seeds
//!   with the experiment's `seed`.
//! - The backbone is any registered one; the official code's preprocessing (`Resize(256)`:
//!   the shorter side to 256, the aspect kept; centre crop 224) is the data pipeline's:
//!   `[data] resize = 256`, `resize_shape = "shorter_side"`, `image_size = 224`; its
//!   masks (bilinear, then `astype(int)`: wholly covered pixels only) are `[data]
//!   mask_resize = "bilinear_full"`, which the paper files set.
//!
//! Reproduce: `memad run experiments/paper/patchcore_mvtec.toml` (MVTec AD, WRN-50-2,
//! PatchCore-10%); on synthetic data: `memad run experiments/patchcore_synthetic.toml`.
use crate::anomaly_map::gaussian_blur;
use memad_core::{
    parse_section, to_toml_value, AnomalyOutput, Backbone, Batch, BuildContext, ConfigError,
    CoreError, Memory, Method, Progress, Registry, Result, TrainOutput, Training,
};
use memory_bank::{coreset_size, PatchBank, PatchBankConfig};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

/// How the image score is computed from the patch scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageScore {
    /// The largest patch score (the official code).
    Max,
    /// The largest patch score reweighted by the paper's Eq. 7.
    Reweighted,
}

/// What a patch's score is, from its distance to the nearest bank item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatchDistance {
    /// `||phi - m*||_2`, the paper's Eq. 6.
    #[default]
    Euclidean,
    /// `||phi - m*||_2^2`, what the official code's faiss `IndexFlatL2` returns: the same
    /// image ranking under `image_score = "max"`, other anomaly maps (the square is taken
    /// before the upsampling and the blur).
    Squared,
}

impl PatchDistance {
    fn is_euclidean(&self) -> bool {
        *self == PatchDistance::Euclidean
    }
}

/// The `[method]` section of an experiment with `kind = "patchcore"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchcoreConfig {
    pub kind: String,
    /// The frozen feature extractor: a backbone section (`kind`, `weights`, `levels`).
    pub backbone: toml::Value,
    /// Side of the neighbourhood each patch feature aggregates (3 in the paper; odd).
    #[serde(default = "d_patch_size")]
    pub patch_size: i64,
    /// Per-level dimension after adaptive average pooling (1024 in the paper).
    #[serde(default = "d_embed")]
    pub pretrain_embed_dim: i64,
    /// Dimension of the patch features in the bank (1024 in the paper).
    #[serde(default = "d_embed")]
    pub target_embed_dim: i64,
    /// The bank's coreset (`coreset_ratio`, `projection_dim`).
    #[serde(default)]
    pub memory: PatchBankConfig,
    /// The patch score (the default, `euclidean`, is left out of the resolved config so that
    /// earlier runs keep their config hash).
    #[serde(default, skip_serializing_if = "PatchDistance::is_euclidean")]
    pub patch_distance: PatchDistance,
    #[serde(default = "d_image_score")]
    pub image_score: ImageScore,
    /// `b` of Eq. 7: bank neighbours of `m*` in the reweighting (9 in anomalib; >= 2).
    #[serde(default = "d_reweight_neighbours")]
    pub reweight_neighbours: i64,
    /// Gaussian sigma of the anomaly map, in input pixels (4 in the paper).
    #[serde(default = "d_sigma")]
    pub map_sigma: f64,
}

fn d_patch_size() -> i64 {
    3
}
fn d_embed() -> i64 {
    1024
}
fn d_image_score() -> ImageScore {
    ImageScore::Max
}
fn d_reweight_neighbours() -> i64 {
    9
}
fn d_sigma() -> f64 {
    4.0
}

fn parse(
    section: &toml::Value,
    path: &str,
    registry: &Registry,
) -> std::result::Result<PatchcoreConfig, ConfigError> {
    let mut cfg: PatchcoreConfig = parse_section(section, path)?;
    cfg.backbone = registry.resolve_backbone(&cfg.backbone, &format!("{path}.backbone"))?;
    cfg.memory.validate(&format!("{path}.memory"))?;
    if cfg.patch_size < 1 || cfg.patch_size % 2 == 0 {
        return Err(ConfigError::new(
            format!("{path}.patch_size"),
            format!("must be odd and at least 1, got {}", cfg.patch_size),
        ));
    }
    for (key, v) in [
        ("pretrain_embed_dim", cfg.pretrain_embed_dim),
        ("target_embed_dim", cfg.target_embed_dim),
    ] {
        if v < 1 {
            return Err(ConfigError::new(
                format!("{path}.{key}"),
                "must be at least 1",
            ));
        }
    }
    if cfg.reweight_neighbours < 2 {
        return Err(ConfigError::new(
            format!("{path}.reweight_neighbours"),
            "must be at least 2 (with b = 1, Eq. 7's weight is 0)",
        ));
    }
    if cfg.map_sigma.is_nan() || cfg.map_sigma < 0.0 {
        return Err(ConfigError::new(
            format!("{path}.map_sigma"),
            "must be >= 0",
        ));
    }
    Ok(cfg)
}

/// The patch scores `[B, L]` and image scores `[B]` of patch features `[B, L, D]` as `cfg`
/// says (`patch_distance`, `image_score`).
fn patch_scores(
    cfg: &PatchcoreConfig,
    bank: &PatchBank,
    patches: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let [b, l, d] = patches.size()[..] else {
        unreachable!("patches are [B, L, D]")
    };
    let nn = bank.k_nearest(&patches.reshape([b * l, d]), 1)?;
    let euclidean = nn.distance.reshape([b, l]);
    let patch_score = match cfg.patch_distance {
        PatchDistance::Euclidean => euclidean.shallow_clone(),
        PatchDistance::Squared => euclidean.square(),
    };
    let image_score = match cfg.image_score {
        ImageScore::Max => patch_score.amax([1i64].as_slice(), false),
        ImageScore::Reweighted => {
            // Eq. 7's weight from Euclidean distances, times the largest patch score.
            let index = nn.index.reshape([b, l]);
            let reweighted =
                reweighted_score(&euclidean, &index, patches, bank, cfg.reweight_neighbours)?;
            match cfg.patch_distance {
                PatchDistance::Euclidean => reweighted,
                PatchDistance::Squared => reweighted * euclidean.amax([1i64].as_slice(), false),
            }
        }
    };
    Ok((patch_score, image_score))
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
    let backbone = registry.build_backbone(&cfg.backbone, "method.backbone", ctx)?;
    // The coreset seed from libtorch's global generator, which the runner seeds.
    let seed = Tensor::randint(i64::MAX, [1], (Kind::Int64, Device::Cpu)).int64_value(&[0]);
    Ok(Box::new(Patchcore::new(
        cfg,
        backbone,
        ctx.device,
        seed as u64,
    )))
}

/// Locally aware patch features of a feature pyramid (module doc), on the finest level's grid.
///
/// # Shapes
/// `levels[j]`: `[B, C_j, H_j, W_j]`, finest first -> `[B * H_0 * W_0, target_dim]`, rows
/// in `(b, y, x)` order.
pub fn patch_features(
    levels: &[Tensor],
    patch_size: i64,
    pretrain_dim: i64,
    target_dim: i64,
) -> Tensor {
    let size = levels[0].size();
    let (b, h, w) = (size[0], size[2], size[3]);
    let pad = (patch_size - 1) / 2;
    let per_level: Vec<Tensor> = levels
        .iter()
        .map(|f| {
            let s = f.size();
            let (hj, wj) = (s[2], s[3]);
            // [B, C p^2, H_j W_j] -> one unfolded vector per position, pooled to pretrain_dim.
            let pooled = f
                .im2col([patch_size, patch_size], [1, 1], [pad, pad], [1, 1])
                .transpose(1, 2)
                .reshape([b * hj * wj, 1, -1])
                .adaptive_avg_pool1d([pretrain_dim])
                .reshape([b, hj, wj, pretrain_dim]);
            let on_grid = if (hj, wj) == (h, w) {
                pooled
            } else {
                pooled
                    .permute([0, 3, 1, 2])
                    .upsample_bilinear2d([h, w], false, None, None)
                    .permute([0, 2, 3, 1])
            };
            on_grid.reshape([b * h * w, pretrain_dim])
        })
        .collect();
    Tensor::stack(&per_level, 1)
        .reshape([b * h * w, 1, -1])
        .adaptive_avg_pool1d([target_dim])
        .reshape([b * h * w, target_dim])
}

/// Eq. 7: the image score `s*` (the largest patch score) reweighted by how dense the bank is
/// around `m*`. An error when the bank holds fewer than `neighbours` items.
///
/// # Shapes
/// `patch_distance`, `patch_index`: `[B, L]` (each patch's distance to and index of its
/// nearest bank item); `patches`: `[B, L, D]` -> `[B]`.
pub fn reweighted_score(
    patch_distance: &Tensor,
    patch_index: &Tensor,
    patches: &Tensor,
    bank: &PatchBank,
    neighbours: i64,
) -> Result<Tensor> {
    let items = bank
        .items()
        .ok_or_else(|| CoreError::Invalid("patchcore: the bank is empty".into()))?;
    if bank.len() < neighbours {
        return Err(CoreError::Invalid(format!(
            "patchcore: Eq. 7 needs {neighbours} bank items (reweight_neighbours), the bank \
             holds {}",
            bank.len()
        )));
    }
    let worst = patch_distance.argmax(1, true); // [B, 1]
    let s_star = patch_distance.gather(1, &worst, false).squeeze_dim(1);
    let m_star = items.index_select(0, &patch_index.gather(1, &worst, false).squeeze_dim(1));
    let d = patches.size()[2];
    let m_test = patches
        .gather(1, &worst.unsqueeze(2).expand([-1, 1, d], false), false)
        .squeeze_dim(1); // [B, D]
    let support = bank.k_nearest(&m_star, neighbours)?.index; // [B, b]
    let b = support.size()[1];
    let support = items
        .index_select(0, &support.flatten(0, -1))
        .reshape([-1, b, d]);
    let to_support = (m_test.unsqueeze(1) - support)
        .square()
        .sum_dim_intlist([2i64].as_slice(), false, None::<Kind>)
        .sqrt(); // [B, b]
                 // exp(s*) / sum_j exp(d_j), computed as exp(s* - logsumexp(d)).
    let ratio = (&s_star - to_support.logsumexp([1i64].as_slice(), false)).exp();
    Ok((1.0 - ratio) * s_star)
}

/// With `image_score = "reweighted"`, an error when a bank of `items` holds fewer than Eq. 7's
/// `b = reweight_neighbours` (the neighbours would silently be fewer; with one item every
/// image scores 0); `available`: the patch features the bank was selected from, when known.
fn check_bank_size(cfg: &PatchcoreConfig, items: i64, available: Option<i64>) -> Result<()> {
    let b = cfg.reweight_neighbours;
    if cfg.image_score != ImageScore::Reweighted || items >= b {
        return Ok(());
    }
    let ratio = cfg.memory.coreset_ratio;
    let (from, raise) = match available {
        // No ratio keeps more than were collected: the training set (or its feature maps) is
        // too small for `b`.
        Some(n) if n < b => (
            format!("only {n} patch features were collected from the training set"),
            "",
        ),
        Some(n) => (
            format!(
                "method.memory.coreset_ratio = {ratio} keeps {items} of the {n} patch features \
                 collected (keeping {b} needs coreset_ratio >= {b}/{n})"
            ),
            "raise coreset_ratio, ",
        ),
        None => (
            format!(
                "the fitted bank holds {items} item(s) (method.memory.coreset_ratio = {ratio})"
            ),
            "raise coreset_ratio, ",
        ),
    };
    Err(CoreError::Invalid(format!(
        "patchcore: {from}, fewer than method.reweight_neighbours = {b} that image_score = \
         \"reweighted\" (Eq. 7) needs: {raise}lower reweight_neighbours, or use image_score = \
         \"max\""
    )))
}

pub struct Patchcore {
    cfg: PatchcoreConfig,
    backbone: Box<dyn Backbone>,
    bank: PatchBank,
    /// Empty: nothing is learned by gradient.
    vs: nn::VarStore,
}

impl Patchcore {
    /// `seed` fixes the coreset selection.
    pub fn new(
        cfg: PatchcoreConfig,
        backbone: Box<dyn Backbone>,
        device: Device,
        seed: u64,
    ) -> Self {
        let bank = PatchBank::new(cfg.memory.clone(), seed);
        Patchcore {
            cfg,
            backbone,
            bank,
            vs: nn::VarStore::new(device),
        }
    }

    pub fn bank(&self) -> &PatchBank {
        &self.bank
    }

    /// Patch features of a batch and the patch grid.
    ///
    /// # Shapes
    /// `x`: `[B, 3, H, W]` -> `[B * h * w, target_embed_dim]`, `[h, w]`.
    pub fn embed(&self, x: &Tensor) -> (Tensor, [i64; 2]) {
        let levels: Vec<Tensor> = tch::no_grad(|| {
            self.backbone
                .pyramid(x)
                .levels
                .into_iter()
                .map(|l| l.features)
                .collect()
        });
        let size = levels[0].size();
        let features = patch_features(
            &levels,
            self.cfg.patch_size,
            self.cfg.pretrain_embed_dim,
            self.cfg.target_embed_dim,
        );
        (features, [size[2], size[3]])
    }
}

impl Method for Patchcore {
    fn trainable(&self) -> &nn::VarStore {
        &self.vs
    }

    fn training(&self) -> Training {
        Training::FitOnce
    }

    fn fit(&mut self, batch: &Batch) -> Result<()> {
        let (features, _) = self.embed(&batch.input);
        self.bank.update(&features)
    }

    fn train_step(&mut self, _batch: &Batch) -> Result<TrainOutput> {
        Err(CoreError::Invalid(
            "patchcore is fitted once (`fit`, then `finalize`); it has no gradient step".into(),
        ))
    }

    /// Builds the bank; with `image_score = "reweighted"`, first refuses a bank smaller than
    /// Eq. 7's `reweight_neighbours` (before the coreset is computed).
    fn finalize(&mut self, progress: Progress<'_>) -> Result<()> {
        let available = self.bank.collected();
        if available > 0 {
            let items = coreset_size(available, self.cfg.memory.coreset_ratio);
            check_bank_size(&self.cfg, items, Some(available))?;
        }
        self.bank.finalize(progress)?;
        match available {
            0 => check_bank_size(&self.cfg, self.bank.len(), None),
            _ => Ok(()), // checked above, before the coreset
        }
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        memad_core::state_prefixed(self.bank.state(), "memory.")
    }

    /// The fitted bank of a checkpoint (`memory.bank`): all that scoring needs besides the
    /// frozen backbone.
    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let inner = memad_core::state_under(state, "memory.", "patchcore")?;
        self.bank.load_state(&inner)?;
        check_bank_size(&self.cfg, self.bank.len(), None)
    }

    fn score(&self, batch: &Batch) -> Result<AnomalyOutput> {
        let size = batch.input.size();
        let b = size[0];
        let (features, [h, w]) = self.embed(&batch.input);
        let (patch_score, image_score) =
            patch_scores(&self.cfg, &self.bank, &features.reshape([b, h * w, -1]))?;
        let map = patch_score.reshape([b, 1, h, w]).upsample_bilinear2d(
            [size[2], size[3]],
            false,
            None,
            None,
        );
        Ok(AnomalyOutput {
            image_score: image_score.to_kind(Kind::Float),
            anomaly_map: Some(gaussian_blur(&map, self.cfg.map_sigma)),
            parts: Vec::new(),
            class_prediction: None,
            memory_usage: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        let mut r = Registry::default();
        memad_backbones::register(&mut r);
        crate::register(&mut r);
        r
    }

    fn section(extra: &str) -> toml::Value {
        toml::from_str(&format!(
            "kind = \"patchcore\"\n{extra}\n[backbone]\nkind = \"efficientnet_lite0\"\n\
             weights = \"random\"\nlevels = [\"stride8\", \"stride16\"]\n"
        ))
        .unwrap()
    }

    #[test]
    fn resolve_fills_the_paper_defaults() {
        let r = resolve(&section(""), "method", &registry()).unwrap();
        let get = |k: &str| r.get(k).cloned().unwrap();
        assert_eq!(get("patch_size").as_integer(), Some(3));
        assert_eq!(get("pretrain_embed_dim").as_integer(), Some(1024));
        assert_eq!(get("target_embed_dim").as_integer(), Some(1024));
        assert_eq!(get("image_score").as_str(), Some("max"));
        assert_eq!(get("reweight_neighbours").as_integer(), Some(9));
        assert_eq!(get("map_sigma").as_float(), Some(4.0));
        let memory = get("memory");
        assert_eq!(memory.get("coreset_ratio").unwrap().as_float(), Some(0.1));
        assert_eq!(
            memory.get("projection_dim").unwrap().as_integer(),
            Some(128)
        );
    }

    #[test]
    fn resolve_names_unknown_and_invalid_keys() {
        let reg = registry();
        let err = resolve(&section("coreset_ratio = 0.1"), "method", &reg).unwrap_err();
        assert_eq!(err.path, "method.coreset_ratio");
        assert!(err.message.contains("unknown field"), "{}", err.message);
        let err = resolve(&section("[memory]\ncoreset_ration = 0.1"), "method", &reg).unwrap_err();
        assert_eq!(err.path, "method.memory.coreset_ration");
        let err = resolve(&section("[memory]\ncoreset_ratio = 0.0"), "method", &reg).unwrap_err();
        assert_eq!(err.path, "method.memory.coreset_ratio");
        let err = resolve(&section("patch_size = 2"), "method", &reg).unwrap_err();
        assert_eq!(err.path, "method.patch_size");
        let err = resolve(&section("image_score = \"mean\""), "method", &reg).unwrap_err();
        assert_eq!(err.path, "method.image_score");
        let err = resolve(&section("reweight_neighbours = 1"), "method", &reg).unwrap_err();
        assert_eq!(err.path, "method.reweight_neighbours");
    }

    /// The official `_embed` order written out: unfold every level, upsample each of the
    /// `C p^2` unfolded maps, then pool per level and over levels.
    fn official_order(levels: &[Tensor], p: i64, pre: i64, target: i64) -> Tensor {
        let s = levels[0].size();
        let (b, h, w) = (s[0], s[2], s[3]);
        let per_level: Vec<Tensor> = levels
            .iter()
            .map(|f| {
                let (hj, wj) = (f.size()[2], f.size()[3]);
                let u = f
                    .im2col([p, p], [1, 1], [(p - 1) / 2, (p - 1) / 2], [1, 1])
                    .reshape([b, -1, hj, wj])
                    .upsample_bilinear2d([h, w], false, None, None); // [B, C p^2, h, w]
                u.permute([0, 2, 3, 1])
                    .reshape([b * h * w, 1, -1])
                    .adaptive_avg_pool1d([pre])
                    .reshape([b * h * w, pre])
            })
            .collect();
        Tensor::stack(&per_level, 1)
            .reshape([b * h * w, 1, -1])
            .adaptive_avg_pool1d([target])
            .reshape([b * h * w, target])
    }

    fn ramp(shape: &[i64], step: f64) -> Tensor {
        let n: i64 = shape.iter().product();
        (Tensor::arange(n, (Kind::Float, Device::Cpu)) * step)
            .sin()
            .reshape(shape)
    }

    #[test]
    fn patch_features_equal_the_official_order() {
        // Channel counts whose C p^2 is and is not a multiple of the pooled size.
        let levels = [ramp(&[2, 5, 6, 8], 0.37), ramp(&[2, 7, 3, 4], 0.91)];
        for (pre, target) in [(16, 8), (45, 20), (100, 64)] {
            let ours = patch_features(&levels, 3, pre, target);
            let official = official_order(&levels, 3, pre, target);
            assert_eq!(ours.size(), [2 * 6 * 8, target]);
            let diff = (&ours - &official).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "pre {pre} target {target}: max diff {diff}");
        }
    }

    #[test]
    fn patch_features_are_per_channel_means_when_the_sizes_divide() {
        // One level, C p^2 = 4 * 9 -> 4: each output is the 3x3 zero-padded mean of a channel.
        let f = ramp(&[1, 4, 5, 5], 0.53);
        let ours = patch_features(&[f.shallow_clone()], 3, 4, 4).reshape([5, 5, 4]);
        let mean = f.avg_pool2d([3, 3], [1, 1], [1, 1], false, true, None::<i64>);
        let expected = mean.squeeze_dim(0).permute([1, 2, 0]);
        assert!((ours - expected).abs().max().double_value(&[]) < 1e-6);
    }

    /// The bank a = (0,0), b = (3,0), c = (0,4) and the patches `[1, 2, 2]` (0,0), (1,1) of
    /// the hand-computed reweighting case.
    fn hand_computed_case() -> (PatchBank, Tensor) {
        let items = Tensor::from_slice(&[0f32, 0., 3., 0., 0., 4.]).reshape([3, 2]);
        let mut bank = PatchBank::new(PatchBankConfig::default(), 0);
        bank.load_state(&[("bank".into(), items)]).unwrap();
        (
            bank,
            Tensor::from_slice(&[0f32, 0., 1., 1.]).reshape([1, 2, 2]),
        )
    }

    #[test]
    fn reweighting_matches_a_hand_computed_case() {
        // Bank a = (0,0), b = (3,0), c = (0,4); patches (0,0) and (1,1). The worst patch is
        // m_test* = (1,1) with s* = sqrt 2 to m* = a; N_2(a) = {a, b} at sqrt 2 and sqrt 5:
        // s = (1 - e^sqrt2 / (e^sqrt2 + e^sqrt5)) sqrt 2 = 0.98235494.
        let (bank, patches) = hand_computed_case();
        let nn = bank.k_nearest(&patches.reshape([2, 2]), 1).unwrap();
        let s = reweighted_score(
            &nn.distance.reshape([1, 2]),
            &nn.index.reshape([1, 2]),
            &patches,
            &bank,
            2,
        )
        .unwrap();
        let (r2, r5) = (2f64.sqrt(), 5f64.sqrt());
        let expected = (1.0 - r2.exp() / (r2.exp() + r5.exp())) * r2;
        assert!((expected - 0.982_354_94).abs() < 1e-7);
        assert!((s.double_value(&[0]) - expected).abs() < 1e-5, "{s}");
    }

    fn image_batch(x: Tensor) -> Batch {
        let b = x.size()[0];
        Batch {
            input: x,
            label: Tensor::zeros([b], (Kind::Int64, Device::Cpu)),
            mask: None,
            class: None,
            synthetic: None,
        }
    }

    /// Smooth seeded images in [0, 1] (no global generator: tests run in parallel).
    fn images(n: i64, side: i64, phase: f64) -> Tensor {
        let y = Tensor::arange(side, (Kind::Float, Device::Cpu)).reshape([1, 1, side, 1]);
        let x = Tensor::arange(side, (Kind::Float, Device::Cpu)).reshape([1, 1, 1, side]);
        let k = Tensor::arange(n * 3, (Kind::Float, Device::Cpu)).reshape([n, 3, 1, 1]) + phase;
        ((&y * 0.4 + &x * 0.7) * (&k * 0.13 + 0.5) + &k).sin() * 0.5 + 0.5
    }

    fn fitted(extra: &str, train: &Tensor) -> Box<dyn Method> {
        let reg = registry();
        let resolved = resolve(&section(extra), "method", &reg).unwrap();
        let ctx = BuildContext {
            device: Device::Cpu,
            weights_dir: std::env::temp_dir(),
            image_size: 32,
            classes: 1,
        };
        let mut m = build(&resolved, &reg, &ctx).unwrap();
        assert_eq!(m.training(), Training::FitOnce);
        assert!(m.trainable().variables().is_empty());
        for i in 0..train.size()[0] / 2 {
            tch::no_grad(|| m.fit(&image_batch(train.narrow(0, 2 * i, 2)))).unwrap();
        }
        tch::no_grad(|| m.finalize(&memad_core::no_progress)).unwrap();
        m
    }

    #[test]
    fn a_training_image_scores_zero_and_a_perturbed_one_higher() {
        let train = images(4, 32, 0.0);
        let m = fitted("map_sigma = 1.0\n[memory]\ncoreset_ratio = 1.0", &train);
        let same = train.narrow(0, 1, 1);
        let perturbed = same.copy();
        let _ = perturbed.narrow(2, 8, 8).narrow(3, 16, 8).fill_(1.0);
        let out =
            tch::no_grad(|| m.score(&image_batch(Tensor::cat(&[&same, &perturbed], 0)))).unwrap();
        let s: Vec<f32> = Vec::try_from(&out.image_score).unwrap();
        // Exactly 0 up to float noise (the batch differs from the fitting batch); the
        // random backbone's features are small, so the perturbed score is a few hundredths.
        assert!(s[0].abs() < 1e-4, "identical image scores {}", s[0]);
        assert!(s[1] > 0.01 && s[1] > 100.0 * s[0].abs(), "scores {s:?}");
        let map = out.anomaly_map.unwrap();
        assert_eq!(map.size(), [2, 1, 32, 32]);
        assert!(map.get(0).abs().max().double_value(&[]) < 1e-4);
        // The perturbed square is where the map is highest on average.
        let inside = map
            .get(1)
            .narrow(1, 8, 8)
            .narrow(2, 16, 8)
            .mean(Kind::Double);
        let all = map.get(1).mean(Kind::Double);
        assert!(
            inside.double_value(&[]) > all.double_value(&[]),
            "{inside} vs {all}"
        );
    }

    #[test]
    fn squared_patch_distances_square_the_patch_and_image_scores() {
        let (bank, patches) = hand_computed_case();
        let cfg = |extra: &str| -> PatchcoreConfig {
            parse(&section(extra), "method", &registry()).unwrap()
        };
        let scores = |extra: &str| patch_scores(&cfg(extra), &bank, &patches).unwrap();
        let values = |t: &Tensor| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
        let (patch, image) = scores("");
        assert_eq!(values(&patch), [0.0, 2f32.sqrt()]);
        assert_eq!(values(&image), [2f32.sqrt()]);
        let (patch, image) = scores("patch_distance = \"squared\"");
        let close = |got: Vec<f32>, want: &[f32]| {
            (got.iter().zip(want)).all(|(g, w)| (g - w).abs() < 1e-6) && got.len() == want.len()
        };
        assert!(close(values(&patch), &[0.0, 2.0]));
        assert!(close(values(&image), &[2.0]));
        // The config reaches Eq. 7: the hand-computed value of
        // `reweighting_matches_a_hand_computed_case` (b = 2), not the plain max sqrt 2.
        let reweighted = "image_score = \"reweighted\"\nreweight_neighbours = 2";
        let (_, plain) = scores(reweighted);
        assert!(close(values(&plain), &[0.982_354_94]), "{plain}");
        // Eq. 7's weight stays Euclidean and multiplies the squared s* (= 2).
        let (_, squared) = scores(&format!("{reweighted}\npatch_distance = \"squared\""));
        let weight = 0.982_354_94 / 2f32.sqrt();
        assert!(close(values(&squared), &[weight * 2.0]), "{squared}");
    }

    #[test]
    fn a_saved_bank_restores_the_scores() {
        let train = images(4, 32, 0.0);
        let mut m = fitted("[memory]\ncoreset_ratio = 0.5", &train);
        let test = image_batch(images(2, 32, 0.5));
        let scores = |m: &dyn Method| tch::no_grad(|| m.score(&test)).unwrap().image_score;
        let before = scores(m.as_ref());
        let state = m.state();
        assert_eq!(state.len(), 1);
        assert_eq!(state[0].0, "memory.bank");
        // Another bank (its first item only) scores otherwise; the saved one restores them.
        let one = state[0].1.narrow(0, 0, 1);
        m.load_state(&[("memory.bank".into(), one)]).unwrap();
        assert!(!scores(m.as_ref()).allclose(&before, 1e-6, 1e-6, false));
        m.load_state(&state).unwrap();
        assert!(scores(m.as_ref()).equal(&before));
        let msg = m.load_state(&[("bank".into(), state[0].1.shallow_clone())]);
        assert!(msg.unwrap_err().to_string().contains("expected `memory.*`"));
    }

    #[test]
    fn the_coreset_keeps_a_tenth_and_reweighting_scores() {
        let cfg = parse(
            &section("image_score = \"reweighted\""),
            "method",
            &registry(),
        )
        .unwrap();
        let levels = ["stride8".to_string(), "stride16".to_string()];
        let backbone = memad_backbones::build_backbone(
            "efficientnet_lite0",
            "random",
            Some(&levels),
            &std::env::temp_dir(),
            Device::Cpu,
        )
        .unwrap();
        let mut m = Patchcore::new(cfg, backbone, Device::Cpu, 3);
        tch::no_grad(|| m.fit(&image_batch(images(4, 32, 0.0)))).unwrap();
        assert_eq!(m.bank().collected(), 4 * 4 * 4);
        // 64 patch features (4 images, 4 x 4 grid at stride 8), int(64 * 0.1) = 6 kept:
        // fewer than the b = 9 neighbours of Eq. 7, refused before the coreset is computed.
        let msg = tch::no_grad(|| m.finalize(&memad_core::no_progress))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(
                "method.memory.coreset_ratio = 0.1 keeps 6 of the 64 patch features collected \
                 (keeping 9 needs coreset_ratio >= 9/64), fewer than \
                 method.reweight_neighbours = 9"
            ),
            "{msg}"
        );
        assert_eq!(m.bank().collected(), 64);
        m.cfg.reweight_neighbours = 6;
        tch::no_grad(|| m.finalize(&memad_core::no_progress)).unwrap();
        assert_eq!(m.bank().len(), 6);
        assert_eq!(m.bank().items().unwrap().size(), [6, 1024]);
        let test = images(2, 32, 5.0);
        let out = tch::no_grad(|| m.score(&image_batch(test.shallow_clone()))).unwrap();
        let s: Vec<f32> = Vec::try_from(&out.image_score).unwrap();
        assert_eq!(s.len(), 2);
        assert!(s.iter().all(|v| v.is_finite() && *v > 0.0), "{s:?}");
        // Eq. 7 recomputed on the host from the bank's items by brute force: each patch's
        // nearest item, the worst patch m_test* (score s*) and its nearest item m*, the
        // b = 6 items nearest to m* (the whole bank of 6 here, so the neighbour selection is
        // checked again with b = 3 below), s = (1 - e^{||m_test* - m*||} / sum_{m in N_b(m*)}
        // e^{||m_test* - m||}) s*.
        let rows = |t: &Tensor| -> Vec<Vec<f64>> {
            let d = t.size()[1];
            let flat = Vec::<f64>::try_from(t.to_kind(Kind::Double).reshape([-1])).unwrap();
            flat.chunks(d as usize).map(<[f64]>::to_vec).collect()
        };
        let dist = |a: &[f64], b: &[f64]| -> f64 {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        let bank = rows(m.bank().items().unwrap());
        let (features, [h, w]) = m.embed(&test);
        let patches = rows(&features);
        let per_image = (h * w) as usize;
        // (nearest item, distance) of a vector, by brute force.
        let nearest = |v: &[f64]| -> (usize, f64) {
            (bank.iter().map(|item| dist(v, item)).enumerate())
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap()
        };
        let expected = |image: usize, b: usize| -> (f64, f64) {
            let patches = &patches[image * per_image..(image + 1) * per_image];
            let (worst, (star, s_star)) = (patches.iter().map(|p| nearest(p)).enumerate())
                .max_by(|a, b| a.1 .1.total_cmp(&b.1 .1))
                .unwrap();
            let m_test = &patches[worst];
            let mut support: Vec<usize> = (0..bank.len()).collect();
            support.sort_by(|&i, &j| {
                dist(&bank[star], &bank[i]).total_cmp(&dist(&bank[star], &bank[j]))
            });
            let sum: f64 = (support[..b].iter())
                .map(|&i| dist(m_test, &bank[i]).exp())
                .sum();
            ((1.0 - s_star.exp() / sum) * s_star, s_star)
        };
        // The plain `max` score of the same input.
        m.cfg.image_score = ImageScore::Max;
        let max = tch::no_grad(|| m.score(&image_batch(test.shallow_clone()))).unwrap();
        let max: Vec<f32> = Vec::try_from(&max.image_score).unwrap();
        m.cfg.image_score = ImageScore::Reweighted;
        for (image, (&got, &max)) in s.iter().zip(&max).enumerate() {
            let (want, s_star) = expected(image, 6);
            let (got, max) = (got as f64, max as f64);
            assert!((got - want).abs() <= 1e-5 * want.abs(), "{got} vs {want}");
            assert!((max - s_star).abs() <= 1e-5 * s_star, "{max} vs {s_star}");
            assert!(got <= max, "reweighted {got} > max {max}");
            // The random backbone's distances are small: m*'s share is far from negligible,
            // so the reweighting does change the score (not the `max` fallback).
            assert!(got < 0.99 * max, "reweighted {got} vs max {max}");
        }
        // b = 3 < the bank: only the 3 items nearest to m* count.
        m.cfg.reweight_neighbours = 3;
        let three = tch::no_grad(|| m.score(&image_batch(test))).unwrap();
        let three: Vec<f32> = Vec::try_from(&three.image_score).unwrap();
        for (image, &got) in three.iter().enumerate() {
            let (want, _) = expected(image, 3);
            let got = got as f64;
            assert!(
                (got - want).abs() <= 1e-5 * want.abs(),
                "b = 3: {got} vs {want}"
            );
        }
    }

    /// A one-item bank (a tiny `coreset_ratio`): `max` scores each image by its distance to
    /// that item; `reweighted` would score every image 0 (Eq. 7's weight of `b = 1` items),
    /// so it is refused when fitting, when a checkpoint's bank is loaded and when scoring.
    #[test]
    fn a_bank_smaller_than_the_reweighting_needs_is_refused() {
        let train = images(4, 32, 0.0);
        let tiny = "[memory]\ncoreset_ratio = 1e-9";
        let m = fitted(tiny, &train);
        let state = m.state();
        assert_eq!(state[0].1.size()[0], 1, "one item kept");
        let test = image_batch(images(2, 32, 5.0));
        let out = tch::no_grad(|| m.score(&test)).unwrap();
        let s: Vec<f32> = Vec::try_from(&out.image_score).unwrap();
        assert!(s.iter().all(|v| v.is_finite() && *v > 0.0), "{s:?}");
        assert_ne!(s[0], s[1]);

        let reg = registry();
        let reweighted = format!("image_score = \"reweighted\"\n{tiny}");
        let resolved = resolve(&section(&reweighted), "method", &reg).unwrap();
        let ctx = BuildContext {
            device: Device::Cpu,
            weights_dir: std::env::temp_dir(),
            image_size: 32,
            classes: 1,
        };
        let mut r = build(&resolved, &reg, &ctx).unwrap();
        tch::no_grad(|| r.fit(&image_batch(train.narrow(0, 0, 2)))).unwrap();
        let msg = tch::no_grad(|| r.finalize(&memad_core::no_progress))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("coreset_ratio = 0.000000001 keeps 1 of the 32 patch features")
                && msg.contains("fewer than method.reweight_neighbours = 9")
                && msg.contains("image_score = \"reweighted\" (Eq. 7) needs"),
            "{msg}"
        );
        // `memad eval --set method.image_score=reweighted` of the max run's checkpoint.
        let msg = r.load_state(&state).unwrap_err().to_string();
        assert!(
            msg.contains(
                "the fitted bank holds 1 item(s) (method.memory.coreset_ratio = 0.000000001), \
                 fewer than method.reweight_neighbours = 9"
            ),
            "{msg}"
        );
        // Scoring refuses it too (a bank given to the library functions directly).
        let cfg = parse(&section(&reweighted), "method", &reg).unwrap();
        let mut bank = PatchBank::new(cfg.memory.clone(), 0);
        bank.load_state(&[("bank".into(), state[0].1.shallow_clone())])
            .unwrap();
        let patches = Tensor::zeros([1, 2, 1024], (Kind::Float, Device::Cpu));
        let msg = patch_scores(&cfg, &bank, &patches).unwrap_err().to_string();
        assert!(msg.contains("Eq. 7 needs 9 bank items"), "{msg}");
        // Fewer patch features than neighbours: no coreset ratio helps, none is suggested.
        let cfg = PatchcoreConfig {
            memory: PatchBankConfig {
                coreset_ratio: 1.0,
                ..cfg.memory.clone()
            },
            ..cfg
        };
        let msg = check_bank_size(&cfg, 6, Some(6)).unwrap_err().to_string();
        assert!(
            msg.contains("only 6 patch features were collected from the training set, fewer than method.reweight_neighbours = 9")
                && msg.contains("needs: lower reweight_neighbours, or use image_score = \"max\""),
            "{msg}"
        );
    }
}
