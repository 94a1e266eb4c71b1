//! memory-contrast: MSCM's per-scale prototype memory ([`ContrastMemory`],
//! [`ContrastMemoryConfig`]), learned by gradient with a memory-augmented contrastive loss;
//! the equations, and what is inferred rather than taken from the paper, are in the
//! [`contrast`] module doc. The MSCM method that uses one memory per encoder scale is
//! `memad_methods::mscm`.
pub mod contrast;

pub use contrast::{
    contrastive_loss, l2_normalise, repel_loss, usage_loss, ContrastMemory, ContrastMemoryConfig,
    Nearest,
};
