//! The class-aware memory module (CMM) of MDD-Net: Xing et al., "Memory-Augmented
//! Dual-Decoder Networks for Multi-Class Unsupervised Anomaly Detection", arXiv 2504.14884.
//!
//! The paper gives the CMM in outline (class-specific normal prototypes, read by attention,
//! fused into the restoration path, kept apart across classes by a class-discriminative
//! loss). These are the exact choices made here, every one configurable or stated:
//!
//! - Items: `P = {p_{c,m}}`, `c = 1..C` classes (the categories a model is trained on; 1
//!   in the one-class setting), `m = 1..M` items per class (`items_per_class`), each
//!   `[D]` (the bottleneck's channels), held as one VarStore variable `items` `[C * M, D]`
//!   (row `c * M + m`), learned by gradient. The paper does not say how they start. By
//!   default (`init = "features"`) each class's items are set to `M` of its own normal
//!   features, drawn at random positions of the first training batch that holds at least
//!   `M` positions of the class ([`ClassMemory::seed_from_features`]; which classes are set
//!   is the non-trainable variable `seeded` `[C]`, so a checkpoint or a resumed run keeps
//!   it; until then the class reads its `N(0, 1)` start). `init = "random"` keeps the
//!   `N(0, 1)` start: items far from every feature let the first item a class's features
//!   near win every read, so the synthetic-mvtec runs address one or two of 10 items per
//!   class (about 6 with `features`). With DRAEM's blend inverted (before 2026-12-06)
//!   MDD-Net's image AUROC was lower and wider spread with random items at 10, 30 and 60
//!   epochs; with the official blend random items lead at 30 epochs and trail at 10 and 60
//!   (`docs/results.md`, "The ablations, sweeps and training lengths with DRAEM's official
//!   blend"): `features` stays the default as the start that uses the memory.
//! - Similarity: cosine, `s_{c,m}(q) = <q, p_{c,m}> / (||q|| ||p_{c,m}||)` (norms clamped at
//!   1e-12).
//! - Read restricted to a class `c` ([`ClassMemory::read_class`]):
//!   `w_m = softmax_m(s_{c,m}(q) / tau)` over the `M` items of `c` (`temperature` tau),
//!   `r(q) = sum_m w_m p_{c,m}`; `attention` is `[N, C * M]` with zeros outside `c`,
//!   `distance = 1 - max_m s_{c,m}(q)`.
//! - Class logits of a sample whose bottleneck has `L` positions `q_1..q_L`
//!   ([`ClassMemory::class_logits`]): `z_c = (1/L) sum_l max_m s_{c,m}(q_l) / tau`; the
//!   predicted class is `argmax_c z_c`.
//! - Losses given the class `y` of each sample ([`ClassMemory::class_losses`]):
//!   `classification = lambda_cls * CE(z, y)` (keeps the prototypes of different classes
//!   apart: a sample's features must be nearer its own class's items than any other's) and
//!   `compactness = lambda_com * mean_l (1 - max_m s_{y,m}(q_l))` (every normal feature near
//!   one of its class's items).
//! - The [`Memory`] trait has no labels: its `read` gives each query the class it is nearest
//!   to (`argmax_c max_m s_{c,m}(q)`) and reads from it; its `losses` is the class-agnostic
//!   compactness `lambda_com * mean (1 - max_{c,m} s_{c,m}(q))`.
//!
//! How the read is fused into the decoder's input is the method's choice (MDD-Net:
//! `crates/memad-methods/src/mddnet.rs`).
use memad_core::{parse_section, ConfigError, CoreError, Memory, MemoryRead, Result};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use tch::{nn, Device, Kind, Tensor};

/// Clamp of the norms in the cosine similarity.
const NORM_EPS: f64 = 1e-12;

/// The `[method.memory]` section of MDD-Net.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassMemoryConfig {
    /// Items per class `M`.
    #[serde(default = "d_items")]
    pub items_per_class: i64,
    /// Softmax temperature `tau` of the addressing and of the class logits.
    #[serde(default = "d_temperature")]
    pub temperature: f64,
    /// `lambda_cls` of the class-discriminative cross-entropy.
    #[serde(default = "d_weight")]
    pub classification_weight: f64,
    /// `lambda_com` of the compactness term.
    #[serde(default = "d_weight")]
    pub compactness_weight: f64,
    /// How the items start.
    #[serde(default)]
    pub init: ItemInit,
}

/// How the items of a [`ClassMemory`] start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemInit {
    /// `N(0, 1)`.
    Random,
    /// `M` normal features of the class, from its first training batch
    /// ([`ClassMemory::seed_from_features`]).
    #[default]
    Features,
}

