//! MDD-Net: Xing et al., "Memory-Augmented Dual-Decoder Networks for Multi-Class
//! Unsupervised Anomaly Detection", arXiv 2504.14884 (2025).
//!
//! Reverse distillation (as [`crate::rd4ad`]: frozen teacher `T` with levels `i = 1..K`,
//! OCBE bottleneck `phi`) with two student decoders behind the shared bottleneck, trained on
//! pairs of a normal image `x_n` and a synthetic anomalous copy `x_a` with its mask `M`
//! (`[data.synthesis]`: DRAEM or CutPaste, `memad_data::synthesis`):
//!
//! - restoration decoder `R` (reads the class-aware memory, below):
//!   `L_rest = sum_i 1 - cos(R_i(x_a), T_i(x_n))` (recover the normal features);
//! - identity decoder `I`: `L_id = sum_i 1 - cos(I_i(x_a), T_i(x_a))` (keep the anomaly);
//! - discrepancy: `M_RI_i(h, w) = 1 - cos(R_i(x_a)(h, w), I_i(x_a)(h, w))`,
//!   `L_dist = sum_i || M_RI_i - M_i ||_1` with `M_i` the mask resized to level `i`;
//! - class-aware memory (CMM, crate `memory-class`, equations there): per-class prototypes
//!   read by the bottleneck features of `x_a` restricted to the sample's class, fused into
//!   `R`'s input; its class-discriminative cross-entropy and compactness terms are computed
//!   on the bottleneck features of the normal image `x_n` (the prototypes model normality).
//! - `L = w_rest L_rest + w_id L_id + w_dist L_dist + L_cls + L_com` (weights default 1).
//! - Inference: `S = sum_i up(1 - cos(T_i(x), R_i(x))) + beta sum_i up(M_RI_i(x))`,
//!   Gaussian sigma 4, image score `max S`. The class read at test time is the one the
//!   memory predicts (`class_source = "predicted"`, reported as `class_accuracy`) or the
//!   sample's category (`"given"`).
//!
//! Choices the paper leaves open, all configurable: the cosine of `L_rest` / `L_id` is the
//! flattened one of the RD4AD code (`loss = "flattened"`) or per pixel (`"per_pixel"`);
//! `M_i` is the mask area-averaged to level `i` (fractions at defect borders) and `|| . ||_1`
//! is a mean over pixels and batch (a sum would scale with the resolution); the memory read
//! `r` is fused as `phi' = conv1x1([phi, r])` (`fusion = "concat"`) or `phi + r` (`"add"`);
//! the prototypes start as normal bottleneck features of their class (`memory.init =
//! "features"`, the default) or `N(0, 1)` (`"random"`).
//!
//! Consequences of these choices, stated so they are not read as the paper's:
//! - Pairs: the synthesis decides per image whether `x_a` carries an anomaly (DRAEM's
//!   `anomaly_probability`, 0.5 by default, as DRAEM's code); otherwise `x_a = x_n` with an
//!   empty mask, and `L_dist` asks `M_RI = 0` everywhere.
//! - The CMM's cross-entropy and compactness read the bottleneck of `x_n` without detaching
//!   it, so they train the shared OCBE bottleneck as well as the prototypes. That bottleneck
//!   pass runs in training mode: BatchNorm's running statistics (used at test time) follow
//!   the `x_a` and `x_n` batches alike.
//! - The `concat` fusion's 1x1 convolution has a bias and tch's default initialisation
//!   (Kaiming-uniform); the rest of the student is initialised as RD4AD's code.
//! - A key of a part an ablation switches off (the identity decoder's weights, the memory's
//!   keys) must keep its default: otherwise it would have no effect, and a sweep over it
//!   would make identical runs under different names. One exception: `memory.init` is not
//!   checked, because no-memory runs made before its default changed record `"random"` and
//!   must still resolve (a sweep over it with `use_memory = false` is the user's to avoid).
//!
//! Ablations (`experiments/mddnet_ablation_*.toml`): `identity_decoder = false` (no `I`,
//! hence no `L_id`, `L_dist` nor `M_RI`: RD4AD trained on synthetic anomalies with the
//! memory), `discrepancy_weight = 0` (no `L_dist`), `use_memory = false` (no CMM), and
//! `memory.items_per_class` swept.
use crate::anomaly_map::max_score;
use crate::rd4ad::{
    build_decoder, build_ocbe, check_teacher, distance_map, resolve_student, teacher_features,
    LossForm, StudentShape,
};
use memad_core::{
    parse_section, to_toml_value, AnomalyOutput, Backbone, Batch, BuildContext, ConfigError,
    CoreError, LossTerm, MemoryUsage, Method, Registry, Result, TrainOutput,
};
use memad_decoders::{Ocbe, ReverseDecoder};
use memad_losses::{cosine_distance_map, cosine_distillation};
use memory_class::{ClassMemory, ClassMemoryConfig};
use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Kind, Tensor};

