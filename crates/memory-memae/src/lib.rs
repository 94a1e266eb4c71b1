//! memory-memae: MemAE's memory module ([`MemAe`], [`MemAeConfig`]); the equations and
//! deviations are in the [`memae`] module doc.
//!
//! To add a memory variant, follow `CONTRIBUTING.md`, "Adding a memory variant" (it names
//! the crate to copy).
pub mod memae;

pub use memae::{entropy, Addressing, MemAe, MemAeConfig};

use memad_core::{to_toml_value, ConfigError, Memory, MemoryEntry, Registry, Result};
use tch::nn;

/// Registers `kind = "memae"` for the methods with a generic `[method.memory]`.
pub fn register(registry: &mut Registry) {
    registry.add_memory(MemoryEntry {
        kind: "memae",
        summary: "MemAE's memory: items learned by gradient, hard-shrunk sparse addressing, entropy loss (Gong et al., ICCV 2019)",
        resolve,
        updated_by_rule: false,
        build,
    });
}

fn resolve(section: &toml::Value, path: &str) -> std::result::Result<toml::Value, ConfigError> {
    to_toml_value(&MemAeConfig::parse(section, path)?)
}

fn build(section: &toml::Value, vs: &nn::Path) -> Result<Box<dyn Memory>> {
    let cfg = MemAeConfig::parse(section, "memory")?;
    Ok(Box::new(MemAe::new(vs, &cfg)?))
}
