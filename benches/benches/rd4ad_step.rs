//! CPU cost of the quickstart's building blocks: the EfficientNet-Lite0 teacher pyramid
//! and one RD4AD training step (forward, backward, Adam), batch 8 at 128 px, random
//! weights (the cost does not depend on the values).
//!
//! cargo bench -p memad-benches --bench rd4ad_step
use criterion::{criterion_group, criterion_main, Criterion};
use memad_core::{Batch, BuildContext, Registry};
use tch::nn::OptimizerConfig;
use tch::{Device, Kind, Tensor};

const QUICKSTART_METHOD: &str = r#"
kind = "rd4ad"
embed_channels = 256
oce_blocks = 1
decoder_blocks = [1, 1, 1]
width_ratio = 1.0
[backbone]
kind = "efficientnet_lite0"
weights = "random"
levels = ["stride4", "stride8", "stride16"]
"#;

fn bench(c: &mut Criterion) {
    // As `memad` runs: freed tensors kept in the heap.
    memad_core::device::tune_host_allocator();
    let mut registry = Registry::default();
    memad_backbones::register(&mut registry);
    memad_methods::register(&mut registry);
    let ctx = BuildContext {
        device: Device::Cpu,
        weights_dir: "/nonexistent".into(),
        image_size: 128,
        classes: 1,
    };
    let section: toml::Value = toml::from_str(QUICKSTART_METHOD).unwrap();
    let resolved =
        (registry.method("rd4ad", "method.kind").unwrap().resolve)(&section, "method", &registry)
            .unwrap();
    let mut method =
        (registry.method("rd4ad", "method.kind").unwrap().build)(&resolved, &registry, &ctx)
            .unwrap();
    let mut opt = tch::nn::Adam {
        beta1: 0.5,
        ..Default::default()
    }
    .build(method.trainable(), 0.005)
    .unwrap();
    let batch = Batch {
        input: Tensor::rand([8, 3, 128, 128], (Kind::Float, Device::Cpu)),
        label: Tensor::zeros([8], (Kind::Int64, Device::Cpu)),
        mask: None,
        class: None,
        synthetic: None,
    };
    let mut group = c.benchmark_group("cpu_batch8_128px");
    group.sample_size(10);
    group.bench_function("rd4ad_train_step", |b| {
        b.iter(|| {
            let out = method.train_step(&batch).unwrap();
            opt.backward_step(&out.loss);
        })
    });
    group.bench_function("rd4ad_score", |b| {
        b.iter(|| tch::no_grad(|| method.score(&batch).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
