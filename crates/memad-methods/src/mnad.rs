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
//! - Update (Eq. 3-5, by rule after each optimizer step, items never get gradients): items
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
//!   lr 2e-4 (reconstruction: 2e-5, Sec. 4.1; the reference's `Train.py` has one `--lr`,
//!   default 2e-4, for both) with cosine annealing, 60 epochs (Ped2), lambda = 0.6 in the
//!   paper and in the reference's current `Evaluate.py` (`--alpha 0.6`, `--th 0.01`; an
//!   earlier version defaulted to 0.7, the value its README gives for reconstruction, with
//!   `--th 0.015`).
//!
//! - Test-time update (Sec. 3.3, the reference's `Evaluate.py`): the test frames are scored one
//!   at a time in test order, the memory starting from the trained items and carried over
//!   the whole test set; after a frame is scored, its queries update the memory (the training
//!   rule) when its error score `sum(n * e) / sum(n)`, `e` the per-element squared error on
//!   `[0, 1]` images and `n = 1 - exp(-e)` (`point_score`, a weighted mean of `e`: in
//!   `[0, 1]`), is below `update_threshold` (0.01; a config error outside `[0, 1]` or NaN,
//!   even with the update off). `test_time_update = false` freezes the memory (scores then do not depend on the
//!   test order); either way the trained items are what the checkpoint stores.
//!
//! Other memories: `[method.memory] kind` takes any registered memory kind (`memad list`;
//! default `"mnad"`, the paper's). The decoder then reads `[q; read]` of that memory, its
//! losses replace compactness and separateness, and `D` is the memory's `distance` or,
//! for a memory that reports none (`"memae"`), the squared distance `||q^k - read^k||^2` of
//! each query to its own read. Its `dim` must be 512. A memory learned by gradient (its
//! registry entry not `updated_by_rule`) has nothing to update at test time: with it
//! `test_time_update = true` is a config error (it would only score frame by frame).
//!
//! Deviations: the learning-rate schedule is the runner's `[train] schedule`; the paper files
//! use `"cosine"`, annealed per optimizer step (the reference steps it per epoch). The first
//! `T - 1` frames of each video are never scored, as in the reference. Frames are resized
//! as `[data] resize_filter` says: the paper files set `"bilinear"`, the reference's
//! `cv2.resize` (bilinear without antialiasing, within a grey level); the default, an
//! antialiased bilinear, differs from it by up to 20 levels on Ped2 frames. The reference
//! reads frames in OpenCV's BGR order, memad in RGB: a fixed permutation of the input
//! channels of a network trained from scratch (none on gray Ped2). The last, smaller batch of an epoch is trained on (the reference's loader drops it).
//! Initialisation: the defaults of the PyTorch 1.1.0 the reference pins, which it keeps:
//! convolution weights and biases `U(+-1/sqrt(fan_in))` ([`memad_decoders::init`]; tch's
//! default is wider, with zero biases), BatchNorm weights `U(0, 1)` (1 from PyTorch 1.2 on,
//! which at 32 px and 2 epochs lost 3-4 points of micro AUROC: `docs/results.md`, "The
//! initialisation").
use memad_core::{
    memory_dim, parse_section, to_toml_value, AnomalyOutput, Batch, BuildContext, ConfigError,
    CoreError, LossTerm, Memory, MemoryUsage, Method, Registry, Result, ScorePart, TrainOutput,
};
use memad_decoders::{UnetDecoder, UnetEncoder, UNET_FEATURES};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
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
    /// The memory section, resolved: `kind` (default `"mnad"`: `slots`, `dim` = 512, loss
    /// weights; or any registered memory kind) and that memory's keys.
    pub memory: toml::Value,
    /// `lambda` of the score: weight of `g(-PSNR)`; `1 - lambda` weighs `g(D)`.
    pub psnr_weight: f64,
    /// `false`: the ablation without memory (the decoder reads the encoder's features
    /// directly, the loss is the pixel loss alone, the score is `g(-PSNR)`).
    #[serde(default = "d_true")]
    pub use_memory: bool,
    /// Update the memory with the queries of well-predicted test frames while scoring
    /// (the reference's evaluation); `false` freezes it.
    #[serde(default = "d_true")]
    pub test_time_update: bool,
    /// The `point_score` below which a test frame updates the memory (0.01, `--th`); in
    /// `[0, 1]`, the range of the point score.
    #[serde(default = "d_update_threshold")]
    pub update_threshold: f64,
}

