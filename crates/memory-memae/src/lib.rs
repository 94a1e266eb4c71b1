//! memory-memae: MemAE's memory module ([`MemAe`], [`MemAeConfig`]); the equations and
//! deviations are in the [`memae`] module doc.
//!
//! # Adding a memory variant by copying this crate
//! 1. `cp -r crates/memory-memae crates/memory-<name>`; rename the package in its
//!    `Cargo.toml`, `memae.rs` to `<name>.rs`, the types to the paper's short name.
//! 2. Keep the shape of the file: a module doc (citation, reference code, equations, every
//!    deviation), a typed config with `#[serde(deny_unknown_fields)]`, paper presets and
//!    `parse`/`validate`, a struct implementing [`memad_core::Memory`]. Variables learned by
//!    gradient go in the VarStore under the given `nn::Path`; anything else (items updated
//!    by rule, banks) goes through `state`/`load_state` (see `memory-mnad`).
//! 3. Tests: unit tests beside the code; `tests/conformance.rs` calls
//!    `memad_conformance::check_memory` (add `memad-conformance` as a dev-dependency);
//!    a golden test against a Python reference in `tools/` when the paper has code.
//! 4. A `register` function like this crate's, with the memory's `kind`.
//! 5. Add a `[workspace.dependencies]` path entry in the top `Cargo.toml`, the crate to
//!    `memad-methods`' dependencies and its `register` call to `memad_methods::register`,
//!    and list the crate in `docs/architecture.md`. MNAD and MemAE then take it as
//!    `[method.memory] kind = "<name>"` (`CONTRIBUTING.md`, "Adding a memory variant").
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