/// How the memory read joins the bottleneck before the restoration decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fusion {
    /// `conv1x1([phi, r])`, `2E -> E` channels.
    Concat,
    /// `phi + r`.
    Add,
}

/// Which class the memory is read with at test time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassSource {
    /// The class the memory predicts (no labels at test time).
    Predicted,
    /// The sample's category (`Batch::class`).
    Given,
}

/// The `[method]` section of an experiment with `kind = "mddnet"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MddNetConfig {
    pub kind: String,
    /// The teacher: a backbone section (`kind`, `weights`, `levels`).
    pub backbone: toml::Value,
    /// Channels of the shared bottleneck (2048 with WideResNet-50-2, as RD4AD).
    #[serde(default = "d_embed")]
    pub embed_channels: i64,
    #[serde(default = "d_oce_blocks")]
    pub oce_blocks: usize,
    /// Bottlenecks per stage of each decoder, coarsest first.
    #[serde(default = "d_decoder_blocks")]
    pub decoder_blocks: Vec<usize>,
    #[serde(default = "d_one_half")]
    pub width_ratio: f64,
    /// Cosine form of `L_rest` and `L_id`.
    #[serde(default = "d_loss")]
    pub loss: LossForm,
    #[serde(default = "d_sigma")]
    pub map_sigma: f64,
    /// `beta`: weight of the restoration-identity discrepancy in the anomaly map.
    #[serde(default = "d_one")]
    pub discrepancy_map_weight: f64,
    #[serde(default = "d_one")]
    pub restoration_weight: f64,
    #[serde(default = "d_one")]
    pub identity_weight: f64,
    /// Weight of `L_dist` (0: the "without L_dist" ablation).
    #[serde(default = "d_one")]
    pub discrepancy_weight: f64,
    /// The identity decoder (false: the "without identity decoder" ablation).
    #[serde(default = "d_true")]
    pub identity_decoder: bool,
    /// The class-aware memory (false: the "without CMM" ablation).
    #[serde(default = "d_true")]
    pub use_memory: bool,
    #[serde(default = "d_fusion")]
    pub fusion: Fusion,
    #[serde(default = "d_class_source")]
    pub class_source: ClassSource,
    #[serde(default)]
    pub memory: ClassMemoryConfig,
}

fn d_embed() -> i64 {
    2048
}
fn d_oce_blocks() -> usize {
    3
}
fn d_decoder_blocks() -> Vec<usize> {
    vec![3, 4, 6]
}
fn d_one_half() -> f64 {
    0.5
}
fn d_loss() -> LossForm {
    LossForm::Flattened
}
fn d_sigma() -> f64 {
    4.0
}
fn d_one() -> f64 {
    1.0
}
fn d_true() -> bool {
    true
}
fn d_fusion() -> Fusion {
    Fusion::Concat
}
fn d_class_source() -> ClassSource {
    ClassSource::Predicted
}

impl MddNetConfig {
    fn student(&self) -> StudentShape {
        StudentShape {
            embed_channels: self.embed_channels,
            oce_blocks: self.oce_blocks,
            decoder_blocks: self.decoder_blocks.clone(),
            width_ratio: self.width_ratio,
            map_sigma: self.map_sigma,
        }
    }
}

