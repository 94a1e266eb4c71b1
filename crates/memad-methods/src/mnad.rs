//! MNAD: "Learning Memory-guided Normality for Anomaly Detection", Park, Noh & Ham,
//! CVPR 2020. Reference code: github.com/cvlab-yonsei/MNAD.
//!
//! A U-Net-style encoder ([`memad_decoders::UnetEncoder`]) maps the input (prediction: the
//! `T - 1` past frames stacked, `[B, 3(T-1), H, W]`; reconstruction: the frame) to queries
//! `q_t^k` (one per position `k` of the `H/8 x W/8` grid, 512 channels, L2-normalised). A
//! memory of `M` items `p_m` (10 x 512, [`memory_mnad::MnadMemory`]) is read per query
//! (Eq. 1-2: `w^{k,m} = softmax_m(p_m^T q^k)`, `p_hat^k = sum_m w^{k,m} p_m`) and the decoder
//! ([`memad_decoders::UnetDecoder`], skips for prediction only) maps `[q; p_hat]` (1024
//! channels) to the frame `I_hat_t`.
//!
//! - Update (Eq. 3-4, by rule after each optimizer step, items never get gradients): items
//!   move towards the normalised sum of the queries nearest to them, weighted by the softmax
//!   over queries divided by its maximum.
//! - Loss (Eq. 7-10): `L = L_rec + lambda_c L_compact + lambda_s L_separate` with
//!   `L_rec = mean ||I_hat_t - I_t||^2` (images in `[-1, 1]`), compactness = mean squared
//!   distance of each query to its nearest item, separateness = triplet margin loss (margin 1)
//!   with the nearest item as positive and the second nearest as negative; `lambda_c =
//!   lambda_s = 0.1` (prediction) / 0.01 (reconstruction).
//! - Score (Eq. 11-13): per frame `P = PSNR(I_hat_t, I_t)` (images in `[0, 1]`) and
//!   `D = mean_k ||q^k - p_nearest||^2`, each min-max normalised per video (`g`), combined as
//!   `S = lambda g(-P) + (1 - lambda) g(D)` = `lambda (1 - g(P)) + (1 - lambda) g(D)`. The
//!   method returns `-P` and `D` as weighted [`ScorePart`]s; the runner normalises them per
//!   video when `eval.video_normalization = "min_max"`. Also an anomaly map (per-pixel squared
//!   prediction error, mean over RGB), which the paper does not evaluate.
//! - Paper settings: 256x256 frames in `[-1, 1]`, T = 5 (4 past frames), batch 4, Adam
//!   lr 2e-4 with cosine annealing, 60 epochs (Ped2), lambda = 0.6 in the paper (the
//!   reference's `Evaluate.py` default is 0.7).
//!
//! Deviations: the reference also updates the memory at test time with the queries of frames
//! whose normalised error is below a threshold (0.01); scoring here is pure (the memory is
//! frozen after training), which is the paper's ablation "w/o test-time update" style of
//! evaluation and makes scores independent of the test order. The learning-rate schedule is
//! the runner's (constant unless configured). The first `T - 1` frames of each video are
//! never scored, as in the reference.
use memad_core::{
    parse_section, to_toml_value, AnomalyOutput, Batch, BuildContext, ConfigError, CoreError,
    LossTerm, Memory, Method, Registry, Result, ScorePart, TrainOutput,
};
use memad_decoders::{UnetDecoder, UnetEncoder, UNET_FEATURES};
use memory_mnad::{MnadMemory, MnadMemoryConfig};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// Predict the next frame from past frames, or reconstruct the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MnadTask {
    Predict,
    Reconstruct,
}

/// The `[method]` section of an experiment with `kind = "mnad"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MnadConfig {
    pub kind: String,
    pub task: MnadTask,
    /// Frames per input clip (`[data.clip] frames`): 5 for prediction (4 past + the target),
    /// 1 for reconstruction.
    pub frames: usize,
    /// The memory (`slots`, `dim` = 512, loss weights).
    pub memory: MnadMemoryConfig,
    /// `lambda` of the score: weight of `g(-PSNR)`; `1 - lambda` weighs `g(D)`.
    pub psnr_weight: f64,
    /// `false`: the ablation without memory (the decoder reads the encoder's features
    /// directly, the loss is the pixel loss alone, the score is `g(-PSNR)`).
    #[serde(default = "d_use_memory")]
    pub use_memory: bool,
}

fn d_use_memory() -> bool {
    true
}

