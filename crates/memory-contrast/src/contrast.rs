//! The per-scale prototype memory of MSCM: Jezequel, Vu, Beaudet & Histace, "Anomaly
//! Detection via Multi-Scale Contrasted Memory", arXiv 2211.09041 (2022). No reference code
//! is public.
//!
//! What the paper's abstract gives: memories of normal prototypes at several scales, learned
//! together with the encoder by a "memory-augmented contrastive learning"; detection then
//! uses the "spatial deviation maps between prototypes and observations". Unverified (from
//! second-hand summaries of the full text that could not be found again): that the memory is
//! a modern-Hopfield-style layer with a term that keeps the prototypes from collapsing. The
//! equations below are this crate's own reading of that outline; every constant is a config
//! key.
//!
//! Prototypes `M` `[K, D]` are a VarStore variable `prototypes` (initialised `N(0, 1)`,
//! drawn on the CPU from the seeded global generator and copied to the device). For a query
//! `q` (one local feature, `D` channels), with `q^ = q / max(||q||, 1e-8)` and
//! `m^_k = m_k / max(||m_k||, 1e-8)`:
//!
//! - Similarity: `s_k = q^ . m^_k` (cosine), `[N, K]`.
//! - Read (Hopfield retrieval, `beta = 1 / temperature`): `a = softmax(s / tau)`,
//!   `output = a M^` ([`MemoryRead::output`]), `attention = a`.
//! - Nearest prototype `k* = argmax_k s_k`; `distance = 1 - s_k*` (cosine distance, clamped
//!   at 0; [`MemoryRead::distance`]); the deviation vector is `q^ - m^_k*`
//!   ([`ContrastMemory::residual`]).
//! - Memory contrastive term `contrast` (each query pulled to its nearest prototype, pushed
//!   from the others, temperature `tau`):
//!   `L_c = mean_n [logsumexp_k(s_nk / tau) - s_nk* / tau] = -mean_n log max_k a_nk`.
//! - Anti-collapse term `usage` (every prototype used): with `p = mean_n a_n`,
//!   `L_u = KL(p || uniform) = log K + sum_k p_k log p_k` (`p_k` clamped at 1e-12), 0 when
//!   the batch spreads evenly over the prototypes.
//! - Labelled anomalies (the unbalanced setting; [`ContrastMemory::repel`], not part of
//!   [`Memory::losses`], which sees no labels): `L_r = mean_n max(0, max_k s_nk - margin)`,
//!   pushing anomalous local features away from every prototype.
//!
//! [`Memory::losses`] returns `contrast = contrast_weight * L_c` and
//! `usage = usage_weight * L_u`. An empty query batch gives zero losses.
//!
//! Inferred, not from the paper (only its abstract could be read): cosine geometry, the
//! nearest-prototype cross-entropy form of the contrastive term, the KL-to-uniform usage term
//! (earlier notes described the paper's anti-collapse term as a variance term; unverified),
//! the hinge form of the anomaly term, the defaults. Local features are contrasted with the
//! prototypes only, not with other samples' features.
//! Parity: `tests/golden.rs` against `tools/golden_contrast_memory.py` (plain torch).
use memad_core::{parse_section, ConfigError, CoreError, Memory, MemoryRead, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

/// Norm clamp of the L2 normalisation (`F.normalize`'s is 1e-12; 1e-8 as cosine similarity).
const NORM_EPS: f64 = 1e-8;
/// Clamp of the usage probabilities inside the log.
const PROB_EPS: f64 = 1e-12;

/// A contrast memory section (`slots`, `dim`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContrastMemoryConfig {
    /// Number of prototypes `K`.
    pub slots: i64,
    /// Prototype width `D`: the channels of the features at this scale.
    pub dim: i64,
    /// Temperature `tau` of the read and of the contrastive term.
    #[serde(default = "d_temperature")]
    pub temperature: f64,
    /// Weight of `contrast`.
    #[serde(default = "d_one")]
    pub contrast_weight: f64,
    /// Weight of `usage` (0 disables the anti-collapse term).
    #[serde(default = "d_one")]
    pub usage_weight: f64,
    /// Weight of the labelled-anomaly term [`ContrastMemory::repel`].
    #[serde(default = "d_one")]
    pub anomaly_weight: f64,
    /// Cosine similarity above which a labelled anomaly is pushed away, in `[-1, 1]`.
    #[serde(default = "d_margin")]
    pub anomaly_margin: f64,
}

fn d_temperature() -> f64 {
    0.1
}
fn d_one() -> f64 {
    1.0
}
fn d_margin() -> f64 {
    0.5
}