fn parse(
    section: &toml::Value,
    path: &str,
    registry: &Registry,
) -> std::result::Result<MddNetConfig, ConfigError> {
    let mut cfg: MddNetConfig = parse_section(section, path)?;
    cfg.backbone = resolve_student(&cfg.backbone, &cfg.student(), path, registry)?;
    cfg.memory.validate(&format!("{path}.memory"))?;
    for (key, w) in [
        ("discrepancy_map_weight", cfg.discrepancy_map_weight),
        ("restoration_weight", cfg.restoration_weight),
        ("identity_weight", cfg.identity_weight),
        ("discrepancy_weight", cfg.discrepancy_weight),
    ] {
        if !(w >= 0.0 && w.is_finite()) {
            return Err(ConfigError::new(
                format!("{path}.{key}"),
                format!("must be finite and >= 0, got {w}"),
            ));
        }
    }
    check_inactive(&cfg, path)?;
    Ok(cfg)
}

/// A key of a part an ablation switches off must keep its default: otherwise a sweep over
/// it makes identical runs under different names.
fn check_inactive(cfg: &MddNetConfig, path: &str) -> std::result::Result<(), ConfigError> {
    let fail = |key: &str, why: &str| {
        Err(ConfigError::new(
            format!("{path}.{key}"),
            format!("has no effect with {why}; leave it out (or at its default)"),
        ))
    };
    if !cfg.identity_decoder {
        let why = "identity_decoder = false (no identity decoder: no L_id, L_dist nor M_RI)";
        for (key, w) in [
            ("identity_weight", cfg.identity_weight),
            ("discrepancy_weight", cfg.discrepancy_weight),
            ("discrepancy_map_weight", cfg.discrepancy_map_weight),
        ] {
            if w != d_one() {
                return fail(key, why);
            }
        }
    }
    if !cfg.use_memory {
        let why = "use_memory = false (no class-aware memory)";
        let (m, d) = (&cfg.memory, ClassMemoryConfig::default());
        if cfg.fusion != d_fusion() {
            return fail("fusion", why);
        }
        if cfg.class_source != d_class_source() {
            return fail("class_source", why);
        }
        // `memory.init` is not checked: no-memory runs from before its default changed
        // record "random".
        for (key, differs) in [
            ("items_per_class", m.items_per_class != d.items_per_class),
            ("temperature", m.temperature != d.temperature),
            (
                "classification_weight",
                m.classification_weight != d.classification_weight,
            ),
            (
                "compactness_weight",
                m.compactness_weight != d.compactness_weight,
            ),
        ] {
            if differs {
                return fail(&format!("memory.{key}"), why);
            }
        }
    }
    Ok(())
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
    let teacher = registry.build_backbone(&cfg.backbone, "method.backbone", ctx)?;
    Ok(Box::new(MddNet::new(cfg, teacher, ctx)?))
}

pub struct MddNet {
    cfg: MddNetConfig,
    teacher: Box<dyn Backbone>,
    vs: nn::VarStore,
    ocbe: Ocbe,
    restoration: ReverseDecoder,
    identity: Option<ReverseDecoder>,
    memory: Option<ClassMemory>,
    /// `conv1x1(2E -> E)` of `Fusion::Concat` with the memory.
    fuse: Option<nn::Conv2D>,
}

/// The students' outputs for one input.
struct Students {
    /// The teacher's levels of the input.
    teacher: Vec<Tensor>,
    restoration: Vec<Tensor>,
    identity: Option<Vec<Tensor>>,
    /// `[B]` int64: the class the memory was read with.
    class: Option<Tensor>,
    /// `[B h w, classes * items_per_class]`: the memory read's addressing weights (zero
    /// outside the class read).
    attention: Option<Tensor>,
}

