//! MemAE: Gong, Liu, Le, Saha, Mansour, Venkatesh & van den Hengel, "Memorizing Normality to
//! Detect Anomaly: Memory-augmented Deep Autoencoder for Unsupervised Anomaly Detection",
//! ICCV 2019. Reference code: github.com/donggong1/memae-anomaly-detection
//! (`models/memae_3dconv.py`, `script_training.py`, `script_testing.py`, `utils/eval.py`).
//!
//! An encoder `f_e` maps the input to a code, a memory of `N` items `M` ([`memory_memae::MemAe`])
//! replaces every code vector by a sparse combination of items, and a decoder `f_d`
//! reconstructs the input from it. The memory is applied per position: the code
//! `[B, C, (t,) h, w]` is read as `[B (t) h w, C]` queries (the official `MemModule`).
//!
//! - Encoder / decoder (Eq. 1-2): `z = f_e(x)`, `x_hat = f_d(z_hat)`.
//! - Read (Eq. 3): `z_hat = w_hat M = sum_i w_hat_i m_i`.
//! - Addressing (Eq. 4-5): `w_i = exp(d(z, m_i)) / sum_j exp(d(z, m_j))`, with
//!   `d(z, m_i) = z m_i^T / (||z|| ||m_i||)` in the paper.
//! - Hard shrinkage (Eq. 6-7): `w_hat_i = w_i if w_i > lambda else 0`, computed as
//!   `max(w_i - lambda, 0) w_i / (|w_i - lambda| + eps)`, then `w_hat / ||w_hat||_1`.
//! - Reconstruction error (Eq. 8): `R(x, x_hat) = ||x - x_hat||_2^2`.
//! - Entropy of the addressing (Eq. 9): `E(w_hat) = sum_i -w_hat_i log(w_hat_i)`.
//! - Loss (Eq. 10): `L = R(x, x_hat) + alpha E(w_hat)`, averaged over the batch,
//!   `alpha = 0.0002`; returned as the terms `mse` and `entropy` (= `alpha E`), which sum to
//!   the loss.
//! - Score: the reconstruction error of the sample: for a video clip its mean squared error
//!   over all `T x H x W` pixels, assigned to the clip's centre frame (the runner labels a
//!   centred clip by its centre frame and, with `eval.video_normalization = "min_max"`,
//!   min-max normalises the scores of each video as the official `utils/eval.py`); for an
//!   image its mean squared error. Anomaly map: the per-pixel squared error (of the centre
//!   frame for clips, mean over channels for RGB images).
//!
//! Variants (`variant`):
//! - `video` (UCSD Ped2, paper Sec. 4.2; `models/memae_3dconv.py`): 16-frame grayscale clips
//!   `[B, 1, 16, 256, 256]`. Encoder: four `Conv3d` 3x3x3, padding 1, `1 -> 96` stride
//!   (1, 2, 2), `96 -> 128`, `128 -> 256`, `256 -> 256` stride 2, each followed by
//!   BatchNorm3d and LeakyReLU(0.2). Decoder: the mirror with `ConvTranspose3d` 3x3x3,
//!   padding 1, `256 -> 256`, `256 -> 128`, `128 -> 96` stride 2 (BN + LeakyReLU), then
//!   `96 -> 1` stride (1, 2, 2) with no BN or activation. Memory: `MemAeConfig::paper_ped2()`
//!   (2000 x 256, lambda 0.0025). The runner gives clips as `[B, 3T, H, W]` (RGB frames
//!   stacked channel-wise in time order, values in `[0, 1]`): the method converts them to
//!   grayscale with the BT.601 luma weights `0.299 R + 0.587 G + 0.114 B` (MATLAB's
//!   `rgb2gray`, which the official preprocessing uses; the Ped2 frames are gray, R = G = B)
//!   and maps `[0, 1]` to `[-1, 1]` (the official `Normalize(0.5, 0.5)`). `channels = 3`
//!   keeps RGB instead (the official `ImgChnNum = 3`).
//! - `image` (paper Sec. 4.1): the paper's 2D autoencoders, the code `[B, C, h, w]` read per
//!   position. `channels = 1` (MNIST, Fashion-MNIST; 28x28 grayscale): encoder
//!   `Conv2(1, 2, 16)-Conv2(3, 2, 32)-Conv2(3, 2, 64)`, decoder
//!   `Dconv2(3, 2, 64)-Dconv2(3, 2, 32)-Dconv2(3, 2, 1)` (`Conv2(k, s, c)`: kernel k,
//!   stride s, c output channels), memory `paper_mnist()` (100 x 64). `channels = 3`
//!   (CIFAR-10, 32x32 RGB): `Conv2(3, 2, 64)-Conv2(3, 2, 128)-Conv2(3, 2, 256)`,
//!   `Dconv2(3, 2, 256)-Dconv2(3, 2, 128)-Dconv2(3, 2, 3)`, memory `paper_cifar10()`
//!   (500 x 256). Padding `(k - 1) / 2`; every layer but the last of the decoder has BN +
//!   LeakyReLU(0.2). RGB input is converted to gray for `channels = 1` (a 1-channel input is
//!   used as is); values mapped to `[-1, 1]`.
//!
//! Ablation: `use_memory = false` removes the memory; the decoder reads the code `z` itself
//! and the loss is the reconstruction error alone (a plain autoencoder of the same layers).
//!
//! Keys left out of `[method.memory]` take the variant's paper preset. `[method.memory] kind`
//! takes any registered memory kind instead (`memad list`; default `"memae"`, the paper's,
//! the only one with a preset): the code is read from that memory per position, its losses
//! replace the entropy term, and a memory updated by rule (`"mnad"`) is updated with the
//! step's queries after each optimizer step. Its `dim` must equal the code's channels.
//! MNAD's memory passes no gradient through its read (its official code detaches the
//! addressing weights, and its items are not variables), and MemAE's decoder reads only the
//! memory: with `kind = "mnad"` the encoder learns from the memory's compactness and
//! separateness terms alone, not from the reconstruction error.
//!
//! Variables are named as the official checkpoint's keys (`encoder.0.weight`,
//! `encoder.1.running_mean`, ..., `mem_rep.memory.weight`, `decoder.9.bias`), so converted
//! official weights load.
//!
//! Deviations:
//! - Addressing is the official code's dot product `z m_i^T` (its `F.linear`) by default;
//!   the paper's cosine similarity (Eq. 5) is `memory.addressing = "cosine"`.
//! - Eq. 8 and 10 use the official reductions: `R` is the mean (not the sum) of the squared
//!   errors over pixels (`nn.MSELoss`, in the `[-1, 1]` units of the input) and `E` the mean
//!   over queries; `alpha = 0.0002` is calibrated for these.
//! - Clips: the official index files (`script_index_gen.m`) take every full window of 16
//!   frames (stride 1) and score frames 8 .. n-8 of each test video (`gt_labels[8:-7]`):
//!   `[data.clip] mode = "centred_valid"` (the paper file). With `mode = "centred"` every
//!   frame is a clip centre, the window clamped at the video ends (first and last frames
//!   repeated), so every frame of the test set is scored, and training takes 15 clips per
//!   video more than the official index (240 of 2,550 on Ped2), whose repeated end frames
//!   show no motion (the CPU file and the figures of `docs/results.md` before the mode
//!   existed).
//! - Score: the official `script_testing.py` averages the per-pixel L2 norm of the error over
//!   channels (for gray frames: the mean absolute error, `score = "l2_norm"`); the default
//!   `score = "squared_error"` is the mean squared error (the paper's Eq. 8), in `[0, 1]`
//!   pixel units (the error of `[-1, 1]` values / 2). The anomaly map takes the same
//!   per-pixel measure.
//!   The official evaluation scores `1 - minmax(error)` as regularity per video: the same
//!   ranking, hence the same AUROC, as min-max of the error.
//! - Frames: the official preprocessing resizes the original TIFs to 256x256 in MATLAB
//!   (`imresize`: bicubic, antialiased) and saves JPEGs; here the loader resizes the
//!   MNAD-layout JPEGs as `[data] resize_filter` says: the paper file sets
//!   `"antialiased_bicubic"` (a level from a port of `imresize`; the default, an antialiased
//!   bilinear, is up to 30 levels away on Ped2 frames).
//! - Initialisation as the official `utils.weights_init`: conv and transposed-conv weights
//!   `N(0, 0.02)`, BN weights `N(1, 0.02)` and biases 0; conv biases PyTorch's default
//!   `U(+-1/sqrt(fan_in))`; all drawn on the CPU from the seeded global generator and copied
//!   to the device. BN has no `num_batches_tracked` (tch).
//! - The official code has no 2D model: the image autoencoders follow the paper's layer list,
//!   with the 3D model's BN + LeakyReLU(0.2) and padding; transposed convolutions get the
//!   output padding that restores each encoder size (28 -> 14 -> 7 -> 4 -> 7 -> 14 -> 28).
//!   The paper's MNIST/CIFAR-10 optimiser settings are not given; the experiment files use
//!   the video settings (Adam, lr 1e-4).
//!
//! Reproduce: `memad run experiments/paper/memae_ped2.toml` (paper Sec. 4.2: Ped2 frame AUROC
//! 94.1); `experiments/memae_ped2_cpu.toml` is the CPU-sized run in `docs/results.md`.
use memad_core::{
    memory_dim, parse_section, to_toml_value, AnomalyOutput, Batch, BuildContext, ConfigError,
    CoreError, LossTerm, Memory, MemoryRead, MemoryUsage, Method, Registry, Result, TrainOutput,
};
use memory_memae::MemAeConfig;
use serde::{Deserialize, Serialize};
use tch::{nn, nn::ModuleT, Device, Kind, Tensor};

