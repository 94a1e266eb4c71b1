//! The initialisations of the reference code, where tch's defaults differ from them. tch
//! starts BatchNorm weights at `U(0, 1)` (PyTorch's default before 1.2), convolution weights
//! Kaiming-uniform with the ReLU gain (bound `sqrt(6 / fan_in)`) and biases at 0.
use tch::nn::{self, init::FanInOut, init::NonLinearity, init::NormalOrUniform, Init};

/// BatchNorm2d as PyTorch (1.2 and later) creates it and RD4AD's code sets it: weight 1,
/// bias 0.
pub fn batch_norm2d(p: nn::Path, c: i64) -> nn::BatchNorm {
    let cfg = nn::BatchNormConfig {
        ws_init: Init::Const(1.0),
        bs_init: Init::Const(0.0),
        ..Default::default()
    };
    nn::batch_norm2d(p, c, cfg)
}

/// PyTorch's default init of `nn.Conv2d` and `nn.ConvTranspose2d` (`kaiming_uniform_` with
/// `a = sqrt(5)`, and the bias alike): weight and bias `U(-b, b)`, `b = 1 / sqrt(fan_in)`,
/// where `fan_in` is the weight's `size(1) * k * k` (`c_in * k * k` for a convolution,
/// `c_out * k * k` for a transposed one, whose weight is `[c_in, c_out, k, k]`).
/// Returns `(ws_init, bs_init)`.
pub fn pytorch_default(fan_in: i64) -> (Init, Init) {
    let bound = 1.0 / (fan_in as f64).sqrt();
    let uniform = Init::Uniform {
        lo: -bound,
        up: bound,
    };
    (uniform, uniform)
}

/// The weight init RD4AD's official `resnet.py` / `de_resnet.py` give every `nn.Conv2d`:
/// `kaiming_normal_(mode = "fan_out", nonlinearity = "relu")`.
pub const KAIMING_NORMAL_FAN_OUT: Init = Init::Kaiming {
    dist: NormalOrUniform::Normal,
    fan: FanInOut::FanOut,
    non_linearity: NonLinearity::ReLU,
};

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn inits_have_the_reference_scales() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = batch_norm2d(vs.root() / "bn", 8);
        assert!(bn.ws.as_ref().unwrap().eq(1.0).all().int64_value(&[]) == 1);
        // A transposed conv of 64 -> 32 channels, 2x2: fan_in = 32 * 4.
        let (ws, bs) = pytorch_default(32 * 4);
        let cfg = nn::ConvTransposeConfig {
            ws_init: ws,
            bs_init: bs,
            ..Default::default()
        };
        let up = nn::conv_transpose2d(vs.root() / "up", 64, 32, 2, cfg);
        let bound = 1.0 / (128f64).sqrt();
        let max = up.ws.abs().max().double_value(&[]);
        assert!(max <= bound && max > 0.9 * bound, "{max} vs {bound}");
        // Kaiming-normal, fan-out of a 3x3 conv to 256 channels: std sqrt(2 / (256 * 9)).
        let cfg = nn::ConvConfig {
            ws_init: KAIMING_NORMAL_FAN_OUT,
            ..Default::default()
        };
        let conv = nn::conv2d(vs.root() / "conv", 128, 256, 3, cfg);
        let std = conv.ws.std(true).double_value(&[]);
        let want = (2.0 / (256.0 * 9.0f64)).sqrt();
        assert!((std / want - 1.0).abs() < 0.02, "{std} vs {want}");
        assert_eq!(conv.ws.kind(), Kind::Float);
    }
}
