#!/usr/bin/env python3
"""Golden values for the MemAE method's parity test: crates/memad-methods/tests/memae_golden.rs.

    ~/.cache/memad/torch-2.11.0/venv/bin/python tools/golden_memae_model.py

Plain torch (2.11): the official 3D-conv MemAE (`models/memae_3dconv.py`,
`models/memory_module.py`, `models/entropy_loss.py` of donggong1/memae-anomaly-detection),
written here from its layer list and semantics, on a tiny clip (B = 2, 1 channel, 8 frames,
16x16; 8 memory items, shrink threshold 1/8). Every parameter and BN buffer is filled with
a deterministic formula instead of random draws, so the Rust test fills its VarStore the same
way without sharing a generator: for the i-th name in sorted order (official state_dict keys
without `num_batches_tracked`), `v = sin(0.37 k + i)` for k = 0..numel (float64), then
`running_var`: `0.02 + 0.02 v^2` (small, so that the eval-mode reconstruction is O(1)
and the scores depend on it); other 1-D `weight`s (BN): `1 + 0.1 v`; other 1-D tensors:
`0.1 v`; tensors of rank >= 2: `v / sqrt(numel / shape[0])`.

Saved with `np.savez` (float32) to crates/memad-methods/tests/fixtures/memae_model_golden.npz:
- `gray` [2, 1, 8, 16, 16]: the frames in [0, 1] (the Rust test feeds them as RGB, R = G = B).
- `eval.score` [2]: mean squared reconstruction error per clip in [0, 1] units
  (((x_hat - x) / 2)^2 with x = 2 gray - 1), the model in eval mode (BN running stats).
- `eval.map` [2, 1, 16, 16]: the squared error of the centre frame (index 4).
- `train.mse`, `train.entropy`: in train mode (batch statistics), `nn.MSELoss` of the
  reconstruction in [-1, 1] units and the unweighted mean entropy of the addressing weights.
Deterministic: rerunning rewrites the same file.
"""
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/memad-methods/tests/fixtures/memae_model_golden.npz"
SLOTS, SHRINK, EPS = 8, 1.0 / 8, 1e-12


def conv_block(cin, cout, stride):
    return [
        nn.Conv3d(cin, cout, 3, stride=stride, padding=1),
        nn.BatchNorm3d(cout),
        nn.LeakyReLU(0.2),
    ]


def deconv_block(cin, cout, stride, output_padding, last=False):
    layer = nn.ConvTranspose3d(
        cin, cout, 3, stride=stride, padding=1, output_padding=output_padding
    )
    return [layer] if last else [layer, nn.BatchNorm3d(cout), nn.LeakyReLU(0.2)]


class Memory(nn.Module):
    """MemModule: per-position dot addressing, hard shrinkage, L1 renormalisation."""

    def __init__(self, slots, dim):
        super().__init__()
        self.memory = nn.Module()
        self.memory.weight = nn.Parameter(torch.empty(slots, dim))

    def forward(self, z):
        b, c, t, h, w = z.shape
        q = z.permute(0, 2, 3, 4, 1).reshape(-1, c)
        att = F.softmax(F.linear(q, self.memory.weight), dim=1)
        att = F.relu(att - SHRINK) * att / (torch.abs(att - SHRINK) + EPS)
        att = F.normalize(att, p=1, dim=1)
        out = F.linear(att, self.memory.weight.t())
        return out.view(b, t, h, w, c).permute(0, 4, 1, 2, 3), att


class MemAE3D(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(
            *conv_block(1, 96, (1, 2, 2)),
            *conv_block(96, 128, 2),
            *conv_block(128, 256, 2),
            *conv_block(256, 256, 2),
        )
        self.mem_rep = Memory(SLOTS, 256)
        self.decoder = nn.Sequential(
            *deconv_block(256, 256, 2, 1),
            *deconv_block(256, 128, 2, 1),
            *deconv_block(128, 96, 2, 1),
            *deconv_block(96, 1, (1, 2, 2), (0, 1, 1), last=True),
        )

    def forward(self, x):
        z, att = self.mem_rep(self.encoder(x))
        return self.decoder(z), att


def fill(model):
    state = {k: v for k, v in model.state_dict().items() if "num_batches_tracked" not in k}
    with torch.no_grad():
        for i, name in enumerate(sorted(state)):
            t = state[name]
            v = torch.sin(0.37 * torch.arange(t.numel(), dtype=torch.float64) + i)
            if name.endswith("running_var"):
                v = 0.02 + 0.02 * v**2
            elif t.dim() == 1 and name.endswith("weight"):
                v = 1 + 0.1 * v
            elif t.dim() == 1:
                v = 0.1 * v
            else:
                v = v / np.sqrt(t.numel() / t.shape[0])
            t.copy_(v.view(t.shape).to(torch.float32))


def main():
    torch.manual_seed(0)
    model = MemAE3D()
    fill(model)
    gen = torch.Generator().manual_seed(20191027)
    gray = torch.rand(2, 1, 8, 16, 16, generator=gen)
    x = gray * 2 - 1
    with torch.no_grad():
        model.eval()
        x_hat, _ = model(x)
        err = ((x_hat - x) / 2) ** 2
        score = err.mean(dim=(1, 2, 3, 4))
        centre = err[:, :, 4]
        model.train()
        x_hat, att = model(x)
        mse = F.mse_loss(x_hat, x)
        entropy = (-(att * torch.log(att + EPS)).sum(dim=1)).mean()
    zeroed = float((att == 0).float().mean())
    assert 0.0 < zeroed < 0.95, f"shrinkage should zero some weights, zeroed {zeroed:.2f}"
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        OUT,
        **{
            "gray": gray.numpy(),
            "eval.score": score.numpy(),
            "eval.map": centre.contiguous().numpy(),
            "train.mse": np.array(float(mse), dtype=np.float32),
            "train.entropy": np.array(float(entropy), dtype=np.float32),
        },
    )
    print(f"wrote {OUT.relative_to(ROOT)}: score {score.tolist()}, mse {float(mse):.6f}, "
          f"entropy {float(entropy):.6f}, zeroed weights {zeroed:.2f}")


if __name__ == "__main__":
    main()
