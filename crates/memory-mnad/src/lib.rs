//! memory-mnad: MNAD's memory module ([`MnadMemory`], [`MnadMemoryConfig`]); the equations
//! and deviations are in the [`mnad`] module doc.
//!
//! A memory updated by rule: its items are `state()`, not VarStore variables, and
//! [`memad_core::Memory::update`] moves them after each optimizer step. To add a memory
//! variant by copying a crate, follow the steps in `memory-memae`'s crate doc (or
//! `CONTRIBUTING.md`, "Adding a memory variant"); copy this one when the new memory is
//! updated by rule.
pub mod mnad;

pub use mnad::{MnadMemory, MnadMemoryConfig, ITEMS};
