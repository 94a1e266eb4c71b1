//! MNAD's convolutional encoder and decoder (Park, Noh, Ham, CVPR 2020; reference code
//! github.com/cvlab-yonsei/MNAD, `model/final_future_prediction_*.py` and
//! `model/Reconstruction.py`).
//!
//! - Encoder: three stages of `[conv3x3-BN-ReLU] x 2` (64, 128, 256 channels), each followed
//!   by 2x2 max pooling, then `conv3x3-BN-ReLU, conv3x3` to 512 channels (no BN/ReLU on the
//!   last conv, so the memory sees unbounded features). Output stride 8.
//! - Decoder: `[conv3x3-BN-ReLU] x 2` (1024 -> 512), then three times a 3x3 transposed conv
//!   (stride 2, output padding 1) + BN + ReLU and `[conv3x3-BN-ReLU] x 2` (512 -> 256,
//!   256 -> 128, 128 -> 64), then `conv3x3 -> channels` and `tanh`. With skips (prediction) the
//!   transposed conv halves the channels and the encoder stage of the same resolution is
//!   concatenated; without (reconstruction) it keeps them, so the decoder cannot copy the
//!   input around the memory.
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// BatchNorm as the reference's pinned PyTorch 1.1.0 created it: weight `U(0, 1)` (1 from
/// PyTorch 1.2 on), bias 0; tch's default.
fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, Default::default())
}

/// A 3x3 convolution with bias, PyTorch's default init (the official code keeps it).
fn conv3(p: nn::Path, c_in: i64, c_out: i64) -> nn::Conv2D {
    let (ws_init, bs_init) = crate::init::pytorch_default(c_in * 9);
    let cfg = nn::ConvConfig {
        padding: 1,
        ws_init,
        bs_init,
        ..Default::default()
    };
    nn::conv2d(p, c_in, c_out, 3, cfg)
}

/// `conv3x3-BN-ReLU, conv3x3[-BN-ReLU]` (the reference's `Basic` and, without the last
/// BN-ReLU, `Basic_`).
#[derive(Debug)]
struct DoubleConv {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: Option<nn::BatchNorm>,
}

impl DoubleConv {
    fn new(p: nn::Path, c_in: i64, c_out: i64, last_bn_relu: bool) -> Self {
        DoubleConv {
            conv1: conv3(&p / "0", c_in, c_out),
            bn1: bn(&p / "1", c_out),
            conv2: conv3(&p / "3", c_out, c_out),
            bn2: last_bn_relu.then(|| bn(&p / "4", c_out)),
        }
    }
}

impl ModuleT for DoubleConv {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let y = x
            .apply(&self.conv1)
            .apply_t(&self.bn1, train)
            .relu()
            .apply(&self.conv2);
        match &self.bn2 {
            Some(b) => y.apply_t(b, train).relu(),
            None => y,
        }
    }
}

/// 3x3 transposed conv, stride 2 (doubles the resolution), BN, ReLU.
#[derive(Debug)]
struct Up {
    deconv: nn::ConvTranspose2D,
    bn: nn::BatchNorm,
}

impl Up {
    fn new(p: nn::Path, c_in: i64, c_out: i64) -> Self {
        let (ws_init, bs_init) = crate::init::pytorch_default(c_out * 9);
        let cfg = nn::ConvTransposeConfig {
            stride: 2,
            padding: 1,
            output_padding: 1,
            ws_init,
            bs_init,
            ..Default::default()
        };
        Up {
            deconv: nn::conv_transpose2d(&p / "0", c_in, c_out, 3, cfg),
            bn: bn(&p / "1", c_out),
        }
    }
}

impl ModuleT for Up {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        x.apply(&self.deconv).apply_t(&self.bn, train).relu()
    }
}

/// The encoder's output: the 512-channel features and the three stage outputs for skips.
#[derive(Debug)]
pub struct UnetFeatures {
    /// `[B, 512, H/8, W/8]`.
    pub features: Tensor,
    /// `[B, 64, H, W]`, `[B, 128, H/2, W/2]`, `[B, 256, H/4, W/4]`.
    pub skips: [Tensor; 3],
}

/// MNAD's encoder.
#[derive(Debug)]
pub struct UnetEncoder {
    stages: [DoubleConv; 3],
    last: DoubleConv,
}

/// Channels of the encoder's output (the memory's item size).
pub const UNET_FEATURES: i64 = 512;

impl UnetEncoder {
    /// `in_channels`: 3 x (frames in the input), 12 for MNAD's 4 past RGB frames.
    pub fn new(p: nn::Path, in_channels: i64) -> Self {
        UnetEncoder {
            stages: [
                DoubleConv::new(&p / "conv1", in_channels, 64, true),
                DoubleConv::new(&p / "conv2", 64, 128, true),
                DoubleConv::new(&p / "conv3", 128, 256, true),
            ],
            last: DoubleConv::new(&p / "conv4", 256, UNET_FEATURES, false),
        }
    }

