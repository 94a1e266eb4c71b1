//! Every registered method, built from the `[method]` section of its experiment file, under
//! the settings that make it fast on a GPU, here on the CPU:
//! - it trains and scores with its convolution weights channels-last under bf16 autocast, as
//!   a run with `precision = "bf16"` and `channels_last = true` does
//!   (`memad_core::precision`): the training loss stays near the fp32 one, gradients reach
//!   fp32 variables that stay channels-last through an optimizer step, the state kept
//!   outside them (`Method::state`: rule-updated memory items, fitted banks) stays fp32 and
//!   finite through the steps and the scoring (which may update a memory: MNAD's test-time
//!   update), and the scores are finite. A memory crate's own tests run in fp32 only: a
//!   case here with an experiment that uses the memory (`[method.memory] kind = ...`) runs
//!   it under bf16;
//! - it trains to the same losses with the multi-tensor Adam update (CUDA's default, its
//!   variables made views of one flat buffer) as with the per-variable one: no method keeps
//!   a stale copy or view of a variable.
use memad_core::optim::{Adam, AdamConfig};
use memad_core::precision::{autocast, is_channels_last, make_channels_last, Precision};
use memad_core::{Batch, BuildContext, Method, Registry, SyntheticAnomalies, Training};
use tch::{Device, Kind, Tensor};

/// A method under test: its experiment file, input channels and size, classes.
struct Case {
    name: &'static str,
    experiment: &'static str,
    channels: i64,
    size: i64,
    classes: usize,
}

const CASES: &[Case] = &[
    Case {
        name: "rd4ad",
        experiment: include_str!("../../../experiments/quickstart.toml"),
        channels: 3,
        size: 32,
        classes: 1,
    },
    Case {
        name: "mddnet",
        experiment: include_str!("../../../experiments/mddnet_synthetic.toml"),
        channels: 3,
        size: 32,
        classes: 3,
    },
    Case {
        name: "patchcore",
        experiment: include_str!("../../../experiments/patchcore_synthetic.toml"),
        channels: 3,
        size: 32,
        classes: 1,
    },
    Case {
        name: "mnad prediction",
        experiment: include_str!("../../../experiments/mnad_pred_ped2_cpu.toml"),
        channels: 15,
        size: 32,
        classes: 1,
    },
    Case {
        name: "mnad reconstruction",
        experiment: include_str!("../../../experiments/mnad_recon_ped2_cpu.toml"),
        channels: 3,
        size: 32,
        classes: 1,
    },
    Case {
        name: "memae video",
        experiment: include_str!("../../../experiments/memae_ped2_cpu.toml"),
        channels: 48,
        size: 32,
        classes: 1,
    },
    Case {
        name: "memae image",
        experiment: include_str!("../../../experiments/paper/memae_fashion_mnist.toml"),
        channels: 1,
        size: 28,
        classes: 1,
    },
    Case {
        name: "mscm",
        experiment: include_str!("../../../experiments/paper/mscm_fashion_mnist.toml"),
        channels: 1,
        size: 28,
        classes: 1,
    },
    Case {
        name: "contrastive",
        experiment: include_str!("../../../experiments/paper/contrastive_fashion_mnist.toml"),
        channels: 1,
        size: 28,
        classes: 1,
    },
];

/// libtorch's random generator is global: the tests of this file, which build models and
/// batches from seeds, take turns.
static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn registry() -> Registry {
    let mut registry = Registry::default();
    memad_backbones::register(&mut registry);
    memad_methods::register(&mut registry);
    registry
}

/// The case's method, built after `manual_seed(0)` with random teacher weights.
fn build(case: &Case, registry: &Registry) -> Box<dyn Method> {
    let exp: toml::Value = toml::from_str(case.experiment).unwrap();
    let mut section = exp["method"].clone();
    if let Some(backbone) = section.get_mut("backbone").and_then(|b| b.as_table_mut()) {
        backbone.insert("weights".into(), "random".into());
    }
    let kind = section["kind"].as_str().unwrap().to_string();
    let entry = registry.method(&kind, "method.kind").unwrap();
    let resolved = (entry.resolve)(&section, "method", registry).unwrap();
    let ctx = BuildContext {
        device: Device::Cpu,
        weights_dir: "/nonexistent".into(),
        image_size: case.size,
        classes: case.classes,
    };
    tch::manual_seed(0);
    (entry.build)(&resolved, registry, &ctx).unwrap()
}