fn parse(section: &toml::Value, path: &str) -> std::result::Result<MnadConfig, ConfigError> {
    let cfg: MnadConfig = parse_section(section, path)?;
    cfg.memory.validate(&format!("{path}.memory"))?;
    let least = match cfg.task {
        MnadTask::Predict => 2,
        MnadTask::Reconstruct => 1,
    };
    if cfg.frames < least {
        return Err(ConfigError::new(
            format!("{path}.frames"),
            format!("must be at least {least} for task {:?}", cfg.task),
        ));
    }
    if cfg.task == MnadTask::Reconstruct && cfg.frames != 1 {
        return Err(ConfigError::new(
            format!("{path}.frames"),
            "reconstruction reads one frame: frames = 1 (and no [data.clip])",
        ));
    }
    if cfg.memory.dim != UNET_FEATURES {
        return Err(ConfigError::new(
            format!("{path}.memory.dim"),
            format!("must equal the encoder's {UNET_FEATURES} channels"),
        ));
    }
    if !(0.0..=1.0).contains(&cfg.psnr_weight) {
        return Err(ConfigError::new(
            format!("{path}.psnr_weight"),
            "must be in [0, 1]",
        ));
    }
    Ok(cfg)
}

/// Registry `resolve`.
pub fn resolve(
    section: &toml::Value,
    path: &str,
    _registry: &Registry,
) -> std::result::Result<toml::Value, ConfigError> {
    to_toml_value(&parse(section, path)?)
}

/// Registry `build`.
pub fn build(
    section: &toml::Value,
    _registry: &Registry,
    ctx: &BuildContext,
) -> Result<Box<dyn Method>> {
    Ok(Box::new(Mnad::new(parse(section, "method")?, ctx)?))
}

/// MNAD (prediction or reconstruction).
pub struct Mnad {
    cfg: MnadConfig,
    vs: nn::VarStore,
    encoder: UnetEncoder,
    decoder: UnetDecoder,
    /// `None` for the ablation without memory.
    memory: Option<MnadMemory>,
    /// The last training batch's queries (detached), for the update after the step.
    pending: Option<Tensor>,
}

/// What one forward pass gives.
struct Forward {
    /// `[B, 3, H, W]` in `[-1, 1]`.
    output: Tensor,
    /// `[B, 3, H, W]` in `[-1, 1]`.
    target: Tensor,
    /// `[B * h * w, 512]` L2-normalised queries.
    queries: Tensor,
    /// `None` without memory.
    read: Option<memad_core::MemoryRead>,
}

impl Mnad {
    pub fn new(cfg: MnadConfig, ctx: &BuildContext) -> Result<Self> {
        if ctx.image_size % 8 != 0 {
            return Err(CoreError::Invalid(format!(
                "mnad: data.image_size must be divisible by 8 (the encoder downsamples 3 times), got {}",
                ctx.image_size
            )));
        }
        let vs = nn::VarStore::new(ctx.device);
        let inputs = match cfg.task {
            MnadTask::Predict => cfg.frames - 1,
            MnadTask::Reconstruct => 1,
        } as i64;
        let encoder = UnetEncoder::new(vs.root() / "encoder", 3 * inputs);
        let decoder = UnetDecoder::new(
            vs.root() / "decoder",
            if cfg.use_memory { 2 } else { 1 } * UNET_FEATURES,
            3,
            cfg.task == MnadTask::Predict,
        );
        let memory = if cfg.use_memory {
            Some(MnadMemory::new(&cfg.memory, ctx.device)?)
        } else {
            None
        };
        Ok(Mnad {
            cfg,
            vs,
            encoder,
            decoder,
            memory,
            pending: None,
        })
    }

    fn forward(&self, batch: &Batch, train: bool) -> Result<Forward> {
        let channels = batch.input.size()[1];
        let want = 3 * self.cfg.frames as i64;
        if channels != want {
            return Err(CoreError::Invalid(format!(
                "mnad: the input has {channels} channels, method.frames = {} needs {want} \
                 (set [data.clip] frames = {} for prediction, no clip for reconstruction)",
                self.cfg.frames, self.cfg.frames
            )));
        }
        let x = batch.input.to_kind(Kind::Float) * 2.0 - 1.0;
        let (input, target) = match self.cfg.task {
            MnadTask::Predict => (x.narrow(1, 0, want - 3), x.narrow(1, want - 3, 3)),
            MnadTask::Reconstruct => (x.shallow_clone(), x),
        };
        let enc = self.encoder.forward_t(&input, train);
        let (b, c, h, w) = enc.features.size4()?;
        let queries = enc
            .features
            .permute([0, 2, 3, 1])
            .reshape([b * h * w, c])
            .l2_normalize();
        let (decoder_input, read) = match &self.memory {
            Some(memory) => {
                let read = memory.read(&queries, train);
                let p_hat = read.output.reshape([b, h, w, c]).permute([0, 3, 1, 2]);
                let q = queries.reshape([b, h, w, c]).permute([0, 3, 1, 2]);
                (Tensor::cat(&[q, p_hat], 1), Some(read))
            }
            None => (enc.features.shallow_clone(), None),
        };
        let output = self.decoder.forward_t(&decoder_input, &enc.skips, train);
        Ok(Forward {
            output,
            target,
            queries,
            read,
        })
    }
}