/// BT.601 luma weights (MATLAB `rgb2gray`).
const LUMA: [f32; 3] = [0.299, 0.587, 0.114];
/// Negative slope of the official LeakyReLU.
const LEAKY_SLOPE: f64 = 0.2;
/// Clip length of the paper (`FrameNum`).
const PAPER_FRAMES: usize = 16;

/// Which autoencoder: 3D convolutions on clips, or 2D on images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemAeVariant {
    Video,
    Image,
}

/// How a sample's reconstruction error becomes its score (and its anomaly map's pixels).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemAeScore {
    /// The paper's Eq. 8: the squared error, averaged over channels and pixels.
    #[default]
    SquaredError,
    /// The official `script_testing.py`: the per-pixel L2 norm of the error over channels,
    /// averaged over pixels (for gray frames: the mean absolute error).
    L2Norm,
}

/// The `[method]` section as written (`kind = "memae"`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    kind: String,
    variant: MemAeVariant,
    #[serde(default)]
    frames: Option<usize>,
    #[serde(default)]
    channels: Option<i64>,
    #[serde(default)]
    memory: Option<toml::Value>,
    #[serde(default = "d_true")]
    use_memory: bool,
    #[serde(default)]
    score: MemAeScore,
}

fn d_true() -> bool {
    true
}

/// A resolved `[method]` section with `kind = "memae"`.
#[derive(Debug, Clone, Serialize)]
pub struct MemAeMethodConfig {
    pub kind: String,
    pub variant: MemAeVariant,
    /// Frames per clip (`video` only; `[data.clip] frames` must match). Default 16.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames: Option<usize>,
    /// Image channels the autoencoder sees: 1 (gray; default) or 3 (RGB). For `image` it
    /// also picks the paper's network: 1 = MNIST's, 3 = CIFAR-10's.
    pub channels: i64,
    /// The memory section, resolved: `kind` (default `"memae"`, whose keys left out take the
    /// variant's paper preset; or any registered memory kind) and that memory's keys.
    pub memory: toml::Value,
    /// `false`: the ablation without memory (the decoder reads the code `z` itself, the loss
    /// is the reconstruction error alone); `[method.memory]` is then unused.
    pub use_memory: bool,
    /// `"squared_error"` (the paper's Eq. 8; default) or `"l2_norm"` (the official testing
    /// script). Scoring only: `memad eval --set method.score=...` rescoring a trained run.
    pub score: MemAeScore,
}

impl MemAeMethodConfig {
    /// The paper's preset memory for a variant and channel count.
    fn preset(variant: MemAeVariant, channels: i64) -> MemAeConfig {
        match (variant, channels) {
            (MemAeVariant::Video, _) => MemAeConfig::paper_ped2(),
            (MemAeVariant::Image, 3) => MemAeConfig::paper_cifar10(),
            (MemAeVariant::Image, _) => MemAeConfig::paper_mnist(),
        }
    }
}

/// The memory kind of a `[method.memory]` section that names none.
pub const DEFAULT_MEMORY: &str = "memae";

fn parse(
    section: &toml::Value,
    path: &str,
    registry: &Registry,
) -> std::result::Result<MemAeMethodConfig, ConfigError> {
    let s: Section = parse_section(section, path)?;
    let key = |k: &str| format!("{path}.{k}");
    let channels = s.channels.unwrap_or(1);
    if channels != 1 && channels != 3 {
        return Err(ConfigError::new(
            key("channels"),
            format!("must be 1 (gray) or 3 (RGB), got {channels}"),
        ));
    }
    let frames = match (s.variant, s.frames) {
        (MemAeVariant::Video, None) => Some(PAPER_FRAMES),
        (MemAeVariant::Video, Some(0)) => {
            return Err(ConfigError::new(key("frames"), "must be at least 1"))
        }
        (MemAeVariant::Video, Some(f)) => Some(f),
        (MemAeVariant::Image, None) => None,
        (MemAeVariant::Image, Some(_)) => {
            return Err(ConfigError::new(
                key("frames"),
                "only for variant = \"video\" (images are single frames)",
            ))
        }
    };
    let given = match s.memory {
        None => toml::Table::new(),
        Some(toml::Value::Table(given)) => given,
        Some(other) => {
            return Err(ConfigError::new(
                key("memory"),
                format!("expected a table, found {}", other.type_str()),
            ))
        }
    };
    // MemAE's own memory: the preset, overlaid with the keys given.
    let own = given
        .get("kind")
        .is_none_or(|k| k.as_str() == Some(DEFAULT_MEMORY));
    let mut memory = toml::Table::new();
    if own {
        if let toml::Value::Table(preset) =
            to_toml_value(&MemAeMethodConfig::preset(s.variant, channels))?
        {
            memory = preset;
        }
    }
    memory.extend(given);
    let memory =
        registry.resolve_memory(&toml::Value::Table(memory), &key("memory"), DEFAULT_MEMORY)?;
    let code = Architecture::new(s.variant, channels).code_channels();
    let dim = memory_dim(&memory).unwrap_or_default();
    if dim != code {
        return Err(ConfigError::new(
            key("memory.dim"),
            format!(
                "must equal the encoder's {code} output channels (variant {:?}, channels {channels}), got {dim}",
                s.variant
            ),
        ));
    }
    Ok(MemAeMethodConfig {
        kind: s.kind,
        variant: s.variant,
        frames,
        channels,
        memory,
        use_memory: s.use_memory,
        score: s.score,
    })
}

