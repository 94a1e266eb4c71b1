//! MNAD's memory: Park, Noh, Ham, "Learning Memory-guided Normality for Anomaly Detection",
//! CVPR 2020. Reference code: github.com/cvlab-yonsei/MNAD
//! (`model/memory_final_spatial_sumonly_weight_ranking_top1.py`, `Train.py`).
//!
//! Items `p_m`, `m = 1..M` (`[M, C]`, 10 x 512 in the paper), are updated by rule, never by
//! gradient: they are held here and checkpointed through `state()` as `items`, not in a
//! VarStore. They start as L2-normalised rows of uniform `[0, 1)` values (as `Train.py`).
//! Queries `q^k` `[N, C]` are the encoder's per-position features, L2-normalised over `C`
//! here (`x / max(||x||, 1e-12)`, as `F.normalize`).
//!
//! - Read (Eq. 1-2): `S = q p^T` `[N, M]`, `w^{k,m} = softmax_m(S)` (over items),
//!   `p_hat^k = sum_m w^{k,m} p_m`. The method concatenates `(q^k, p_hat^k)` itself.
//!   [`MemoryRead::output`] = `p_hat`, `attention` = `w`, `distance` = `||q^k - p_nearest||^2`
//!   (the nearest item by `S`), MNAD's feature compactness score per query.
//! - Losses (Eq. 8-10), with the nearest item `p_p` and the second nearest `p_n`, detached:
//!   `compactness = mean_{k,c} (q^k - p_p)^2` (`nn.MSELoss`: the squared distance divided by
//!   `C`) and `separateness = mean_k max(||q^k - p_p|| - ||q^k - p_n|| + 1, 0)`
//!   (`nn.TripletMarginLoss(margin=1)`, Euclidean with torch's 1e-6 inside the norm),
//!   returned as `compactness` and `separateness` times their weights.
//! - Update (Eq. 3-5, the official `get_update_query`): `v^{k,m} = softmax_k(S)` (over
//!   queries); for every item `m` with a non-empty set `U^m` of queries nearest to it,
//!   `p_m <- L2normalise(p_m + sum_{k in U^m} (v^{k,m} / max_{k'} v^{k',m}) q^k)`, the max
//!   over all queries as the official code. Items without queries stay unchanged.
//!
//! Deviations:
//! - As the official `read`, the weights in `p_hat` are detached and the items carry no
//!   gradient, so `p_hat` has no gradient; the encoder learns through the `q` half of the
//!   concatenation and the losses (the conformance suite's gradient check does not apply:
//!   nothing here is learned by gradient).
//! - Update weights are divided by the maximum of `v^{k',m}` over all queries, as the
//!   official `get_update_query`; the paper's Eq. 5 takes it over `U^m`, the queries nearest
//!   to item `m`, only (cvlab-yonsei/MNAD PR #4). The updated item is L2-normalised either
//!   way, so the two differ in how much `p_m` itself weighs against its queries.
//! - The official code re-normalises every row in the update; here rows without queries
//!   are left untouched (they are unit vectors already; the two differ by float rounding).
//! - `distance` is the sum of squares over `C`; the official test-time score uses the mean
//!   (`MSELoss`), `C` times smaller: the same after MNAD's per-video min-max normalisation.
//! - Initial items are drawn on the CPU from libtorch's global generator (seeded by the
//!   runner) and moved to the device, so a seed gives the same items on every device.
//!
//! Parity: `tests/golden.rs` against `tools/golden_memories.py` (plain torch, 1e-5).
use memad_core::{parse_section, ConfigError, CoreError, Memory, MemoryRead, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Reduction, Tensor};

/// `F.normalize`'s clamp of the norm.
const NORM_EPS: f64 = 1e-12;
/// `nn.TripletMarginLoss` defaults: margin 1, p 2, eps 1e-6.
const MARGIN: f64 = 1.0;
const TRIPLET_EPS: f64 = 1e-6;
/// The name of the items in `state()`.
pub const ITEMS: &str = "items";

