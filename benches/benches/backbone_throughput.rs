//! Frozen-teacher feature extraction (eval mode, no_grad), images/s, batch 16 at 256 px,
//! random weights (the cost does not depend on the values), built from a `[method.backbone]`
//! section as a run builds it, in each execution a run can ask for: NCHW fp32, and
//! `channels_last = true` (weights and input in NHWC memory; libtorch's convolutions then run
//! and return channels-last); on CUDA also channels-last with `precision = "bf16"` and
//! `"fp16"` (the frozen weights and input cast; levels handed back as fp32, as methods get
//! them).
//!
//! cargo bench -p memad-benches --bench backbone_throughput
//!
//! `MEMAD_BENCH_DEVICE=cuda` (default `cpu`) runs it on the GPU, synchronising after every
//! batch. On a GPU machine without Rust, carry the binary `tools/gpu_prepare.sh` copies to
//! `target/gpu/backbone_throughput` and run it with `--bench` (`tools/gpu_all.sh` does).
//! `cargo test --benches` (no `--bench`: criterion runs each benchmark once) uses batch 2 at
//! 64 px.
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use memad_core::{BuildContext, Registry};
use std::time::Duration;
use tch::{Device, Kind, Tensor};

/// (kind, levels): the teachers of the anomaly-detection methods.
const TEACHERS: [(&str, &[&str]); 3] = [
    ("resnet18", &["layer1", "layer2", "layer3"]),
    ("wide_resnet50_2", &["layer1", "layer2", "layer3"]),
    ("efficientnet_lite0", &["stride4", "stride8", "stride16"]),
];

/// (label, `channels_last`, `precision`) of the `[method.backbone]` executions timed on
/// `device`: reduced precision is CUDA-only, as in a run.
fn executions(device: Device) -> Vec<(&'static str, bool, &'static str)> {
    let mut all = vec![("nchw", false, "fp32"), ("channels_last", true, "fp32")];
    if device.is_cuda() {
        all.extend([
            ("channels_last_bf16", true, "bf16"),
            ("channels_last_fp16", true, "fp16"),
        ]);
    }
    all
}

fn bench(c: &mut Criterion) {
    // As `memad` runs: freed tensors kept in the heap.
    memad_core::device::tune_host_allocator();
    let device_spec = std::env::var("MEMAD_BENCH_DEVICE").unwrap_or_else(|_| "cpu".into());
    let device = memad_core::device::select(&device_spec).expect("MEMAD_BENCH_DEVICE");
    // `cargo bench` passes `--bench`; without it criterion runs each benchmark once.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (batch, size) = if quick { (2, 64) } else { (16, 256) };
    let x = Tensor::rand([batch, 3, size, size], (Kind::Float, device));
    let mut registry = Registry::default();
    memad_backbones::register(&mut registry);
    let ctx = BuildContext {
        device,
        weights_dir: "/nonexistent".into(),
        image_size: size,
        classes: 1,
    };
    let device_name = if device.is_cuda() { "cuda" } else { "cpu" };
    let mut group = c.benchmark_group(format!("{device_name}_teacher_batch{batch}_{size}px"));
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(batch as u64));
    for (kind, levels) in TEACHERS {
        for (label, channels_last, precision) in executions(device) {
            let mut section = toml::Table::new();
            section.insert("kind".into(), kind.into());
            section.insert("weights".into(), "random".into());
            section.insert("levels".into(), levels.to_vec().into());
            section.insert("channels_last".into(), channels_last.into());
            section.insert("precision".into(), precision.into());
            let section = toml::Value::Table(section);
            let resolved = registry.resolve_backbone(&section, "backbone").unwrap();
            let backbone = registry
                .build_backbone(&resolved, "backbone", &ctx)
                .unwrap();
            let extract = || {
                let pyramid = tch::no_grad(|| backbone.pyramid(&x));
                if let Device::Cuda(index) = device {
                    tch::Cuda::synchronize(index as i64);
                }
                pyramid
            };
            // The levels come back as methods get them: fp32, whatever the execution.
            assert_eq!(
                extract().levels[0].features.kind(),
                Kind::Float,
                "{kind} {label}"
            );
            group.bench_function(format!("{kind}/{label}"), |b| b.iter(extract));
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
