#!/usr/bin/env python3
"""Golden values for the memory crates' parity tests:
crates/memory-memae/tests/golden.rs and crates/memory-mnad/tests/golden.rs.

    ~/.cache/memad/torch-2.11.0/venv/bin/python tools/golden_memories.py

Plain torch (2.11), written from the papers and the official code's semantics, on tiny
seeded inputs (N = 6 queries, 5 items, C = 8), saved with `np.savez` (uncompressed, float32,
int64) so that `tch::Tensor::read_npz` reads them. Deterministic: rerunning rewrites the
same files.

1. crates/memory-memae/tests/fixtures/memae_golden.npz (Gong et al., ICCV 2019; official
   models/memory_module.py + models/entropy_loss.py of donggong1/memae-anomaly-detection):
   `items` [5, 8] drawn as the official `reset_parameters` (uniform(-1/sqrt(C), 1/sqrt(C))),
   `entropy_weight` (a scalar) and, for each case `dot` (dot-product addressing, the
   official shrink threshold 0.0025, peaked queries so that some weights fall below it),
   `cosine` (the paper's Eq. 5 cosine similarity, threshold 1/N = 0.2, the low end of the
   paper's [1/N, 3/N]) and `noshrink` (dot, threshold 0): `<case>.query` [6, 8],
   `<case>.shrink_threshold`, `<case>.attention` [6, 5] (after shrinkage and L1
   renormalisation), `<case>.output` [6, 8], `<case>.entropy` (unweighted mean entropy),
   `<case>.probe` [6, 8] (fixed random weights R) and `<case>.grad_query` [6, 8],
   `<case>.grad_items` [5, 8]: gradients of `sum(R * output) + entropy_weight * entropy`.
2. crates/memory-mnad/tests/fixtures/mnad_golden.npz (Park et al., CVPR 2020; official
   model/memory_final_spatial_sumonly_weight_ranking_top1.py of cvlab-yonsei/MNAD): the
   features of a [2, 8, 1, 3] map (B, C, H, W) flattened position-major to `query` [6, 8]
   (raw, unnormalised), `items` [5, 8] (L2-normalised uniform values as the official
   Train.py), `compactness_weight`, `separateness_weight` (scalars), `query_normalised`,
   `attention` (softmax over items), `output` (read), `nearest` (int64), `distance`
   (squared distance to the nearest item), `compactness`, `separateness` (unweighted),
   `grad_query` (gradient of the weighted sum of the two losses w.r.t. the raw query) and
   `updated_items` (the official per-item update loop). The seed is chosen (and checked
   here) so that one item gets no query and one gets several.
"""
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
N, M, C = 6, 5, 8
EPS = 1e-12


def f32(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).contiguous().numpy()


def scalar(x: float) -> np.ndarray:
    return np.array(x, dtype=np.float32)


# ---------------------------------------------------------------------------------- MemAE
def memae_address(query, items, addressing, shrink):
    """Softmax addressing (Eq. 4-5), hard shrinkage (Eq. 7) and L1 renormalisation."""
    if addressing == "dot":
        logits = F.linear(query, items)  # the official code: z M^T
    else:
        logits = F.cosine_similarity(query[:, None, :], items[None, :, :], dim=2, eps=1e-8)
    w = F.softmax(logits, dim=1)
    if shrink > 0:
        w = F.relu(w - shrink) * w / (torch.abs(w - shrink) + EPS)
        w = F.normalize(w, p=1, dim=1)
    return w


def memae_case(gen, items, name, addressing, shrink, scale, entropy_weight):
    query = (torch.randn(N, C, generator=gen) * scale).requires_grad_(True)
    items = items.clone().requires_grad_(True)
    w = memae_address(query, items, addressing, shrink)
    output = F.linear(w, items.t())  # w M
    entropy = (-(w * torch.log(w + EPS)).sum(dim=1)).mean()
    probe = torch.randn(N, C, generator=gen)
    loss = (probe * output).sum() + entropy_weight * entropy
    grad_query, grad_items = torch.autograd.grad(loss, [query, items])
    if shrink > 0:
        zeroed = int((w == 0).sum())
        assert 0 < zeroed < N * M - N, f"{name}: shrinkage should zero some weights, zeroed {zeroed}"
        assert torch.allclose(w.sum(1), torch.ones(N)), name
    return {
        f"{name}.query": f32(query),
        f"{name}.shrink_threshold": scalar(shrink),
        f"{name}.attention": f32(w),
        f"{name}.output": f32(output),
        f"{name}.entropy": scalar(float(entropy.detach())),
        f"{name}.probe": f32(probe),
        f"{name}.grad_query": f32(grad_query),
        f"{name}.grad_items": f32(grad_items),
    }