/// An MNAD memory section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MnadMemoryConfig {
    /// Number of items `M` (10 in the paper). At least 2: separateness needs a second item.
    #[serde(default = "d_slots")]
    pub slots: i64,
    /// Item width `C` (512: the encoder's channels).
    #[serde(default = "d_dim")]
    pub dim: i64,
    /// `lambda_c` of the compactness loss.
    #[serde(default = "d_pred_weight")]
    pub compactness_weight: f64,
    /// `lambda_s` of the separateness loss.
    #[serde(default = "d_pred_weight")]
    pub separateness_weight: f64,
}

fn d_slots() -> i64 {
    10
}
fn d_dim() -> i64 {
    512
}
fn d_pred_weight() -> f64 {
    0.1
}

impl MnadMemoryConfig {
    /// Future-frame prediction (paper Sec. 4.1: M = 10 items of C = 512; `Train.py`'s
    /// `--loss_compact 0.1 --loss_separate 0.1`, the defaults of its `--method pred`).
    pub fn paper_pred() -> Self {
        Self {
            slots: d_slots(),
            dim: d_dim(),
            compactness_weight: 0.1,
            separateness_weight: 0.1,
        }
    }

    /// Reconstruction (paper Sec. 4.1; `Train.py` of the reconstruction release:
    /// `--loss_compact 0.01 --loss_separate 0.01`).
    pub fn paper_recon() -> Self {
        Self {
            compactness_weight: 0.01,
            separateness_weight: 0.01,
            ..Self::paper_pred()
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
        if self.slots < 2 {
            return Err(ConfigError::new(
                key("slots"),
                "must be at least 2 (separateness needs a second-nearest item)",
            ));
        }
        if self.dim < 1 {
            return Err(ConfigError::new(key("dim"), "must be at least 1"));
        }
        for (name, w) in [
            ("compactness_weight", self.compactness_weight),
            ("separateness_weight", self.separateness_weight),
        ] {
            if !(w >= 0.0 && w.is_finite()) {
                return Err(ConfigError::new(
                    key(name),
                    format!("must be finite and >= 0, got {w}"),
                ));
            }
        }
        Ok(())
    }
}

/// MNAD's memory: items updated by rule, read by softmax attention.
#[derive(Debug)]
pub struct MnadMemory {
    cfg: MnadMemoryConfig,
    /// `[slots, dim]`, unit rows, no gradient.
    items: Tensor,
}

impl MnadMemory {
    /// Draws the initial items (L2-normalised uniform rows) on `device`.
    pub fn new(cfg: &MnadMemoryConfig, device: Device) -> Result<Self> {
        cfg.validate("memory")?;
        let uniform = Tensor::rand([cfg.slots, cfg.dim], (Kind::Float, Device::Cpu));
        Ok(Self {
            cfg: cfg.clone(),
            items: l2_normalise(&uniform).to_device(device),
        })
    }

    pub fn config(&self) -> &MnadMemoryConfig {
        &self.cfg
    }

    /// The items `[slots, dim]`.
    pub fn items(&self) -> &Tensor {
        &self.items
    }

    /// Normalised queries and their similarities to the items.
    ///
    /// # Shapes
    /// `query`: `[N, dim]` -> (`q` `[N, dim]`, `S` `[N, slots]`).
    fn scores(&self, query: &Tensor) -> (Tensor, Tensor) {
        let q = l2_normalise(query);
        let s = q.matmul(&self.items.tr());
        (q, s)
    }
}

/// `x / max(||x||_2, 1e-12)` over the rows.
fn l2_normalise(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2.0, [1], true).clamp_min(NORM_EPS)
}