fn d_true() -> bool {
    true
}
fn d_update_threshold() -> f64 {
    0.01
}

/// The memory kind of a `[method.memory]` section that names none.
pub const DEFAULT_MEMORY: &str = "mnad";

fn parse(
    section: &toml::Value,
    path: &str,
    registry: &Registry,
) -> std::result::Result<MnadConfig, ConfigError> {
    let mut cfg: MnadConfig = parse_section(section, path)?;
    cfg.memory = registry.resolve_memory(&cfg.memory, &format!("{path}.memory"), DEFAULT_MEMORY)?;
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
    if memory_dim(&cfg.memory) != Some(UNET_FEATURES) {
        return Err(ConfigError::new(
            format!("{path}.memory.dim"),
            format!("must equal the encoder's {UNET_FEATURES} channels"),
        ));
    }
    let memory_kind = (cfg.memory.get("kind").and_then(|k| k.as_str())).unwrap_or(DEFAULT_MEMORY);
    let memory_path = format!("{path}.memory.kind");
    if cfg.use_memory
        && cfg.test_time_update
        && !registry.memory(memory_kind, &memory_path)?.updated_by_rule
    {
        return Err(ConfigError::new(
            format!("{path}.test_time_update"),
            format!(
                "memory `{memory_kind}` is learned by gradient, not updated by rule: updating it \
                 while scoring changes nothing and only scores frame by frame; set \
                 test_time_update = false"
            ),
        ));
    }
    if !(0.0..=1.0).contains(&cfg.psnr_weight) {
        return Err(ConfigError::new(
            format!("{path}.psnr_weight"),
            "must be in [0, 1]",
        ));
    }
    if !(0.0..=1.0).contains(&cfg.update_threshold) {
        return Err(ConfigError::new(
            format!("{path}.update_threshold"),
            format!(
                "must be in [0, 1] (a frame's point score, a weighted mean of squared errors \
                 of [0, 1] images, is in [0, 1]: 0 updates on no frame, 1 on nearly every \
                 one; the reference uses 0.01), got {}",
                cfg.update_threshold
            ),
        ));
    }
    Ok(cfg)
}

/// Registry `check_data`: the input must hold the frames the model reads.
///
/// - Prediction predicts the last frame of its clip, so the clip's scored frame (the label,
///   mask and score it carries) must be that last frame: `[data.clip] mode = "predict"`. A
///   centred clip scores its middle frame, which the prediction would read as input while
///   its score went to another frame.
/// - `method.frames` (past frames + the target for prediction, 1 for reconstruction) must
///   equal the frames of a sample: `[data.clip] frames`, or 1 without a `[data.clip]` (the
///   loader stacks a clip's `frames` RGB frames, all of them, the target included, into
///   `3 * frames` channels, and `forward` refuses any other count). Prediction therefore
///   needs a `[data.clip]`.
pub fn check_data(
    method: &toml::Value,
    data: &toml::Value,
) -> std::result::Result<(), ConfigError> {
    let predict = method.get("task").and_then(toml::Value::as_str) == Some("predict");
    let clip = data.get("clip");
    let mode = clip
        .and_then(|c| c.get("mode"))
        .and_then(toml::Value::as_str);
    if let Some(mode) = mode.filter(|&m| predict && m != "predict") {
        return Err(ConfigError::new(
            "data.clip.mode",
            format!(
                "MNAD's task = \"predict\" predicts the last frame of each clip and scores it: \
                 it needs mode = \"predict\" (past frames, then the scored frame); mode = \
                 \"{mode}\" labels each clip by its middle frame, which the prediction reads \
                 as input, while the score is the last frame's"
            ),
        ));
    }
    let Some(frames) = method.get("frames").and_then(toml::Value::as_integer) else {
        return Ok(());
    };
    match clip.map(|c| c.get("frames").and_then(toml::Value::as_integer)) {
        None if frames != 1 => Err(ConfigError::new(
            "data.clip",
            format!(
                "MNAD's task = \"predict\" with method.frames = {frames} reads clips of \
                 {frames} frames ({} past frames and the frame predicted): add [data.clip] \
                 with frames = {frames} and mode = \"predict\"; without it every sample is \
                 one frame",
                frames - 1
            ),
        )),
        Some(Some(clip_frames)) if clip_frames != frames => Err(ConfigError::new(
            "data.clip.frames",
            match predict {
                true => format!(
                    "must equal method.frames = {frames} (MNAD's prediction reads {} past \
                     frames and predicts the clip's last, all {frames} in the clip), got \
                     {clip_frames}",
                    frames - 1
                ),
                false => format!(
                    "must equal method.frames = {frames} (MNAD's reconstruction reads one \
                     frame; leave out [data.clip]), got {clip_frames}"
                ),
            },
        )),
        _ => Ok(()),
    }
}