impl MddNet {
    pub fn new(cfg: MddNetConfig, teacher: Box<dyn Backbone>, ctx: &BuildContext) -> Result<Self> {
        let level_channels = check_teacher("mddnet", teacher.as_ref(), ctx.image_size)?;
        let shape = cfg.student();
        let vs = nn::VarStore::new(ctx.device);
        let root = vs.root();
        let ocbe = build_ocbe(&root / "bn", &level_channels, &shape);
        let restoration = build_decoder(&root / "restoration", &level_channels, &shape);
        let identity = cfg
            .identity_decoder
            .then(|| build_decoder(&root / "identity", &level_channels, &shape));
        let memory = if cfg.use_memory {
            Some(ClassMemory::new(
                &(&root / "memory"),
                &cfg.memory,
                ctx.classes,
                cfg.embed_channels,
            )?)
        } else {
            None
        };
        let fuse = (cfg.use_memory && cfg.fusion == Fusion::Concat).then(|| {
            nn::conv2d(
                &root / "fuse",
                2 * cfg.embed_channels,
                cfg.embed_channels,
                1,
                Default::default(),
            )
        });
        Ok(MddNet {
            cfg,
            teacher,
            vs,
            ocbe,
            restoration,
            identity,
            memory,
            fuse,
        })
    }

    /// Classes the memory was built for must cover `class` `[B]`.
    fn check_classes(&self, class: &Tensor) -> Result<()> {
        let Some(memory) = &self.memory else {
            return Ok(());
        };
        // Both ends in one transfer: one host synchronisation, not two.
        let ends = Vec::<i64>::try_from(
            Tensor::stack(&[class.max(), class.min()], 0).to_device(tch::Device::Cpu),
        )
        .expect("[2] class ends");
        let (largest, smallest) = (ends[0], ends[1]);
        if largest >= memory.classes() || smallest < 0 {
            return Err(CoreError::Invalid(format!(
                "mddnet: a sample of class {largest} for a memory of {} class(es)",
                memory.classes()
            )));
        }
        Ok(())
    }

    /// The bottleneck of teacher levels: `[B, E, h, w]`.
    fn bottleneck(&self, teacher: &[Tensor], train: bool) -> Tensor {
        let refs: Vec<&Tensor> = teacher.iter().collect();
        self.ocbe.forward_t(&refs, train)
    }

    /// Joins the memory's read (of `class`) with the bottleneck `z` `[B, E, h, w]`; when
    /// scoring (`train` false) also returns the read's attention `[B h w, classes *
    /// items_per_class]` (memory usage), which training does not need.
    fn with_memory(
        &self,
        memory: &ClassMemory,
        z: &Tensor,
        class: &Tensor,
        train: bool,
    ) -> (Tensor, Option<Tensor>) {
        let (b, e, h, w) = z.size4().expect("a 4-d bottleneck");
        let queries = z.permute([0, 2, 3, 1]).reshape([b * h * w, e]);
        let per_query = class.view([b, 1]).expand([b, h * w], false).reshape([-1]);
        let (output, attention) = if train {
            (memory.read_output(&queries, &per_query), None)
        } else {
            let read = memory.read_class(&queries, &per_query);
            (read.output, read.attention)
        };
        let output = output.view([b, h, w, e]).permute([0, 3, 1, 2]);
        let fused = match &self.fuse {
            Some(conv) => conv.forward(&Tensor::cat(&[z, &output], 1)),
            None => z + output,
        };
        (fused, attention)
    }

    /// Runs both students on `x`; `class` is the class to read the memory with (`None`:
    /// predicted by the memory).
    fn forward(&self, x: &Tensor, class: Option<&Tensor>, train: bool) -> Students {
        let teacher = teacher_features(self.teacher.as_ref(), x);
        let z = self.bottleneck(&teacher, train);
        let (restoration_input, class, attention) = match &self.memory {
            Some(memory) => {
                let class = match class {
                    Some(c) => c.shallow_clone(),
                    None => tch::no_grad(|| memory.class_logits(&queries_of(&z)).argmax(1, false)),
                };
                let (fused, attention) = self.with_memory(memory, &z, &class, train);
                (fused, Some(class), attention)
            }
            None => (z.shallow_clone(), None, None),
        };
        let restoration = self.restoration.forward_t(&restoration_input, train);
        let identity = self.identity.as_ref().map(|d| d.forward_t(&z, train));
        Students {
            teacher,
            restoration,
            identity,
            class,
            attention,
        }
    }
}

/// `[B, E, h, w]` -> `[B, h * w, E]`: the bottleneck's positions as memory queries.
fn queries_of(z: &Tensor) -> Tensor {
    let (b, e, h, w) = z.size4().expect("a 4-d bottleneck");
    z.permute([0, 2, 3, 1]).reshape([b, h * w, e])
}

