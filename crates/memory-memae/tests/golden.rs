//! Parity of MemAE's memory with a plain-torch reference of the official code
//! (`models/memory_module.py`, `models/entropy_loss.py` of donggong1/memae-anomaly-detection).
//!
//! Golden values: `tests/fixtures/memae_golden.npz`, written by `tools/golden_memories.py`
//! (`~/.cache/memad/torch-2.11.0/venv/bin/python tools/golden_memories.py`; its docstring
//! lists the arrays). Items `[5, 8]`, and for three cases (`dot`: dot addressing with the
//! official threshold 0.0025 on peaked queries; `cosine`: the paper's cosine addressing with
//! threshold 1/N = 0.2; `noshrink`: threshold 0) the queries `[6, 8]`, the shrunk and
//! renormalised weights, the read, the entropy and the gradients of
//! `sum(probe * output) + entropy_weight * entropy` w.r.t. the queries and the items.
//! Tolerance 1e-5 absolute (values are O(1)).
use memad_conformance::{max_abs_diff, read_golden};
use memad_core::Memory;
use memory_memae::{Addressing, MemAe, MemAeConfig};
use std::collections::HashMap;
use std::path::PathBuf;
use tch::{nn, Device, Kind, Tensor};

const TOLERANCE: f64 = 1e-5;

fn golden() -> HashMap<String, Tensor> {
    read_golden(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/memae_golden.npz"))
}

fn check_case(g: &HashMap<String, Tensor>, case: &str, addressing: Addressing) {
    let get = |k: &str| g[&format!("{case}.{k}")].shallow_clone();
    let entropy_weight = g["entropy_weight"].double_value(&[]);
    let cfg = MemAeConfig {
        slots: 5,
        dim: 8,
        shrink_threshold: get("shrink_threshold").double_value(&[]),
        addressing,
        entropy_weight,
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let memory = MemAe::new(&vs.root(), &cfg).unwrap();
    let mut items = memory.items().shallow_clone();
    tch::no_grad(|| items.copy_(&g["items"]));

    let query = get("query").set_requires_grad(true);
    let read = memory.read(&query, true);
    let terms = memory.losses(&query, &read);
    let (name, entropy_term) = &terms[0];
    assert_eq!(name, "entropy");
    let attention = read.attention.as_ref().unwrap();

    let diffs = [
        ("attention", max_abs_diff(attention, &get("attention"))),
        ("output", max_abs_diff(&read.output, &get("output"))),
        (
            "entropy",
            (entropy_term.double_value(&[]) - entropy_weight * get("entropy").double_value(&[]))
                .abs(),
        ),
    ];
    let loss = (&read.output * get("probe")).sum(Kind::Float) + entropy_term;
    let grads = Tensor::run_backward(&[loss], &[&query, memory.items()], false, false);
    let diffs = diffs.into_iter().chain([
        ("grad_query", max_abs_diff(&grads[0], &get("grad_query"))),
        ("grad_items", max_abs_diff(&grads[1], &get("grad_items"))),
    ]);
    for (what, diff) in diffs {
        eprintln!("{case}.{what}: max |diff| {diff:e}");
        assert!(diff <= TOLERANCE, "{case}.{what}: max |diff| {diff:e}");
    }
    // The shrinkage cases really zero weights (else they would test nothing).
    let zeros = attention.eq(0.0).sum(Kind::Int64).int64_value(&[]);
    assert_eq!(
        zeros > 0,
        cfg.shrink_threshold > 0.0,
        "{case}: {zeros} zero weights"
    );
}

#[test]
fn dot_addressing_official_threshold_matches_reference() {
    check_case(&golden(), "dot", Addressing::Dot);
}

#[test]
fn cosine_addressing_matches_reference() {
    check_case(&golden(), "cosine", Addressing::Cosine);
}

#[test]
fn no_shrinkage_matches_reference() {
    check_case(&golden(), "noshrink", Addressing::Dot);
}
