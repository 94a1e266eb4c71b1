//! Cost of the evaluation metrics at benchmark scale: pixel AUROC and the AUROC/AP/F1-max
//! bundle on 10M pixels, AUPRO (pooled, MVTec limit 0.3) on 100 images of 256x256.
//! Synthetic deterministic data: uniform scores, ~4 % anomalous pixels in blobs that score
//! higher; the cost depends on the number of pixels and distinct scores, not their values.
//!
//! cargo bench -p memad-benches --bench metrics
use criterion::{criterion_group, criterion_main, Criterion};
use memad_metrics::{aupro, auroc, RankedScores, MVTEC_FPR_LIMIT};

const IMAGES: usize = 100;
const SIDE: usize = 256;
const PIXELS: usize = 10_000_000;

fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

/// `n` square images with up to three rectangular defects each, and scores in [0, 1.5).
fn synthetic(n: usize, side: usize) -> (Vec<f32>, Vec<bool>) {
    let mut s = 42;
    let mut masks = vec![false; n * side * side];
    for img in masks.chunks_mut(side * side) {
        for _ in 0..lcg(&mut s) % 4 {
            let (y0, x0) = (lcg(&mut s) as usize % side, lcg(&mut s) as usize % side);
            let (dy, dx) = (4 + lcg(&mut s) as usize % 40, 4 + lcg(&mut s) as usize % 40);
            for y in y0..(y0 + dy).min(side) {
                img[y * side + x0..y * side + (x0 + dx).min(side)].fill(true);
            }
        }
    }
    let maps = masks
        .iter()
        .map(|&m| (lcg(&mut s) as f32 / (1u64 << 31) as f32) + if m { 0.5 } else { 0.0 })
        .collect();
    (maps, masks)
}

fn bench(c: &mut Criterion) {
    let (scores, labels) = synthetic(PIXELS.div_ceil(SIDE * SIDE), SIDE);
    let (scores, labels) = (&scores[..PIXELS], &labels[..PIXELS]);
    let (maps, masks) = synthetic(IMAGES, SIDE);

    let mut group = c.benchmark_group("metrics");
    group.sample_size(10);
    group.bench_function("auroc_10M_pixels", |b| {
        b.iter(|| auroc(scores, labels).unwrap())
    });
    group.bench_function("auroc_ap_f1max_10M_pixels", |b| {
        b.iter(|| {
            let r = RankedScores::new(scores, labels).unwrap();
            (r.auroc(), r.average_precision(), r.f1_max())
        })
    });
    group.bench_function("aupro_100x256x256", |b| {
        b.iter(|| aupro(&maps, &masks, IMAGES, SIDE, SIDE, MVTEC_FPR_LIMIT).unwrap())
    });
    group.bench_function("aupro_100x256x256_limit1", |b| {
        b.iter(|| aupro(&maps, &masks, IMAGES, SIDE, SIDE, 1.0).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
