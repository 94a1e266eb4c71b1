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
//! 4. Add a `[workspace.dependencies]` path entry in the top `Cargo.toml` and list the
//!    crate in `docs/architecture.md`; registering a `kind` is one line in the method crate
//!    that uses it (`CONTRIBUTING.md`, "Adding a memory variant").
pub mod memae;

pub use memae::{entropy, Addressing, MemAe, MemAeConfig};
