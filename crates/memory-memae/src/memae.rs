//! MemAE's memory: Gong, Liu, Le, Saha, Mansour, Venkatesh, van den Hengel, "Memorizing
//! Normality to Detect Anomaly: Memory-augmented Deep Autoencoder for Unsupervised Anomaly
//! Detection", ICCV 2019. Reference code: github.com/donggong1/memae-anomaly-detection
//! (`models/memory_module.py`, `models/entropy_loss.py`).
//!
//! Items `M` `[N, C]` are learned by gradient (a VarStore variable `weight`, initialised
//! `uniform(-1/sqrt(C), 1/sqrt(C))` as the official `reset_parameters`). For a query `z`
//! (one encoder position, `C` channels):
//!
//! - Addressing (Eq. 4-5): `w_i = exp(d(z, m_i)) / sum_j exp(d(z, m_j))`, with `d` the dot
//!   product `z m_i^T` (`addressing = "dot"`, the official code's `F.linear`, default) or
//!   the paper's cosine similarity `z m_i^T / (||z|| ||m_i||)` (`addressing = "cosine"`;
//!   norms clamped at 1e-8 as `torch.cosine_similarity`).
//! - Hard shrinkage (Eq. 7, the official ReLU form):
//!   `w'_i = max(w_i - lambda, 0) * w_i / (|w_i - lambda| + 1e-12)`, then the L1
//!   renormalisation `w' / max(||w'||_1, 1e-12)` (Sec. 3.3; `F.normalize(p=1)`).
//!   `lambda = shrink_threshold`; 0 disables both steps (as the official code).
//! - Read (Eq. 3): `z_hat = w' M`; [`MemoryRead::attention`] is `w'`, no distance.
//! - Entropy loss (Eq. 9-10): `E = mean_queries sum_i -w'_i log(w'_i + 1e-12)`, returned as
//!   the term `entropy` = `entropy_weight * E` (`alpha = 0.0002` in the paper).
//!
//! Cosine addressing and the threshold: a cosine lies in `[-1, 1]`, so the softmax keeps
//! every weight within a factor `e^2` of the others and near `1/N`: an item's weight is at
//! most `e^2 / (e^2 + N - 1)`, and about `e^(c_i) / N` while the items are spread as
//! initialised (`c_i` the item's cosine with the query). With `N = 2000` and the official
//! `lambda = 0.0025` (5/N; the paper suggests `[1/N, 3/N]`) every weight of every read falls
//! under `lambda` from the first step: the read is zero, no gradient reaches the items or the
//! encoder, and the decoder learns a constant (a test below; on Ped2 the training error
//! stays at 0.11 over two epochs, against 0.024 then 0.010 with `dot`; `docs/results.md`).
//! The dot product is unbounded and can concentrate the weights, which is presumably why the
//! official code uses it. The runner warns at the first step (the encoder and the items get
//! an all-zero gradient) and logs `reads that kept any item` after scoring.
//!
//! Deviations: none in the computation. A caller reproducing the official module puts the
//! memory at `vs.root() / "mem_rep" / "memory"`, so the item variable is
//! `mem_rep.memory.weight` as in the official checkpoints. The initial items are drawn on
//! the CPU from libtorch's global generator (seeded by the runner) and copied to the
//! VarStore's device, so a seed gives the same items on every device.
//!
//! Parity: `tests/golden.rs` against `tools/golden_memories.py` (plain torch, 1e-5).
//! The MemAE model and its table command come with the MemAE method, not this crate.
use memad_core::{parse_section, ConfigError, CoreError, Memory, MemoryRead, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

/// Added to `w'` inside the log of the entropy, and in the shrinkage denominator.
const EPS: f64 = 1e-12;
/// Norm clamp of the cosine addressing (`torch.cosine_similarity`'s default).
const COSINE_EPS: f64 = 1e-8;

/// The similarity `d(z, m_i)` inside the addressing softmax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Addressing {
    /// `z m_i^T`: the official code.
    Dot,
    /// `z m_i^T / (||z|| ||m_i||)`: the paper's Eq. 5.
    Cosine,
}

