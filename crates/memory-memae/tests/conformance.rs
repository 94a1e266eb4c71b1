//! The shared memory conformance suite (`memad-conformance`) on MemAE's memory, with and
//! without shrinkage and in both addressing modes.
use memory_memae::{Addressing, MemAe, MemAeConfig};

fn check(shrink_threshold: f64, addressing: Addressing) {
    let cfg = MemAeConfig {
        slots: 5,
        dim: 6,
        shrink_threshold,
        addressing,
        entropy_weight: 0.0002,
    };
    let report = memad_conformance::check_memory(
        |path| Box::new(MemAe::new(path, &cfg).expect("valid config")),
        cfg.dim,
        memad_conformance::Expect {
            updated_by_rule: memad_conformance::registered_updated_by_rule(
                memory_memae::register,
                "memae",
            ),
            query_gradient: true,
        },
    );
    assert_eq!(report.attention_slots, Some(5));
    assert!(!report.has_distance);
    assert_eq!(report.loss_terms, ["entropy"]);
    assert!(report.state.is_empty(), "the items live in the VarStore");
    assert!(report.learned_by_gradient);
}

#[test]
fn conformance_dot_with_shrinkage() {
    check(0.2, Addressing::Dot);
}

#[test]
fn conformance_cosine_without_shrinkage() {
    check(0.0, Addressing::Cosine);
}
