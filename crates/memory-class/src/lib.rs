//! memory-class: MDD-Net's class-aware memory module ([`ClassMemory`],
//! [`ClassMemoryConfig`]); the equations and the choices the paper leaves open are in the
//! [`cmm`] module doc.
//!
//! A memory learned by gradient (its items are VarStore variables) whose items are split
//! into one group per class. Besides the [`memad_core::Memory`] contract (class-agnostic:
//! each query reads from the class it is nearest to) it has the class-aware calls a method
//! uses with labels: [`ClassMemory::read_class`], [`ClassMemory::class_logits`],
//! [`ClassMemory::class_losses`].
pub mod cmm;

pub use cmm::{ClassMemory, ClassMemoryConfig, ItemInit};