/// A MemAE memory section (`slots`, `dim`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemAeConfig {
    /// Number of items `N`.
    pub slots: i64,
    /// Item width `C`: the encoder's channels at the memory.
    pub dim: i64,
    /// Hard-shrinkage threshold `lambda` (official 0.0025, paper `[1/N, 3/N]`; 0 = off).
    #[serde(default = "d_shrink")]
    pub shrink_threshold: f64,
    #[serde(default = "d_addressing")]
    pub addressing: Addressing,
    /// Weight `alpha` of the entropy loss (0.0002 in the paper and the official code).
    #[serde(default = "d_entropy_weight")]
    pub entropy_weight: f64,
}

fn d_shrink() -> f64 {
    0.0025
}
fn d_addressing() -> Addressing {
    Addressing::Dot
}
fn d_entropy_weight() -> f64 {
    0.0002
}

impl MemAeConfig {
    /// UCSD-Ped2 video (paper Sec. 4.2: N = 2000; the official `MemDim` 2000,
    /// `ShrinkThres` 0.0025, `EntropyLossWeight` 0.0002), on the 256 channels of the
    /// official 3D-conv encoder (`models/memae_3dconv.py`).
    pub fn paper_ped2() -> Self {
        Self {
            slots: 2000,
            dim: 256,
            shrink_threshold: d_shrink(),
            addressing: Addressing::Dot,
            entropy_weight: d_entropy_weight(),
        }
    }

    /// MNIST (paper Sec. 4.1: N = 100), on the 64 channels of the paper's image encoder
    /// `Conv2(1,2,16)-Conv2(3,2,32)-Conv2(3,2,64)`.
    pub fn paper_mnist() -> Self {
        Self {
            slots: 100,
            dim: 64,
            ..Self::paper_ped2()
        }
    }

    /// CIFAR-10 (paper Sec. 4.1: N = 500), on the 256 channels of the paper's image encoder
    /// `Conv2(3,2,64)-Conv2(3,2,128)-Conv2(3,2,256)`.
    pub fn paper_cifar10() -> Self {
        Self {
            slots: 500,
            dim: 256,
            ..Self::paper_ped2()
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
        if !(0.0..1.0).contains(&self.shrink_threshold) {
            return Err(ConfigError::new(
                key("shrink_threshold"),
                format!("must be in [0, 1), got {}", self.shrink_threshold),
            ));
        }
        if !(self.entropy_weight >= 0.0 && self.entropy_weight.is_finite()) {
            return Err(ConfigError::new(
                key("entropy_weight"),
                format!("must be finite and >= 0, got {}", self.entropy_weight),
            ));
        }
        Ok(())
    }
}

/// MemAE's memory module: items learned by gradient, sparse addressing, entropy loss.
#[derive(Debug)]
pub struct MemAe {
    cfg: MemAeConfig,
    /// `[slots, dim]`, the VarStore variable `weight` under the given path.
    items: Tensor,
}

impl MemAe {
    /// Creates the items as the variable `weight` under `path`.
    pub fn new(path: &nn::Path, cfg: &MemAeConfig) -> Result<Self> {
        cfg.validate("memory")?;
        let bound = 1.0 / (cfg.dim as f64).sqrt();
        let init =
            Tensor::empty([cfg.slots, cfg.dim], (Kind::Float, Device::Cpu)).uniform_(-bound, bound);
        let items = path.var_copy("weight", &init);
        Ok(Self {
            cfg: cfg.clone(),
            items,
        })
    }

    pub fn config(&self) -> &MemAeConfig {
        &self.cfg
    }

    /// The items `M`, `[slots, dim]` (the VarStore variable itself).
    pub fn items(&self) -> &Tensor {
        &self.items
    }

