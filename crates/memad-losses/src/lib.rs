//! memad-losses: loss functions shared by methods.
pub mod cosine;

pub use cosine::{cosine_distance_map, cosine_distillation, CosineForm};
