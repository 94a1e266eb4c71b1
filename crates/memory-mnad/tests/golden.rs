//! Parity of MNAD's memory with a plain-torch reference of the official code
//! (`model/memory_final_spatial_sumonly_weight_ranking_top1.py` of cvlab-yonsei/MNAD).
//!
//! Golden values: `tests/fixtures/mnad_golden.npz`, written by `tools/golden_memories.py`
//! (`~/.cache/memad/torch-2.11.0/venv/bin/python tools/golden_memories.py`; its docstring
//! lists the arrays): raw queries `[6, 8]` (a `[2, 8, 1, 3]` feature map, positions as
//! rows), items `[5, 8]`, and the reference's normalised queries, read weights and output,
//! nearest items, squared distances, compactness and separateness (unweighted), the gradient
//! of the weighted losses w.r.t. the raw queries, and the items after the official per-item
//! update loop (seeded so that two items get no query and one gets three).
//! Tolerance 1e-5 absolute (values are O(1)).
use memad_conformance::{max_abs_diff, read_golden};
use memad_core::Memory;
use memory_mnad::{MnadMemory, MnadMemoryConfig, ITEMS};
use std::collections::HashMap;
use std::path::PathBuf;
use tch::{Device, Tensor};

const TOLERANCE: f64 = 1e-5;

fn golden() -> HashMap<String, Tensor> {
    read_golden(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mnad_golden.npz"))
}

fn memory(g: &HashMap<String, Tensor>) -> (MnadMemoryConfig, MnadMemory) {
    let cfg = MnadMemoryConfig {
        slots: 5,
        dim: 8,
        compactness_weight: g["compactness_weight"].double_value(&[]),
        separateness_weight: g["separateness_weight"].double_value(&[]),
    };
    let mut memory = MnadMemory::new(&cfg, Device::Cpu).unwrap();
    memory
        .load_state(&[(ITEMS.to_string(), g["items"].shallow_clone())])
        .unwrap();
    (cfg, memory)
}

fn assert_close(what: &str, diff: f64) {
    eprintln!("{what}: max |diff| {diff:e}");
    assert!(diff <= TOLERANCE, "{what}: max |diff| {diff:e}");
}

#[test]
fn read_and_losses_match_reference() {
    let g = golden();
    let (cfg, memory) = memory(&g);
    let query = g["query"].shallow_clone().set_requires_grad(true);
    let read = memory.read(&query, true);
    assert_close(
        "attention",
        max_abs_diff(read.attention.as_ref().unwrap(), &g["attention"]),
    );
    assert_close("output", max_abs_diff(&read.output, &g["output"]));
    assert_close(
        "distance",
        max_abs_diff(read.distance.as_ref().unwrap(), &g["distance"]),
    );

    let terms = memory.losses(&query, &read);
    assert_eq!(terms[0].0, "compactness");
    assert_eq!(terms[1].0, "separateness");
    for ((name, term), weight) in terms
        .iter()
        .zip([cfg.compactness_weight, cfg.separateness_weight])
    {
        let want = weight * g[name.as_str()].double_value(&[]);
        assert_close(name, (term.double_value(&[]) - want).abs());
    }
    let total = &terms[0].1 + &terms[1].1;
    let grad = Tensor::run_backward(&[total], &[&query], false, false);
    assert_close("grad_query", max_abs_diff(&grad[0], &g["grad_query"]));
}

#[test]
fn update_matches_the_official_loop() {
    let g = golden();
    let (_, mut memory) = memory(&g);
    memory.update(&g["query"]).unwrap();
    assert_close(
        "updated_items",
        max_abs_diff(memory.items(), &g["updated_items"]),
    );
    // Items that no query chose are unchanged, bit for bit.
    let nearest: Vec<i64> = Vec::try_from(&g["nearest"]).unwrap();
    for m in 0..5 {
        if !nearest.contains(&m) {
            assert!(
                memory.items().get(m).equal(&g["items"].get(m)),
                "item {m} moved"
            );
        }
    }
}