    /// Addressing weights after shrinkage and renormalisation.
    ///
    /// # Shapes
    /// `query`: `[N, dim]` -> `[N, slots]`.
    pub fn address(&self, query: &Tensor) -> Tensor {
        let similarity = match self.cfg.addressing {
            Addressing::Dot => query.matmul(&self.items.tr()),
            Addressing::Cosine => {
                l2_normalise(query, COSINE_EPS).matmul(&l2_normalise(&self.items, COSINE_EPS).tr())
            }
        };
        let w = similarity.softmax(1, Kind::Float);
        let lambda = self.cfg.shrink_threshold;
        if lambda <= 0.0 {
            return w;
        }
        let shifted = &w - lambda;
        let shrunk = shifted.relu() * &w / (shifted.abs() + EPS);
        let l1 = shrunk
            .abs()
            .sum_dim_intlist(1, true, Kind::Float)
            .clamp_min(EPS);
        shrunk / l1
    }
}

/// `x / max(||x||_2, eps)` over the last dimension.
fn l2_normalise(x: &Tensor, eps: f64) -> Tensor {
    x / x.norm_scalaropt_dim(2.0, [-1], true).clamp_min(eps)
}

/// `mean_rows sum_i -w_i log(w_i + 1e-12)` (the official `EntropyLoss`).
///
/// # Shapes
/// `weights`: `[N, slots]` -> scalar.
pub fn entropy(weights: &Tensor) -> Tensor {
    -(weights * (weights + EPS).log())
        .sum_dim_intlist(1, false, Kind::Float)
        .mean(Kind::Float)
}

impl Memory for MemAe {
    /// # Shapes
    /// `query`: `[N, dim]` -> `output` `[N, dim]`, `attention` `[N, slots]`, no distance.
    fn read(&self, query: &Tensor, _train: bool) -> MemoryRead {
        let w = self.address(query);
        MemoryRead {
            output: w.matmul(&self.items),
            attention: Some(w),
            distance: None,
        }
    }

    /// `entropy`: `entropy_weight * E(w')`.
    fn losses(&self, query: &Tensor, read: &MemoryRead) -> Vec<(String, Tensor)> {
        let e = match &read.attention {
            Some(w) => entropy(w),
            None => entropy(&self.address(query)),
        };
        vec![("entropy".to_string(), e * self.cfg.entropy_weight)]
    }