impl Memory for MnadMemory {
    /// # Shapes
    /// `query`: `[N, dim]` (raw features; normalised here) -> `output` `[N, dim]`,
    /// `attention` `[N, slots]`, `distance` `[N]`.
    fn read(&self, query: &Tensor, _train: bool) -> MemoryRead {
        let (q, s) = self.scores(query);
        let weights = s.softmax(1, Kind::Float);
        let output = weights.detach().matmul(&self.items);
        let nearest = self.items.index_select(0, &s.argmax(1, false));
        let distance = (&q - nearest)
            .square()
            .sum_dim_intlist(1, false, Kind::Float);
        MemoryRead {
            output,
            attention: Some(weights),
            distance: Some(distance),
        }
    }

    /// `compactness` and `separateness`, each times its weight.
    fn losses(&self, query: &Tensor, _read: &MemoryRead) -> Vec<(String, Tensor)> {
        let (q, s) = self.scores(query);
        let (_, top2) = s.topk(2, 1, true, true);
        let items = self.items.detach();
        let positive = items.index_select(0, &top2.select(1, 0));
        let negative = items.index_select(0, &top2.select(1, 1));
        let compactness = q.mse_loss(&positive, Reduction::Mean);
        let separateness = Tensor::triplet_margin_loss(
            &q,
            &positive,
            &negative,
            MARGIN,
            2.0,
            TRIPLET_EPS,
            false,
            Reduction::Mean,
        );
        vec![
            (
                "compactness".to_string(),
                compactness * self.cfg.compactness_weight,
            ),
            (
                "separateness".to_string(),
                separateness * self.cfg.separateness_weight,
            ),
        ]
    }

    /// Moves each item towards its nearest queries (Eq. 3-5), detached.
    ///
    /// # Shapes
    /// `query`: `[N, dim]`, the queries of the step just taken.
    fn update(&mut self, query: &Tensor) -> Result<()> {
        let size = query.size();
        if size.len() != 2 || size[1] != self.cfg.dim {
            return Err(CoreError::Invalid(format!(
                "mnad memory update: queries must be [N, {}], got {size:?}",
                self.cfg.dim
            )));
        }
        let items = tch::no_grad(|| {
            let (q, s) = self.scores(&query.detach().to_kind(Kind::Float));
            let v = s.softmax(0, Kind::Float); // over queries
            let scaled = &v / v.amax([0], true);
            let nearest = s
                .argmax(1, false)
                .one_hot(self.cfg.slots)
                .to_kind(Kind::Float); // [N, M]
            let update = (scaled * &nearest).tr().matmul(&q); // [M, C]
            let has_query = nearest
                .sum_dim_intlist(0, false, Kind::Float)
                .gt(0.0)
                .unsqueeze(1);
            l2_normalise(&(&self.items + update)).where_self(&has_query, &self.items)
        });
        self.items = items;
        Ok(())
    }

    /// `items` `[slots, dim]`.
    fn state(&self) -> Vec<(String, Tensor)> {
        vec![(ITEMS.to_string(), self.items.copy())]
    }

    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        if let Some((name, _)) = state.iter().find(|(n, _)| n != ITEMS) {
            return Err(CoreError::Invalid(format!(
                "mnad memory state has `{name}`; it holds only `{ITEMS}`"
            )));
        }
        let (_, items) = state
            .iter()
            .find(|(n, _)| n == ITEMS)
            .ok_or_else(|| CoreError::Invalid(format!("mnad memory state lacks `{ITEMS}`")))?;
        let want = [self.cfg.slots, self.cfg.dim];
        if items.size() != want {
            return Err(CoreError::Invalid(format!(
                "mnad memory `{ITEMS}` must be {want:?}, got {:?}",
                items.size()
            )));
        }
        self.items = items
            .detach()
            .to_kind(Kind::Float)
            .to_device(self.items.device())
            .copy();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> MnadMemoryConfig {
        MnadMemoryConfig {
            slots: 3,
            dim: 2,
            compactness_weight: 1.0,
            separateness_weight: 1.0,
        }
    }

