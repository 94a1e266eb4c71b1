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
  Gaussian blur sigma 4 (scipy `reflect` borders, truncate 4), image score = max.
- MNAD prediction (Park et al., CVPR 2020; memad `crates/memad-methods/src/mnad.rs`,
  `crates/memad-decoders/src/unet.rs`, `crates/memory-mnad/src/mnad.rs`): input
  `[B, 15, S, S]` in [0, 1] mapped to [-1, 1], 4 past frames (12 channels) -> the fifth;
  U-Net encoder (64/128/256 double convs with max pooling, then 512 without the last BN-ReLU),
  queries L2-normalised, memory of 10 x 512 unit items updated by rule (not parameters),
  softmax read with detached weights, decoder on [q; p_hat] (1024 channels) with skips and
  tanh; loss = MSE + 0.1 compactness (MSE to the nearest item) + 0.1 separateness (triplet,
  margin 1, second nearest as negative); Adam lr 2e-4 betas (0.9, 0.999); the items move
  after each optimizer step (Eq. 3-4). Score: -PSNR and the mean squared distance of the
  queries to their nearest items, 0.6 / 0.4, plus the per-pixel error map.

Timing protocol (same as `benches/src/bin/step_bench.rs`): scoring phase first (W warm-up +
N calls under `torch.no_grad()`, eval mode), then the training phase (W + N steps: forward,
`loss.item()` as memad's runner reads the loss, `zero_grad(set_to_none=True)`, backward,
`Adam.step()` with PyTorch's default implementation, the memory update); CUDA synchronised
before reading the clock. Peak memory: CPU = VmHWM (reset through /proc/self/clear_refs at the
phase start); CUDA = device memory in use at the phase end (`torch.cuda.mem_get_info`:
total - free, as step_bench's `cudaMemGetInfo`); `torch.cuda.max_memory_allocated` is printed
as well. Appends CSV rows with `implementation = pytorch`.

    ~/.cache/memad/torch-2.11.0/venv/bin/python benches/reference/step_reference.py \
        --method rd4ad --device cpu --batch 2 --size 64 --steps 10 --warmup 2 --threads 2 \
        --out /tmp/steps.csv
"""
import argparse
import datetime
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


def gaussian_blur(x, sigma):
    """scipy.ndimage.gaussian_filter (truncate 4, `reflect` = mirror including the edge),
    separable. `[B, 1, H, W]`."""
    radius = int(4.0 * sigma + 0.5)
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(x.device, x.dtype)
    k = 2 * radius + 1

    def mirror(t, dim):
        before = t.narrow(dim, 0, radius).flip(dim)
        after = t.narrow(dim, t.shape[dim] - radius, radius).flip(dim)
        return torch.cat([before, t, after], dim)

    h = F.conv2d(mirror(x, 3), kernel.view(1, 1, 1, k))
    return F.conv2d(mirror(h, 2), kernel.view(1, 1, k, 1))


class Rd4ad(nn.Module):
    def __init__(self):
        super().__init__()
        self.teacher = wide_resnet50_2().eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        channels = [256, 512, 1024]
        self.ocbe = Ocbe(channels, 2048, 0.5, 3)
        self.decoder = ReverseDecoder(2048, channels, [3, 4, 6], 0.5)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def trainable(self):
        return list(self.ocbe.parameters()) + list(self.decoder.parameters())

    def set_mode(self, train):
        self.ocbe.train(train)
        self.decoder.train(train)
        self.teacher.eval()

    def features(self, x):
        with torch.no_grad():
            t = self.teacher
            h = t.maxpool(t.relu(t.bn1(t.conv1((x - self.mean) / self.std))))
            l1 = t.layer1(h)
            l2 = t.layer2(l1)
            l3 = t.layer3(l2)
        teacher = [l1, l2, l3]
        return teacher, self.decoder(self.ocbe(teacher))

    def train_step(self, x):
        teacher, student = self.features(x)
        loss = 0.0
        for t, s in zip(teacher, student):
            b = t.shape[0]
            loss = loss + (1 - F.cosine_similarity(t.reshape(b, -1), s.reshape(b, -1), 1)).mean()
        return loss

    def after_step(self):
        pass

    def score(self, x):
        teacher, student = self.features(x)
        size = x.shape[-2:]
        maps = [F.interpolate((1 - F.cosine_similarity(t, s, 1)).unsqueeze(1), size=size,
                              mode="bilinear", align_corners=True)
                for t, s in zip(teacher, student)]
        amap = gaussian_blur(torch.stack(maps).sum(0), 4.0)
        return amap.flatten(1).amax(1), amap


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
        return F.mse_loss(out, target) + self.lambda_c * compact + self.lambda_s * separate

    @torch.no_grad()
    def after_step(self):
        q, self.pending = self.pending, None
        sim = q @ self.items.t()
        v = sim.softmax(0)
        scaled = v / v.amax(0, keepdim=True)
        nearest = F.one_hot(sim.argmax(1), self.slots).float()
        update = (scaled * nearest).t() @ q
        has_query = (nearest.sum(0) > 0).unsqueeze(1)
        self.items = torch.where(has_query, F.normalize(self.items + update, dim=1), self.items)

    def score(self, x):
        out, target, q, sim = self.forward_queries(x)
        b = x.shape[0]
        err = ((out - target) / 2) ** 2
        neg_psnr = 10 * err.mean((1, 2, 3)).clamp_min(1e-10).log10()
        nearest = self.items[sim.argmax(1)]
        distance = ((q - nearest) ** 2).sum(1).reshape(b, -1).mean(1)
        score = self.psnr_weight * neg_psnr + (1 - self.psnr_weight) * distance
        return score, err.mean(1, keepdim=True)


# --------------------------------------------------------------------------- timing
SETTINGS = {
    # method: (constructor, input channels, lr, betas) as experiments/paper/*.toml
    "rd4ad": (Rd4ad, 3, 0.005, (0.5, 0.999)),
    "mnad": (Mnad, 15, 2e-4, (0.9, 0.999)),
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


def phase_peak(device):
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return (total - free) / 2**20
    return peak_rss_mib()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(model, opt, x, warmup, steps, device):
    """(phase, wall seconds, process CPU seconds, peak MiB) of N scoring calls, then of N
    training steps."""
    out = []
    model.set_mode(False)
    reset_peak_rss()
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        for i in range(warmup + steps):
            if i == warmup:
                sync(device)
                t0, c0 = time.perf_counter(), time.process_time()
            model.score(x)
    sync(device)
    out.append(("score", time.perf_counter() - t0, time.process_time() - c0, phase_peak(device)))

    model.set_mode(True)
    reset_peak_rss()
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
        loss = model.train_step(x)
        value = loss.item()  # as memad's runner: the loss is read for the log and NaN check
        if value != value:
            raise SystemExit(f"the loss is NaN at step {i}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.after_step()
    sync(device)
    out.append(("train", time.perf_counter() - t0, time.process_time() - c0, phase_peak(device)))
    return out


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--method", choices=sorted(SETTINGS), required=True)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--out")
    ap.add_argument("--commit")
    ap.add_argument("--date")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    build, channels, lr, betas = SETTINGS[args.method]
    model = build().to(device)
    params = model.trainable()
    print(f"trainable parameters: {sum(p.numel() for p in params)}")
    if args.method == "rd4ad":
        print(f"teacher parameters: {sum(p.numel() for p in model.teacher.parameters())}")
    opt = torch.optim.Adam(params, lr=lr, betas=betas)
    x = torch.rand(args.batch, channels, args.size, args.size, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timings = run(model, opt, x, args.warmup, args.steps, device)
    if device.type == "cuda":
        print(f"torch.cuda.max_memory_allocated: {torch.cuda.max_memory_allocated(device) / 2**20:.1f} MiB, "
              f"max_memory_reserved: {torch.cuda.max_memory_reserved(device) / 2**20:.1f} MiB")

    date = args.date or datetime.date.today().isoformat()
    commit = args.commit or git_commit()
    threads = torch.get_num_threads()
    rows = []
    for phase, seconds, cpu_seconds, peak in timings:
        per_batch = seconds / args.steps
        print(f"pytorch {args.method} {phase} {args.device}: {args.batch / per_batch:.2f} images/s, "
              f"{1000 * per_batch:.1f} ms/batch ({1000 * cpu_seconds / args.steps:.1f} CPU ms), "
              f"peak {peak:.1f} MiB")
        rows.append(["pytorch", args.method, phase, args.device, args.batch, args.size, threads,
                     f"{args.batch / per_batch:.3f}", f"{1000 * per_batch:.3f}", f"{peak:.1f}",
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