fn batch(case: &Case) -> Batch {
    tch::manual_seed(1);
    let (b, c, s) = (2, case.channels, case.size);
    let input = Tensor::rand([b, c, s, s], (Kind::Float, Device::Cpu));
    let anomalous = Tensor::rand([b, c, s, s], (Kind::Float, Device::Cpu));
    let mask = Tensor::rand([b, 1, s, s], (Kind::Float, Device::Cpu))
        .lt(0.1)
        .to_kind(Kind::Float);
    Batch {
        input,
        label: Tensor::zeros([b], (Kind::Int64, Device::Cpu)),
        mask: None,
        class: Some(Tensor::from_slice(&[0i64, (case.classes - 1) as i64])),
        synthetic: Some(SyntheticAnomalies {
            input: anomalous,
            mask,
        }),
    }
}

/// The first training loss of `method` (after `manual_seed(2)`, so random augmentations
/// are drawn alike), in `precision`.
fn first_loss(method: &mut dyn Method, batch: &Batch, precision: Precision) -> Tensor {
    tch::manual_seed(2);
    autocast(Device::Cpu, precision, || method.train_step(batch))
        .unwrap()
        .loss
}

fn check(case: &Case, registry: &Registry) {
    let batch = batch(case);
    let mut fp32 = build(case, registry);
    let mut bf16 = build(case, registry);
    // Both channels-last: the precision is the only difference between the two.
    make_channels_last(fp32.trainable());
    make_channels_last(bf16.trainable());
    let name = case.name;
    if fp32.training() == Training::FitOnce {
        // Fitted in fp32 (as the runner does), then scored under autocast.
        tch::no_grad(|| {
            bf16.fit(&batch)
                .and_then(|()| bf16.finalize(&memad_core::no_progress))
        })
        .unwrap();
    } else {
        let epochs = 6; // MSCM and its ablation: stage 1 is epochs 1-4
        let adam = AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        };
        let mut opt32 = Adam::new(fp32.trainable(), adam).unwrap();
        let mut opt16 = Adam::new(bf16.trainable(), adam).unwrap();
        let before: Vec<Tensor> = (bf16.trainable().trainable_variables().iter())
            .map(|v| v.copy())
            .collect();
        for epoch in [1, epochs] {
            // The first and the last epoch: two-stage methods train both stages. Both models
            // take the same steps.
            fp32.start_epoch(epoch, epochs).unwrap();
            bf16.start_epoch(epoch, epochs).unwrap();
            let want = first_loss(fp32.as_mut(), &batch, Precision::Fp32);
            let loss = first_loss(bf16.as_mut(), &batch, Precision::Bf16);
            let (got, want_value) = (loss.double_value(&[]), want.double_value(&[]));
            assert!(
                (got - want_value).abs() <= 0.05 * want_value.abs() + 0.02,
                "{name} epoch {epoch}: bf16 loss {got}, fp32 {want_value}"
            );
            assert_ne!(
                got, want_value,
                "{name} epoch {epoch}: autocast changed nothing"
            );
            opt32.backward_step(&want);
            fp32.after_step().unwrap();
            opt16.backward_step(&loss);
            bf16.after_step().unwrap();
        }
        let after = bf16.trainable().trainable_variables();
        let moved = after.iter().zip(&before).any(|(v, b)| !v.equal(b));
        assert!(moved, "{name}: the bf16 steps moved no variable");
        for (var_name, var) in bf16.trainable().variables() {
            assert_eq!(var.kind(), Kind::Float, "{name}: {var_name}");
            assert!(
                var.dim() != 4 || is_channels_last(&var),
                "{name}: {var_name} is no longer channels-last"
            );
            let finite = var.isfinite().all().int64_value(&[]) == 1;
            assert!(finite, "{name}: {var_name} is not finite after a step");
        }
    }
    check_state(bf16.as_ref(), name, "after bf16 training");
    let out = tch::no_grad(|| autocast(Device::Cpu, Precision::Bf16, || bf16.score(&batch)))
        .unwrap_or_else(|e| panic!("{name}: scoring under bf16 autocast: {e}"));
    check_state(bf16.as_ref(), name, "after bf16 scoring");
    assert_eq!(out.image_score.size(), [2], "{name}");
    // Scores and maps in float32, and computed so, not bf16 values cast back: those would
    // tie and change the metrics. (Two fp32 scores both exact in bf16: odds about 2^-32.)
    let computed_in_fp32 = |t: &Tensor| {
        t.kind() == Kind::Float && !t.equal(&t.to_kind(Kind::BFloat16).to_kind(Kind::Float))
    };
    assert!(
        computed_in_fp32(&out.image_score),
        "{name}: image scores {}",
        out.image_score
    );
    if let Some(map) = &out.anomaly_map {
        assert!(computed_in_fp32(map), "{name}: the anomaly map");
    }
    let finite = |t: &Tensor| t.isfinite().all().int64_value(&[]) == 1;
    assert!(finite(&out.image_score), "{name}: {}", out.image_score);
    if let Some(map) = &out.anomaly_map {
        assert_eq!(map.size()[0], 2, "{name}");
        assert!(finite(map), "{name}: the anomaly map is not finite");
    }
}