    /// A memory with the given items `[3, 2]`.
    fn with_items(values: &[f32]) -> MnadMemory {
        let mut memory = MnadMemory::new(&small(), Device::Cpu).unwrap();
        let items = Tensor::from_slice(values).reshape([3, 2]);
        memory.load_state(&[(ITEMS.to_string(), items)]).unwrap();
        memory
    }

    fn values(t: &Tensor) -> Vec<f64> {
        Vec::try_from(t.reshape([-1]).to_kind(Kind::Double)).unwrap()
    }

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
    }

    #[test]
    fn initial_items_are_unit_rows_of_positive_values_outside_any_varstore() {
        let memory = MnadMemory::new(&MnadMemoryConfig::paper_pred(), Device::Cpu).unwrap();
        let items = memory.items();
        assert_eq!(items.size(), [10, 512]);
        assert!(!items.requires_grad());
        let norms = values(&items.norm_scalaropt_dim(2.0, [1], false));
        assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-5), "{norms:?}");
        assert!(items.min().double_value(&[]) >= 0.0);
    }

    #[test]
    fn read_normalises_queries_and_reports_the_nearest_distance() {
        // Items: e_x, e_y, -e_x. Query (3, 0) normalises to e_x.
        let memory = with_items(&[1., 0., 0., 1., -1., 0.]);
        let read = memory.read(&Tensor::from_slice(&[3f32, 0.]).reshape([1, 2]), false);
        let z = 1f64.exp() + 1.0 + (-1f64).exp();
        let w = [1f64.exp() / z, 1.0 / z, (-1f64).exp() / z];
        assert!(close(&values(read.attention.as_ref().unwrap()), &w));
        assert!(close(&values(&read.output), &[w[0] - w[2], w[1]]));
        assert!(close(&values(read.distance.as_ref().unwrap()), &[0.0]));
        // Query (0, -2) -> -e_y: nearest are e_x and -e_x (tie at 0), distance 2.
        let read = memory.read(&Tensor::from_slice(&[0f32, -2.]).reshape([1, 2]), false);
        assert!(close(&values(read.distance.as_ref().unwrap()), &[2.0]));
    }

    #[test]
    fn read_output_carries_no_gradient_as_the_official_code() {
        let memory = with_items(&[1., 0., 0., 1., -1., 0.]);
        let query = Tensor::from_slice(&[0.3f32, 0.4])
            .reshape([1, 2])
            .set_requires_grad(true);
        let read = memory.read(&query, true);
        assert!(!read.output.requires_grad());
        assert!(read.attention.unwrap().requires_grad());
    }

    #[test]
    fn losses_use_the_nearest_and_second_nearest_items() {
        let memory = with_items(&[1., 0., 0., 1., -1., 0.]);
        // q = (0.6, 0.8): nearest e_y (0.8), second e_x (0.6).
        let query = Tensor::from_slice(&[0.6f32, 0.8]).reshape([1, 2]);
        let read = memory.read(&query, true);
        let terms = memory.losses(&query, &read);
        let names: Vec<&str> = terms.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["compactness", "separateness"]);
        // MSE to e_y: ((0.6)^2 + (0.2)^2) / 2 = 0.2.
        assert!((terms[0].1.double_value(&[]) - 0.2).abs() < 1e-6);
        // ||q - e_y|| = sqrt(0.4), ||q - e_x|| = sqrt(0.8): relu(0.632 - 0.894 + 1).
        let want = 0.4f64.sqrt() - 0.8f64.sqrt() + 1.0;
        assert!((terms[1].1.double_value(&[]) - want).abs() < 1e-5);

        let weighted = MnadMemory {
            cfg: MnadMemoryConfig {
                compactness_weight: 0.1,
                separateness_weight: 0.01,
                ..small()
            },
            items: memory.items().copy(),
        };
        let terms = weighted.losses(&query, &read);
        assert!((terms[0].1.double_value(&[]) - 0.02).abs() < 1e-7);
        assert!((terms[1].1.double_value(&[]) - 0.01 * want).abs() < 1e-7);
    }

    #[test]
    fn update_moves_items_with_queries_and_keeps_the_others_exactly() {
        let mut memory = with_items(&[1., 0., 0., 1., -1., 0.]);
        let before = memory.items().copy();
        // Two queries near e_x, none near e_y or -e_x.
        let queries = Tensor::from_slice(&[1f32, 0.2, 1., -0.1]).reshape([2, 2]);
        memory.update(&queries).unwrap();
        let after = memory.items();
        assert!(after.get(1).equal(&before.get(1)));
        assert!(after.get(2).equal(&before.get(2)));

        // By hand: q normalised, v = softmax over the two queries of their e_x scores.
        let q: Vec<[f64; 2]> = [[1.0f64, 0.2], [1.0, -0.1]]
            .iter()
            .map(|[a, b]| {
                let n = (a * a + b * b).sqrt();
                [a / n, b / n]
            })
            .collect();
        let (e0, e1) = (q[0][0].exp(), q[1][0].exp());
        let (v0, v1) = (e0 / (e0 + e1), e1 / (e0 + e1));
        let max = v0.max(v1);
        let moved = [
            1.0 + v0 / max * q[0][0] + v1 / max * q[1][0],
            v0 / max * q[0][1] + v1 / max * q[1][1],
        ];
        let n = (moved[0] * moved[0] + moved[1] * moved[1]).sqrt();
        assert!(close(&values(&after.get(0)), &[moved[0] / n, moved[1] / n]));
        assert!(!after.requires_grad());
    }

    #[test]
    fn update_rejects_queries_of_the_wrong_width() {
        let mut memory = with_items(&[1., 0., 0., 1., -1., 0.]);
        let bad = Tensor::zeros([4, 3], (Kind::Float, Device::Cpu));
        let e = memory.update(&bad).unwrap_err().to_string();
        assert!(
            e.contains("mnad memory update: queries must be [N, 2], got [4, 3]"),
            "{e}"
        );
    }

    #[test]
    fn load_state_checks_names_and_shapes() {
        let mut memory = MnadMemory::new(&small(), Device::Cpu).unwrap();
        let good = Tensor::zeros([3, 2], (Kind::Float, Device::Cpu));
        let e = memory.load_state(&[]).unwrap_err().to_string();
        assert!(e.contains("mnad memory state lacks `items`"), "{e}");
        let e = memory
            .load_state(&[("keys".to_string(), good.copy())])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mnad memory state has `keys`; it holds only `items`"),
            "{e}"
        );
        let e = memory
            .load_state(&[(
                ITEMS.to_string(),
                Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)),
            )])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mnad memory `items` must be [3, 2], got [2, 3]"),
            "{e}"
        );
        memory.load_state(&[(ITEMS.to_string(), good)]).unwrap();
        assert_eq!(
            memory.state()[0].1.abs().sum(Kind::Float).double_value(&[]),
            0.0
        );
    }

    #[test]
    fn presets_and_parse() {
        let pred = MnadMemoryConfig::paper_pred();
        assert_eq!((pred.slots, pred.dim), (10, 512));
        assert_eq!(
            (pred.compactness_weight, pred.separateness_weight),
            (0.1, 0.1)
        );
        let recon = MnadMemoryConfig::paper_recon();
        assert_eq!((recon.slots, recon.dim), (10, 512));
        assert_eq!(
            (recon.compactness_weight, recon.separateness_weight),
            (0.01, 0.01)
        );

        let empty = toml::Value::Table(Default::default());
        assert_eq!(MnadMemoryConfig::parse(&empty, "m").unwrap(), pred);
        let typo: toml::Value = toml::from_str("slot = 10").unwrap();
        assert!(MnadMemoryConfig::parse(&typo, "m")
            .unwrap_err()
            .to_string()
            .contains("slot"));
        let one: toml::Value = toml::from_str("slots = 1").unwrap();
        assert_eq!(
            MnadMemoryConfig::parse(&one, "m.memory").unwrap_err().path,
            "m.memory.slots"
        );
    }
}
