//! memory-mnad: MNAD's memory module ([`MnadMemory`], [`MnadMemoryConfig`]); the equations
//! and deviations are in the [`mnad`] module doc.
//!
//! A memory updated by rule: its items are `state()`, not VarStore variables, and
//! [`memad_core::Memory::update`] moves them after each optimizer step.
//!
//! To add a memory variant, follow `CONTRIBUTING.md`, "Adding a memory variant" (it names
//! the crate to copy).
pub mod mnad;

pub use mnad::{MnadMemory, MnadMemoryConfig, ITEMS};

use memad_core::{to_toml_value, ConfigError, Memory, MemoryEntry, Registry, Result};
use tch::nn;

/// Registers `kind = "mnad"` for the methods with a generic `[method.memory]`.
pub fn register(registry: &mut Registry) {
    registry.add_memory(MemoryEntry {
        kind: "mnad",
        summary: "MNAD's memory: items updated by rule, softmax read, compactness + separateness losses (Park et al., CVPR 2020)",
        resolve,
        updated_by_rule: true,
        build,
    });
}

fn resolve(section: &toml::Value, path: &str) -> std::result::Result<toml::Value, ConfigError> {
    to_toml_value(&MnadMemoryConfig::parse(section, path)?)
}

fn build(section: &toml::Value, vs: &nn::Path) -> Result<Box<dyn Memory>> {
    let cfg = MnadMemoryConfig::parse(section, "memory")?;
    Ok(Box::new(MnadMemory::new(&cfg, vs.device())?))
}