/// Registry `resolve`.
pub fn resolve(
    section: &toml::Value,
    path: &str,
    registry: &Registry,
) -> std::result::Result<toml::Value, ConfigError> {
    to_toml_value(&parse(section, path, registry)?)
}

/// Registry `check_data`: the input must be the clips the model is built for, labelled by
/// the frame its score and map belong to.
///
/// - `video`: the score is the clip's error and the map is the clip's centre frame (index
///   `T / 2`), so the sample must be labelled by that centre: `[data.clip] mode =
///   "centred"` or `"centred_valid"`. `mode = "predict"` labels a clip by its last frame
///   (`T - 1 - T / 2` frames after the centre, 7 for 16-frame clips): its score and map
///   would go to a frame other than theirs, the map compared with that frame's mask. `[data.clip] frames` must equal `method.frames` (the loader stacks
///   a clip's frames into `3 * frames` channels, which `forward` checks), and without a
///   `[data.clip]` a sample is one frame, so `method.frames` must then be 1.
/// - `image`: one frame per sample: no `[data.clip]`, or one of a single frame.
pub fn check_data(
    method: &toml::Value,
    data: &toml::Value,
) -> std::result::Result<(), ConfigError> {
    let clip = data.get("clip");
    let clip_frames = clip
        .and_then(|c| c.get("frames"))
        .and_then(toml::Value::as_integer);
    let mode = clip
        .and_then(|c| c.get("mode"))
        .and_then(toml::Value::as_str);
    let video = method.get("variant").and_then(toml::Value::as_str) == Some("video");
    if !video {
        return match clip_frames {
            Some(f) if f != 1 => Err(ConfigError::new(
                "data.clip.frames",
                format!(
                    "MemAE's variant = \"image\" reads one frame per sample, got clips of {f} \
                     frames: leave out [data.clip] (or use variant = \"video\")"
                ),
            )),
            _ => Ok(()),
        };
    }
    if mode == Some("predict") {
        return Err(ConfigError::new(
            "data.clip.mode",
            "MemAE's variant = \"video\" scores a clip at its centre frame (the anomaly map is \
             the centre frame's): it needs mode = \"centred\" or \"centred_valid\"; mode = \
             \"predict\" labels each clip by its last frame, so scores, maps and masks would \
             belong to different frames",
        ));
    }
    let Some(frames) = method.get("frames").and_then(toml::Value::as_integer) else {
        return Ok(());
    };
    match (clip, clip_frames) {
        (None, _) if frames != 1 => Err(ConfigError::new(
            "data.clip",
            format!(
                "MemAE's variant = \"video\" with method.frames = {frames} reads clips of \
                 {frames} frames: add [data.clip] with frames = {frames} and mode = \
                 \"centred\" (or \"centred_valid\"); without it every sample is one frame"
            ),
        )),
        (Some(_), Some(f)) if f != frames => Err(ConfigError::new(
            "data.clip.frames",
            format!(
                "must equal method.frames = {frames} (MemAE's 3D autoencoder is built for \
                 clips of {frames} frames), got {f}"
            ),
        )),
        _ => Ok(()),
    }
}

/// Registry `build`.
pub fn build(
    section: &toml::Value,
    registry: &Registry,
    ctx: &BuildContext,
) -> Result<Box<dyn Method>> {
    let cfg = parse(section, "method", registry)?;
    Ok(Box::new(MemAeMethod::new(cfg, registry, ctx)?))
}

/// One convolution of the layer list: `out` channels, a cubic/square `kernel`, a stride
/// per spatial (or temporal) dimension, padding `(kernel - 1) / 2`.
#[derive(Debug, Clone)]
struct ConvSpec {
    out: i64,
    kernel: i64,
    stride: Vec<i64>,
}

impl ConvSpec {
    fn new(out: i64, kernel: i64, stride: &[i64]) -> Self {
        ConvSpec {
            out,
            kernel,
            stride: stride.to_vec(),
        }
    }

    fn padding(&self) -> i64 {
        (self.kernel - 1) / 2
    }
}

/// An autoencoder's layer list.
#[derive(Debug, Clone)]
struct Architecture {
    input_channels: i64,
    encoder: Vec<ConvSpec>,
    /// Transposed convolutions; the stride of decoder layer `j` undoes encoder layer
    /// `n - 1 - j`.
    decoder: Vec<ConvSpec>,
}

impl Architecture {
    fn new(variant: MemAeVariant, channels: i64) -> Self {
        let (s3, s122, s2) = (&[2, 2, 2][..], &[1, 2, 2][..], &[2, 2][..]);
        match (variant, channels) {
            // models/memae_3dconv.py
            (MemAeVariant::Video, c) => Architecture {
                input_channels: c,
                encoder: vec![
                    ConvSpec::new(96, 3, s122),
                    ConvSpec::new(128, 3, s3),
                    ConvSpec::new(256, 3, s3),
                    ConvSpec::new(256, 3, s3),
                ],
                decoder: vec![
                    ConvSpec::new(256, 3, s3),
                    ConvSpec::new(128, 3, s3),
                    ConvSpec::new(96, 3, s3),
                    ConvSpec::new(c, 3, s122),
                ],
            },
            // Paper Sec. 4.1, CIFAR-10.
            (MemAeVariant::Image, 3) => Architecture {
                input_channels: 3,
                encoder: vec![
                    ConvSpec::new(64, 3, s2),
                    ConvSpec::new(128, 3, s2),
                    ConvSpec::new(256, 3, s2),
                ],
                decoder: vec![
                    ConvSpec::new(256, 3, s2),
                    ConvSpec::new(128, 3, s2),
                    ConvSpec::new(3, 3, s2),
                ],
            },
            // Paper Sec. 4.1, MNIST.
            (MemAeVariant::Image, _) => Architecture {
                input_channels: 1,
                encoder: vec![
                    ConvSpec::new(16, 1, s2),
                    ConvSpec::new(32, 3, s2),
                    ConvSpec::new(64, 3, s2),
                ],
                decoder: vec![
                    ConvSpec::new(64, 3, s2),
                    ConvSpec::new(32, 3, s2),
                    ConvSpec::new(1, 3, s2),
                ],
            },
        }
    }

