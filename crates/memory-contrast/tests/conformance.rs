//! The shared memory conformance suite (`memad-conformance`) on the contrast memory, with the
//! default temperature and a sharp one.
use memory_contrast::{ContrastMemory, ContrastMemoryConfig};

fn check(temperature: f64) {
    let cfg = ContrastMemoryConfig {
        temperature,
        ..ContrastMemoryConfig::new(5, 6)
    };
    let report = memad_conformance::check_memory(
        |path| Box::new(ContrastMemory::new(path, &cfg).expect("valid config")),
        cfg.dim,
        // Not registered (MSCM uses it as its concrete type); learned by gradient, with the
        // default no-op update.
        memad_conformance::Expect {
            updated_by_rule: false,
            query_gradient: true,
        },
    );
    assert_eq!(report.attention_slots, Some(5));
    assert!(report.has_distance);
    assert_eq!(report.loss_terms, ["contrast", "usage"]);
    assert!(
        report.state.is_empty(),
        "the prototypes live in the VarStore"
    );
    assert!(report.learned_by_gradient);
}

#[test]
fn conformance_default_temperature() {
    check(0.1);
}

#[test]
fn conformance_soft_temperature() {
    check(1.0);
}
