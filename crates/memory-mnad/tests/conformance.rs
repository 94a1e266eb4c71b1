//! The shared memory conformance suite (`memad-conformance`) on MNAD's memory.
use memory_mnad::{MnadMemory, MnadMemoryConfig};

#[test]
fn conformance() {
    let cfg = MnadMemoryConfig {
        slots: 4,
        dim: 6,
        compactness_weight: 0.1,
        separateness_weight: 0.1,
    };
    let report = memad_conformance::check_memory(
        |path| Box::new(MnadMemory::new(&cfg, path.device()).expect("valid config")),
        cfg.dim,
        memad_conformance::Expect {
            updated_by_rule: memad_conformance::registered_updated_by_rule(
                memory_mnad::register,
                "mnad",
            ),
            // As the official read: the weights are detached and the items carry no
            // gradient (the encoder learns through the concatenated query and the losses).
            query_gradient: false,
        },
    );
    assert_eq!(report.attention_slots, Some(4));
    assert!(report.has_distance);
    assert_eq!(report.loss_terms, ["compactness", "separateness"]);
    assert_eq!(report.state, [("items".to_string(), vec![4, 6])]);
    assert!(!report.learned_by_gradient, "items are updated by rule");
}
