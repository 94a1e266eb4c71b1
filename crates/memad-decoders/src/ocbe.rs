//! One-class bottleneck embedding (OCBE) of RD4AD (Deng & Li, CVPR 2022, Sec. 3.2).
//!
//! Multi-scale feature fusion (MFF): every teacher level but the coarsest is brought to the
//! coarsest level's resolution by stride-2 3x3 conv-BN-ReLU steps, each step producing the
//! channel count of the teacher level at that resolution (for WideResNet-50-2:
//! 256 -> 512 -> 1024 and 512 -> 1024), and concatenated with the coarsest level
//! (3 x 1024 channels at 16x16 for a 256 input). One-class embedding (OCE): one ResNet stage
//! of `blocks` bottlenecks, the first with stride 2, to `embed_channels` (2048 at 8x8 for
//! WideResNet-50-2). The official code's layout; only the channel counts are derived from
//! the teacher so any backbone works.
use crate::blocks::{stage, Bottleneck, ConvBnRelu, Resample};
use tch::nn::{self, ModuleT};
use tch::Tensor;

#[derive(Debug, Clone)]
pub struct OcbeConfig {
    /// Channels of the teacher levels, finest first; consecutive levels differ by stride 2.
    pub level_channels: Vec<i64>,
    pub embed_channels: i64,
    /// Bottleneck width as a fraction of `embed_channels` (0.5 for WideResNet, 0.25 ResNet).
    pub width_ratio: f64,
    pub blocks: usize,
}

#[derive(Debug)]
pub struct Ocbe {
    /// For each level but the coarsest, its chain of stride-2 steps.
    fuse: Vec<Vec<ConvBnRelu>>,
    embed: Vec<Bottleneck>,
}

impl Ocbe {
    pub fn new(p: nn::Path, cfg: &OcbeConfig) -> Self {
        let c = &cfg.level_channels;
        let last = c.len() - 1;
        let fuse = (0..last)
            .map(|i| {
                (i..last)
                    .map(|j| {
                        ConvBnRelu::new(&p / format!("fuse{i}") / (j - i), c[j], c[j + 1], 3, 2)
                    })
                    .collect()
            })
            .collect();
        let concat = c[last] * c.len() as i64;
        let width = ((cfg.embed_channels as f64 * cfg.width_ratio).round() as i64).max(1);
        let embed = stage(
            &p / "embed",
            cfg.blocks,
            concat,
            width,
            cfg.embed_channels,
            Resample::Down,
        );
        Ocbe { fuse, embed }
    }

    /// # Shapes
    /// `levels[i]`: `[B, c_i, H_i, W_i]`, finest first, `H_i = 2 H_{i+1}` ->
    /// `[B, embed_channels, H_last / 2, W_last / 2]`.
    pub fn forward_t(&self, levels: &[&Tensor], train: bool) -> Tensor {
        let last = levels.len() - 1;
        let mut fused: Vec<Tensor> = self
            .fuse
            .iter()
            .zip(levels)
            .map(|(chain, x)| {
                chain
                    .iter()
                    .fold(x.shallow_clone(), |h, step| step.forward_t(&h, train))
            })
            .collect();
        fused.push(levels[last].shallow_clone());
        self.embed
            .iter()
            .fold(Tensor::cat(&fused, 1), |h, b| b.forward_t(&h, train))
    }
}
