//! The three contracts: [`Backbone`], [`Memory`], [`Method`], and the named structs they
//! exchange (never tuples).
use crate::error::Result;
use tch::{nn, Tensor};

/// Progress of long work (a coreset selection): called as `progress(done, total)` in units
/// the callee picks, `total` the same at every call. The runner draws it as a bar; callers
/// that show nothing pass [`no_progress`].
pub type Progress<'a> = &'a dyn Fn(u64, u64);

/// A [`Progress`] that shows nothing.
pub fn no_progress(_done: u64, _total: u64) {}

/// One level of a backbone's feature pyramid, as declared before any forward pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelSpec {
    /// The backbone's own name for the level (`stride8`, `layer2`, ...).
    pub name: String,
    pub channels: i64,
    /// Input pixels per feature pixel.
    pub stride: i64,
}

/// A computed level: `features` is `[B, channels, H/stride, W/stride]`.
#[derive(Debug)]
pub struct FeatureLevel {
    pub name: String,
    pub stride: i64,
    pub features: Tensor,
}

/// Levels finest first.
#[derive(Debug)]
pub struct FeaturePyramid {
    pub levels: Vec<FeatureLevel>,
}

impl FeaturePyramid {
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.levels
            .iter()
            .find(|l| l.name == name)
            .map(|l| &l.features)
    }
}

/// An image encoder.
pub trait Backbone {
    /// The levels [`Backbone::pyramid`] returns, finest first.
    fn levels(&self) -> &[LevelSpec];

    /// # Shapes
    /// `x`: `[B, 3, H, W]`, RGB in `[0, 1]`; the backbone applies its own input
    /// normalisation. Returns the levels of [`Backbone::levels`], stopping the forward pass
    /// after the last one. A frozen teacher: eval mode (batch-norm running statistics), no
    /// gradients (not even to `x`).
    fn pyramid(&self, x: &Tensor) -> FeaturePyramid;
}

/// What a memory returns for a batch of queries.
#[derive(Debug)]
pub struct MemoryRead {
    /// `[N, D]`: the memory's answer for each query.
    pub output: Tensor,
    /// `[N, slots]`: addressing weights, when the memory has them.
    pub attention: Option<Tensor>,
    /// `[N]`: distance of each query to the memory, when defined (banks, prototypes).
    pub distance: Option<Tensor>,
}

/// A named scalar loss term, logged per step.
#[derive(Debug)]
pub struct LossTerm {
    pub name: String,
    /// `[]`, detached: read on the host together with the loss ([`TrainOutput::read`]), so
    /// logging the terms costs no host synchronisation of its own.
    pub value: Tensor,
}

impl LossTerm {
    /// The term `name` with the value of `value` `[]` (detached from its graph).
    pub fn new(name: impl Into<String>, value: &Tensor) -> Self {
        LossTerm {
            name: name.into(),
            value: value.detach(),
        }
    }
}

/// A memory module. The three kinds share this one trait:
/// learned by gradient (MemAE: parameters in the VarStore, `losses` adds the entropy term),
/// updated by rule (MNAD: `update` after the optimizer step), fitted once (a patch bank:
/// `update` collects, `finalize` builds the coreset).
pub trait Memory {
    /// # Shapes
    /// `query`: `[N, D]`. Pure: no state changes.
    fn read(&self, query: &Tensor, train: bool) -> MemoryRead;

    /// Loss terms of this memory (already weighted), summed into the method's loss.
    fn losses(&self, _query: &Tensor, _read: &MemoryRead) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// Rule-based update, called by the method after each optimizer step
    /// ([`Method::after_step`]; MNAD also at test time), queries detached.
    fn update(&mut self, _query: &Tensor) -> Result<()> {
        Ok(())
    }

    /// Called once after training, for memories fitted from collected data; reports the
    /// progress of long work to `progress`.
    fn finalize(&mut self, _progress: Progress<'_>) -> Result<()> {
        Ok(())
    }

