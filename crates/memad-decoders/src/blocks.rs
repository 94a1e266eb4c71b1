//! Residual bottleneck blocks shared by the OCBE and the reverse decoder.
use crate::init;
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// A bias-free convolution with the official RD4AD init (Kaiming-normal, fan-out).
pub(crate) fn conv(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64) -> nn::Conv2D {
    nn::conv2d(
        p,
        c_in,
        c_out,
        k,
        nn::ConvConfig {
            stride,
            padding: k / 2,
            bias: false,
            ws_init: init::KAIMING_NORMAL_FAN_OUT,
            ..Default::default()
        },
    )
}

/// A bias-free 2x2 stride-2 transposed convolution with PyTorch's default init (the official
/// `de_resnet.py` re-initialises only `nn.Conv2d`, not `nn.ConvTranspose2d`).
pub(crate) fn deconv2x2(p: nn::Path, c_in: i64, c_out: i64) -> nn::ConvTranspose2D {
    let cfg = nn::ConvTransposeConfig {
        stride: 2,
        bias: false,
        ws_init: init::pytorch_default(c_out * 4).0,
        ..Default::default()
    };
    nn::conv_transpose2d(p, c_in, c_out, 2, cfg)
}

pub(crate) fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    init::batch_norm2d(p, c)
}

/// conv-BN-ReLU.
#[derive(Debug)]
pub struct ConvBnRelu {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
}

impl ConvBnRelu {
    pub fn new(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64) -> Self {
        ConvBnRelu {
            conv: conv(&p / "conv", c_in, c_out, k, stride),
            bn: bn(&p / "bn", c_out),
        }
    }
}

impl ModuleT for ConvBnRelu {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        x.apply(&self.conv).apply_t(&self.bn, train).relu()
    }
}

/// The middle layer of a bottleneck: a 3x3 conv (optionally strided) or a 2x2 transposed
/// conv doubling the resolution.
#[derive(Debug)]
enum Middle {
    Conv(nn::Conv2D),
    Up(nn::ConvTranspose2D),
}

/// ResNet bottleneck: 1x1 (c_in -> width), 3x3 stride s or 2x2 transposed conv (width ->
/// width), 1x1 (width -> c_out), with a projection shortcut when the shape changes.
#[derive(Debug)]
pub struct Bottleneck {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    middle: Middle,
    bn2: nn::BatchNorm,
    conv3: nn::Conv2D,
    bn3: nn::BatchNorm,
    shortcut: Option<(Middle, nn::BatchNorm)>,
}

/// How a bottleneck changes the resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    Keep,
    /// Stride-2 3x3 conv (ResNet downsampling).
    Down,
    /// 2x2 stride-2 transposed conv (RD4AD's de-ResNet upsampling).
    Up,
}

impl Bottleneck {
    pub fn new(p: nn::Path, c_in: i64, width: i64, c_out: i64, resample: Resample) -> Self {
        let middle = match resample {
            Resample::Keep => Middle::Conv(conv(&p / "conv2", width, width, 3, 1)),
            Resample::Down => Middle::Conv(conv(&p / "conv2", width, width, 3, 2)),
            Resample::Up => Middle::Up(deconv2x2(&p / "conv2", width, width)),
        };
        let shortcut = (resample != Resample::Keep || c_in != c_out).then(|| {
            let sp = &p / "downsample";
            let m = match resample {
                Resample::Up => Middle::Up(deconv2x2(&sp / "0", c_in, c_out)),
                Resample::Down => Middle::Conv(conv(&sp / "0", c_in, c_out, 1, 2)),
                Resample::Keep => Middle::Conv(conv(&sp / "0", c_in, c_out, 1, 1)),
            };
            (m, bn(&sp / "1", c_out))
        });
        Bottleneck {
            conv1: conv(&p / "conv1", c_in, width, 1, 1),
            bn1: bn(&p / "bn1", width),
            middle,
            bn2: bn(&p / "bn2", width),
            conv3: conv(&p / "conv3", width, c_out, 1, 1),
            bn3: bn(&p / "bn3", c_out),
            shortcut,
        }
    }
}

fn apply_middle(m: &Middle, x: &Tensor) -> Tensor {
    match m {
        Middle::Conv(c) => x.apply(c),
        Middle::Up(c) => x.apply(c),
    }
}

impl ModuleT for Bottleneck {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let h = x.apply(&self.conv1).apply_t(&self.bn1, train).relu();
        let h = apply_middle(&self.middle, &h)
            .apply_t(&self.bn2, train)
            .relu();
        let h = h.apply(&self.conv3).apply_t(&self.bn3, train);
        let identity = match &self.shortcut {
            Some((m, b)) => apply_middle(m, x).apply_t(b, train),
            None => x.shallow_clone(),
        };
        (h + identity).relu()
    }
}

/// A stage of `n` bottlenecks; the first resamples and changes channels.
pub fn stage(
    p: nn::Path,
    n: usize,
    c_in: i64,
    width: i64,
    c_out: i64,
    resample: Resample,
) -> Vec<Bottleneck> {
    (0..n)
        .map(|i| {
            let (c, r) = if i == 0 {
                (c_in, resample)
            } else {
                (c_out, Resample::Keep)
            };
            Bottleneck::new(&p / i, c, width, c_out, r)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn bottleneck_shapes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let x = Tensor::randn([2, 8, 16, 16], (Kind::Float, Device::Cpu));
        let down = Bottleneck::new(vs.root() / "d", 8, 4, 16, Resample::Down);
        let up = Bottleneck::new(vs.root() / "u", 8, 4, 6, Resample::Up);
        let keep = Bottleneck::new(vs.root() / "k", 8, 4, 8, Resample::Keep);
        assert_eq!(down.forward_t(&x, true).size(), [2, 16, 8, 8]);
        assert_eq!(up.forward_t(&x, true).size(), [2, 6, 32, 32]);
        assert_eq!(keep.forward_t(&x, false).size(), [2, 8, 16, 16]);
    }
}
