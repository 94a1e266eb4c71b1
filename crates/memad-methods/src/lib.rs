//! memad-methods: one file per method, composing backbones, decoders, memories and losses.
//!
//! | kind | method | file |
//! |---|---|---|
//! | `rd4ad` | Reverse distillation (Deng & Li, CVPR 2022) | [`rd4ad`] |
pub mod anomaly_map;
pub mod rd4ad;

use memad_core::{MethodEntry, Registry};

/// Registers every method kind of this crate.
pub fn register(registry: &mut Registry) {
    registry.add_method(MethodEntry {
        kind: "rd4ad",
        summary: "Reverse distillation: frozen teacher, OCBE bottleneck, student decoder (Deng & Li, CVPR 2022)",
        resolve: rd4ad::resolve,
        build: rd4ad::build,
    });
}