    /// State not held in a VarStore (rule-updated items, banks), for checkpoints.
    fn state(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    fn load_state(&mut self, _state: &[(String, Tensor)]) -> Result<()> {
        Ok(())
    }
}

/// A batch as the loader delivers it: every tensor on the method's device.
#[derive(Debug)]
pub struct Batch {
    /// `[B, C, H, W]` images in `[0, 1]` (or `[B, C, T, H, W]` clips).
    pub input: Tensor,
    /// `[B]` int64: 0 normal, 1 anomalous.
    pub label: Tensor,
    /// `[B, 1, H, W]` float {0, 1}: ground-truth anomaly masks (test sets).
    pub mask: Option<Tensor>,
    /// `[B]` int64: the class (category index, `0..BuildContext::classes`) of each sample;
    /// `None` where the loader was given no classes.
    pub class: Option<Tensor>,
    /// Training batches of methods registered with `synthetic_anomalies`:
    /// an anomalous copy of `input` synthesized on the host, with its mask. Training only:
    /// [`Method::score`] never reads it (a CUDA graph of the scoring leaves it out).
    pub synthetic: Option<SyntheticAnomalies>,
}

/// `input` with synthesized anomalies (DRAEM / CutPaste, `[data.synthesis]`).
#[derive(Debug)]
pub struct SyntheticAnomalies {
    /// `[B, C, H, W]` in `[0, 1]`: the batch's images, some with an anomaly pasted in.
    pub input: Tensor,
    /// `[B, 1, H, W]` float {0, 1}: where pixels were replaced (all 0 for an unchanged image).
    pub mask: Tensor,
}

/// One training step's loss (the runner calls backward on it) and its named terms.
#[derive(Debug)]
pub struct TrainOutput {
    pub loss: Tensor,
    pub terms: Vec<LossTerm>,
}

impl TrainOutput {
    /// The loss and each term's value (in the order of `terms`), copied to the host in one
    /// transfer: the read costs one host synchronisation on CUDA, however many terms are
    /// logged.
    pub fn read(&self) -> (f64, Vec<f64>) {
        let values: Vec<Tensor> = std::iter::once(self.loss.detach())
            .chain(self.terms.iter().map(|t| t.value.shallow_clone()))
            .map(|v| v.to_kind(tch::Kind::Double))
            .collect();
        let host = Tensor::stack(&values, 0).to_device(tch::Device::Cpu);
        let all = Vec::<f64>::try_from(&host).expect("a [1 + terms] double tensor");
        (all[0], all[1..].to_vec())
    }
}

/// One weighted part of a score that combines several measures (MNAD: PSNR and feature
/// distance). Protocols that normalise scores per video (min-max, MNAD/MemAE) normalise each
/// part on its own and sum `weight * normalised(value)`.
#[derive(Debug)]
pub struct ScorePart {
    pub name: String,
    pub weight: f64,
    /// `[B]`, higher = more anomalous.
    pub value: Tensor,
}

/// Anomaly scores for a batch.
#[derive(Debug)]
pub struct AnomalyOutput {
    /// `[B]` image (or frame) anomaly scores, higher = more anomalous: `sum weight * value`
    /// of `parts` when there are parts.
    pub image_score: Tensor,
    /// `[B, 1, H, W]` pixel anomaly map at the input resolution, when the method localises.
    pub anomaly_map: Option<Tensor>,
    /// The parts `image_score` combines; empty for single-measure scores.
    pub parts: Vec<ScorePart>,
    /// `[B]` int64: the class the method assigned to each sample, for methods that predict it
    /// (MDD-Net's class-aware memory); the runner reports `class_accuracy` against
    /// `Batch::class`.
    pub class_prediction: Option<Tensor>,
    /// How each of the method's memories was addressed by each sample; empty for methods
    /// without an addressed memory (PatchCore's bank, RD4AD).
    pub memory_usage: Vec<MemoryUsage>,
}

/// How one memory was addressed for a batch: the runner averages it over the normal and the
/// anomalous test samples (`memory/<category>.csv`).
#[derive(Debug)]
pub struct MemoryUsage {
    /// The memory's name within the method (`memory`; `scale1` for one of several).
    pub name: String,
    /// `[B, slots]`: per sample, the mean over its queries of the addressing weights (rows
    /// sum to 1), detached.
    pub attention: Tensor,
}

impl MemoryUsage {
    /// Averages a read's addressing weights over each sample's queries.
    ///
    /// # Shapes
    /// `attention`: `[B * positions, slots]`, sample-major (the queries of sample 0 first,
    /// as `[B, C, h, w] -> permute -> [B h w, C]` gives them) -> `[B, slots]`.
    pub fn per_sample(name: impl Into<String>, attention: &Tensor, batch: i64) -> Self {
        let slots = attention.size()[1];
        MemoryUsage {
            name: name.into(),
            attention: attention.detach().reshape([batch, -1, slots]).mean_dim(
                [1].as_slice(),
                false,
                tch::Kind::Float,
            ),
        }
    }
}

/// How the runner trains a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Training {
    /// `train.epochs` epochs of [`Method::train_step`], backward, optimizer step,
    /// [`Method::after_step`].
    Gradient,
    /// One pass over the training set calling [`Method::fit`] per batch (no gradients), then
    /// [`Method::finalize`] (PatchCore's bank and coreset); `train.epochs` does not apply.
    FitOnce,
}

