//! The reverse-distillation student decoder (RD4AD's de-ResNet).
//!
//! From the OCBE embedding, one stage per teacher level, coarsest first; each stage's first
//! bottleneck doubles the resolution with a 2x2 transposed conv (also on its shortcut) and
//! the stage outputs that level's channel count. For WideResNet-50-2 this is
//! `de_wide_resnet50_2`: stages of 3, 4, 6 blocks giving 1024x16², 512x32², 256x64².
use crate::blocks::{stage, Bottleneck, Resample};
use tch::nn::{self, ModuleT};
use tch::Tensor;

#[derive(Debug, Clone)]
pub struct ReverseDecoderConfig {
    pub embed_channels: i64,
    /// Channels of the teacher levels, finest first.
    pub level_channels: Vec<i64>,
    /// Blocks per stage, coarsest level first (`[3, 4, 6]` in RD4AD).
    pub blocks: Vec<usize>,
    /// Bottleneck width as a fraction of a stage's output channels.
    pub width_ratio: f64,
}

#[derive(Debug)]
pub struct ReverseDecoder {
    /// Coarsest level first.
    stages: Vec<Vec<Bottleneck>>,
}

impl ReverseDecoder {
    pub fn new(p: nn::Path, cfg: &ReverseDecoderConfig) -> Self {
        assert_eq!(
            cfg.blocks.len(),
            cfg.level_channels.len(),
            "one block count per level"
        );
        let mut c_in = cfg.embed_channels;
        let stages = cfg
            .level_channels
            .iter()
            .rev()
            .zip(&cfg.blocks)
            .enumerate()
            .map(|(i, (&c_out, &n))| {
                let width = ((c_out as f64 * cfg.width_ratio).round() as i64).max(1);
                let s = stage(
                    &p / format!("layer{}", i + 1),
                    n,
                    c_in,
                    width,
                    c_out,
                    Resample::Up,
                );
                c_in = c_out;
                s
            })
            .collect();
        ReverseDecoder { stages }
    }

    /// # Shapes
    /// `embedding`: `[B, embed_channels, h, w]` -> one tensor per teacher level, finest
    /// first: `[B, c_i, h 2^(L-i), w 2^(L-i)]`.
    pub fn forward_t(&self, embedding: &Tensor, train: bool) -> Vec<Tensor> {
        let mut h = embedding.shallow_clone();
        let mut outs = Vec::with_capacity(self.stages.len());
        for stage in &self.stages {
            h = stage.iter().fold(h, |x, b| b.forward_t(&x, train));
            outs.push(h.shallow_clone());
        }
        outs.reverse();
        outs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Ocbe, OcbeConfig};
    use tch::{Device, Kind};

    #[test]
    fn ocbe_and_decoder_mirror_the_pyramid() {
        let vs = nn::VarStore::new(Device::Cpu);
        let channels = vec![24, 40, 112];
        let ocbe = Ocbe::new(
            vs.root() / "bn",
            &OcbeConfig {
                level_channels: channels.clone(),
                embed_channels: 64,
                width_ratio: 0.5,
                blocks: 1,
            },
        );
        let dec = ReverseDecoder::new(
            vs.root() / "de",
            &ReverseDecoderConfig {
                embed_channels: 64,
                level_channels: channels.clone(),
                blocks: vec![1, 1, 1],
                width_ratio: 0.5,
            },
        );
        let opts = (Kind::Float, Device::Cpu);
        let levels = [
            Tensor::randn([2, 24, 16, 16], opts),
            Tensor::randn([2, 40, 8, 8], opts),
            Tensor::randn([2, 112, 4, 4], opts),
        ];
        let refs: Vec<&Tensor> = levels.iter().collect();
        let e = ocbe.forward_t(&refs, true);
        assert_eq!(e.size(), [2, 64, 2, 2]);
        let outs = dec.forward_t(&e, true);
        let shapes: Vec<_> = outs.iter().map(|t| t.size()).collect();
        assert_eq!(shapes, levels.iter().map(|t| t.size()).collect::<Vec<_>>());
    }
}