fn d_items() -> i64 {
    10
}
fn d_temperature() -> f64 {
    0.1
}
fn d_weight() -> f64 {
    1.0
}

impl Default for ClassMemoryConfig {
    fn default() -> Self {
        Self {
            items_per_class: d_items(),
            temperature: d_temperature(),
            classification_weight: d_weight(),
            compactness_weight: d_weight(),
            init: ItemInit::default(),
        }
    }
}

impl ClassMemoryConfig {
    /// Parses and validates a section found at `path` (for errors).
    pub fn parse(section: &toml::Value, path: &str) -> std::result::Result<Self, ConfigError> {
        let cfg: Self = parse_section(section, path)?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Checks the values; `path` names the section in errors.
    pub fn validate(&self, path: &str) -> std::result::Result<(), ConfigError> {
        let key = |k: &str| format!("{path}.{k}");
        if self.items_per_class < 1 {
            return Err(ConfigError::new(
                key("items_per_class"),
                "must be at least 1",
            ));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(ConfigError::new(
                key("temperature"),
                format!("must be finite and > 0, got {}", self.temperature),
            ));
        }
        for (name, w) in [
            ("classification_weight", self.classification_weight),
            ("compactness_weight", self.compactness_weight),
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

/// Per-class prototypes learned by gradient.
#[derive(Debug)]
pub struct ClassMemory {
    cfg: ClassMemoryConfig,
    classes: i64,
    /// `[classes * items_per_class, dim]`.
    items: Tensor,
    /// [`ItemInit::Features`]: `[classes]`, 1 for a class whose items are set.
    seeded: Option<Tensor>,
    /// Every class seeded (known on the host, so that a training step does not read
    /// `seeded` back from the device once all are).
    all_seeded: Cell<bool>,
}

impl ClassMemory {
    /// A memory of `classes` groups of `cfg.items_per_class` items of width `dim`, its
    /// variable `items` (and with `init = "features"` `seeded`) under `path`.
    pub fn new(path: &nn::Path, cfg: &ClassMemoryConfig, classes: usize, dim: i64) -> Result<Self> {
        cfg.validate("memory")?;
        if classes == 0 || dim < 1 {
            return Err(CoreError::Invalid(format!(
                "class memory: needs at least one class and dim >= 1, got {classes} and {dim}"
            )));
        }
        let classes = classes as i64;
        let items = path.var(
            "items",
            &[classes * cfg.items_per_class, dim],
            nn::Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            },
        );
        let seeded =
            (cfg.init == ItemInit::Features).then(|| path.zeros_no_train("seeded", &[classes]));
        Ok(Self {
            cfg: cfg.clone(),
            classes,
            items,
            all_seeded: Cell::new(seeded.is_none()),
            seeded,
        })
    }

    /// Whether [`ClassMemory::seed_from_features`] still has a class to set.
    pub fn needs_seeding(&self) -> bool {
        if self.all_seeded.get() {
            return false;
        }
        let done = self
            .seeded
            .as_ref()
            .is_none_or(|s| s.min().double_value(&[]) > 0.5);
        self.all_seeded.set(done);
        !done
    }

    /// [`ItemInit::Features`]: sets the items of every class not set yet to `M` of the
    /// `queries` `[B, L, D]` of its samples (`class` `[B]` int64), drawn without replacement
    /// from the class's `B_c * L` positions (libtorch's generator); a class with fewer than
    /// `M` positions in the batch waits for a later one. Nothing with [`ItemInit::Random`].
    pub fn seed_from_features(&self, queries: &Tensor, class: &Tensor) {
        let Some(seeded) = &self.seeded else {
            return;
        };
        if !self.needs_seeding() {
            return;
        }
        let m = self.cfg.items_per_class;
        let (l, d) = (queries.size()[1], queries.size()[2]);
        let device = queries.device();
        tch::no_grad(|| {
            let flags = Vec::<f32>::try_from(seeded.to(Device::Cpu)).expect("float flags");
            let labels = Vec::<i64>::try_from(class.to(Device::Cpu)).expect("int64 classes");
            for (c, flag) in flags.iter().enumerate() {
                let rows: Vec<i64> = (0..labels.len() as i64)
                    .filter(|&i| labels[i as usize] == c as i64)
                    .collect();
                if *flag > 0.5 || (rows.len() as i64) * l < m {
                    continue;
                }
                let features = queries
                    .index_select(0, &Tensor::from_slice(&rows).to(device))
                    .reshape([-1, d]);
                let pick =
                    Tensor::randperm(features.size()[0], (Kind::Int64, device)).narrow(0, 0, m);
                let c = c as i64;
                self.items
                    .narrow(0, c * m, m)
                    .copy_(&features.index_select(0, &pick).to_kind(self.items.kind()));
                let _ = seeded.narrow(0, c, 1).fill_(1.0);
            }
        });
    }

    pub fn config(&self) -> &ClassMemoryConfig {
        &self.cfg
    }

    pub fn classes(&self) -> i64 {
        self.classes
    }

    /// `[classes * items_per_class, dim]`.
    pub fn items(&self) -> &Tensor {
        &self.items
    }

    /// `query` `[N, D]` -> `[N, C, M]` cosine similarities to every item.
    fn similarity(&self, query: &Tensor) -> Tensor {
        let q = normalize(query);
        let p = normalize(&self.items);
        q.matmul(&p.tr())
            .view([-1, self.classes, self.cfg.items_per_class])
    }

    /// `query` `[N, D]` -> `[N]` int64: the class each query is nearest to.
    pub fn nearest_class(&self, query: &Tensor) -> Tensor {
        self.similarity(query)
            .amax([2].as_slice(), false)
            .argmax(1, false)
    }

    /// `query` `[N, D]`, `class` `[N]` -> the cosine similarities to the class's items
    /// `[N, M]` and the gather index into `[N, C, M]` they came from.
    fn own_similarity(&self, query: &Tensor, class: &Tensor) -> (Tensor, Tensor) {
        let n = query.size()[0];
        let index = class
            .view([n, 1, 1])
            .expand([n, 1, self.cfg.items_per_class], false);
        let own = self
            .similarity(query)
            .gather(1, &index, false)
            .squeeze_dim(1);
        (own, index)
    }

    /// `r = sum_m softmax_m(s_{c,m} / tau) p_{c,m}` from the class's `[N, M]` similarities.
    fn read_items(&self, own: &Tensor, class: &Tensor) -> (Tensor, Tensor) {
        let weights = (own / self.cfg.temperature).softmax(1, Kind::Float);
        let own_items = self
            .items
            .view([self.classes, self.cfg.items_per_class, -1])
            .index_select(0, class); // [N, M, D]
        let output = weights.unsqueeze(1).bmm(&own_items).squeeze_dim(1);
        (output, weights)
    }

    /// The read `r` `[N, D]` of `query` `[N, D]` from the items of `class` `[N]` (int64) only:
    /// [`ClassMemory::read_class`]'s `output` without the attention and distance.
    pub fn read_output(&self, query: &Tensor, class: &Tensor) -> Tensor {
        let (own, _) = self.own_similarity(query, class);
        self.read_items(&own, class).0
    }

    /// Reads `query` `[N, D]` from the items of `class` `[N]` (int64) only.
    pub fn read_class(&self, query: &Tensor, class: &Tensor) -> MemoryRead {
        let n = query.size()[0];
        let m = self.cfg.items_per_class;
        let (own, index) = self.own_similarity(query, class);
        let (output, weights) = self.read_items(&own, class);
        let attention = Tensor::zeros([n, self.classes, m], (Kind::Float, query.device()))
            .scatter(1, &index, &weights.unsqueeze(1))
            .view([n, self.classes * m]);
        MemoryRead {
            output,
            attention: Some(attention),
            distance: Some(own_distance(&own)),
        }
    }

    /// `queries` `[B, L, D]` (the `L` positions of each sample) -> `[B, C]` class logits
    /// `z_c = mean_l max_m s_{c,m}(q_l) / tau`.
    pub fn class_logits(&self, queries: &Tensor) -> Tensor {
        let size = queries.size();
        let (b, l) = (size[0], size[1]);
        self.similarity(&queries.reshape([b * l, -1]))
            .amax([2].as_slice(), false)
            .view([b, l, self.classes])
            .mean_dim([1].as_slice(), false, Kind::Float)
            / self.cfg.temperature
    }

    /// The class-aware losses, already weighted: `classification` (cross-entropy of
    /// [`ClassMemory::class_logits`] against `class` `[B]`) and `compactness` (one minus the
    /// cosine of each of the `L` features of `queries` `[B, L, D]` to the nearest item of its
    /// class). With one class the cross-entropy is identically 0 and left out.
    pub fn class_losses(&self, queries: &Tensor, class: &Tensor) -> Vec<(String, Tensor)> {
        let size = queries.size();
        let (b, l) = (size[0], size[1]);
        let mut terms = Vec::new();
        if self.classes > 1 {
            let ce = self.class_logits(queries).cross_entropy_for_logits(class);
            terms.push((
                "classification".to_string(),
                ce * self.cfg.classification_weight,
            ));
        }
        let per_query_class = class.view([b, 1]).expand([b, l], false).reshape([b * l]);
        let (own, _) = self.own_similarity(&queries.reshape([b * l, -1]), &per_query_class);
        let compactness = own_distance(&own).mean(Kind::Float);
        terms.push((
            "compactness".to_string(),
            compactness * self.cfg.compactness_weight,
        ));
        terms
    }
}

/// `1 - max_m s_{c,m}`: `[N, M]` -> `[N]`.
fn own_distance(own: &Tensor) -> Tensor {
    own.amax([1].as_slice(), false).neg() + 1.0
}

fn normalize(x: &Tensor) -> Tensor {
    x / x
        .norm_scalaropt_dim(2, [1].as_slice(), true)
        .clamp_min(NORM_EPS)
}

impl Memory for ClassMemory {
    /// Each query reads from the class it is nearest to.
    fn read(&self, query: &Tensor, _train: bool) -> MemoryRead {
        let class = tch::no_grad(|| self.nearest_class(query));
        self.read_class(query, &class)
    }

    /// Class-agnostic compactness: `lambda_com * mean (1 - max_{c,m} s_{c,m}(q))`.
    fn losses(&self, query: &Tensor, _read: &MemoryRead) -> Vec<(String, Tensor)> {
        let nearest = self
            .similarity(query)
            .flatten(1, 2)
            .amax([1].as_slice(), false);
        let compactness = (nearest.neg() + 1.0).mean(Kind::Float);
        vec![(
            "compactness".to_string(),
            compactness * self.cfg.compactness_weight,
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory(vs: &nn::VarStore, classes: usize, m: i64, dim: i64) -> ClassMemory {
        let cfg = ClassMemoryConfig {
            items_per_class: m,
            ..ClassMemoryConfig::default()
        };
        ClassMemory::new(&vs.root(), &cfg, classes, dim).unwrap()
    }

    /// Sets the items to `rows` (`[C * M, D]`).
    fn set_items(mem: &ClassMemory, rows: &[f32], dim: i64) {
        tch::no_grad(|| {
            mem.items
                .shallow_clone()
                .copy_(&Tensor::from_slice(rows).view([-1, dim]))
        });
    }

    #[test]
    fn read_class_attends_only_to_the_given_class() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mem = memory(&vs, 2, 2, 2);
        // class 0: e1, e2; class 1: -e1, -e2.
        set_items(&mem, &[1., 0., 0., 1., -1., 0., 0., -1.], 2);
        let q = Tensor::from_slice(&[1f32, 0.]).view([1, 2]);
        let read0 = mem.read_class(&q, &Tensor::from_slice(&[0i64]));
        let att = Vec::<f32>::try_from(read0.attention.unwrap().flatten(0, -1)).unwrap();
        // softmax([1, 0] / 0.1) over class 0's items, zeros for class 1.
        let w = 1.0 / (1.0 + (-10f32).exp());
        assert!((att[0] - w).abs() < 1e-6 && (att[1] - (1.0 - w)).abs() < 1e-6);
        assert_eq!(&att[2..], &[0.0, 0.0]);
        let plain = mem.read_output(&q, &Tensor::from_slice(&[0i64]));
        assert!(
            plain.equal(&read0.output),
            "read_output is read_class's output"
        );
        let out = Vec::<f32>::try_from(read0.output.flatten(0, -1)).unwrap();
        assert!((out[0] - w).abs() < 1e-6 && (out[1] - (1.0 - w)).abs() < 1e-6);
        let d0 = read0.distance.unwrap().double_value(&[0]);
        assert!(d0.abs() < 1e-6, "q is item (0, 0): distance 0, got {d0}");
        // Restricted to class 1, the nearest item is -e2 or -e1, cosine 0 and -1: distance 1.
        let read1 = mem.read_class(&q, &Tensor::from_slice(&[1i64]));
        let d1 = read1.distance.unwrap().double_value(&[0]);
        assert!((d1 - 1.0).abs() < 1e-6, "{d1}");
    }

    #[test]
    fn class_logits_and_losses_follow_the_nearest_class() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mem = memory(&vs, 2, 1, 2);
        set_items(&mem, &[1., 0., 0., 1.], 2);
        // Sample 0: features along e1 (class 0); sample 1: along e2 (class 1).
        let q = Tensor::from_slice(&[2f32, 0., 3., 0.1, 0., 1., 0.1, 5.]).view([2, 2, 2]);
        let logits = mem.class_logits(&q);
        let pred = Vec::<i64>::try_from(logits.argmax(1, false)).unwrap();
        assert_eq!(pred, [0, 1]);
        let right = mem.class_losses(&q, &Tensor::from_slice(&[0i64, 1]));
        let wrong = mem.class_losses(&q, &Tensor::from_slice(&[1i64, 0]));
        let names: Vec<&str> = right.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["classification", "compactness"]);
        for k in 0..2 {
            let (r, w) = (right[k].1.double_value(&[]), wrong[k].1.double_value(&[]));
            assert!(
                r < w,
                "{}: right labels {r} must cost less than wrong {w}",
                right[k].0
            );
        }
        assert!(
            right[1].1.double_value(&[]) < 0.01,
            "features near own items"
        );
    }

    #[test]
    fn feature_init_sets_each_class_once_from_its_own_features() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = ClassMemoryConfig {
            items_per_class: 3,
            ..ClassMemoryConfig::default()
        };
        assert_eq!(cfg.init, ItemInit::Features, "the default");
        let mem = ClassMemory::new(&vs.root(), &cfg, 3, 2).unwrap();
        assert!(vs.trainable_variables().len() == 1, "seeded is not trained");
        assert!(mem.needs_seeding());
        // Sample i has 2 positions [10 i + j, -(10 i + j)], j = 0, 1. Class 0: samples 0 and
        // 1 (4 positions); class 1: sample 2 (2 positions, fewer than 3 items); no class 2.
        let queries = Tensor::from_slice(&[
            0f32, 0., 1., -1., 10., -10., 11., -11., 20., -20., 21., -21.,
        ])
        .view([3, 2, 2]);
        let first = Tensor::from_slice(&[0i64, 0, 1]);
        let before = mem.items().copy();
        mem.seed_from_features(&queries, &first);
        let rows = |t: &Tensor| Vec::<Vec<f32>>::try_from(t).unwrap();
        let items = rows(mem.items());
        for item in &items[..3] {
            assert!(
                [0., 1., 10., 11.].contains(&item[0]) && item[1] == -item[0],
                "class 0's items are its own positions: {items:?}"
            );
        }
        let distinct: std::collections::BTreeSet<i64> =
            items[..3].iter().map(|r| r[0] as i64).collect();
        assert_eq!(distinct.len(), 3, "drawn without replacement: {items:?}");
        assert_eq!(items[3..], rows(&before)[3..], "classes 1 and 2 wait");
        assert!(mem.needs_seeding());
        // A later batch sets class 1, leaves class 0 alone, and class 2 (2 positions) waits.
        mem.seed_from_features(&(&queries + 100.0), &Tensor::from_slice(&[1i64, 1, 2]));
        let again = rows(mem.items());
        assert_eq!(again[..3], items[..3]);
        assert!(
            (again[3..6].iter()).all(|r| [100., 101., 110., 111.].contains(&r[0])),
            "{again:?}"
        );
        assert_eq!(again[6..], rows(&before)[6..]);
        assert!(mem.needs_seeding());
        mem.seed_from_features(&queries, &Tensor::from_slice(&[2i64, 2, 2]));
        assert!(!mem.needs_seeding());
        let seeded = Vec::<f32>::try_from(vs.variables()["seeded"].shallow_clone()).unwrap();
        assert_eq!(seeded, [1.0, 1.0, 1.0]);
        // Random init: no flags, nothing to seed.
        let vs = nn::VarStore::new(Device::Cpu);
        let random = ClassMemoryConfig {
            init: ItemInit::Random,
            ..ClassMemoryConfig::default()
        };
        let plain = ClassMemory::new(&vs.root(), &random, 2, 2).unwrap();
        assert!(!plain.needs_seeding() && !vs.variables().contains_key("seeded"));
    }

    #[test]
    fn one_class_has_no_classification_term() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mem = memory(&vs, 1, 3, 4);
        let q = Tensor::randn([2, 5, 4], (Kind::Float, Device::Cpu));
        let terms = mem.class_losses(&q, &Tensor::from_slice(&[0i64, 0]));
        assert_eq!(terms.len(), 1);
        assert_eq!(terms[0].0, "compactness");
    }

    #[test]
    fn config_errors_name_the_key() {
        let bad = ClassMemoryConfig {
            temperature: 0.0,
            ..ClassMemoryConfig::default()
        };
        let err = bad.validate("method.memory").unwrap_err().to_string();
        assert!(err.contains("method.memory.temperature"), "{err}");
        let section: toml::Value = toml::from_str("items_per_clas = 3").unwrap();
        let err = ClassMemoryConfig::parse(&section, "method.memory")
            .unwrap_err()
            .to_string();
        assert!(err.contains("items_per_clas"), "{err}");
    }
}