/// An anomaly-detection method. The runner owns the loop, the seed, the optimizer (over
/// [`Method::trainable`]), the schedule, checkpoints and logging.
pub trait Method {
    /// The variables the optimizer updates and the checkpoint stores.
    fn trainable(&self) -> &nn::VarStore;

    /// How the runner trains it (gradient steps unless the method says otherwise).
    fn training(&self) -> Training {
        Training::Gradient
    }

    /// Collects a training batch ([`Training::FitOnce`] methods); the runner wraps it in
    /// `no_grad`.
    fn fit(&mut self, _batch: &Batch) -> Result<()> {
        Err(crate::CoreError::Invalid(
            "this method trains by gradient steps, not by `fit`".into(),
        ))
    }

    /// Called at the start of each training epoch (`epoch` in `1..=epochs`): methods with
    /// stages or their own schedules switch here.
    fn start_epoch(&mut self, _epoch: usize, _epochs: usize) -> Result<()> {
        Ok(())
    }

    /// Forward pass and loss on a training batch (no backward, no optimizer step).
    fn train_step(&mut self, batch: &Batch) -> Result<TrainOutput>;

    /// State outside [`Method::trainable`] (memory items updated by rule, fitted banks), saved
    /// beside the checkpoint.
    fn state(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// Restores what [`Method::state`] returned (a resumed run, a saved checkpoint); the
    /// runner gives the tensors on the device of [`Method::trainable`]. The default accepts
    /// an empty state only: a method with state must implement this to be resumed or loaded
    /// (the runner trains it again otherwise).
    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        if state.is_empty() {
            return Ok(());
        }
        Err(crate::CoreError::Invalid(
            "this method does not restore its state (Method::load_state)".into(),
        ))
    }

    /// Rule-based updates after the optimizer step (memories updated by rule).
    fn after_step(&mut self) -> Result<()> {
        Ok(())
    }

    /// Called once after the last epoch (fitted memories); reports the progress of long
    /// work to `progress`.
    fn finalize(&mut self, _progress: Progress<'_>) -> Result<()> {
        Ok(())
    }

    /// Scores a batch in evaluation mode; the runner wraps it in `no_grad`.
    fn score(&self, batch: &Batch) -> Result<AnomalyOutput>;
}

/// A part's state (a memory's) with each name under `prefix` (`memory.`), for a method's
/// [`Method::state`]; [`state_under`] hands it back.
pub fn state_prefixed(state: Vec<(String, Tensor)>, prefix: &str) -> Vec<(String, Tensor)> {
    (state.into_iter())
        .map(|(name, t)| (format!("{prefix}{name}"), t))
        .collect()
}

/// The entries of a [`Method::state`] named `<prefix><name>`, as `(name, tensor)`: what a
/// method that saves a part's state under a prefix (`memory.`) hands back to that part in
/// [`Method::load_state`]. Any other name is an error naming `owner`.
pub fn state_under(
    state: &[(String, Tensor)],
    prefix: &str,
    owner: &str,
) -> Result<Vec<(String, Tensor)>> {
    (state.iter())
        .map(|(name, t)| match name.strip_prefix(prefix) {
            Some(inner) => Ok((inner.to_string(), t.shallow_clone())),
            None => Err(crate::CoreError::Invalid(format!(
                "{owner} state has `{name}`; expected `{prefix}*`"
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_under_strips_the_prefix_and_names_strangers() {
        let t = Tensor::from(1f32);
        let state = [("memory.bank".to_string(), t.shallow_clone())];
        let inner = state_under(&state, "memory.", "patchcore").unwrap();
        assert_eq!(inner[0].0, "bank");
        // state_prefixed is its inverse.
        assert_eq!(state_prefixed(inner, "memory.")[0].0, "memory.bank");
        let bad = [("bank".to_string(), t)];
        let msg = state_under(&bad, "memory.", "patchcore")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("patchcore state has `bank`; expected `memory.*`"),
            "{msg}"
        );
    }

    #[test]
    fn train_output_reads_the_loss_and_each_term_in_order_whatever_their_kinds() {
        let x = Tensor::from_slice(&[0.25f32, 0.5]).set_requires_grad(true);
        let half = x.sum(tch::Kind::Float) * 0.5;
        let bf16 = Tensor::from(3.0f32).to_kind(tch::Kind::BFloat16);
        let out = TrainOutput {
            loss: &half + 1.0,
            terms: vec![LossTerm::new("half", &half), LossTerm::new("bf16", &bf16)],
        };
        assert!(!out.terms[0].value.requires_grad(), "terms are detached");
        assert_eq!(out.read(), (1.375, vec![0.375, 3.0]));
        let alone = TrainOutput {
            loss: Tensor::from(2.0f64),
            terms: Vec::new(),
        };
        assert_eq!(alone.read(), (2.0, Vec::new()));
    }
}