/// Registry `image_multiple`: the U-Net encoder downsamples 3 times.
pub fn image_multiple(_: &toml::Value) -> i64 {
    8
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
    Ok(Box::new(Mnad::new(cfg, registry, ctx)?))
}

/// MNAD (prediction or reconstruction).
pub struct Mnad {
    cfg: MnadConfig,
    vs: nn::VarStore,
    encoder: UnetEncoder,
    decoder: UnetDecoder,
    /// `None` for the ablation without memory. In a cell: the test-time update changes it
    /// while scoring.
    memory: Option<RefCell<Box<dyn Memory>>>,
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
    /// The memory of `cfg.memory` comes from `registry` (its variables, if it learns any,
    /// under `memory` in the VarStore).
    pub fn new(cfg: MnadConfig, registry: &Registry, ctx: &BuildContext) -> Result<Self> {
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
            let path = vs.root() / "memory";
            Some(RefCell::new(registry.build_memory(
                &cfg.memory,
                "method.memory",
                &path,
            )?))
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
                let read = memory.borrow().read(&queries, train);
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
        let mut terms = vec![LossTerm::new("pixel", &pixel)];
        let mut parts = vec![pixel];
        let memory_losses = match (&self.memory, &f.read) {
            (Some(memory), Some(read)) => memory.borrow().losses(&f.queries, read),
            _ => Vec::new(),
        };
        for (name, term) in memory_losses {
            terms.push(LossTerm::new(name, &term));
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
        memad_core::state_prefixed(memory.borrow().state(), "memory.")
    }

    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let Some(memory) = &self.memory else {
            return match state.first() {
                None => Ok(()),
                Some((name, _)) => Err(CoreError::Invalid(format!(
                    "mnad without memory has no state; got `{name}`"
                ))),
            };
        };
        let inner = memad_core::state_under(state, "memory.", "mnad")?;
        memory.borrow_mut().load_state(&inner)
    }

    fn after_step(&mut self) -> Result<()> {
        match self.pending.take() {
            Some(q) => match self.memory.as_mut() {
                Some(memory) => tch::no_grad(|| memory.get_mut().update(&q)),
                None => Ok(()),
            },
            None => Ok(()),
        }
    }