/// The state of `method` (`state()`): a memory's tensors (`memory.*`) and every other
/// floating-point one are f32, none is bf16 from an update under autocast; all are finite.
fn check_state(method: &dyn Method, name: &str, when: &str) {
    for (key, tensor) in method.state() {
        if key.starts_with("memory.") || tensor.is_floating_point() {
            assert_eq!(
                tensor.kind(),
                Kind::Float,
                "{name} {when}: state `{key}` is not f32"
            );
        }
        let finite = tensor.isfinite().all().int64_value(&[]) == 1;
        assert!(finite, "{name} {when}: state `{key}` is not finite");
    }
}

/// Runs `check` on every case, holding [`SEEDED`].
fn every_case(check: fn(&Case, &Registry)) {
    let _turn = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let registry = registry();
    for case in CASES {
        check(case, &registry);
    }
}

#[test]
fn every_method_trains_and_scores_in_bf16_with_channels_last_weights() {
    every_case(check);
}

/// Three training steps of `case` with the per-variable and the multi-tensor Adam update:
/// the same losses (up to float summation order) at every step.
fn check_multi_tensor(case: &Case, registry: &Registry) {
    let batch = batch(case);
    let mut each = build(case, registry);
    if each.training() == Training::FitOnce {
        return;
    }
    let mut flat = build(case, registry);
    let adam = AdamConfig::adam(1e-3);
    let mut opt_each = Adam::new(each.trainable(), adam)
        .unwrap()
        .multi_tensor(false);
    let mut opt_flat = Adam::new(flat.trainable(), adam)
        .unwrap()
        .multi_tensor(true);
    // Epoch 1 of 6 (MSCM's stage 1 is epochs 1-4).
    each.start_epoch(1, 6).unwrap();
    flat.start_epoch(1, 6).unwrap();
    for step in 0..3 {
        let want = first_loss(each.as_mut(), &batch, Precision::Fp32);
        let got = first_loss(flat.as_mut(), &batch, Precision::Fp32);
        let (w, g) = (want.double_value(&[]), got.double_value(&[]));
        assert!(
            (g - w).abs() <= 1e-4 * w.abs() + 1e-6,
            "{} step {step}: multi-tensor loss {g}, per-variable {w}",
            case.name
        );
        opt_each.backward_step(&want);
        each.after_step().unwrap();
        opt_flat.backward_step(&got);
        flat.after_step().unwrap();
    }
    assert!(
        opt_flat.has_flat_buffers(),
        "{}: a per-variable step",
        case.name
    );
}

#[test]
fn every_method_trains_alike_with_the_multi_tensor_adam_update() {
    every_case(check_multi_tensor);
}