    /// Channels of the code (the memory's `dim`).
    fn code_channels(&self) -> i64 {
        self.encoder.last().map_or(self.input_channels, |l| l.out)
    }

    /// The size of every encoder activation, input first: `sizes[i]` is the input of
    /// encoder layer `i`, `sizes[n]` the code.
    fn encoder_sizes(&self, input: &[i64]) -> Vec<Vec<i64>> {
        let mut sizes = vec![input.to_vec()];
        for layer in &self.encoder {
            let last = sizes.last().expect("starts with the input");
            let next = last
                .iter()
                .zip(&layer.stride)
                .map(|(&n, &s)| (n + 2 * layer.padding() - layer.kernel).div_euclid(s) + 1)
                .collect();
            sizes.push(next);
        }
        sizes
    }
}

/// A convolution (`transposed` or not, 2D or 3D) with its own weight and bias.
#[derive(Debug)]
struct Conv {
    weight: Tensor,
    bias: Tensor,
    stride: Vec<i64>,
    padding: Vec<i64>,
    output_padding: Vec<i64>,
    transposed: bool,
}

impl Conv {
    /// `weight` `[out, in, k..]` (`[in, out, k..]` when transposed) drawn `N(0, 0.02)`;
    /// `bias` `U(+-1/sqrt(fan_in))` with PyTorch's fan-in (`weight.size(1) * k^d`).
    fn new(
        path: &nn::Path,
        in_channels: i64,
        spec: &ConvSpec,
        output_padding: Option<Vec<i64>>,
    ) -> Self {
        let dims = spec.stride.len();
        let mut shape = if output_padding.is_some() {
            vec![in_channels, spec.out]
        } else {
            vec![spec.out, in_channels]
        };
        shape.extend(std::iter::repeat_n(spec.kernel, dims));
        let cpu = (Kind::Float, Device::Cpu);
        let weight = Tensor::empty(shape.as_slice(), cpu).normal_(0.0, 0.02);
        let fan_in = shape[1] * spec.kernel.pow(dims as u32);
        let bound = 1.0 / (fan_in as f64).sqrt();
        let bias = Tensor::empty([spec.out], cpu).uniform_(-bound, bound);
        Conv {
            weight: path.var_copy("weight", &weight),
            bias: path.var_copy("bias", &bias),
            stride: spec.stride.clone(),
            padding: vec![spec.padding(); dims],
            transposed: output_padding.is_some(),
            output_padding: output_padding.unwrap_or_else(|| vec![0; dims]),
        }
    }

    /// The named 2D/3D (transposed) convolutions, not the generic `convolution`: autocast
    /// casts only those on the CPU.
    fn forward(&self, x: &Tensor) -> Tensor {
        let (w, b) = (&self.weight, Some(&self.bias));
        let (stride, padding) = (self.stride.as_slice(), self.padding.as_slice());
        let (out_pad, dilation) = (self.output_padding.as_slice(), [1; 3]);
        let dilation = &dilation[..stride.len()];
        match (self.transposed, stride.len()) {
            (false, 2) => x.conv2d(w, b, stride, padding, dilation, 1),
            (false, _) => x.conv3d(w, b, stride, padding, dilation, 1),
            (true, 2) => x.conv_transpose2d(w, b, stride, padding, out_pad, 1, dilation),
            (true, _) => x.conv_transpose3d(w, b, stride, padding, out_pad, 1, dilation),
        }
    }
}

/// A convolution, then (except the decoder's last layer) BN and LeakyReLU(0.2).
#[derive(Debug)]
struct Layer {
    conv: Conv,
    bn: Option<nn::BatchNorm>,
}

impl Layer {
    /// Named as the official `nn.Sequential`: the conv at `<index>`, its BN at `<index + 1>`.
    fn new(
        seq: &nn::Path,
        index: usize,
        in_channels: i64,
        spec: &ConvSpec,
        output_padding: Option<Vec<i64>>,
        with_bn: bool,
    ) -> Self {
        let conv = Conv::new(&(seq / index), in_channels, spec, output_padding);
        let bn = with_bn.then(|| {
            let path = seq / (index + 1);
            let cfg = nn::BatchNormConfig {
                ws_init: nn::Init::Const(1.0),
                ..Default::default()
            };
            let bn = match spec.stride.len() {
                3 => nn::batch_norm3d(&path, spec.out, cfg),
                _ => nn::batch_norm2d(&path, spec.out, cfg),
            };
            let init = Tensor::empty([spec.out], (Kind::Float, Device::Cpu)).normal_(1.0, 0.02);
            if let Some(ws) = &bn.ws {
                tch::no_grad(|| ws.shallow_clone().copy_(&init));
            }
            bn
        });
        Layer { conv, bn }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let y = self.conv.forward(x);
        match &self.bn {
            Some(bn) => {
                let y = bn.forward_t(&y, train);
                y.maximum(&(&y * LEAKY_SLOPE))
            }
            None => y,
        }
    }
}

/// What one forward pass gives.
struct Forward {
    /// The autoencoder's input in `[-1, 1]`: `[B, c, T, H, W]` (video) or `[B, c, H, W]`.
    input: Tensor,
    /// The reconstruction, same shape.
    output: Tensor,
    /// `[B * positions, dim]`: the code read per position, and the memory's read of it
    /// (`None` without memory).
    memory: Option<(Tensor, MemoryRead)>,
}

/// MemAE (video or image variant).
pub struct MemAeMethod {
    cfg: MemAeMethodConfig,
    vs: nn::VarStore,
    encoder: Vec<Layer>,
    /// `None` when `use_memory = false`.
    memory: Option<Box<dyn Memory>>,
    decoder: Vec<Layer>,
    image_size: i64,
    /// The last training batch's queries (detached), for a rule-updated memory's update
    /// after the step.
    pending: Option<Tensor>,
}

