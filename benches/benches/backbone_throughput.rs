//! Frozen-teacher feature extraction on CPU (eval mode, no_grad), images/s, batch 16 at
//! 256 px, random weights (the cost does not depend on the values), with the input batch
//! contiguous (NCHW) and channels-last (NHWC strides; libtorch's convolutions then run and
//! return channels-last, the weights staying NCHW).
//!
//! cargo bench -p memad-benches --bench backbone_throughput
//!
//! `cargo test --benches` (no `--bench`: criterion runs each benchmark once) uses batch 2 at
//! 64 px.
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use memad_core::precision::channels_last;
use std::time::Duration;
use tch::{Device, Kind, Tensor};

/// (kind, levels): the teachers of the anomaly-detection methods.
const TEACHERS: [(&str, &[&str]); 3] = [
    ("resnet18", &["layer1", "layer2", "layer3"]),
    ("wide_resnet50_2", &["layer1", "layer2", "layer3"]),
    ("efficientnet_lite0", &["stride4", "stride8", "stride16"]),
];

fn bench(c: &mut Criterion) {
    // As `memad` runs: freed tensors kept in the heap.
    memad_core::device::tune_host_allocator();
    // `cargo bench` passes `--bench`; without it criterion runs each benchmark once.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (batch, size) = if quick { (2, 64) } else { (16, 256) };
    let x = Tensor::rand([batch, 3, size, size], (Kind::Float, Device::Cpu));
    let mut group = c.benchmark_group(format!("cpu_teacher_batch{batch}_{size}px"));
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(batch as u64));
    for (kind, levels) in TEACHERS {
        let levels: Vec<String> = levels.iter().map(|l| l.to_string()).collect();
        let backbone = memad_backbones::build_backbone(
            kind,
            "random",
            Some(&levels),
            "/nonexistent".as_ref(),
            Device::Cpu,
        )
        .unwrap();
        for (layout, input) in [
            ("contiguous", x.contiguous()),
            ("channels_last", channels_last(&x)),
        ] {
            // libtorch keeps the input's layout: channels-last features have channel stride 1.
            let first = tch::no_grad(|| backbone.pyramid(&input, false));
            let channel_stride = first.levels[0].features.stride()[1];
            assert_eq!(
                channel_stride == 1,
                layout == "channels_last",
                "{kind} {layout}"
            );
            group.bench_function(format!("{kind}/{layout}"), |b| {
                b.iter(|| tch::no_grad(|| backbone.pyramid(&input, false)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