    /// # Shapes
    /// `x`: `[B, in_channels, H, W]` with `H`, `W` divisible by 8.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> UnetFeatures {
        let s1 = self.stages[0].forward_t(x, train);
        let s2 = self.stages[1].forward_t(&s1.max_pool2d_default(2), train);
        let s3 = self.stages[2].forward_t(&s2.max_pool2d_default(2), train);
        let features = self.last.forward_t(&s3.max_pool2d_default(2), train);
        UnetFeatures {
            features,
            skips: [s1, s2, s3],
        }
    }
}

/// MNAD's decoder, with (prediction) or without (reconstruction) skip connections.
#[derive(Debug)]
pub struct UnetDecoder {
    entry: DoubleConv,
    ups: [Up; 3],
    stages: [DoubleConv; 2],
    head: DoubleConv,
    out: nn::Conv2D,
    skips: bool,
}

impl UnetDecoder {
    /// `in_channels`: the memory-augmented features (1024: query and read concatenated);
    /// `out_channels`: 3 for one RGB frame.
    pub fn new(p: nn::Path, in_channels: i64, out_channels: i64, skips: bool) -> Self {
        // With skips the upsampled map has half the stage's input channels, the skip the
        // other half; without, the upsampling keeps the channels (the reference's two files).
        let k = if skips { 2 } else { 1 };
        UnetDecoder {
            entry: DoubleConv::new(&p / "conv", in_channels, 512, true),
            ups: [
                Up::new(&p / "up4", 512, 512 / k),
                Up::new(&p / "up3", 256, 256 / k),
                Up::new(&p / "up2", 128, 128 / k),
            ],
            stages: [
                DoubleConv::new(&p / "deconv3", 512, 256, true),
                DoubleConv::new(&p / "deconv2", 256, 128, true),
            ],
            head: DoubleConv::new(&p / "deconv1", 128, 64, true),
            out: conv3(&p / "deconv1" / "6", 64, out_channels),
            skips,
        }
    }

    /// # Shapes
    /// `x`: `[B, in_channels, h, w]`; `skips` the encoder's (ignored without skips). Returns
    /// `[B, out_channels, 8h, 8w]` in `[-1, 1]`.
    pub fn forward_t(&self, x: &Tensor, skips: &[Tensor; 3], train: bool) -> Tensor {
        let join = |up: Tensor, skip: &Tensor| {
            if self.skips {
                Tensor::cat(&[skip, &up], 1)
            } else {
                up
            }
        };
        let y = self.entry.forward_t(x, train);
        let y = join(self.ups[0].forward_t(&y, train), &skips[2]);
        let y = self.stages[0].forward_t(&y, train);
        let y = join(self.ups[1].forward_t(&y, train), &skips[1]);
        let y = self.stages[1].forward_t(&y, train);
        let y = join(self.ups[2].forward_t(&y, train), &skips[0]);
        self.head.forward_t(&y, train).apply(&self.out).tanh()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn shapes_with_and_without_skips() {
        let vs = nn::VarStore::new(Device::Cpu);
        let enc = UnetEncoder::new(vs.root() / "enc", 12);
        let x = Tensor::rand([2, 12, 32, 32], (Kind::Float, Device::Cpu));
        let f = enc.forward_t(&x, true);
        assert_eq!(f.features.size(), [2, 512, 4, 4]);
        assert_eq!(f.skips[0].size(), [2, 64, 32, 32]);
        assert_eq!(f.skips[2].size(), [2, 256, 8, 8]);
        for skips in [true, false] {
            let dec = UnetDecoder::new(vs.root() / format!("dec{skips}"), 1024, 3, skips);
            let q = Tensor::cat(&[&f.features, &f.features], 1);
            let y = dec.forward_t(&q, &f.skips, false);
            assert_eq!(y.size(), [2, 3, 32, 32]);
            let peak = y.abs().max().double_value(&[]);
            assert!(peak <= 1.0, "tanh output, got {peak}");
            // The prediction decoder reads its skips; the reconstruction one does not.
            let shifted = f.skips.each_ref().map(|s| s + 1.0);
            let moved = !dec
                .forward_t(&q, &shifted, false)
                .allclose(&y, 1e-6, 1e-6, false);
            assert_eq!(moved, skips, "skips = {skips}");
        }
    }

    #[test]
    fn reconstruction_decoder_ignores_the_skips() {
        let vs = nn::VarStore::new(Device::Cpu);
        let dec = UnetDecoder::new(vs.root(), 1024, 3, false);
        let x = Tensor::rand([1, 1024, 2, 2], (Kind::Float, Device::Cpu));
        let skips = |v: f64| {
            [
                Tensor::full([1, 64, 16, 16], v, (Kind::Float, Device::Cpu)),
                Tensor::full([1, 128, 8, 8], v, (Kind::Float, Device::Cpu)),
                Tensor::full([1, 256, 4, 4], v, (Kind::Float, Device::Cpu)),
            ]
        };
        let a = dec.forward_t(&x, &skips(0.0), false);
        let b = dec.forward_t(&x, &skips(5.0), false);
        assert!(a.allclose(&b, 0.0, 0.0, false));
    }
}