/// `M_RI_i = 1 - cos(R_i, I_i)` per level: `[B, H_i, W_i]`.
fn discrepancy_maps(restoration: &[Tensor], identity: &[Tensor]) -> Vec<Tensor> {
    restoration
        .iter()
        .zip(identity)
        .map(|(r, i)| cosine_distance_map(r, i))
        .collect()
}

impl Method for MddNet {
    fn trainable(&self) -> &nn::VarStore {
        &self.vs
    }

    fn train_step(&mut self, batch: &Batch) -> Result<TrainOutput> {
        let synthetic = batch.synthetic.as_ref().ok_or_else(|| {
            CoreError::Invalid("mddnet trains on synthesized anomalies (Batch::synthetic)".into())
        })?;
        let b = batch.input.size()[0];
        let class = match &batch.class {
            Some(c) => c.shallow_clone(),
            None => Tensor::zeros([b], (Kind::Int64, batch.input.device())),
        };
        self.check_classes(&class)?;
        let form = self.cfg.loss.cosine_form();
        let normal = teacher_features(self.teacher.as_ref(), &batch.input);
        // `init = "features"`: the memory's items of classes first seen are set from this
        // batch's normal bottleneck before anything reads them (this step only, while a
        // class waits, the normal bottleneck runs before the anomalous one).
        let mut z_normal = None;
        if let Some(memory) = self.memory.as_ref().filter(|m| m.needs_seeding()) {
            let z = self.bottleneck(&normal, true);
            memory.seed_from_features(&queries_of(&z).detach(), &class);
            z_normal = Some(z);
        }
        let out = self.forward(&synthetic.input, Some(&class), true);
        let normal_refs: Vec<&Tensor> = normal.iter().collect();
        let mut named: Vec<(String, Tensor)> = vec![(
            "restoration".into(),
            cosine_distillation(&normal_refs, &out.restoration, form) * self.cfg.restoration_weight,
        )];
        if let Some(identity) = &out.identity {
            let anomalous: Vec<&Tensor> = out.teacher.iter().collect();
            named.push((
                "identity".into(),
                cosine_distillation(&anomalous, identity, form) * self.cfg.identity_weight,
            ));
            if self.cfg.discrepancy_weight > 0.0 {
                let maps = discrepancy_maps(&out.restoration, identity);
                let dist: Vec<Tensor> = maps
                    .iter()
                    .map(|m| {
                        let (h, w) = (m.size()[1], m.size()[2]);
                        let target = synthetic.mask.adaptive_avg_pool2d([h, w]).squeeze_dim(1);
                        (m - target).abs().mean(Kind::Float)
                    })
                    .collect();
                named.push((
                    "discrepancy".into(),
                    Tensor::stack(&dist, 0).sum(Kind::Float) * self.cfg.discrepancy_weight,
                ));
            }
        }
        if let Some(memory) = &self.memory {
            let z_normal = z_normal.unwrap_or_else(|| self.bottleneck(&normal, true));
            named.extend(memory.class_losses(&queries_of(&z_normal), &class));
        }
        let terms = named
            .iter()
            .map(|(name, t)| LossTerm::new(name.clone(), t))
            .collect();
        let parts: Vec<Tensor> = named.into_iter().map(|(_, t)| t).collect();
        Ok(TrainOutput {
            loss: Tensor::stack(&parts, 0).sum(Kind::Float),
            terms,
        })
    }

