//! memad-decoders: the reverse-distillation bottleneck and student decoder.
//!
//! - [`blocks`]: ResNet bottleneck and its transposed ("de-") counterpart.
//! - [`ocbe`]: RD4AD's one-class bottleneck embedding (multi-scale fusion + one-class embedding).
//! - [`reverse_decoder`]: the student decoder that mirrors the teacher's pyramid.
pub mod blocks;
pub mod ocbe;
pub mod reverse_decoder;

pub use ocbe::{Ocbe, OcbeConfig};
pub use reverse_decoder::{ReverseDecoder, ReverseDecoderConfig};