impl ContrastMemoryConfig {
    /// `slots` prototypes of width `dim`, every other key at its default.
    pub fn new(slots: i64, dim: i64) -> Self {
        Self {
            slots,
            dim,
            temperature: d_temperature(),
            contrast_weight: d_one(),
            usage_weight: d_one(),
            anomaly_weight: d_one(),
            anomaly_margin: d_margin(),
        }
    }

    /// Parses and validates a section found at `path` (for errors).
    pub fn parse(section: &toml::Value, path: &str) -> std::result::Result<Self, ConfigError> {
        let cfg: Self = parse_section(section, path)?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Checks the values; `path` names the section in errors.
    pub fn validate(&self, path: &str) -> std::result::Result<(), ConfigError> {
        let key = |k: &str| format!("{path}.{k}");
        if self.slots < 1 {
            return Err(ConfigError::new(key("slots"), "must be at least 1"));
        }
        if self.dim < 1 {
            return Err(ConfigError::new(key("dim"), "must be at least 1"));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(ConfigError::new(
                key("temperature"),
                format!("must be finite and > 0, got {}", self.temperature),
            ));
        }
        for (name, w) in [
            ("contrast_weight", self.contrast_weight),
            ("usage_weight", self.usage_weight),
            ("anomaly_weight", self.anomaly_weight),
        ] {
            if !(w >= 0.0 && w.is_finite()) {
                return Err(ConfigError::new(
                    key(name),
                    format!("must be finite and >= 0, got {w}"),
                ));
            }
        }
        if !(-1.0..=1.0).contains(&self.anomaly_margin) {
            return Err(ConfigError::new(
                key("anomaly_margin"),
                format!("must be in [-1, 1], got {}", self.anomaly_margin),
            ));
        }
        Ok(())
    }
}

/// The nearest prototype of each query.
#[derive(Debug)]
pub struct Nearest {
    /// `[N]` int64: `k*`.
    pub index: Tensor,
    /// `[N]`: `1 - cos(q, m_k*)`, clamped at 0.
    pub distance: Tensor,
}

/// MSCM's memory of one scale: learned prototypes, cosine geometry.
#[derive(Debug)]
pub struct ContrastMemory {
    cfg: ContrastMemoryConfig,
    /// `[slots, dim]`, the VarStore variable `prototypes` under the given path.
    prototypes: Tensor,
}

impl ContrastMemory {
    /// Creates the prototypes as the variable `prototypes` under `path`.
    pub fn new(path: &nn::Path, cfg: &ContrastMemoryConfig) -> Result<Self> {
        cfg.validate("memory")?;
        let init = Tensor::randn([cfg.slots, cfg.dim], (Kind::Float, Device::Cpu));
        let prototypes = path.var_copy("prototypes", &init);
        Ok(Self {
            cfg: cfg.clone(),
            prototypes,
        })
    }

    pub fn config(&self) -> &ContrastMemoryConfig {
        &self.cfg
    }

    /// The prototypes `M`, `[slots, dim]` (the VarStore variable itself).
    pub fn prototypes(&self) -> &Tensor {
        &self.prototypes
    }

    /// Cosine similarity of every query to every prototype.
    ///
    /// # Shapes
    /// `query`: `[N, dim]` -> `[N, slots]`.
    pub fn similarity(&self, query: &Tensor) -> Tensor {
        l2_normalise(query).matmul(&l2_normalise(&self.prototypes).tr())
    }

    /// The nearest prototype and the cosine distance to it.
    ///
    /// # Shapes
    /// `query`: `[N, dim]` -> `index`, `distance` `[N]`.
    pub fn nearest(&self, query: &Tensor) -> Nearest {
        let (best, index) = self.similarity(query).max_dim(1, false);
        Nearest {
            index,
            distance: (-best + 1.0).clamp_min(0.0),
        }
    }

    /// The deviation of each normalised query from its nearest normalised prototype,
    /// `q^ - m^_k*`.
    ///
    /// # Shapes
    /// `query`: `[N, dim]` -> `[N, dim]`.
    pub fn residual(&self, query: &Tensor) -> Tensor {
        let q = l2_normalise(query);
        let m = l2_normalise(&self.prototypes);
        let index = q.matmul(&m.tr()).argmax(1, false);
        q - m.index_select(0, &index)
    }

