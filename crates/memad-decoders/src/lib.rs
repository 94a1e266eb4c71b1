//! memad-decoders: the reverse-distillation bottleneck and student decoder, MNAD's U-Net.
//!
//! - [`blocks`]: ResNet bottleneck and its transposed ("de-") counterpart.
//! - [`ocbe`]: RD4AD's one-class bottleneck embedding (multi-scale fusion + one-class embedding).
//! - [`reverse_decoder`]: the student decoder that mirrors the teacher's pyramid.
//! - [`unet`]: MNAD's encoder and decoder (prediction with skips, reconstruction without).
//! - [`init`]: the reference code's initialisations where tch's defaults differ.
pub mod blocks;
pub mod init;
pub mod ocbe;
pub mod reverse_decoder;
pub mod unet;

pub use ocbe::{Ocbe, OcbeConfig};
pub use reverse_decoder::{ReverseDecoder, ReverseDecoderConfig};
pub use unet::{UnetDecoder, UnetEncoder, UnetFeatures, UNET_FEATURES};
