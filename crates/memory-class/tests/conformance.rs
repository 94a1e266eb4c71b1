//! The shared memory conformance suite (`memad-conformance`) on the class-aware memory.
use memory_class::{ClassMemory, ClassMemoryConfig};

#[test]
fn conformance() {
    let cfg = ClassMemoryConfig {
        items_per_class: 3,
        ..ClassMemoryConfig::default()
    };
    let report = memad_conformance::check_memory(
        |path| Box::new(ClassMemory::new(path, &cfg, 2, 8).expect("valid config")),
        8,
        // Not registered (MDD-Net uses it as its concrete type); learned by gradient, with
        // the default no-op update.
        memad_conformance::Expect {
            updated_by_rule: false,
            query_gradient: true,
        },
    );
    assert_eq!(report.attention_slots, Some(6), "2 classes x 3 items");
    assert!(report.has_distance);
    assert_eq!(report.loss_terms, ["compactness"]);
    assert!(report.state.is_empty(), "the items live in the VarStore");
    assert!(report.learned_by_gradient);
}