/// L2-normalises the rows of `[N, C]`.
trait L2Normalize {
    fn l2_normalize(&self) -> Tensor;
}

impl L2Normalize for Tensor {
    fn l2_normalize(&self) -> Tensor {
        let norm = self
            .norm_scalaropt_dim(2, [1].as_slice(), true)
            .clamp_min(1e-12);
        self / norm
    }
}

impl Method for Mnad {
    fn trainable(&self) -> &nn::VarStore {
        &self.vs
    }

    fn train_step(&mut self, batch: &Batch) -> Result<TrainOutput> {
        let f = self.forward(batch, true)?;
        let pixel = (&f.output - &f.target).square().mean(Kind::Float);
        let mut terms = vec![LossTerm {
            name: "pixel".into(),
            value: pixel.double_value(&[]),
        }];
        let mut parts = vec![pixel];
        let memory_losses = match (&self.memory, &f.read) {
            (Some(memory), Some(read)) => memory.losses(&f.queries, read),
            _ => Vec::new(),
        };
        for (name, term) in memory_losses {
            terms.push(LossTerm {
                name,
                value: term.double_value(&[]),
            });
            parts.push(term);
        }
        let loss = Tensor::stack(&parts, 0).sum(Kind::Float);
        if self.memory.is_some() {
            self.pending = Some(f.queries.detach());
        }
        Ok(TrainOutput { loss, terms })
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let Some(memory) = &self.memory else {
            return Vec::new();
        };
        memory
            .state()
            .into_iter()
            .map(|(name, t)| (format!("memory.{name}"), t))
            .collect()
    }

    fn after_step(&mut self) -> Result<()> {
        match self.pending.take() {
            Some(q) => match self.memory.as_mut() {
                Some(memory) => tch::no_grad(|| memory.update(&q)),
                None => Ok(()),
            },
            None => Ok(()),
        }
    }