    // No `update` (learned by gradient) and no `state` (everything is in the VarStore).
    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        match state.first() {
            None => Ok(()),
            Some((name, _)) => Err(CoreError::Invalid(format!(
                "memae keeps its items in the VarStore and has no state, got `{name}`"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory(cfg: &MemAeConfig) -> (nn::VarStore, MemAe) {
        let vs = nn::VarStore::new(Device::Cpu);
        let memory = MemAe::new(&vs.root(), cfg).unwrap();
        (vs, memory)
    }

    fn small(shrink_threshold: f64) -> MemAeConfig {
        MemAeConfig {
            slots: 4,
            dim: 3,
            shrink_threshold,
            addressing: Addressing::Dot,
            entropy_weight: 0.0002,
        }
    }

    fn set_items(memory: &MemAe, values: &[f32]) {
        let mut items = memory.items().shallow_clone();
        tch::no_grad(|| items.copy_(&Tensor::from_slice(values).reshape([4, 3])));
    }

    #[test]
    fn items_are_a_variable_named_weight_in_the_official_range() {
        let (vs, memory) = memory(&MemAeConfig::paper_mnist());
        let vars = vs.variables();
        assert_eq!(vars.keys().collect::<Vec<_>>(), ["weight"]);
        assert!(vars["weight"].requires_grad());
        assert_eq!(memory.items().size(), [100, 64]);
        let bound = 1.0 / 8.0;
        assert!(memory.items().abs().max().double_value(&[]) <= bound);
        // Spread over the range, not a constant.
        assert!(memory.items().std(true).double_value(&[]) > bound / 4.0);
    }

    #[test]
    fn shrinkage_zeroes_weights_below_the_threshold_and_renormalises() {
        let (_vs, memory) = memory(&small(0.2));
        // Query (1, 0, 0): logits are the items' first coordinates.
        set_items(
            &memory,
            &[2.0, 0., 0., 1.0, 0., 0., 0.0, 0., 0., -1.0, 0., 0.],
        );
        let w = memory.address(&Tensor::from_slice(&[1.0f32, 0., 0.]).reshape([1, 3]));
        let soft: Vec<f64> = [2.0f64, 1.0, 0.0, -1.0].iter().map(|x| x.exp()).collect();
        let z: f64 = soft.iter().sum();
        // softmax = [0.644, 0.237, 0.087, 0.032]: the last two fall below 0.2.
        assert!(soft[1] / z > 0.2 && soft[2] / z < 0.2);
        let w: Vec<f64> = Vec::try_from(w.reshape([4]).to_kind(Kind::Double)).unwrap();
        assert_eq!(&w[2..], &[0.0, 0.0]);
        // The kept weights keep their ratio (w * relu(w - l) / |w - l| = w for w > l).
        let ratio = soft[0] / soft[1];
        assert!((w[0] / w[1] - ratio).abs() < 1e-5, "{w:?}");
        assert!((w[0] + w[1] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn zero_threshold_is_plain_softmax_and_read_is_w_times_items() {
        let (_vs, memory) = memory(&small(0.0));
        set_items(&memory, &[1., 0., 0., 0., 1., 0., 0., 0., 1., 1., 1., 1.]);
        let query = Tensor::from_slice(&[0.5f32, -1.0, 2.0]).reshape([1, 3]);
        let read = memory.read(&query, false);
        let logits = [0.5f64, -1.0, 2.0, 1.5];
        let z: f64 = logits.iter().map(|x| x.exp()).sum();
        let w: Vec<f64> = logits.iter().map(|x| x.exp() / z).collect();
        let got: Vec<f64> =
            Vec::try_from(read.attention.unwrap().reshape([4]).to_kind(Kind::Double)).unwrap();
        for (a, b) in got.iter().zip(&w) {
            assert!((a - b).abs() < 1e-6);
        }
        let want = [w[0] + w[3], w[1] + w[3], w[2] + w[3]];
        let out: Vec<f64> = Vec::try_from(read.output.reshape([3]).to_kind(Kind::Double)).unwrap();
        for (a, b) in out.iter().zip(&want) {
            assert!((a - b).abs() < 1e-6);
        }
        assert!(read.distance.is_none());
    }

    #[test]
    fn cosine_addressing_ignores_the_query_norm() {
        let cfg = MemAeConfig {
            addressing: Addressing::Cosine,
            ..small(0.0)
        };
        let (_vs, memory) = memory(&cfg);
        let query = Tensor::from_slice(&[0.3f32, -0.2, 0.9]).reshape([1, 3]);
        let a = memory.address(&query);
        let b = memory.address(&(&query * 10.0));
        assert!(a.allclose(&b, 1e-6, 1e-6, false));
    }

    #[test]
    fn cosine_addressing_over_2000_items_under_the_official_threshold_reads_nothing() {
        tch::manual_seed(0);
        let paper = MemAeConfig {
            addressing: Addressing::Cosine,
            ..MemAeConfig::paper_ped2()
        };
        let (_vs, official) = memory(&paper);
        let query = Tensor::randn([64, 256], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let read = official.read(&query, true);
        let w = read.attention.as_ref().unwrap();
        assert_eq!(w.abs().sum(Kind::Float).double_value(&[]), 0.0);
        assert_eq!(read.output.abs().sum(Kind::Float).double_value(&[]), 0.0);
        read.output.sum(Kind::Float).backward();
        assert_eq!(query.grad().abs().sum(Kind::Float).double_value(&[]), 0.0);
        // At lambda = 1/N (the low end of the paper's range) about half the items are kept.
        let (_vs2, low) = memory(&MemAeConfig {
            shrink_threshold: 1.0 / 2000.0,
            ..paper
        });
        let kept = low
            .address(&query.detach())
            .gt(0.0)
            .sum(Kind::Float)
            .double_value(&[]);
        let per_read = kept / 64.0;
        assert!(per_read > 500.0 && per_read < 1500.0, "{per_read}");
    }

    #[test]
    fn entropy_term_is_weighted_mean_entropy() {
        // Uniform weights over 4 items: entropy ln 4 per row.
        let w = Tensor::full([2, 4], 0.25, (Kind::Float, Device::Cpu));
        assert!((entropy(&w).double_value(&[]) - 4f64.ln()).abs() < 1e-6);
        // A one-hot row has entropy 0 (the 1e-12 keeps log finite).
        let one_hot = Tensor::from_slice(&[0f32, 1., 0., 0.]).reshape([1, 4]);
        assert!(entropy(&one_hot).double_value(&[]).abs() < 1e-9);

        let (_vs, memory) = memory(&small(0.0));
        let query = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
        let read = memory.read(&query, true);
        let terms = memory.losses(&query, &read);
        assert_eq!(terms.len(), 1);
        assert_eq!(terms[0].0, "entropy");
        let want = 0.0002 * 4f64.ln(); // a zero query addresses uniformly
        assert!((terms[0].1.double_value(&[]) - want).abs() < 1e-9);
    }

    #[test]
    fn presets_follow_the_paper_and_validate() {
        for (cfg, slots) in [
            (MemAeConfig::paper_ped2(), 2000),
            (MemAeConfig::paper_mnist(), 100),
            (MemAeConfig::paper_cifar10(), 500),
        ] {
            assert_eq!(cfg.slots, slots);
            assert_eq!(cfg.shrink_threshold, 0.0025);
            assert_eq!(cfg.entropy_weight, 0.0002);
            assert_eq!(cfg.addressing, Addressing::Dot);
            cfg.validate("memory").unwrap();
        }
    }

    #[test]
    fn parse_fills_defaults_and_names_bad_keys() {
        let section: toml::Value = toml::from_str("slots = 10\ndim = 4").unwrap();
        let cfg = MemAeConfig::parse(&section, "method.memory").unwrap();
        assert_eq!(
            cfg,
            MemAeConfig {
                slots: 10,
                dim: 4,
                shrink_threshold: 0.0025,
                addressing: Addressing::Dot,
                entropy_weight: 0.0002,
            }
        );
        let cosine: toml::Value =
            toml::from_str("slots = 10\ndim = 4\naddressing = \"cosine\"").unwrap();
        assert_eq!(
            MemAeConfig::parse(&cosine, "m").unwrap().addressing,
            Addressing::Cosine
        );
        let typo: toml::Value = toml::from_str("slots = 10\ndim = 4\nshrink = 0.1").unwrap();
        let err = MemAeConfig::parse(&typo, "method.memory").unwrap_err();
        assert!(err.to_string().contains("shrink"), "{err}");
        let bad: toml::Value =
            toml::from_str("slots = 10\ndim = 4\nshrink_threshold = 1.5").unwrap();
        let err = MemAeConfig::parse(&bad, "method.memory").unwrap_err();
        assert_eq!(err.path, "method.memory.shrink_threshold");
    }

    #[test]
    fn load_state_rejects_foreign_state() {
        let (_vs, mut memory) = memory(&small(0.0));
        memory.load_state(&[]).unwrap();
        let foreign = [(
            "items".to_string(),
            Tensor::zeros([4, 3], (Kind::Float, Device::Cpu)),
        )];
        let e = memory.load_state(&foreign).unwrap_err().to_string();
        assert!(
            e.contains("memae keeps its items in the VarStore and has no state, got `items`"),
            "{e}"
        );
    }
}
