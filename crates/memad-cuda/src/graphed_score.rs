//! [`GraphedScorer`]: `Method::score` of full test batches replayed from a CUDA graph
//! (`cuda_graphs = true` in an experiment), as PyTorch's `torch.cuda.graph` recipe for
//! inference: static input tensors, one capture, then per batch a copy into the inputs and
//! one graph launch instead of a launch per kernel.
//!
//! - The first batch is scored eagerly (the warm-up: lazy initialisation, cuDNN's algorithm
//!   search) and then captured with a copy of it as the static batch. Later batches of the
//!   same shapes (input, label, mask, class) are copied into it and the graph replayed;
//!   other shapes (the last, partial batch) are scored eagerly.
//! - What the capture needs of a method: its `score` is a function of the batch and of the
//!   method's tensors only, with no host synchronisation (reading a value, `nonzero`, a
//!   data-dependent shape) and no Rust state changed per call. A synchronisation fails the
//!   capture with an error naming the switch (MNAD's test-time memory update reads each
//!   frame's score, so it cannot be captured; with `test_time_update = false` it can).
//! - The returned tensors are the graph's outputs: the next [`GraphedScorer::score`]
//!   overwrites them, so copy what you keep (the runner moves them to the host at once).
use crate::{CudaGraph, Error};
use memad_core::precision::{autocast, Precision};
use memad_core::{AnomalyOutput, Batch, MemoryUsage, Method, ScorePart};
use tch::{Device, Tensor};

/// Scores batches with `method`, through a CUDA graph where it can (see the module doc).
pub struct GraphedScorer<'a> {
    method: &'a dyn Method,
    device: Device,
    precision: Precision,
    /// Only on CUDA; on the CPU every batch is scored eagerly.
    use_graphs: bool,
    captured: Option<Captured>,
    /// Batches replayed from the graph, and scored eagerly.
    pub replayed: usize,
    pub eager: usize,
}

/// Fields drop in order: the graph's tensors before the graph (which releases their pool).
struct Captured {
    batch: Batch,
    output: AnomalyOutput,
    graph: CudaGraph,
}

impl<'a> GraphedScorer<'a> {
    /// `cuda_graphs`: capture and replay (CUDA only); `false` scores every batch eagerly.
    /// Scoring runs under `no_grad` and autocast to `precision`, as the runner's.
    pub fn new(
        method: &'a dyn Method,
        device: Device,
        precision: Precision,
        cuda_graphs: bool,
    ) -> Self {
        GraphedScorer {
            method,
            device,
            precision,
            use_graphs: cuda_graphs && device.is_cuda(),
            captured: None,
            replayed: 0,
            eager: 0,
        }
    }

    /// Whether batches can be replayed from a graph (`cuda_graphs` on a CUDA device).
    pub fn uses_graphs(&self) -> bool {
        self.use_graphs
    }

    /// Scores one batch: replays the graph when `batch` has the captured shapes, else scores
    /// eagerly (capturing the graph after the first batch).
    pub fn score(&mut self, batch: &Batch) -> memad_core::Result<AnomalyOutput> {
        if let Some(captured) = self
            .captured
            .as_mut()
            .filter(|c| same_shapes(&c.batch, batch))
        {
            copy_into(&mut captured.batch, batch);
            captured.graph.replay().map_err(to_core)?;
            self.replayed += 1;
            return Ok(alias(&captured.output));
        }
        let out = self.eager_score(batch)?;
        self.eager += 1;
        if self.use_graphs && self.captured.is_none() {
            self.captured = Some(self.capture(batch)?);
        }
        Ok(out)
    }

    fn eager_score(&self, batch: &Batch) -> memad_core::Result<AnomalyOutput> {
        tch::no_grad(|| autocast(self.device, self.precision, || self.method.score(batch)))
    }

    fn capture(&self, example: &Batch) -> memad_core::Result<Captured> {
        let Device::Cuda(index) = self.device else {
            unreachable!("graphs are used on CUDA only")
        };
        let batch = static_copy(example);
        let (graph, output) =
            CudaGraph::capture(index, || self.eager_score(&batch)).map_err(|e| {
                memad_core::CoreError::Invalid(format!(
                    "cuda_graphs = true: this method's scoring cannot be captured in a CUDA graph \
                 ({e}); set cuda_graphs = false"
                ))
            })?;
        Ok(Captured {
            graph,
            batch,
            output: output?,
        })
    }
}

fn to_core(e: Error) -> memad_core::CoreError {
    memad_core::CoreError::Invalid(e.to_string())
}

fn static_copy(b: &Batch) -> Batch {
    Batch {
        input: b.input.copy(),
        label: b.label.copy(),
        mask: b.mask.as_ref().map(Tensor::copy),
        class: b.class.as_ref().map(Tensor::copy),
        synthetic: None,
    }
}

fn same_shapes(a: &Batch, b: &Batch) -> bool {
    let size = |t: Option<&Tensor>| t.map(|t| (t.size(), t.kind()));
    size(Some(&a.input)) == size(Some(&b.input))
        && size(Some(&a.label)) == size(Some(&b.label))
        && size(a.mask.as_ref()) == size(b.mask.as_ref())
        && size(a.class.as_ref()) == size(b.class.as_ref())
}