    fn score(&self, batch: &Batch) -> Result<AnomalyOutput> {
        let f = self.forward(batch, false)?;
        let b = f.output.size()[0];
        // PSNR on [0, 1] images: 10 log10(1 / mse).
        let err = ((&f.output - &f.target) / 2.0).square();
        let mse = err.mean_dim([1, 2, 3].as_slice(), false, Kind::Float);
        let neg_psnr = mse.clamp_min(1e-10).log10() * 10.0;
        let anomaly_map = err.mean_dim([1].as_slice(), true, Kind::Float);
        let Some(read) = &f.read else {
            return Ok(AnomalyOutput {
                image_score: neg_psnr.shallow_clone(),
                anomaly_map: Some(anomaly_map),
                parts: vec![ScorePart {
                    name: "neg_psnr".into(),
                    weight: 1.0,
                    value: neg_psnr,
                }],
                class_prediction: None,
            });
        };
        let distance = read
            .distance
            .as_ref()
            .ok_or_else(|| CoreError::Invalid("mnad: the memory gives no distance".into()))?
            .reshape([b, -1])
            .mean_dim([1].as_slice(), false, Kind::Float);
        let lambda = self.cfg.psnr_weight;
        let image_score = &neg_psnr * lambda + &distance * (1.0 - lambda);
        Ok(AnomalyOutput {
            image_score,
            anomaly_map: Some(anomaly_map),
            parts: vec![
                ScorePart {
                    name: "neg_psnr".into(),
                    weight: lambda,
                    value: neg_psnr,
                },
                ScorePart {
                    name: "feature_distance".into(),
                    weight: 1.0 - lambda,
                    value: distance,
                },
            ],
            class_prediction: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn section(extra: &str) -> toml::Value {
        toml::from_str(&format!(
            "kind = \"mnad\"\ntask = \"predict\"\nframes = 3\npsnr_weight = 0.6\n[memory]\n{extra}"
        ))
        .unwrap()
    }

    fn ctx(size: i64) -> BuildContext {
        BuildContext {
            device: Device::Cpu,
            weights_dir: Default::default(),
            image_size: size,
            classes: 1,
        }
    }

    fn batch(frames: i64, size: i64) -> Batch {
        tch::manual_seed(0);
        Batch {
            input: Tensor::rand([2, 3 * frames, size, size], (Kind::Float, Device::Cpu)),
            label: Tensor::zeros([2], (Kind::Int64, Device::Cpu)),
            mask: None,
            class: None,
            synthetic: None,
        }
    }

    #[test]
    fn config_errors_name_the_key() {
        let reg = Registry::default();
        let resolved = resolve(&section(""), "method", &reg).unwrap();
        assert_eq!(resolved["memory"]["slots"].as_integer(), Some(10));
        let err = |extra: &str| {
            resolve(&section(extra), "method", &reg)
                .unwrap_err()
                .to_string()
        };
        assert!(err("size = 3").contains("method.memory"));
        assert!(err("dim = 256").contains("method.memory.dim"));
        let recon = toml::from_str(
            "kind = \"mnad\"\ntask = \"reconstruct\"\nframes = 5\npsnr_weight = 0.6\n[memory]",
        )
        .unwrap();
        let msg = resolve(&recon, "method", &reg).unwrap_err().to_string();
        assert!(msg.contains("method.frames"), "{msg}");
    }

    #[test]
    fn a_step_trains_the_network_and_updates_the_memory_by_rule() {
        let cfg = parse(&section(""), "method").unwrap();
        let mut m = Mnad::new(cfg, &ctx(16)).unwrap();
        let before = m.memory.as_ref().unwrap().items().copy();
        let out = m.train_step(&batch(3, 16)).unwrap();
        let names: Vec<&str> = out.terms.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["pixel", "compactness", "separateness"]);
        let sum: f64 = out.terms.iter().map(|t| t.value).sum();
        assert!((out.loss.double_value(&[]) - sum).abs() < 1e-5);
        out.loss.backward();
        m.after_step().unwrap();
        let moved = (m.memory.as_ref().unwrap().items() - &before)
            .abs()
            .max()
            .double_value(&[]);
        assert!(moved > 0.0, "the update moves the items");
        let norms = m
            .memory
            .as_ref()
            .unwrap()
            .items()
            .norm_scalaropt_dim(2, [1].as_slice(), false);
        assert!(norms.allclose(&Tensor::ones_like(&norms), 1e-5, 1e-5, false));
        assert_eq!(m.state()[0].0, "memory.items");
    }

    #[test]
    fn score_combines_psnr_and_feature_distance() {
        let cfg = parse(&section(""), "method").unwrap();
        let m = Mnad::new(cfg, &ctx(16)).unwrap();
        let out = tch::no_grad(|| m.score(&batch(3, 16))).unwrap();
        assert_eq!(out.image_score.size(), [2]);
        assert_eq!(out.anomaly_map.unwrap().size(), [2, 1, 16, 16]);
        let [p, d] = &out.parts[..] else {
            panic!("two parts")
        };
        assert_eq!((p.name.as_str(), p.weight), ("neg_psnr", 0.6));
        let combined = &p.value * 0.6 + &d.value * 0.4;
        assert!(combined.allclose(&out.image_score, 1e-5, 1e-5, false));
        // -PSNR of images in [0, 1] is finite and below 0 dB error power 1.
        assert!(p.value.max().double_value(&[]) < 0.0);
        assert!(d.value.min().double_value(&[]) >= 0.0);
    }

    #[test]
    fn the_ablation_without_memory_is_a_plain_unet() {
        let text = "kind = \"mnad\"\ntask = \"predict\"\nframes = 3\npsnr_weight = 0.6\nuse_memory = false\n[memory]";
        let cfg = parse(&toml::from_str(text).unwrap(), "method").unwrap();
        let mut m = Mnad::new(cfg, &ctx(16)).unwrap();
        let out = m.train_step(&batch(3, 16)).unwrap();
        assert_eq!(out.terms.len(), 1, "pixel loss only");
        out.loss.backward();
        m.after_step().unwrap();
        assert!(m.state().is_empty());
        let scored = tch::no_grad(|| m.score(&batch(3, 16))).unwrap();
        assert_eq!(scored.parts.len(), 1);
        assert!(scored.parts[0]
            .value
            .allclose(&scored.image_score, 0.0, 0.0, false));
    }

    #[test]
    fn wrong_clip_length_is_a_clear_error() {
        let cfg = parse(&section(""), "method").unwrap();
        let m = Mnad::new(cfg, &ctx(16)).unwrap();
        let msg = m.score(&batch(1, 16)).unwrap_err().to_string();
        assert!(msg.contains("[data.clip] frames = 3"), "{msg}");
        assert!(Mnad::new(parse(&section(""), "method").unwrap(), &ctx(20)).is_err());
    }
}