    fn score(&self, batch: &Batch) -> Result<AnomalyOutput> {
        let Some(memory) = self.memory.as_ref().filter(|_| self.cfg.test_time_update) else {
            return self.outputs(&self.forward(batch, false)?);
        };
        // One frame at a time, in order, each seeing the updates of the frames before it.
        let mut outs = Vec::new();
        for i in 0..batch.input.size()[0] {
            let one = Batch {
                input: batch.input.narrow(0, i, 1),
                label: batch.label.narrow(0, i, 1),
                mask: None,
                class: None,
                synthetic: None,
            };
            let f = self.forward(&one, false)?;
            outs.push(self.outputs(&f)?);
            if point_score(&f.output, &f.target)? < self.cfg.update_threshold {
                tch::no_grad(|| memory.borrow_mut().update(&f.queries))?;
            }
        }
        let cat = |get: &dyn Fn(&AnomalyOutput) -> &Tensor| {
            Tensor::cat(&outs.iter().map(get).collect::<Vec<_>>(), 0)
        };
        Ok(AnomalyOutput {
            image_score: cat(&|o| &o.image_score),
            anomaly_map: Some(cat(&|o| o.anomaly_map.as_ref().expect("mnad maps"))),
            parts: (0..outs[0].parts.len())
                .map(|k| ScorePart {
                    name: outs[0].parts[k].name.clone(),
                    weight: outs[0].parts[k].weight,
                    value: cat(&|o| &o.parts[k].value),
                })
                .collect(),
            class_prediction: None,
            memory_usage: (0..outs[0].memory_usage.len())
                .map(|k| MemoryUsage {
                    name: outs[0].memory_usage[k].name.clone(),
                    attention: cat(&|o| &o.memory_usage[k].attention),
                })
                .collect(),
        })
    }
}

/// The reference's `point_score` of one frame: `sum(n * e) / sum(n)` with `e` the squared
/// error per element on `[0, 1]` images and `n = 1 - exp(-e)`; `output`, `target` `[1, 3, H,
/// W]` in `[-1, 1]`.
fn point_score(output: &Tensor, target: &Tensor) -> Result<f64> {
    let e = ((output - target) / 2.0).square();
    let n = e.neg().exp().neg() + 1.0;
    // Both sums in one read: one wait for the device per frame.
    let sums = Tensor::stack(&[(&n * &e).sum(Kind::Float), n.sum(Kind::Float)], 0);
    let [num, den] = <[f64; 2]>::try_from(Vec::<f64>::try_from(sums.to_kind(Kind::Double))?)
        .map_err(|_| CoreError::Invalid("point_score: two sums".into()))?;
    if den <= 0.0 {
        return Ok(0.0); // a perfect prediction
    }
    Ok(num / den)
}