    /// The weighted terms `contrast` (`contrast_weight * L_c`) and `usage`
    /// (`usage_weight * L_u`) of normal queries, from one similarity computation (what
    /// [`Memory::losses`] returns, without computing a read first).
    ///
    /// # Shapes
    /// `query`: `[N, dim]` -> two scalars.
    pub fn training_losses(&self, query: &Tensor) -> Vec<(String, Tensor)> {
        let similarity = self.similarity(query);
        let attention = (&similarity / self.cfg.temperature).softmax(1, Kind::Float);
        vec![
            (
                "contrast".to_string(),
                contrastive_loss(&similarity, self.cfg.temperature) * self.cfg.contrast_weight,
            ),
            (
                "usage".to_string(),
                usage_loss(&attention) * self.cfg.usage_weight,
            ),
        ]
    }

    /// `anomaly_weight * L_r` for labelled anomalous queries.
    ///
    /// # Shapes
    /// `anomalous`: `[N, dim]` -> scalar (0 for `N = 0`).
    pub fn repel(&self, anomalous: &Tensor) -> Tensor {
        repel_loss(&self.similarity(anomalous), self.cfg.anomaly_margin) * self.cfg.anomaly_weight
    }
}

/// `x / max(||x||_2, 1e-8)` over the last dimension.
pub fn l2_normalise(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2.0, [-1], true).clamp_min(NORM_EPS)
}

/// `L_c = mean_n [logsumexp_k(s_nk / tau) - max_k s_nk / tau]`.
///
/// # Shapes
/// `similarity`: `[N, K]` -> scalar (0 for `N = 0`).
pub fn contrastive_loss(similarity: &Tensor, temperature: f64) -> Tensor {
    if similarity.size()[0] == 0 {
        return zero_like(similarity);
    }
    let logits = similarity / temperature;
    (logits.logsumexp([1], false) - logits.amax([1], false)).mean(Kind::Float)
}

/// `L_u = log K + sum_k p_k log p_k` with `p = mean_n attention_n`.
///
/// # Shapes
/// `attention`: `[N, K]` -> scalar (0 for `N = 0`).
pub fn usage_loss(attention: &Tensor) -> Tensor {
    let size = attention.size();
    if size[0] == 0 {
        return zero_like(attention);
    }
    let p = attention.mean_dim(0, false, Kind::Float);
    (&p * p.clamp_min(PROB_EPS).log()).sum(Kind::Float) + (size[1] as f64).ln()
}

/// `L_r = mean_n max(0, max_k s_nk - margin)`.
///
/// # Shapes
/// `similarity`: `[N, K]` -> scalar (0 for `N = 0`).
pub fn repel_loss(similarity: &Tensor, margin: f64) -> Tensor {
    if similarity.size()[0] == 0 {
        return zero_like(similarity);
    }
    (similarity.amax([1], false) - margin)
        .relu()
        .mean(Kind::Float)
}

/// A zero scalar on `like`'s device that keeps the graph (so `backward` still works).
fn zero_like(like: &Tensor) -> Tensor {
    like.sum(Kind::Float) * 0.0
}

impl Memory for ContrastMemory {
    /// # Shapes
    /// `query`: `[N, dim]` -> `output` `[N, dim]` (Hopfield read of the normalised
    /// prototypes), `attention` `[N, slots]`, `distance` `[N]` (to the nearest prototype).
    fn read(&self, query: &Tensor, _train: bool) -> MemoryRead {
        let m = l2_normalise(&self.prototypes);
        let similarity = l2_normalise(query).matmul(&m.tr());
        let attention = (&similarity / self.cfg.temperature).softmax(1, Kind::Float);
        let distance = (-similarity.amax([1], false) + 1.0).clamp_min(0.0);
        MemoryRead {
            output: attention.matmul(&m),
            attention: Some(attention),
            distance: Some(distance),
        }
    }

    /// `contrast` (`contrast_weight * L_c`) and `usage` (`usage_weight * L_u`): see
    /// [`ContrastMemory::training_losses`] (`read` is not needed).
    fn losses(&self, query: &Tensor, _read: &MemoryRead) -> Vec<(String, Tensor)> {
        self.training_losses(query)
    }