def memae_golden():
    gen = torch.Generator().manual_seed(20190401)
    stdv = 1.0 / np.sqrt(C)
    items = torch.rand(M, C, generator=gen) * 2 * stdv - stdv
    entropy_weight = 0.5  # large enough for its gradient to show at 1e-5
    out = {"items": f32(items), "entropy_weight": scalar(entropy_weight)}
    out.update(memae_case(gen, items, "dot", "dot", 0.0025, 8.0, entropy_weight))
    out.update(memae_case(gen, items, "cosine", "cosine", 0.2, 1.0, entropy_weight))
    out.update(memae_case(gen, items, "noshrink", "dot", 0.0, 1.0, entropy_weight))
    return out


# ----------------------------------------------------------------------------------- MNAD
def mnad_golden():
    compactness_weight, separateness_weight = 0.1, 0.1
    gen = torch.Generator().manual_seed(20200614)
    items = F.normalize(torch.rand(M, C, generator=gen), dim=1)  # as the official Train.py
    raw = torch.randn(N, C, generator=gen).requires_grad_(True)  # [N, C], position-major
    b, h, w = 2, 1, 3
    features = raw.view(b, h, w, C).permute(0, 3, 1, 2)  # [B, C, H, W] as the model's map

    # forward(): F.normalize over channels, positions flattened to rows.
    query = F.normalize(features, dim=1).permute(0, 2, 3, 1).reshape(-1, C)  # [N, C]
    score = query @ items.t()  # [N, M]
    score_query = F.softmax(score, dim=0)
    score_memory = F.softmax(score, dim=1)

    # read(): the weights are detached in the official code.
    output = score_memory.detach() @ items

    # gather_loss(train=True): 1st and 2nd nearest items, detached.
    top2 = torch.topk(score_memory, 2, dim=1).indices
    pos, neg = items[top2[:, 0]].detach(), items[top2[:, 1]].detach()
    compactness = F.mse_loss(query, pos)
    separateness = F.triplet_margin_loss(query, pos, neg, margin=1.0)
    distance = ((query - pos) ** 2).sum(dim=1)
    (grad_query,) = torch.autograd.grad(
        compactness_weight * compactness + separateness_weight * separateness, [raw]
    )

    # update() / get_update_query(): a loop over items, as the official code.
    with torch.no_grad():
        q = query.detach()
        nearest = torch.topk(score_memory, 1, dim=1).indices.squeeze(1)
        query_update = torch.zeros(M, C)
        counts = []
        for i in range(M):
            idx = torch.nonzero(nearest == i).squeeze(1)
            counts.append(len(idx))
            if len(idx) != 0:
                weights = score_query[idx, i] / torch.max(score_query[:, i])
                query_update[i] = torch.sum(weights[:, None] * q[idx], dim=0)
        updated = F.normalize(query_update + items, dim=1)
    assert 0 in counts and max(counts) >= 2, f"pick another seed: queries per item {counts}"

    return {
        "query": f32(raw),
        "items": f32(items),
        "compactness_weight": scalar(compactness_weight),
        "separateness_weight": scalar(separateness_weight),
        "query_normalised": f32(query),
        "attention": f32(score_memory),
        "output": f32(output),
        "nearest": nearest.to(torch.int64).numpy(),
        "distance": f32(distance),
        "compactness": scalar(float(compactness.detach())),
        "separateness": scalar(float(separateness.detach())),
        "grad_query": f32(grad_query),
        "updated_items": f32(updated),
    }


def save(path: Path, arrays: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes, {len(arrays)} arrays)")


def main():
    torch.set_num_threads(1)
    save(ROOT / "crates/memory-memae/tests/fixtures/memae_golden.npz", memae_golden())
    save(ROOT / "crates/memory-mnad/tests/fixtures/mnad_golden.npz", mnad_golden())


if __name__ == "__main__":
    main()