fn copy_into(target: &mut Batch, b: &Batch) {
    target.input.copy_(&b.input);
    target.label.copy_(&b.label);
    if let (Some(t), Some(m)) = (target.mask.as_mut(), b.mask.as_ref()) {
        t.copy_(m);
    }
    if let (Some(t), Some(c)) = (target.class.as_mut(), b.class.as_ref()) {
        t.copy_(c);
    }
}

/// The same tensors (shallow clones) in a new output.
fn alias(out: &AnomalyOutput) -> AnomalyOutput {
    AnomalyOutput {
        image_score: out.image_score.shallow_clone(),
        anomaly_map: out.anomaly_map.as_ref().map(Tensor::shallow_clone),
        parts: (out.parts.iter())
            .map(|p| ScorePart {
                name: p.name.clone(),
                weight: p.weight,
                value: p.value.shallow_clone(),
            })
            .collect(),
        class_prediction: out.class_prediction.as_ref().map(Tensor::shallow_clone),
        memory_usage: (out.memory_usage.iter())
            .map(|u| MemoryUsage {
                name: u.name.clone(),
                attention: u.attention.shallow_clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, nn::Module, Kind};

    /// A small convolutional scorer: map = |conv(x)| averaged over channels, score = its max.
    struct ConvScorer {
        vs: nn::VarStore,
        conv: nn::Conv2D,
    }

    impl ConvScorer {
        fn new(device: Device) -> Self {
            tch::manual_seed(0);
            let vs = nn::VarStore::new(device);
            let cfg = nn::ConvConfig {
                padding: 1,
                ..Default::default()
            };
            let conv = nn::conv2d(vs.root() / "conv", 3, 8, 3, cfg);
            ConvScorer { vs, conv }
        }
    }

    impl Method for ConvScorer {
        fn trainable(&self) -> &nn::VarStore {
            &self.vs
        }
        fn train_step(&mut self, _: &Batch) -> memad_core::Result<memad_core::TrainOutput> {
            unreachable!("scoring only")
        }
        fn score(&self, batch: &Batch) -> memad_core::Result<AnomalyOutput> {
            let map =
                self.conv
                    .forward(&batch.input)
                    .abs()
                    .mean_dim([1].as_slice(), true, Kind::Float);
            Ok(AnomalyOutput {
                image_score: map.flatten(1, -1).amax([1].as_slice(), false),
                anomaly_map: Some(map),
                parts: Vec::new(),
                class_prediction: None,
                memory_usage: Vec::new(),
            })
        }
    }

    fn batch(n: i64, device: Device) -> Batch {
        Batch {
            input: Tensor::rand([n, 3, 16, 16], (Kind::Float, device)),
            label: Tensor::zeros([n], (Kind::Int64, device)),
            mask: Some(Tensor::zeros([n, 1, 16, 16], (Kind::Float, device))),
            class: None,
            synthetic: None,
        }
    }

    #[test]
    fn off_cuda_every_batch_is_scored_eagerly() {
        let method = ConvScorer::new(Device::Cpu);
        let mut scorer = GraphedScorer::new(&method, Device::Cpu, Precision::Fp32, true);
        assert!(!scorer.uses_graphs());
        for n in [4, 4, 3] {
            let b = batch(n, Device::Cpu);
            let out = scorer.score(&b).unwrap();
            let eager = method.score(&b).unwrap();
            assert!(out.image_score.equal(&eager.image_score));
        }
        assert_eq!((scorer.replayed, scorer.eager), (0, 3));
    }

    #[test]
    fn a_training_batch_fits_the_graph_of_its_scoring_copy() {
        // The captured batch leaves `synthetic` out (scoring never reads it); a batch that
        // carries one (MDD-Net's training batches, step_bench's scoring) is still replayed.
        let mut b = batch(2, Device::Cpu);
        b.synthetic = Some(memad_core::SyntheticAnomalies {
            input: b.input.copy(),
            mask: Tensor::zeros([2, 1, 16, 16], (Kind::Float, Device::Cpu)),
        });
        assert!(same_shapes(&static_copy(&b), &b));
        assert!(!same_shapes(&static_copy(&b), &batch(3, Device::Cpu)));
    }

    #[test]
    #[ignore = "needs a CUDA device: tools/gpu_all.sh runs it"]
    fn replayed_batches_score_as_eager_ones_and_other_shapes_run_eagerly() {
        let cuda = Device::Cuda(0);
        let method = ConvScorer::new(cuda);
        for precision in [Precision::Fp32, Precision::Bf16] {
            let mut scorer = GraphedScorer::new(&method, cuda, precision, true);
            assert!(scorer.uses_graphs());
            for n in [4, 4, 4, 3] {
                let b = batch(n, cuda);
                let out = scorer.score(&b).unwrap();
                let (score, map) = (out.image_score.copy(), out.anomaly_map.unwrap().copy());
                let eager =
                    tch::no_grad(|| autocast(cuda, precision, || method.score(&b))).unwrap();
                assert!(
                    score.allclose(&eager.image_score, 1e-5, 1e-5, false),
                    "{precision:?}"
                );
                assert!(map.allclose(&eager.anomaly_map.unwrap(), 1e-5, 1e-5, false));
            }
            assert_eq!((scorer.replayed, scorer.eager), (2, 2), "{precision:?}");
        }
    }
}
