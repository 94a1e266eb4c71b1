#!/usr/bin/env python3
"""Golden values for crates/memory-contrast/tests/golden.rs (MSCM's prototype memory,
Jezequel et al., arXiv 2211.09041; no official code: the equations are the crate's
module doc).

    ~/.cache/memad/torch-2.11.0/venv/bin/python tools/golden_contrast_memory.py

Plain torch on tiny seeded inputs, saved with `np.savez` (uncompressed float32 / int64) so
that `tch::Tensor::read_npz` reads them; deterministic. Arrays in
crates/memory-contrast/tests/fixtures/contrast_golden.npz:
`prototypes` [5, 8] (N(0, 1)), `query` [6, 8], `anomalous` [3, 8], scalars `temperature`,
`contrast_weight`, `usage_weight`, `anomaly_weight`, `anomaly_margin`; `similarity` [6, 5]
(cosine), `attention` [6, 5] (softmax(s / tau)), `output` [6, 8] (attention times the
normalised prototypes), `nearest` [6] (int64), `distance` [6] (1 - max cosine),
`residual` [6, 8] (normalised query minus its nearest normalised prototype), `contrast`
(cross-entropy of s / tau against the nearest prototype, unweighted), `usage`
(KL(mean attention || uniform), unweighted), `repel` (mean hinge of the anomalous queries'
best cosine over the margin, unweighted), `probe` [6, 8] and the gradients `grad_query`
[6, 8], `grad_prototypes` [5, 8] of
`sum(probe * output) + contrast_weight * contrast + usage_weight * usage`, and
`grad_anomalous` [3, 8], `grad_prototypes_repel` [5, 8] of `anomaly_weight * repel`.
"""
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/memory-contrast/tests/fixtures/contrast_golden.npz"
N, K, D = 6, 5, 8
TEMPERATURE, CONTRAST_W, USAGE_W, ANOMALY_W, MARGIN = 0.2, 1.5, 0.7, 2.0, 0.6


def f32(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).contiguous().numpy()


def normalise(x):
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-8)


def main():
    g = torch.Generator().manual_seed(2211)
    prototypes = torch.randn(K, D, generator=g)
    query = torch.randn(N, D, generator=g) * 2.0
    anomalous = torch.randn(3, D, generator=g)
    # One anomalous query close to a prototype, so that the hinge is active for it.
    anomalous[0] = prototypes[2] * 3.0 + 0.1 * anomalous[0]
    probe = torch.randn(N, D, generator=g)

    p = prototypes.clone().requires_grad_(True)
    q = query.clone().requires_grad_(True)
    m = normalise(p)
    s = normalise(q) @ m.T
    attention = F.softmax(s / TEMPERATURE, dim=1)
    output = attention @ m
    best, nearest = s.max(dim=1)
    distance = (1.0 - best).clamp_min(0.0)
    residual = normalise(q) - m[nearest]
    contrast = F.cross_entropy(s / TEMPERATURE, nearest)
    mean = attention.mean(dim=0)
    usage = np.log(K) + (mean * mean.clamp_min(1e-12).log()).sum()
    loss = (probe * output).sum() + CONTRAST_W * contrast + USAGE_W * usage
    grad_query, grad_prototypes = torch.autograd.grad(loss, [q, p])

    p2 = prototypes.clone().requires_grad_(True)
    a = anomalous.clone().requires_grad_(True)
    s_anom = normalise(a) @ normalise(p2).T
    repel = (s_anom.max(dim=1).values - MARGIN).relu().mean()
    grad_anomalous, grad_prototypes_repel = torch.autograd.grad(ANOMALY_W * repel, [a, p2])
    assert (s_anom.max(dim=1).values > MARGIN).any() and (s_anom.max(dim=1).values < MARGIN).any()
    assert len(set(nearest.tolist())) > 1, "queries should use more than one prototype"

    scalar = lambda x: np.array(float(torch.as_tensor(x).detach()), dtype=np.float32)
    arrays = {
        "prototypes": f32(prototypes),
        "query": f32(query),
        "anomalous": f32(anomalous),
        "temperature": scalar(TEMPERATURE),
        "contrast_weight": scalar(CONTRAST_W),
        "usage_weight": scalar(USAGE_W),
        "anomaly_weight": scalar(ANOMALY_W),
        "anomaly_margin": scalar(MARGIN),
        "similarity": f32(s),
        "attention": f32(attention),
        "output": f32(output),
        "nearest": nearest.to(torch.int64).numpy(),
        "distance": f32(distance),
        "residual": f32(residual),
        "contrast": scalar(contrast),
        "usage": scalar(usage),
        "repel": scalar(repel),
        "probe": f32(probe),
        "grad_query": f32(grad_query),
        "grad_prototypes": f32(grad_prototypes),
        "grad_anomalous": f32(grad_anomalous),
        "grad_prototypes_repel": f32(grad_prototypes_repel),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez(OUT, **arrays)
    print(f"wrote {OUT.relative_to(ROOT)}: contrast {contrast.item():.6f} usage {usage.item():.6f} repel {repel.item():.6f}")


if __name__ == "__main__":
    main()