    // No `update` (learned by gradient) and no `state` (everything is in the VarStore).
    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        match state.first() {
            None => Ok(()),
            Some((name, _)) => Err(CoreError::Invalid(format!(
                "the contrast memory keeps its prototypes in the VarStore and has no state, got `{name}`"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory(cfg: &ContrastMemoryConfig) -> (nn::VarStore, ContrastMemory) {
        let vs = nn::VarStore::new(Device::Cpu);
        let memory = ContrastMemory::new(&vs.root(), cfg).unwrap();
        (vs, memory)
    }

    /// Two unit prototypes `e0`, `e1` in 2D.
    fn axes(temperature: f64) -> (nn::VarStore, ContrastMemory) {
        let cfg = ContrastMemoryConfig {
            temperature,
            ..ContrastMemoryConfig::new(2, 2)
        };
        let (vs, memory) = memory(&cfg);
        let mut p = memory.prototypes().shallow_clone();
        tch::no_grad(|| p.copy_(&Tensor::from_slice(&[1.0f32, 0., 0., 1.]).reshape([2, 2])));
        (vs, memory)
    }

    fn values(t: &Tensor) -> Vec<f64> {
        Vec::try_from(t.reshape([-1]).to_kind(Kind::Double)).unwrap()
    }

    #[test]
    fn prototypes_are_one_named_trainable_variable() {
        let (vs, memory) = memory(&ContrastMemoryConfig::new(7, 5));
        let vars = vs.variables();
        assert_eq!(vars.keys().collect::<Vec<_>>(), ["prototypes"]);
        assert!(vars["prototypes"].requires_grad());
        assert_eq!(memory.prototypes().size(), [7, 5]);
        assert!(memory.prototypes().std(true).double_value(&[]) > 0.3);
    }

    #[test]
    fn nearest_distance_and_residual_by_hand() {
        let (_vs, memory) = axes(0.5);
        // q1 = (3, 4) / 5: cos 0.6 to e0, 0.8 to e1. q2 = (-2, 0): cos -1 to e0, 0 to e1.
        let q = Tensor::from_slice(&[3.0f32, 4.0, -2.0, 0.0]).reshape([2, 2]);
        let nearest = memory.nearest(&q);
        assert_eq!(Vec::<i64>::try_from(&nearest.index).unwrap(), [1, 1]);
        let d = values(&nearest.distance);
        assert!(
            (d[0] - 0.2).abs() < 1e-6 && (d[1] - 1.0).abs() < 1e-6,
            "{d:?}"
        );
        let r = values(&memory.residual(&q));
        let want = [0.6, 0.8 - 1.0, -1.0, -1.0];
        for (a, b) in r.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{r:?}");
        }
        // The read's distance is the same, its attention the softmax of cos / tau.
        let read = memory.read(&q, false);
        assert!(read
            .distance
            .unwrap()
            .allclose(&nearest.distance, 1e-6, 1e-6, false));
        let a = values(&read.attention.unwrap());
        let a0 = 1.0 / (1.0 + ((0.8f64 - 0.6) / 0.5).exp());
        assert!((a[0] - a0).abs() < 1e-6 && (a[1] - (1.0 - a0)).abs() < 1e-6);
        // Output = a M^ = (a0, 1 - a0) for the first query.
        let out = values(&read.output);
        assert!((out[0] - a0).abs() < 1e-6 && (out[1] - (1.0 - a0)).abs() < 1e-6);
    }

    #[test]
    fn contrastive_loss_by_hand() {
        // s = [[0.6, 0.8], [-1, 0]], tau = 0.5: logits [[1.2, 1.6], [-2, 0]].
        let s = Tensor::from_slice(&[0.6f32, 0.8, -1.0, 0.0]).reshape([2, 2]);
        let row = |a: f64, b: f64| (a.exp() + b.exp()).ln() - a.max(b);
        let want = (row(1.2, 1.6) + row(-2.0, 0.0)) / 2.0;
        let got = contrastive_loss(&s, 0.5).double_value(&[]);
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        // Equal to -mean log max softmax.
        let alt = -(s
            .g_div_scalar(0.5)
            .softmax(1, Kind::Float)
            .amax([1], false)
            .log())
        .mean(Kind::Float)
        .double_value(&[]);
        assert!((got - alt).abs() < 1e-6);
        // Sharper separation lowers it; a lower temperature with the same gap too.
        let sharp = Tensor::from_slice(&[0.0f32, 1.0, -1.0, 1.0]).reshape([2, 2]);
        assert!(contrastive_loss(&sharp, 0.5).double_value(&[]) < got);
        assert!(contrastive_loss(&s, 0.1).double_value(&[]) < got);
    }

    #[test]
    fn usage_is_zero_when_balanced_and_log_k_when_collapsed() {
        let balanced = Tensor::from_slice(&[1.0f32, 0., 0., 1.]).reshape([2, 2]);
        assert!(usage_loss(&balanced).double_value(&[]).abs() < 1e-7);
        let collapsed = Tensor::from_slice(&[1.0f32, 0., 0., 1.0, 0., 0.]).reshape([2, 3]);
        assert!((usage_loss(&collapsed).double_value(&[]) - 3f64.ln()).abs() < 1e-6);
        // p = (0.75, 0.25): log 2 + 0.75 log 0.75 + 0.25 log 0.25.
        let skewed = Tensor::from_slice(&[1.0f32, 0., 0.5, 0.5]).reshape([2, 2]);
        let want = 2f64.ln() + 0.75 * 0.75f64.ln() + 0.25 * 0.25f64.ln();
        assert!((usage_loss(&skewed).double_value(&[]) - want).abs() < 1e-6);
    }

    #[test]
    fn repel_is_a_hinge_on_the_best_similarity() {
        let s = Tensor::from_slice(&[0.9f32, 0.1, 0.2, 0.4, -0.5, -0.2]).reshape([3, 2]);
        // max per row: 0.9, 0.4, -0.2; margin 0.3: 0.6, 0.1, 0.
        let got = repel_loss(&s, 0.3).double_value(&[]);
        assert!((got - 0.7 / 3.0).abs() < 1e-6, "{got}");
        let (_vs, memory) = axes(0.5);
        let q = Tensor::from_slice(&[3.0f32, 4.0]).reshape([1, 2]);
        // Default margin 0.5, weight 1: 0.8 - 0.5.
        assert!((memory.repel(&q).double_value(&[]) - 0.3).abs() < 1e-6);
    }

    #[test]
    fn losses_are_weighted_and_empty_batches_give_zero() {
        let cfg = ContrastMemoryConfig {
            contrast_weight: 2.0,
            usage_weight: 3.0,
            temperature: 0.5,
            ..ContrastMemoryConfig::new(2, 2)
        };
        let (_vs, memory) = memory(&cfg);
        let mut p = memory.prototypes().shallow_clone();
        tch::no_grad(|| p.copy_(&Tensor::from_slice(&[1.0f32, 0., 0., 1.]).reshape([2, 2])));
        let q = Tensor::from_slice(&[3.0f32, 4.0, -2.0, 0.0]).reshape([2, 2]);
        let read = memory.read(&q, true);
        let terms = memory.losses(&q, &read);
        let names: Vec<&str> = terms.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["contrast", "usage"]);
        let s = memory.similarity(&q);
        let c = contrastive_loss(&s, 0.5).double_value(&[]);
        let u = usage_loss(read.attention.as_ref().unwrap()).double_value(&[]);
        assert!((terms[0].1.double_value(&[]) - 2.0 * c).abs() < 1e-6);
        assert!((terms[1].1.double_value(&[]) - 3.0 * u).abs() < 1e-6);

        let empty = Tensor::zeros([0, 2], (Kind::Float, Device::Cpu));
        let read = memory.read(&empty, true);
        for (name, t) in memory.losses(&empty, &read) {
            assert_eq!(t.double_value(&[]), 0.0, "{name}");
        }
        assert_eq!(memory.repel(&empty).double_value(&[]), 0.0);
    }

    #[test]
    fn a_zero_query_is_finite() {
        let (_vs, memory) = axes(0.1);
        let q = Tensor::zeros([1, 2], (Kind::Float, Device::Cpu));
        let read = memory.read(&q, false);
        assert_eq!(read.distance.unwrap().double_value(&[0]), 1.0);
        assert!(read.output.isfinite().all().int64_value(&[]) == 1);
    }

    #[test]
    fn parse_fills_defaults_and_names_bad_keys() {
        let section: toml::Value = toml::from_str("slots = 10\ndim = 4").unwrap();
        let cfg = ContrastMemoryConfig::parse(&section, "method.memory").unwrap();
        assert_eq!(cfg, ContrastMemoryConfig::new(10, 4));
        for (text, key) in [
            ("slots = 0\ndim = 4", "method.memory.slots"),
            ("slots = 2\ndim = 0", "method.memory.dim"),
            (
                "slots = 2\ndim = 4\ntemperature = 0.0",
                "method.memory.temperature",
            ),
            (
                "slots = 2\ndim = 4\nusage_weight = -1.0",
                "method.memory.usage_weight",
            ),
            (
                "slots = 2\ndim = 4\nanomaly_margin = 2.0",
                "method.memory.anomaly_margin",
            ),
        ] {
            let v: toml::Value = toml::from_str(text).unwrap();
            let err = ContrastMemoryConfig::parse(&v, "method.memory").unwrap_err();
            assert_eq!(err.path, key, "{text}");
        }
        let typo: toml::Value = toml::from_str("slots = 2\ndim = 4\ntemprature = 1.0").unwrap();
        let err = ContrastMemoryConfig::parse(&typo, "method.memory").unwrap_err();
        assert!(err.to_string().contains("temprature"), "{err}");
    }
}