    fn score(&self, batch: &Batch) -> Result<AnomalyOutput> {
        let size = batch.input.size();
        let size = [size[2], size[3]];
        let given = match self.cfg.class_source {
            ClassSource::Given => Some(batch.class.as_ref().ok_or_else(|| {
                CoreError::Invalid("mddnet: class_source = \"given\" needs Batch::class".into())
            })?),
            ClassSource::Predicted => None,
        };
        if let Some(class) = given {
            self.check_classes(class)?;
        }
        let out = self.forward(&batch.input, given, false);
        let mut map = distance_map(&out.teacher, &out.restoration, size, self.cfg.map_sigma);
        if let Some(identity) = &out.identity {
            // `beta sum_i up(M_RI_i)`, through the same upsampling and smoothing.
            let discrepancy = distance_map(&out.restoration, identity, size, self.cfg.map_sigma);
            map += discrepancy * self.cfg.discrepancy_map_weight;
        }
        let b = batch.input.size()[0];
        let memory_usage = (out.attention.iter())
            .map(|a| MemoryUsage::per_sample("memory", a, b))
            .collect();
        let class_prediction = match (&self.memory, self.cfg.class_source) {
            (Some(m), ClassSource::Predicted) if m.classes() > 1 => out.class,
            _ => None,
        };
        Ok(AnomalyOutput {
            image_score: max_score(&map),
            anomaly_map: Some(map),
            parts: Vec::new(),
            class_prediction,
            memory_usage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memad_core::SyntheticAnomalies;
    use tch::Device;

    fn registry() -> Registry {
        let mut r = Registry::default();
        memad_backbones::register(&mut r);
        crate::register(&mut r);
        r
    }

    /// A small MDD-Net on a random EfficientNet-Lite0 teacher (32 px inputs).
    /// A small MDD-Net section with `extra` keys; two items per class, except without the
    /// memory (where the key is an error).
    fn section(extra: &str) -> toml::Value {
        let items = match extra.contains("use_memory = false") {
            true => "",
            false => "items_per_class = 2",
        };
        toml::from_str(&format!(
            "kind = \"mddnet\"\nembed_channels = 16\noce_blocks = 1\n\
             decoder_blocks = [1, 1, 1]\nwidth_ratio = 1.0\n{extra}\n\
             [memory]\n{items}\n\
             [backbone]\nkind = \"efficientnet_lite0\"\nweights = \"random\"\n\
             levels = [\"stride4\", \"stride8\", \"stride16\"]\n"
        ))
        .unwrap()
    }

    fn build_with(extra: &str, classes: usize) -> MddNet {
        let ctx = BuildContext {
            device: Device::Cpu,
            weights_dir: std::env::temp_dir(),
            image_size: 32,
            classes,
        };
        let reg = registry();
        let cfg = parse(&section(extra), "method", &reg).unwrap();
        let teacher = reg.build_backbone(&cfg.backbone, "backbone", &ctx).unwrap();
        MddNet::new(cfg, teacher, &ctx).unwrap()
    }

    /// Two images, the second with a pasted square (its mask set).
    fn batch() -> Batch {
        let input = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        let mask = Tensor::zeros([2, 1, 32, 32], (Kind::Float, Device::Cpu));
        let _ = mask
            .narrow(0, 1, 1)
            .narrow(2, 8, 12)
            .narrow(3, 8, 12)
            .fill_(1.0);
        let pasted = &input * (1.0 - &mask) + &mask * 0.9;
        Batch {
            input,
            label: Tensor::from_slice(&[0i64, 0]),
            mask: None,
            class: Some(Tensor::from_slice(&[0i64, 1])),
            synthetic: Some(SyntheticAnomalies {
                input: pasted,
                mask,
            }),
        }
    }

    fn term_names(out: &TrainOutput) -> Vec<&str> {
        out.terms.iter().map(|t| t.name.as_str()).collect()
    }

    #[test]
    fn train_step_has_every_term_and_reaches_every_variable() {
        let mut m = build_with("", 2);
        let out = m.train_step(&batch()).unwrap();
        assert_eq!(
            term_names(&out),
            [
                "restoration",
                "identity",
                "discrepancy",
                "classification",
                "compactness"
            ]
        );
        let (loss, values) = out.read();
        assert!((loss - values.iter().sum::<f64>()).abs() < 1e-4);
        out.loss.backward();
        for (name, var) in m.trainable().variables() {
            if !var.requires_grad() {
                continue; // batch-norm running statistics
            }
            let grad = var.grad();
            assert!(grad.defined(), "{name} gets no gradient");
            assert!(
                grad.abs().sum(Kind::Float).double_value(&[]) > 0.0,
                "{name}"
            );
        }
    }

    #[test]
    fn feature_init_sets_the_items_from_the_first_normal_bottleneck() {
        let ctx = BuildContext {
            device: Device::Cpu,
            weights_dir: std::env::temp_dir(),
            image_size: 32,
            classes: 2,
        };
        let reg = registry();
        let mut cfg = parse(&section(""), "method", &reg).unwrap();
        cfg.memory.items_per_class = 1; // a 32 px input has one bottleneck position
        cfg.memory.init = memory_class::ItemInit::Features;
        let teacher = reg.build_backbone(&cfg.backbone, "backbone", &ctx).unwrap();
        let mut m = MddNet::new(cfg, teacher, &ctx).unwrap();
        let b = batch();
        let out = m.train_step(&b).unwrap();
        let memory = m.memory.as_ref().unwrap();
        assert!(!memory.needs_seeding());
        // Sample i is of class i: item i is its normal bottleneck feature.
        let normal = teacher_features(m.teacher.as_ref(), &b.input);
        let z = tch::no_grad(|| queries_of(&m.bottleneck(&normal, true))).squeeze_dim(1);
        let gap = (memory.items() - &z).abs().max().double_value(&[]);
        assert!(gap < 1e-5, "items are the normal features: {gap}");
        // Every trained variable still gets a gradient; `seeded` is saved, not trained.
        out.loss.backward();
        for (name, var) in m.trainable().trainable_variables().iter().enumerate() {
            assert!(var.grad().defined(), "variable {name} gets no gradient");
        }
        assert!(m.trainable().variables().contains_key("memory.seeded"));
    }

    #[test]
    fn ablations_drop_their_terms_and_parts() {
        let mut no_identity = build_with("identity_decoder = false", 2);
        let out = no_identity.train_step(&batch()).unwrap();
        assert_eq!(
            term_names(&out),
            ["restoration", "classification", "compactness"]
        );
        assert!(!no_identity
            .trainable()
            .variables()
            .keys()
            .any(|k| k.starts_with("identity.")));
        let mut no_dist = build_with("discrepancy_weight = 0.0", 2);
        let out = no_dist.train_step(&batch()).unwrap();
        assert_eq!(
            term_names(&out),
            ["restoration", "identity", "classification", "compactness"]
        );
        let mut no_memory = build_with("use_memory = false", 2);
        let out = no_memory.train_step(&batch()).unwrap();
        assert_eq!(term_names(&out), ["restoration", "identity", "discrepancy"]);
        assert!(!no_memory
            .trainable()
            .variables()
            .keys()
            .any(|k| k.starts_with("memory.") || k.starts_with("fuse.")));
        // One class: no cross-entropy (identically 0), compactness stays.
        let mut one_class = build_with("", 1);
        let err = one_class.train_step(&batch()).err().unwrap().to_string();
        assert!(err.contains("class 1") && err.contains("1 class"), "{err}");
        let b = Batch {
            class: Some(Tensor::from_slice(&[0i64, 0])),
            ..batch()
        };
        let out = one_class.train_step(&b).unwrap();
        assert_eq!(
            term_names(&out),
            ["restoration", "identity", "discrepancy", "compactness"]
        );
    }

    #[test]
    fn keys_of_a_switched_off_part_are_errors() {
        let reg = registry();
        let err = |extra: &str| {
            parse(&section(extra), "method", &reg)
                .unwrap_err()
                .to_string()
        };
        let e = err("identity_decoder = false\ndiscrepancy_map_weight = 0.5");
        assert!(
            e.contains("method.discrepancy_map_weight") && e.contains("identity_decoder = false"),
            "{e}"
        );
        let e = err("use_memory = false\nclass_source = \"given\"");
        assert!(
            e.contains("method.class_source") && e.contains("use_memory"),
            "{e}"
        );
        let e = toml::from_str::<toml::Value>(
            "kind = \"mddnet\"\nuse_memory = false\n[memory]\nitems_per_class = 5\n\
             [backbone]\nkind = \"efficientnet_lite0\"\nweights = \"random\"\n\
             levels = [\"stride4\", \"stride8\", \"stride16\"]\n",
        )
        .map(|v| parse(&v, "method", &reg).unwrap_err().to_string())
        .unwrap();
        assert!(e.contains("method.memory.items_per_class"), "{e}");
        // Their defaults, written out as the ablation files do, are fine.
        parse(
            &section("identity_decoder = false\nidentity_weight = 1.0"),
            "method",
            &reg,
        )
        .unwrap();
        parse(
            &section("use_memory = false\nfusion = \"concat\""),
            "method",
            &reg,
        )
        .unwrap();
    }

    #[test]
    fn scoring_gives_maps_scores_and_predicted_classes() {
        let mut m = build_with("", 2);
        let b = batch();
        let out = tch::no_grad(|| m.score(&b)).unwrap();
        assert_eq!(out.image_score.size(), [2]);
        assert_eq!(out.anomaly_map.as_ref().unwrap().size(), [2, 1, 32, 32]);
        let classes = Vec::<i64>::try_from(out.class_prediction.unwrap()).unwrap();
        assert!(classes.iter().all(|c| (0..2).contains(c)), "{classes:?}");
        // The map is the T-R map plus beta times the R-I map: beta = 0 gives a smaller map.
        m.cfg.discrepancy_map_weight = 0.0;
        let smaller = tch::no_grad(|| m.score(&b)).unwrap();
        let diff = out.anomaly_map.unwrap() - smaller.anomaly_map.unwrap();
        assert!(diff.min().double_value(&[]) >= 0.0);
        assert!(
            diff.max().double_value(&[]) > 0.0,
            "beta does not reach the map"
        );
        // With the class given, none is predicted; without the labels it is an error.
        let given = build_with("class_source = \"given\"", 2);
        let out = tch::no_grad(|| given.score(&b)).unwrap();
        assert!(out.class_prediction.is_none());
        let unlabelled = Batch {
            class: None,
            ..batch()
        };
        let e = given.score(&unlabelled).unwrap_err().to_string();
        assert!(
            e.contains("class_source = \"given\" needs Batch::class"),
            "{e}"
        );
    }

    #[test]
    fn memory_usage_is_one_distribution_per_sample_within_its_class() {
        // class_source = "given": sample 0 reads class 0's items (0, 1), sample 1 class 1's
        // (2, 3); each sample's row is the mean of softmax rows over its positions.
        let m = build_with("class_source = \"given\"", 2);
        let out = tch::no_grad(|| m.score(&batch())).unwrap();
        assert_eq!(out.memory_usage.len(), 1);
        let usage = &out.memory_usage[0];
        assert_eq!(usage.name, "memory");
        assert_eq!(usage.attention.size(), [2, 4]);
        let rows = Vec::<f32>::try_from(usage.attention.flatten(0, -1)).unwrap();
        for (i, row) in rows.chunks(2 * 2).enumerate() {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{row:?}");
            let (own, other) = if i == 0 {
                (&row[..2], &row[2..])
            } else {
                (&row[2..], &row[..2])
            };
            assert!(own.iter().all(|&w| w > 0.0), "{row:?}");
            assert!(other.iter().all(|&w| w == 0.0), "{row:?}");
        }
        // Without a memory there is nothing to report.
        let plain = build_with("use_memory = false", 2);
        assert!(tch::no_grad(|| plain.score(&batch()))
            .unwrap()
            .memory_usage
            .is_empty());
    }

    #[test]
    fn training_without_synthetic_anomalies_is_an_error() {
        let mut m = build_with("", 1);
        let plain = Batch {
            synthetic: None,
            ..batch()
        };
        let err = m.train_step(&plain).err().unwrap().to_string();
        assert!(err.contains("synthesized anomalies"), "{err}");
    }

    #[test]
    fn resolve_names_bad_keys() {
        let reg = registry();
        let err = resolve(&section("restoration_weight = -1.0"), "method", &reg).unwrap_err();
        assert_eq!(err.path, "method.restoration_weight");
        let err = resolve(&section("fusion = \"multiply\""), "method", &reg).unwrap_err();
        assert!(err.path.starts_with("method"), "{}", err.path);
        let mut two_stages = section("");
        two_stages.as_table_mut().unwrap().insert(
            "decoder_blocks".into(),
            toml::Value::Array(vec![1.into(), 1.into()]),
        );
        let err = resolve(&two_stages, "method", &reg).unwrap_err();
        assert_eq!(err.path, "method.decoder_blocks");
    }
}
