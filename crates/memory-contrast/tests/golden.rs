//! Parity of the contrast memory with a plain-torch reference of its equations (the module
//! doc of `src/contrast.rs`; the paper has no public code).
//!
//! Golden values: `tests/fixtures/contrast_golden.npz`, written by
//! `tools/golden_contrast_memory.py`
//! (`~/.cache/memad/torch-2.11.0/venv/bin/python tools/golden_contrast_memory.py`; its
//! docstring lists the arrays): prototypes `[5, 8]`, queries `[6, 8]` spread over four
//! prototypes, three labelled anomalous queries (one close to a prototype). Checked: the
//! cosine similarities, the read (attention, output, distance), the nearest prototype, the
//! residual, the weighted `contrast` and `usage` terms, the anomaly term, and the gradients
//! of `sum(probe * output) + contrast + usage` and of the anomaly term w.r.t. the queries
//! and the prototypes. Tolerance 1e-5 absolute (values are O(1)).
use memad_conformance::{max_abs_diff, read_golden};
use memad_core::Memory;
use memory_contrast::{ContrastMemory, ContrastMemoryConfig};
use std::collections::HashMap;
use std::path::PathBuf;
use tch::{nn, Device, Kind, Tensor};

const TOLERANCE: f64 = 1e-5;

fn golden() -> HashMap<String, Tensor> {
    read_golden(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/contrast_golden.npz"),
    )
}

fn memory(g: &HashMap<String, Tensor>) -> (nn::VarStore, ContrastMemory) {
    let scalar = |k: &str| g[k].double_value(&[]);
    let cfg = ContrastMemoryConfig {
        temperature: scalar("temperature"),
        contrast_weight: scalar("contrast_weight"),
        usage_weight: scalar("usage_weight"),
        anomaly_weight: scalar("anomaly_weight"),
        anomaly_margin: scalar("anomaly_margin"),
        ..ContrastMemoryConfig::new(5, 8)
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let memory = ContrastMemory::new(&vs.root(), &cfg).unwrap();
    let mut p = memory.prototypes().shallow_clone();
    tch::no_grad(|| p.copy_(&g["prototypes"]));
    (vs, memory)
}

fn check(diffs: Vec<(&str, f64)>) {
    for (what, diff) in diffs {
        eprintln!("{what}: max |diff| {diff:e}");
        assert!(diff <= TOLERANCE, "{what}: max |diff| {diff:e}");
    }
}

#[test]
fn read_nearest_and_residual_match_reference() {
    let g = golden();
    let (_vs, memory) = memory(&g);
    let query = &g["query"];
    let read = memory.read(query, false);
    let nearest = memory.nearest(query);
    assert!(
        nearest.index.equal(&g["nearest"]),
        "nearest prototypes differ"
    );
    check(vec![
        (
            "similarity",
            max_abs_diff(&memory.similarity(query), &g["similarity"]),
        ),
        (
            "attention",
            max_abs_diff(read.attention.as_ref().unwrap(), &g["attention"]),
        ),
        ("output", max_abs_diff(&read.output, &g["output"])),
        (
            "distance",
            max_abs_diff(read.distance.as_ref().unwrap(), &g["distance"]),
        ),
        (
            "nearest.distance",
            max_abs_diff(&nearest.distance, &g["distance"]),
        ),
        (
            "residual",
            max_abs_diff(&memory.residual(query), &g["residual"]),
        ),
    ]);
}

#[test]
fn losses_and_gradients_match_reference() {
    let g = golden();
    let (_vs, memory) = memory(&g);
    let cfg = memory.config().clone();
    let query = g["query"].copy().set_requires_grad(true);
    let read = memory.read(&query, true);
    let terms = memory.losses(&query, &read);
    assert_eq!(terms[0].0, "contrast");
    assert_eq!(terms[1].0, "usage");
    let scalar = |k: &str| g[k].double_value(&[]);
    let mut diffs = vec![
        (
            "contrast",
            (terms[0].1.double_value(&[]) - cfg.contrast_weight * scalar("contrast")).abs(),
        ),
        (
            "usage",
            (terms[1].1.double_value(&[]) - cfg.usage_weight * scalar("usage")).abs(),
        ),
    ];
    let loss = (&read.output * &g["probe"]).sum(Kind::Float) + &terms[0].1 + &terms[1].1;
    let grads = Tensor::run_backward(&[loss], &[&query, memory.prototypes()], false, false);
    diffs.push(("grad_query", max_abs_diff(&grads[0], &g["grad_query"])));
    diffs.push((
        "grad_prototypes",
        max_abs_diff(&grads[1], &g["grad_prototypes"]),
    ));
    check(diffs);
}

#[test]
fn anomaly_term_and_gradients_match_reference() {
    let g = golden();
    let (_vs, memory) = memory(&g);
    let anomalous = g["anomalous"].copy().set_requires_grad(true);
    let repel = memory.repel(&anomalous);
    let want = memory.config().anomaly_weight * g["repel"].double_value(&[]);
    let grads = Tensor::run_backward(&[&repel], &[&anomalous, memory.prototypes()], false, false);
    check(vec![
        ("repel", (repel.double_value(&[]) - want).abs()),
        (
            "grad_anomalous",
            max_abs_diff(&grads[0], &g["grad_anomalous"]),
        ),
        (
            "grad_prototypes_repel",
            max_abs_diff(&grads[1], &g["grad_prototypes_repel"]),
        ),
    ]);
    // The hinge is active for some anomalous queries and not for others.
    let rows = grads[0].abs().sum_dim_intlist(1, false, Kind::Double);
    let active = rows.gt(0.0).sum(Kind::Int64).int64_value(&[]);
    assert!(active > 0 && active < 3, "{active} active rows");
}