impl Mnad {
    /// Scores, parts and map of a forward pass.
    fn outputs(&self, f: &Forward) -> Result<AnomalyOutput> {
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
                memory_usage: Vec::new(),
            });
        };
        // `||q^k - p_nearest||^2` from the MNAD memory; the distance to the read otherwise.
        let per_query = match &read.distance {
            Some(distance) => distance.shallow_clone(),
            None => (&f.queries - &read.output).square().sum_dim_intlist(
                [1].as_slice(),
                false,
                Kind::Float,
            ),
        };
        let distance = per_query
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
            memory_usage: read
                .attention
                .as_ref()
                .map(|a| MemoryUsage::per_sample("memory", a, b))
                .into_iter()
                .collect(),
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

    /// The memories MNAD can take.
    fn registry() -> Registry {
        let mut r = Registry::default();
        memory_mnad::register(&mut r);
        memory_memae::register(&mut r);
        r
    }

    fn build(section: &toml::Value, size: i64) -> Mnad {
        let r = registry();
        Mnad::new(parse(section, "method", &r).unwrap(), &r, &ctx(size)).unwrap()
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
        let reg = registry();
        let resolved = resolve(&section(""), "method", &reg).unwrap();
        assert_eq!(resolved["memory"]["kind"].as_str(), Some("mnad"));
        assert_eq!(resolved["memory"]["slots"].as_integer(), Some(10));
        let err = |extra: &str| {
            resolve(&section(extra), "method", &reg)
                .unwrap_err()
                .to_string()
        };
        assert!(err("size = 3").contains("method.memory"));
        assert!(err("dim = 256").contains("method.memory.dim"));
        assert!(err("kind = \"memea\"").contains("known: memae, mnad"));
        // MemAE's memory has no defaults for its size; at 256 it does not fit the encoder.
        assert!(err("kind = \"memae\"").contains("method.memory"));
        assert!(err("kind = \"memae\"\nslots = 4\ndim = 256").contains("method.memory.dim"));
        // A memory learned by gradient has nothing to update while scoring.
        let msg = err("kind = \"memae\"\nslots = 4\ndim = 512");
        assert!(msg.contains("method.test_time_update"), "{msg}");
        assert!(msg.contains("set test_time_update = false"), "{msg}");
        assert!(resolve(&memae_memory(), "method", &reg).is_ok());
        let recon = toml::from_str(
            "kind = \"mnad\"\ntask = \"reconstruct\"\nframes = 5\npsnr_weight = 0.6\n[memory]",
        )
        .unwrap();
        let msg = resolve(&recon, "method", &reg).unwrap_err().to_string();
        assert!(msg.contains("method.frames"), "{msg}");
    }

    #[test]
    fn a_step_trains_the_network_and_updates_the_memory_by_rule() {
        let mut m = build(&section(""), 16);
        let before = items(&m);
        let out = m.train_step(&batch(3, 16)).unwrap();
        let names: Vec<&str> = out.terms.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["pixel", "compactness", "separateness"]);
        let (loss, values) = out.read();
        assert_eq!(loss, out.loss.double_value(&[]));
        assert!((loss - values.iter().sum::<f64>()).abs() < 1e-5);
        out.loss.backward();
        m.after_step().unwrap();
        let moved = (items(&m) - &before).abs().max().double_value(&[]);
        assert!(moved > 0.0, "the update moves the items");
        let norms = items(&m).norm_scalaropt_dim(2, [1].as_slice(), false);
        assert!(norms.allclose(&Tensor::ones_like(&norms), 1e-5, 1e-5, false));
        assert_eq!(m.state()[0].0, "memory.items");
    }

    #[test]
    fn score_combines_psnr_and_feature_distance() {
        let m = build(&section(""), 16);
        // One batch for the score and the forward pass below (tests beside this one draw
        // from the same global generator).
        let b = batch(3, 16);
        // The forward pass before scoring: the first frame is scored with this memory.
        let f = tch::no_grad(|| m.forward(&b, false)).unwrap();
        // The items before scoring (the score may update them after the last frame).
        let trained = items(&m);
        let out = tch::no_grad(|| m.score(&b)).unwrap();
        assert_eq!(out.image_score.size(), [2]);
        assert_eq!(out.anomaly_map.unwrap().size(), [2, 1, 16, 16]);
        let [p, d] = &out.parts[..] else {
            panic!("two parts")
        };
        assert_eq!((p.name.as_str(), p.weight), ("neg_psnr", 0.6));
        assert_eq!((d.name.as_str(), d.weight), ("feature_distance", 0.4));
        // -PSNR of the first frame, from its [-1, 1] prediction and target mapped to [0, 1]:
        // -10 log10(1 / mse).
        let flat = |t: &Tensor| Vec::<f64>::try_from(t.get(0).reshape([-1]).to_kind(Kind::Double));
        let (o, t) = (flat(&f.output).unwrap(), flat(&f.target).unwrap());
        let mse = (o.iter().zip(&t))
            .map(|(o, t)| ((o + 1.0) / 2.0 - (t + 1.0) / 2.0).powi(2))
            .sum::<f64>()
            / o.len() as f64;
        let neg_psnr = -10.0 * (1.0 / mse).log10();
        let got = p.value.double_value(&[0]);
        assert!((got - neg_psnr).abs() < 1e-4, "{got} {neg_psnr}");
        let combined = &p.value * 0.6 + &d.value * 0.4;
        assert!(combined.allclose(&out.image_score, 1e-5, 1e-5, false));
        // -PSNR of images in [0, 1] is finite and below 0 dB error power 1.
        assert!(p.value.max().double_value(&[]) < 0.0);
        assert!(d.value.min().double_value(&[]) >= 0.0);
        // D (Eq. 12) = mean_k ||q^k - p_nearest||^2 per frame, recomputed here from the
        // queries and the items the frames were scored with: the squared distance of each
        // query to every item, its minimum (the items and queries are unit vectors, so the
        // nearest by distance is the nearest by `p_m^T q^k`, the memory's choice).
        // The score updates the memory after a frame whose point score is below the
        // threshold; the first frame's is above it, so both frames see the trained items.
        let first = |t: &Tensor| t.narrow(0, 0, 1);
        let ps = point_score(&first(&f.output), &first(&f.target)).unwrap();
        assert!(ps >= m.cfg.update_threshold, "point score {ps}");
        let (slots, dim) = (trained.size()[0], trained.size()[1]);
        let per_query = (f.queries.unsqueeze(1) - trained.reshape([1, slots, dim]))
            .square()
            .sum_dim_intlist([2].as_slice(), false, Kind::Double)
            .amin([1].as_slice(), false); // [B h w]
        let read_distance = f.read.as_ref().unwrap().distance.as_ref().unwrap();
        assert!(read_distance
            .to_kind(Kind::Double)
            .allclose(&per_query, 1e-5, 1e-6, false));
        let expected = per_query
            .reshape([2, -1])
            .mean_dim([1].as_slice(), false, Kind::Double);
        let got = d.value.to_kind(Kind::Double);
        assert!(
            got.allclose(&expected, 1e-5, 1e-6, false),
            "{got} vs {expected}"
        );
        assert!(expected.min().double_value(&[]) > 0.0);
    }

    #[test]
    fn the_ablation_without_memory_is_a_plain_unet() {
        let text = "kind = \"mnad\"\ntask = \"predict\"\nframes = 3\npsnr_weight = 0.6\nuse_memory = false\n[memory]";
        let mut m = build(&toml::from_str(text).unwrap(), 16);
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

    /// MNAD with MemAE's memory, frozen at test time (MNAD refuses to update it there).
    fn memae_memory() -> toml::Value {
        let mut s = section("kind = \"memae\"\nslots = 6\ndim = 512");
        s.as_table_mut()
            .unwrap()
            .insert("test_time_update".into(), false.into());
        s
    }

    /// A copy of the MNAD memory's items (its state).
    fn items(m: &Mnad) -> Tensor {
        let state = m.state();
        let (_, items) = state.iter().find(|(n, _)| n == "memory.items").unwrap();
        items.copy()
    }

    #[test]
    fn takes_memaes_memory_learned_by_gradient_in_its_varstore() {
        let mut m = build(&memae_memory(), 16);
        let names: Vec<String> = m.trainable().variables().into_keys().collect();
        assert!(names.iter().any(|n| n.starts_with("memory.")), "{names:?}");
        let out = m.train_step(&batch(3, 16)).unwrap();
        let terms: Vec<&str> = out.terms.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(terms, ["pixel", "entropy"]);
        out.loss.backward();
        m.after_step().unwrap();
        assert!(m.state().is_empty(), "its items are VarStore variables");
        // No distance from this memory: D is each query's squared distance to its read.
        // (One batch for both: tests beside this one draw from the same global generator.)
        let b = batch(3, 16);
        let out = tch::no_grad(|| m.score(&b)).unwrap();
        let f = tch::no_grad(|| m.forward(&b, false)).unwrap();
        let read = f.read.unwrap();
        let expected = (&f.queries - &read.output)
            .square()
            .sum_dim_intlist([1].as_slice(), false, Kind::Float)
            .reshape([2, -1])
            .mean_dim([1].as_slice(), false, Kind::Float);
        assert_eq!(out.parts[1].name, "feature_distance");
        assert!(out.parts[1].value.allclose(&expected, 1e-6, 1e-6, false));
        assert!(expected.min().double_value(&[]) > 0.0);
    }

    #[test]
    fn test_time_update_goes_frame_by_frame_below_the_threshold() {
        let with = |extra: &str| {
            let text = format!(
                "kind = \"mnad\"\ntask = \"predict\"\nframes = 3\npsnr_weight = 0.6\n{extra}\n[memory]"
            );
            tch::manual_seed(3);
            build(&toml::from_str(&text).unwrap(), 16)
        };
        let b = batch(3, 16);
        // Frozen, or a threshold no frame is under: the items stay, the batch is scored at once.
        for extra in ["test_time_update = false", "update_threshold = 0.0"] {
            let m = with(extra);
            let before = items(&m);
            let out = tch::no_grad(|| m.score(&b)).unwrap();
            assert!(items(&m).equal(&before), "{extra}");
            assert_eq!(out.image_score.size(), [2]);
        }
        // Every frame under the threshold: the items move after each frame, so the second
        // frame is scored against a memory the first one updated. (One model, switched, so
        // that tests running beside this one cannot change its initialisation.)
        let mut m = with("update_threshold = 1.0");
        m.cfg.test_time_update = false;
        let frozen_out = tch::no_grad(|| m.score(&b)).unwrap();
        let before = items(&m);
        m.cfg.test_time_update = true;
        let out = tch::no_grad(|| m.score(&b)).unwrap();
        assert!(!items(&m).equal(&before), "the memory moved");
        let first = |t: &Tensor| t.narrow(0, 0, 1);
        let d = |o: &AnomalyOutput| o.parts[1].value.shallow_clone();
        let (a, f) = (first(&d(&out)), first(&d(&frozen_out)));
        assert!(a.allclose(&f, 1e-4, 1e-6, false), "{a:?} {f:?}");
        let second_changed = (d(&out).get(1) - d(&frozen_out).get(1))
            .abs()
            .double_value(&[]);
        assert!(second_changed > 0.0);
        assert_eq!(out.anomaly_map.unwrap().size(), [2, 1, 16, 16]);
        // The reference's point score: e = 0.25 everywhere gives e itself.
        let zero = Tensor::zeros([1, 3, 2, 2], (Kind::Float, tch::Device::Cpu));
        assert!((point_score(&zero, &(zero.ones_like())).unwrap() - 0.25).abs() < 1e-6);
        assert_eq!(point_score(&zero, &zero).unwrap(), 0.0);
    }

    /// Prediction scores the last frame of its clip: a centred clip (its middle frame
    /// scored) is refused at check time; the registry's declared outputs match `score`.
    #[test]
    fn prediction_needs_predict_clips_and_declares_its_outputs() {
        let mut r = Registry::default();
        crate::register(&mut r);
        let entry = r.method("mnad", "method.kind").unwrap();
        let data = |mode: &str| -> toml::Value {
            toml::from_str(&format!(
                "batch_size = 4\n[clip]\nframes = 3\nmode = \"{mode}\""
            ))
            .unwrap()
        };
        let predict = resolve(&section(""), "method", &r).unwrap();
        for mode in ["centred", "centred_valid"] {
            let err = (entry.check_data)(&predict, &data(mode)).unwrap_err();
            assert_eq!(err.path, "data.clip.mode");
            assert!(
                err.message.contains("needs mode = \"predict\"")
                    && err.message.contains(&format!("mode = \"{mode}\"")),
                "{}",
                err.message
            );
        }
        assert!((entry.check_data)(&predict, &data("predict")).is_ok());
        let text =
            "kind = \"mnad\"\ntask = \"reconstruct\"\nframes = 1\npsnr_weight = 0.6\n[memory]";
        let reconstruct = resolve(&toml::from_str(text).unwrap(), "method", &r).unwrap();
        let no_clip: toml::Value = toml::from_str("batch_size = 4").unwrap();
        assert!((entry.check_data)(&reconstruct, &no_clip).is_ok());

        let out = tch::no_grad(|| build(&section(""), 16).score(&batch(3, 16))).unwrap();
        assert_eq!(entry.anomaly_maps, out.anomaly_map.is_some());
        assert_eq!(entry.class_predictions, out.class_prediction.is_some());
    }

    /// `method.frames` counts every frame of a clip (the past ones and the target), as the
    /// loader stacks them: `[data.clip] frames` must equal it, not be one more or less, and
    /// prediction needs a clip; `score` refuses what `check_data` refuses.
    #[test]
    fn method_frames_must_equal_the_clip_frames() {
        let mut r = Registry::default();
        crate::register(&mut r);
        let entry = r.method("mnad", "method.kind").unwrap();
        let data = |frames: usize| -> toml::Value {
            toml::from_str(&format!(
                "batch_size = 4\n[clip]\nframes = {frames}\nmode = \"predict\""
            ))
            .unwrap()
        };
        // frames = 3: 2 past frames and the target, a 3-frame clip (9 channels).
        let predict = resolve(&section(""), "method", &r).unwrap();
        assert!((entry.check_data)(&predict, &data(3)).is_ok());
        assert!(tch::no_grad(|| build(&section(""), 16).score(&batch(3, 16))).is_ok());
        for clip in [2, 4] {
            let err = (entry.check_data)(&predict, &data(clip)).unwrap_err();
            assert_eq!(err.path, "data.clip.frames");
            assert!(
                err.message.starts_with("must equal method.frames = 3")
                    && err.message.contains(&format!("got {clip}")),
                "{}",
                err.message
            );
            // What the first batch would otherwise have found.
            let m = build(&section(""), 16);
            assert!(tch::no_grad(|| m.score(&batch(clip as i64, 16))).is_err());
        }
        // Prediction without a clip: every sample is one frame.
        let no_clip: toml::Value = toml::from_str("batch_size = 4").unwrap();
        let err = (entry.check_data)(&predict, &no_clip).unwrap_err();
        assert_eq!(err.path, "data.clip");
        assert!(
            err.message.contains("add [data.clip] with frames = 3"),
            "{}",
            err.message
        );
        // Reconstruction reads one frame: no clip, or a clip of one.
        let text =
            "kind = \"mnad\"\ntask = \"reconstruct\"\nframes = 1\npsnr_weight = 0.6\n[memory]";
        let reconstruct = resolve(&toml::from_str(text).unwrap(), "method", &r).unwrap();
        let centred = |frames: usize| -> toml::Value {
            toml::from_str(&format!(
                "batch_size = 4\n[clip]\nframes = {frames}\nmode = \"centred\""
            ))
            .unwrap()
        };
        assert!((entry.check_data)(&reconstruct, &centred(1)).is_ok());
        let err = (entry.check_data)(&reconstruct, &centred(3)).unwrap_err();
        assert_eq!(err.path, "data.clip.frames");
        assert!(
            err.message.contains("leave out [data.clip]"),
            "{}",
            err.message
        );
    }

    /// The threshold compares with a point score in `[0, 1]`: -1 or NaN would never update
    /// (as `test_time_update = false`, silently), so outside `[0, 1]` is a config error.
    #[test]
    fn update_threshold_must_be_in_the_point_scores_range() {
        let r = registry();
        let parsed = |top: &str| {
            let text = format!(
                "kind = \"mnad\"\ntask = \"predict\"\nframes = 3\npsnr_weight = 0.6\n{top}\n[memory]"
            );
            parse(&toml::from_str(&text).unwrap(), "method", &r)
        };
        for bad in ["-1.0", "nan", "inf", "1.5", "-0.001"] {
            for update in ["true", "false"] {
                let top = format!("update_threshold = {bad}\ntest_time_update = {update}");
                let err = parsed(&top).unwrap_err();
                assert_eq!(err.path, "method.update_threshold", "{top}");
                assert!(
                    err.message.contains("must be in [0, 1]")
                        && err
                            .message
                            .contains(&format!("got {}", bad.parse::<f64>().unwrap())),
                    "{}",
                    err.message
                );
            }
        }
        for good in ["0.0", "0.01", "0.015", "1.0"] {
            let cfg = parsed(&format!("update_threshold = {good}")).unwrap();
            assert_eq!(cfg.update_threshold, good.parse::<f64>().unwrap());
        }
        assert_eq!(parsed("").unwrap().update_threshold, 0.01);
    }

    #[test]
    fn wrong_clip_length_is_a_clear_error() {
        let m = build(&section(""), 16);
        let msg = m.score(&batch(1, 16)).unwrap_err().to_string();
        assert!(msg.contains("[data.clip] frames = 3"), "{msg}");
        let r = registry();
        let cfg = parse(&section(""), "method", &r).unwrap();
        let msg = Mnad::new(cfg, &r, &ctx(20))
            .err()
            .expect("20 is not a multiple of 8")
            .to_string();
        assert!(
            msg.contains("data.image_size must be divisible by 8") && msg.contains("got 20"),
            "{msg}"
        );
    }
}