impl MemAeMethod {
    /// The memory of `cfg.memory` comes from `registry`, its variables (if it learns any)
    /// under `mem_rep.memory` (MemAE's: `mem_rep.memory.weight`, as the official checkpoint).
    pub fn new(cfg: MemAeMethodConfig, registry: &Registry, ctx: &BuildContext) -> Result<Self> {
        if ctx.image_size < 1 {
            return Err(CoreError::Invalid(format!(
                "memae: data.image_size must be at least 1, got {}",
                ctx.image_size
            )));
        }
        let arch = Architecture::new(cfg.variant, cfg.channels);
        let input_size = match cfg.frames {
            Some(t) => vec![t as i64, ctx.image_size, ctx.image_size],
            None => vec![ctx.image_size, ctx.image_size],
        };
        let sizes = arch.encoder_sizes(&input_size);
        let vs = nn::VarStore::new(ctx.device);
        let root = vs.root();
        let mut encoder = Vec::new();
        let mut channels = arch.input_channels;
        let enc = &root / "encoder";
        for (i, spec) in arch.encoder.iter().enumerate() {
            encoder.push(Layer::new(&enc, 3 * i, channels, spec, None, true));
            channels = spec.out;
        }
        let memory = if cfg.use_memory {
            let path = &root / "mem_rep" / "memory";
            Some(registry.build_memory(&cfg.memory, "method.memory", &path)?)
        } else {
            None
        };
        let dec = &root / "decoder";
        let n = arch.decoder.len();
        let mut decoder = Vec::new();
        for (j, spec) in arch.decoder.iter().enumerate() {
            // Undo encoder layer n-1-j: from sizes[n-j] back to sizes[n-1-j].
            let (from, to) = (&sizes[n - j], &sizes[n - 1 - j]);
            let output_padding = from
                .iter()
                .zip(to)
                .zip(&spec.stride)
                .map(|((&a, &b), &s)| {
                    let op = b - ((a - 1) * s - 2 * spec.padding() + spec.kernel);
                    if (0..s.max(1)).contains(&op) {
                        Ok(op)
                    } else {
                        Err(CoreError::Invalid(format!(
                            "memae: cannot restore size {b} from {a} with stride {s} \
                             (input {input_size:?})"
                        )))
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            let last = j + 1 == n;
            decoder.push(Layer::new(
                &dec,
                3 * j,
                channels,
                spec,
                Some(output_padding),
                !last,
            ));
            channels = spec.out;
        }
        Ok(MemAeMethod {
            cfg,
            vs,
            encoder,
            memory,
            decoder,
            image_size: ctx.image_size,
            pending: None,
        })
    }

    /// Converts the runner's batch to the autoencoder's input in `[-1, 1]`.
    ///
    /// # Shapes
    /// video: `[B, 3T, H, W]` -> `[B, c, T, H, W]`; image: `[B, 1 or 3, H, W]` ->
    /// `[B, c, H, W]` (`c` = `channels`).
    fn prepare(&self, input: &Tensor) -> Result<Tensor> {
        let size = input.size();
        let [b, ch, h, w] = size[..] else {
            return Err(CoreError::Invalid(format!(
                "memae: expected a [B, C, H, W] batch, got {size:?}"
            )));
        };
        if h != self.image_size || w != self.image_size {
            return Err(CoreError::Invalid(format!(
                "memae: the network is built for {0}x{0} inputs (data.image_size), got {h}x{w}",
                self.image_size
            )));
        }
        let x = input.to_kind(Kind::Float);
        let x = match (self.cfg.variant, self.cfg.frames) {
            (MemAeVariant::Video, Some(t)) => {
                let t = t as i64;
                if ch != 3 * t {
                    return Err(CoreError::Invalid(format!(
                        "memae: the input has {ch} channels, method.frames = {t} needs {} \
                         ({t} RGB frames; set [data.clip] frames = {t}, mode = \"centred\")",
                        3 * t
                    )));
                }
                // [B, T, 3, H, W] -> [B, 3, T, H, W]
                let rgb = x.reshape([b, t, 3, h, w]).permute([0, 2, 1, 3, 4]);
                if self.cfg.channels == 1 {
                    luma(&rgb)
                } else {
                    rgb
                }
            }
            _ => match (ch, self.cfg.channels) {
                (3, 1) => luma(&x),
                (c, want) if c == want => x,
                (c, want) => {
                    return Err(CoreError::Invalid(format!(
                        "memae: the input has {c} channels; method.channels = {want} reads {}",
                        if want == 1 {
                            "1 (gray) or 3 (RGB, converted to gray)"
                        } else {
                            "3 (RGB)"
                        }
                    )))
                }
            },
        };
        Ok(x * 2.0 - 1.0)
    }

    fn forward(&self, batch: &Batch, train: bool) -> Result<Forward> {
        let input = self.prepare(&batch.input)?;
        let mut z = input.shallow_clone();
        for layer in &self.encoder {
            z = layer.forward_t(&z, train);
        }
        let (mut y, memory) = match &self.memory {
            None => (z, None),
            Some(memory) => {
                let (read_code, queries, read) = read_per_position(memory.as_ref(), &z, train);
                (read_code, Some((queries, read)))
            }
        };
        for layer in &self.decoder {
            y = layer.forward_t(&y, train);
        }
        Ok(Forward {
            input,
            output: y,
            memory,
        })
    }
}

/// Reads the code `z` `[B, C, ...]` from `memory` at every position (as the official
/// `MemModule`): `[B * positions, C]` queries, their read, and the read output back in
/// `z`'s layout `[B, C, ...]`.
fn read_per_position(memory: &dyn Memory, z: &Tensor, train: bool) -> (Tensor, Tensor, MemoryRead) {
    // [B, C, ...] -> [B, ..., C] -> [B * positions, C]
    let rank = z.dim() as i64;
    let channels = z.size()[1];
    let to_last: Vec<i64> = std::iter::once(0)
        .chain(2..rank)
        .chain(std::iter::once(1))
        .collect();
    let moved = z.permute(to_last.as_slice());
    let moved_shape = moved.size();
    let queries = moved.reshape([-1, channels]);
    let read = memory.read(&queries, train);
    let to_channels: Vec<i64> = std::iter::once(0)
        .chain(std::iter::once(rank - 1))
        .chain(1..rank - 1)
        .collect();
    let read_code = read
        .output
        .reshape(moved_shape.as_slice())
        .permute(to_channels.as_slice());
    (read_code, queries, read)
}

/// `[B, 3, ...]` RGB -> `[B, 1, ...]` BT.601 luma.
fn luma(rgb: &Tensor) -> Tensor {
    let mut shape = vec![1i64; rgb.dim()];
    shape[1] = 3;
    let weights = memad_core::constant::constant(
        &format!("bt601_luma:{}", rgb.dim()),
        rgb.device(),
        Kind::Float,
        || Tensor::from_slice(&LUMA).reshape(shape.as_slice()),
    );
    (rgb * weights).sum_dim_intlist(1, true, Kind::Float)
}

impl Method for MemAeMethod {
    fn trainable(&self) -> &nn::VarStore {
        &self.vs
    }

    fn train_step(&mut self, batch: &Batch) -> Result<TrainOutput> {
        let f = self.forward(batch, true)?;
        let mse = (&f.output - &f.input).square().mean(Kind::Float);
        let mut terms = vec![LossTerm::new("mse", &mse)];
        let mut parts = vec![mse];
        let memory_losses = match (&self.memory, &f.memory) {
            (Some(memory), Some((queries, read))) => memory.losses(queries, read),
            _ => Vec::new(),
        };
        for (name, term) in memory_losses {
            terms.push(LossTerm::new(name, &term));
            parts.push(term);
        }
        let loss = Tensor::stack(&parts, 0).sum(Kind::Float);
        self.pending = f.memory.map(|(queries, _)| queries.detach());
        Ok(TrainOutput { loss, terms })
    }

    fn after_step(&mut self) -> Result<()> {
        match (self.pending.take(), self.memory.as_mut()) {
            (Some(queries), Some(memory)) => tch::no_grad(|| memory.update(&queries)),
            _ => Ok(()),
        }
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let Some(memory) = &self.memory else {
            return Vec::new();
        };
        memad_core::state_prefixed(memory.state(), "memory.")
    }

    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let Some(memory) = &mut self.memory else {
            return match state.first() {
                None => Ok(()),
                Some((name, _)) => Err(CoreError::Invalid(format!(
                    "memae without memory has no state; got `{name}`"
                ))),
            };
        };
        memory.load_state(&memad_core::state_under(state, "memory.", "memae")?)
    }

    fn score(&self, batch: &Batch) -> Result<AnomalyOutput> {
        let f = self.forward(batch, false)?;
        // Per-pixel error `[B, 1, (T,) H, W]` in [0, 1] pixel units.
        let squared = ((&f.output - &f.input) / 2.0).square();
        let err = match self.cfg.score {
            MemAeScore::SquaredError => squared.mean_dim([1].as_slice(), true, Kind::Float),
            MemAeScore::L2Norm => squared
                .sum_dim_intlist([1].as_slice(), true, Kind::Float)
                .sqrt(),
        };
        let dims: Vec<i64> = (1..err.dim() as i64).collect();
        let image_score = err.mean_dim(dims.as_slice(), false, Kind::Float);
        let anomaly_map = match self.cfg.frames {
            // The centre frame of a centred clip: index T / 2.
            Some(t) => err.select(2, (t / 2) as i64),
            None => err,
        };
        Ok(AnomalyOutput {
            image_score,
            anomaly_map: Some(anomaly_map),
            parts: Vec::new(),
            class_prediction: None,
            memory_usage: f
                .memory
                .as_ref()
                .and_then(|(_, read)| read.attention.as_ref())
                .map(|a| MemoryUsage::per_sample("memory", a, batch.input.size()[0]))
                .into_iter()
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> toml::Value {
        toml::from_str(&format!("kind = \"memae\"\n{text}")).unwrap()
    }

    /// The memories MemAE can take.
    fn registry() -> Registry {
        let mut r = Registry::default();
        memory_memae::register(&mut r);
        memory_mnad::register(&mut r);
        r
    }

    fn ctx(size: i64) -> BuildContext {
        BuildContext {
            device: Device::Cpu,
            weights_dir: Default::default(),
            image_size: size,
            classes: 1,
        }
    }

    fn batch(channels: i64, size: i64) -> Batch {
        tch::manual_seed(0);
        Batch {
            input: Tensor::rand([2, channels, size, size], (Kind::Float, Device::Cpu)),
            label: Tensor::zeros([2], (Kind::Int64, Device::Cpu)),
            mask: None,
            class: None,
            synthetic: None,
        }
    }

    /// A small video model: 4-frame clips, 8 memory items.
    fn small_video(size: i64) -> MemAeMethod {
        let cfg = parse(
            &section("variant = \"video\"\nframes = 4\n[memory]\nslots = 8"),
            "method",
            &registry(),
        )
        .unwrap();
        MemAeMethod::new(cfg, &registry(), &ctx(size)).unwrap()
    }

    #[test]
    fn resolve_fills_the_paper_presets() {
        let reg = registry();
        let video = resolve(&section("variant = \"video\""), "method", &reg).unwrap();
        assert_eq!(video["frames"].as_integer(), Some(16));
        assert_eq!(video["channels"].as_integer(), Some(1));
        assert_eq!(video["memory"]["slots"].as_integer(), Some(2000));
        assert_eq!(video["memory"]["dim"].as_integer(), Some(256));
        assert_eq!(video["memory"]["shrink_threshold"].as_float(), Some(0.0025));
        assert_eq!(video["memory"]["entropy_weight"].as_float(), Some(0.0002));
        let mnist = resolve(&section("variant = \"image\""), "method", &reg).unwrap();
        assert!(mnist.get("frames").is_none());
        assert_eq!(mnist["memory"]["slots"].as_integer(), Some(100));
        assert_eq!(mnist["memory"]["dim"].as_integer(), Some(64));
        let cifar = resolve(
            &section("variant = \"image\"\nchannels = 3\n[memory]\nshrink_threshold = 0.004"),
            "method",
            &reg,
        )
        .unwrap();
        assert_eq!(cifar["memory"]["slots"].as_integer(), Some(500));
        assert_eq!(cifar["memory"]["dim"].as_integer(), Some(256));
        assert_eq!(cifar["memory"]["shrink_threshold"].as_float(), Some(0.004));
        // The resolved section parses to the same config (what `build` reads).
        assert_eq!(resolve(&cifar, "method", &reg).unwrap(), cifar);
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = |text: &str| parse(&section(text), "method", &registry()).unwrap_err();
        assert_eq!(err("variant = \"audio\"").path, "method.variant");
        let typo = err("variant = \"video\"\nframez = 16");
        assert_eq!(typo.path, "method.framez");
        assert!(typo.message.contains("unknown field `framez`"), "{typo}");
        assert_eq!(err("variant = \"video\"\nframes = 0").path, "method.frames");
        assert_eq!(
            err("variant = \"image\"\nframes = 16").path,
            "method.frames"
        );
        assert_eq!(
            err("variant = \"image\"\nchannels = 2").path,
            "method.channels"
        );
        assert_eq!(
            err("variant = \"video\"\n[memory]\ndim = 64").path,
            "method.memory.dim"
        );
        assert_eq!(
            err("variant = \"image\"\n[memory]\nshrink_threshold = 2.0").path,
            "method.memory.shrink_threshold"
        );
        assert_eq!(
            err("variant = \"image\"\n[memory]\nslot = 10").path,
            "method.memory.slot"
        );
        assert_eq!(err("variant = \"image\"\nmemory = 3").path, "method.memory");
    }

    #[test]
    fn layers_follow_the_official_3d_model_and_keys() {
        let m = small_video(16);
        let vars = m.vs.variables();
        let shape = |k: &str| vars[k].size();
        assert_eq!(shape("encoder.0.weight"), [96, 1, 3, 3, 3]);
        assert_eq!(shape("encoder.1.running_mean"), [96]);
        assert_eq!(shape("encoder.3.weight"), [128, 96, 3, 3, 3]);
        assert_eq!(shape("encoder.6.weight"), [256, 128, 3, 3, 3]);
        assert_eq!(shape("encoder.9.weight"), [256, 256, 3, 3, 3]);
        assert_eq!(shape("encoder.10.weight"), [256]);
        assert_eq!(shape("mem_rep.memory.weight"), [8, 256]);
        // Transposed convolutions store [in, out, k, k, k].
        assert_eq!(shape("decoder.0.weight"), [256, 256, 3, 3, 3]);
        assert_eq!(shape("decoder.3.weight"), [256, 128, 3, 3, 3]);
        assert_eq!(shape("decoder.6.weight"), [128, 96, 3, 3, 3]);
        assert_eq!(shape("decoder.9.weight"), [96, 1, 3, 3, 3]);
        assert!(
            !vars.contains_key("decoder.10.weight"),
            "no BN after the last layer"
        );
        // 4 conv + 3 BN (weight, bias) in each half; BN running stats are not trained.
        let trainable = m.vs.trainable_variables().len();
        assert_eq!(trainable, 2 * (4 + 4) + 2 * (4 + 3) + 1);
        // Official initialisation: N(0, 0.02) conv weights, N(1, 0.02) BN weights.
        let std = vars["encoder.3.weight"].std(true).double_value(&[]);
        assert!((std - 0.02).abs() < 0.002, "{std}");
        let bn = vars["encoder.4.weight"].mean(Kind::Float).double_value(&[]);
        assert!((bn - 1.0).abs() < 0.01, "{bn}");
        // The official strides: [1, 2, 2] first, then 2.
        assert_eq!(m.encoder[0].conv.stride, [1, 2, 2]);
        assert_eq!(m.decoder[3].conv.stride, [1, 2, 2]);
        assert_eq!(m.decoder[3].conv.output_padding, [0, 1, 1]);
    }

    #[test]
    fn a_train_step_gives_mse_and_entropy_and_reaches_the_memory() {
        let mut m = small_video(16);
        let out = m.train_step(&batch(12, 16)).unwrap();
        let names: Vec<&str> = out.terms.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["mse", "entropy"]);
        let (loss, values) = out.read();
        assert!((loss - values.iter().sum::<f64>()).abs() < 1e-6);
        // A random initial network reconstructs poorly; entropy is weighted by 0.0002 and
        // at most 0.0002 ln 8.
        assert!(values[0] > 0.01, "{values:?}");
        let entropy = values[1];
        assert!(
            entropy > 0.0 && entropy <= 0.0002 * 8f64.ln() + 1e-9,
            "{entropy}"
        );
        out.loss.backward();
        let items = &m.vs.variables()["mem_rep.memory.weight"];
        let grad = items.grad();
        assert!(grad.defined(), "the items get a gradient");
        assert!(grad.abs().sum(Kind::Float).double_value(&[]) > 0.0);
        let first = m.vs.variables()["encoder.0.weight"].grad();
        assert!(first.abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }

    #[test]
    fn without_memory_the_decoder_reads_the_code_and_the_loss_is_the_mse() {
        let cfg = parse(
            &section("variant = \"video\"\nframes = 4\nuse_memory = false"),
            "method",
            &registry(),
        )
        .unwrap();
        let mut m = MemAeMethod::new(cfg, &registry(), &ctx(16)).unwrap();
        assert!(m.memory.is_none());
        let names = m.vs.variables();
        assert!(!names.keys().any(|k| k.starts_with("mem_rep")), "{names:?}");
        let b = batch(12, 16);
        let out = m.train_step(&b).unwrap();
        let terms: Vec<&str> = out.terms.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(terms, ["mse"]);
        let (loss, values) = out.read();
        assert!((loss - values[0]).abs() < 1e-9);
        // The code goes to the decoder unchanged: same network, same output.
        let f = tch::no_grad(|| m.forward(&b, false)).unwrap();
        let mut y = f.input.shallow_clone();
        for layer in m.encoder.iter().chain(&m.decoder) {
            y = layer.forward_t(&y, false);
        }
        assert!(f.output.allclose(&y, 1e-6, 1e-7, false));
        let scored = tch::no_grad(|| m.score(&b)).unwrap();
        assert_eq!(scored.image_score.size(), [2]);
        assert!(scored.memory_usage.is_empty());
        let resolved = resolve(
            &section("variant = \"image\"\nuse_memory = false"),
            "method",
            &registry(),
        )
        .unwrap();
        assert_eq!(resolved["use_memory"].as_bool(), Some(false));
    }

    #[test]
    fn training_lowers_the_loss_on_a_fixed_batch() {
        let cfg = parse(&section("variant = \"image\""), "method", &registry()).unwrap();
        let mut m = MemAeMethod::new(cfg, &registry(), &ctx(28)).unwrap();
        let mut opt = nn::OptimizerConfig::build(nn::Adam::default(), &m.vs, 1e-3).unwrap();
        let b = batch(1, 28);
        let first = m.train_step(&b).unwrap().loss.double_value(&[]);
        let mut last = first;
        for _ in 0..30 {
            let out = m.train_step(&b).unwrap();
            last = out.loss.double_value(&[]);
            opt.backward_step(&out.loss);
        }
        assert!(last < 0.7 * first, "{first} -> {last}");
    }

    #[test]
    fn the_official_score_is_the_mean_l2_norm_of_the_error_over_channels() {
        let mut m = small_video(16);
        assert_eq!(m.cfg.score, MemAeScore::SquaredError);
        m.cfg.score = MemAeScore::L2Norm;
        let b = batch(12, 16);
        let out = tch::no_grad(|| m.score(&b)).unwrap();
        let f = tch::no_grad(|| m.forward(&b, false)).unwrap();
        // Gray clips `[B, 1, T, H, W]`: the L2 norm over one channel is the absolute error.
        let err = ((&f.output - &f.input) / 2.0).abs();
        let want = err.mean_dim([1, 2, 3, 4].as_slice(), false, Kind::Float);
        assert!(out.image_score.allclose(&want, 1e-6, 1e-8, false));
        let map = out.anomaly_map.unwrap();
        assert!(map.allclose(&err.select(2, 2), 1e-6, 1e-8, false));
        let err = parse(
            &section("variant = \"video\"\nscore = \"mae\""),
            "method",
            &registry(),
        );
        assert!(err.unwrap_err().to_string().contains("l2_norm"));
    }

    #[test]
    fn video_scores_clips_and_maps_the_centre_frame() {
        let m = small_video(16);
        let b = batch(12, 16);
        let out = tch::no_grad(|| m.score(&b)).unwrap();
        assert_eq!(out.image_score.size(), [2]);
        assert!(out.parts.is_empty());
        let map = out.anomaly_map.unwrap();
        assert_eq!(map.size(), [2, 1, 16, 16]);
        // The score is the clip's mean squared error in [0, 1] units.
        let f = tch::no_grad(|| m.forward(&b, false)).unwrap();
        let err = ((&f.output - &f.input) / 2.0).square();
        let want = err.mean_dim([1, 2, 3, 4].as_slice(), false, Kind::Float);
        assert!(out.image_score.allclose(&want, 1e-6, 1e-8, false));
        assert!(map.allclose(&err.select(2, 2), 1e-6, 1e-8, false));
        // Grayscale input: R = G = B frames give the gray values themselves, in [-1, 1].
        let gray = Tensor::rand([1, 4, 1, 16, 16], (Kind::Float, Device::Cpu));
        let rgb = gray
            .expand([1, 4, 3, 16, 16], false)
            .reshape([1, 12, 16, 16]);
        let x = m.prepare(&rgb).unwrap();
        assert_eq!(x.size(), [1, 1, 4, 16, 16]);
        let want = gray.permute([0, 2, 1, 3, 4]) * 2.0 - 1.0;
        assert!(x.allclose(&want, 1e-5, 1e-5, false));
    }

    /// `check_data`: a video clip is labelled by the frame its map shows (its centre, index
    /// `T / 2` as `video_scores_clips_and_maps_the_centre_frame` checks), so a prediction
    /// clip (labelled by its last frame) is refused, and the clip must hold `method.frames`
    /// frames; images take no clip of more than one frame.
    #[test]
    fn check_data_wants_centred_clips_of_method_frames() {
        let mut r = Registry::default();
        crate::register(&mut r);
        let entry = r.method("memae", "method.kind").unwrap();
        let data = |frames: usize, mode: &str| -> toml::Value {
            toml::from_str(&format!(
                "batch_size = 4\n[clip]\nframes = {frames}\nmode = \"{mode}\""
            ))
            .unwrap()
        };
        let no_clip: toml::Value = toml::from_str("batch_size = 4").unwrap();
        let video = resolve(
            &section("variant = \"video\"\nframes = 4\n[memory]\nslots = 8"),
            "method",
            &registry(),
        )
        .unwrap();
        for mode in ["centred", "centred_valid"] {
            assert!((entry.check_data)(&video, &data(4, mode)).is_ok(), "{mode}");
        }
        let err = (entry.check_data)(&video, &data(4, "predict")).unwrap_err();
        assert_eq!(err.path, "data.clip.mode");
        assert!(
            err.message
                .contains("needs mode = \"centred\" or \"centred_valid\"")
                && err.message.contains("labels each clip by its last frame"),
            "{}",
            err.message
        );
        for frames in [3, 5] {
            let err = (entry.check_data)(&video, &data(frames, "centred")).unwrap_err();
            assert_eq!(err.path, "data.clip.frames");
            assert!(
                err.message.starts_with("must equal method.frames = 4")
                    && err.message.ends_with(&format!("got {frames}")),
                "{}",
                err.message
            );
            // What the first batch would otherwise have found.
            let m = small_video(16);
            assert!(tch::no_grad(|| m.score(&batch(3 * frames as i64, 16))).is_err());
        }
        let err = (entry.check_data)(&video, &no_clip).unwrap_err();
        assert_eq!(err.path, "data.clip");
        assert!(
            err.message.contains("add [data.clip] with frames = 4"),
            "{}",
            err.message
        );
        // Images: one frame a sample.
        let image = resolve(&section("variant = \"image\""), "method", &registry()).unwrap();
        assert!((entry.check_data)(&image, &no_clip).is_ok());
        assert!((entry.check_data)(&image, &data(1, "centred")).is_ok());
        let err = (entry.check_data)(&image, &data(4, "centred")).unwrap_err();
        assert_eq!(err.path, "data.clip.frames");
        assert!(
            err.message.contains("leave out [data.clip]"),
            "{}",
            err.message
        );
    }

    #[test]
    fn takes_mnads_memory_updated_by_rule_after_each_step() {
        let text = "variant = \"video\"\nframes = 4\n[memory]\nkind = \"mnad\"\nslots = 4";
        // MNAD's memory has no preset here: its default dim (512) does not fit the code.
        let msg = parse(&section(text), "method", &registry()).unwrap_err();
        assert_eq!(msg.path, "method.memory.dim");
        let text = format!("{text}\ndim = 256");
        let cfg = parse(&section(&text), "method", &registry()).unwrap();
        assert_eq!(cfg.memory["kind"].as_str(), Some("mnad"));
        assert_eq!(cfg.memory["slots"].as_integer(), Some(4));
        let mut m = MemAeMethod::new(cfg, &registry(), &ctx(16)).unwrap();
        assert!(!m.vs.variables().keys().any(|k| k.starts_with("mem_rep")));
        let before = m.state();
        assert_eq!(before.len(), 1);
        assert_eq!(before[0].0, "memory.items");
        let before = before[0].1.copy();
        let out = m.train_step(&batch(12, 16)).unwrap();
        let terms: Vec<&str> = out.terms.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(terms, ["mse", "compactness", "separateness"]);
        out.loss.backward();
        m.after_step().unwrap();
        let after = m.state()[0].1.copy();
        assert!(
            !after.equal(&before),
            "the items move by rule after the step"
        );
        // The state round trip: the trained items load into a fresh model.
        let mut fresh = MemAeMethod::new(
            parse(&section(&text), "method", &registry()).unwrap(),
            &registry(),
            &ctx(16),
        )
        .unwrap();
        fresh.load_state(&m.state()).unwrap();
        assert!(fresh.state()[0].1.equal(&after));
        let out = tch::no_grad(|| m.score(&batch(12, 16))).unwrap();
        assert_eq!(out.memory_usage[0].attention.size()[1], 4);
    }

    #[test]
    fn image_variants_restore_the_input_size() {
        for (channels, size, slots) in [(1, 28, 100), (3, 32, 500)] {
            let cfg = parse(
                &section(&format!("variant = \"image\"\nchannels = {channels}")),
                "method",
                &registry(),
            )
            .unwrap();
            assert_eq!(cfg.memory["slots"].as_integer(), Some(slots));
            let m = MemAeMethod::new(cfg, &registry(), &ctx(size)).unwrap();
            let out = tch::no_grad(|| m.score(&batch(3, size))).unwrap();
            assert_eq!(out.image_score.size(), [2]);
            assert_eq!(out.anomaly_map.unwrap().size(), [2, 1, size, size]);
            let f = tch::no_grad(|| m.forward(&batch(3, size), false)).unwrap();
            assert_eq!(f.output.size(), [2, channels, size, size]);
        }
        // MNIST: 28 -> 14 -> 7 -> 4 (code), 64 channels, one query per code position.
        let cfg = parse(&section("variant = \"image\""), "method", &registry()).unwrap();
        let m = MemAeMethod::new(cfg, &registry(), &ctx(28)).unwrap();
        let f = tch::no_grad(|| m.forward(&batch(1, 28), false)).unwrap();
        let (queries, read) = f.memory.unwrap();
        assert_eq!(queries.size(), [2 * 4 * 4, 64]);
        assert_eq!(read.attention.unwrap().size(), [32, 100]);
    }

    #[test]
    fn wrong_input_channels_or_size_are_clear_errors() {
        let m = small_video(16);
        let msg = m.score(&batch(3, 16)).unwrap_err().to_string();
        assert!(msg.contains("method.frames = 4 needs 12"), "{msg}");
        assert!(msg.contains("[data.clip] frames = 4"), "{msg}");
        let msg = m.score(&batch(12, 32)).unwrap_err().to_string();
        assert!(msg.contains("16x16"), "{msg}");
        let cfg = parse(
            &section("variant = \"image\"\nchannels = 3"),
            "method",
            &registry(),
        )
        .unwrap();
        let rgb = MemAeMethod::new(cfg, &registry(), &ctx(32)).unwrap();
        let msg = rgb.score(&batch(1, 32)).unwrap_err().to_string();
        assert!(msg.contains("method.channels = 3"), "{msg}");
        let cfg = parse(&section("variant = \"image\""), "method", &registry()).unwrap();
        let gray = MemAeMethod::new(cfg, &registry(), &ctx(28)).unwrap();
        let msg = gray.score(&batch(2, 28)).unwrap_err().to_string();
        assert!(
            msg.contains("the input has 2 channels; method.channels = 1 reads 1 (gray) or 3"),
            "{msg}"
        );
    }
}
