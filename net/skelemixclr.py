"""SkeleMixCLR / SkeleMixCLR+ (Chen et al., arXiv 2207.03065): MoCo v2 plus SkeleMix.

SkeleMix pastes a random set of body parts over a random temporal segment from a partner sample of
the same batch (one cyclic shift of the batch). The query encoder runs on the mixed sample and its
last feature map is pooled twice: over the pasted cells (the *trimmed* feature, whose positive is the
partner's key) and over the remaining cells (the *residual* feature, whose positive is the sample's
own key); each one is also a negative of the other. The key encoder only ever sees the un-mixed key
view, and only that key enters the queue.

`SkeleMixCLR` is the `pretrain_skeletonclr_multi_swapv2` model (SkeleMixCLR+): one query view per
`swap_cfg.swap_params` row `[spa_l, spa_u, tem_l, tem_u, repeat, weight]`, `repeat` mixes of it per
step, losses summed with the row's weight. `SkeleMixCLRv1` is the single-view
`pretrain_skeletonclr_multi_swap` model (mix losses averaged over `repeat`).

Evaluation (`pretrain: false`): `encoder_q` with a `num_class` head, as SkeletonCLR.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from feeder.views import multi_resolution_names

from .modules import at_least_float32, enqueue, init_target, momentum_update, top1_of_positive, weights_init
from .skeletonclr import SkeletonCLR

# Semantic body parts, 1-based joint ids. NTU RGB+D (Kinect v2): the paper's five parts
# (trunk, the two arms with their hand tips and thumbs, the two legs), as upstream lists them.
# NW-UCLA (Kinect v1, 20 joints) has no hand tips / thumbs: trunk = hip centre, spine, shoulder
# centre, head; arms = shoulder, elbow, wrist, hand; legs = hip, knee, ankle, foot.
BODY_PARTS = {
    "ntu-rgb+d": ((4, 3, 21, 2, 1), (9, 10, 11, 12, 24, 25), (5, 6, 7, 8, 22, 23), (17, 18, 19, 20),
                  (13, 14, 15, 16)),
    "nw-ucla": ((1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20)),
}
SWAP_MODES = ("swap", "zeros", "Gaussian")
SPATIAL_MODES = ("semantic", "random")
TEMPORAL_STRIDE = 4  # the ST-GCN's total temporal downsampling: a mask row covers 4 frames
DEFAULT_SWAP_CFG = {"swap_params": [[2, 3, 7, 11, 3, 1.0]], "swap_mode": "swap", "spatial_mode": "semantic",
                    "per_sample": False, "body_parts": None, "random_joints": [10, 15]}


def bn_projector(dim: int, out: nn.Linear) -> nn.Sequential:
    """Linear-BN-ReLU-`out`: SkeleMixCLR's MLP head, keys fc.0 (Linear), fc.1 (BN), fc.3 (`out`)."""
    return nn.Sequential(nn.Linear(dim, dim), nn.BatchNorm1d(dim), nn.ReLU(inplace=True), out)


def _randint(lo, hi, n, generator, device):
    """(n,) long uniform in [lo, hi] inclusive; lo / hi may be (n,) tensors."""
    return lo + (torch.rand(n, generator=generator, device=device) * (hi - lo + 1)).long().clamp(max=hi - lo)


def _first_k(scores, k):
    """(n, P) bool: True on the k[i] entries of row i with the smallest score (a uniform random subset
    of size k[i] when the scores are i.i.d. uniform)."""
    rank = scores.argsort(dim=1).argsort(dim=1)
    return rank < k[:, None]


def mix_region(n, num_frames, num_joints, spa, tem, parts=None, random_joints=(10, 15), per_sample=False,
               generator=None, device=None):
    """Draw SkeleMix regions: (cells (D, T/4, V) bool, frames (D, T, V) bool), D = n if per_sample else 1.

    spa = (lo, hi) number of body parts (semantic, `parts` a (P, V) bool membership matrix) or None
    with `parts` None (random: U{random_joints} joints); tem = (lo, hi) number of 4-frame units,
    starting at a uniform unit such that the segment fits.
    """
    if num_frames % TEMPORAL_STRIDE:
        raise ValueError(f"SkeleMix needs a frame count divisible by {TEMPORAL_STRIDE} (the encoder's temporal "
                         f"stride), got T={num_frames}: use 64-frame data or Feeder_multi `frames: [64]`")
    units = num_frames // TEMPORAL_STRIDE
    tem_l, tem_u = int(tem[0]), int(tem[1])
    if not 1 <= tem_l <= tem_u <= units:
        raise ValueError(f"SkeleMix temporal range [{tem_l}, {tem_u}] units must lie within [1, {units}] (T={num_frames})")
    d = n if per_sample else 1
    if parts is not None:
        num_parts = parts.shape[0]
        spa_l, spa_u = int(spa[0]), int(spa[1])
        if not 1 <= spa_l <= spa_u <= num_parts:
            raise ValueError(f"SkeleMix spatial range [{spa_l}, {spa_u}] parts must lie within [1, {num_parts}]")
        count = _randint(spa_l, spa_u, d, generator, device)
        chosen = _first_k(torch.rand(d, num_parts, generator=generator, device=device), count)
        joints = (chosen.float() @ parts.to(device).float()) > 0
    else:
        lo, hi = min(int(random_joints[0]), num_joints), min(int(random_joints[1]), num_joints)
        count = _randint(lo, hi, d, generator, device)
        joints = _first_k(torch.rand(d, num_joints, generator=generator, device=device), count)
    length = _randint(tem_l, tem_u, d, generator, device)
    start = _randint(torch.zeros_like(length), units - length, d, generator, device)
    unit = torch.arange(units, device=device)
    in_segment = (unit >= start[:, None]) & (unit < (start + length)[:, None])  # (D, units)
    cells = in_segment[:, :, None] & joints[:, None, :]
    return cells, cells.repeat_interleave(TEMPORAL_STRIDE, dim=1)


def skelemix(x, frames, partner, mode="swap", generator=None):
    """x (N, C, T, V, M) with the `frames` (D, T, V) region (D = 1 or N) replaced, for both persons,
    by the partner's values x[partner] (`swap`), zeros or N(0, 1) noise."""
    if mode == "swap":
        fill = x[partner]
    elif mode == "zeros":
        fill = torch.zeros_like(x)
    elif mode == "Gaussian":
        fill = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    else:
        raise ValueError(f"swap_mode {mode!r}: use one of {SWAP_MODES}")
    return torch.where(frames[:, None, :, :, None], fill, x)


def mask_pool(fmap, cells, n):
    """Mean of the (N*M, d, T', V) feature map over the masked and over the unmasked cells of each
    sample's (D, T', V) mask (D = 1 or N), then over the M persons: (trimmed, residual), each (N, d)."""
    m = fmap.shape[0] // n
    mask = cells.to(fmap.dtype)
    if mask.shape[0] != 1:
        mask = mask.repeat_interleave(m, dim=0)  # rows of fmap are (sample, person), sample-major
    inside = torch.einsum("rctv,rtv->rc", fmap, mask.expand(fmap.shape[0], -1, -1))
    total = fmap.sum(dim=(2, 3))
    area = mask.sum(dim=(1, 2))[:, None]
    trimmed = inside / area
    residual = (total - inside) / (fmap.shape[2] * fmap.shape[3] - area)
    return trimmed.view(n, m, -1).mean(dim=1), residual.view(n, m, -1).mean(dim=1)


def nce(pos, queue_logits, extra=None, temperature=0.2):
    """Cross-entropy with the positive at column 0 of [pos | queue_logits | extra] / T."""
    cols = [pos[:, None], queue_logits] + ([extra[:, None]] if extra is not None else [])
    logits = torch.cat(cols, dim=1) / temperature
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(at_least_float32(logits), target), logits


class SkeleMixCLR(SkeletonCLR):
    """SkeleMixCLR+ (`pretrain_skeletonclr_multi_swapv2`); upstream `net.skeletonclr_multi_swapv2.SkeletonCLR`.

    swap_cfg: swap_params (rows [spa_l, spa_u, tem_l, tem_u, repeat, weight], one per query view),
    swap_mode (swap | zeros | Gaussian), spatial_mode (semantic | random) as upstream; added:
    per_sample (each sample its own region; upstream: one region per batch), body_parts (1-based
    joint lists for a layout without built-in parts), random_joints ([lo, hi] of `random` mode).
    """

    mix_reduction = "sum"
    default_views = {"recipe": "multi_resolution", "frames": [64], "shear_amplitude": 0.5, "temperal_padding_ratio": 6}

    def __init__(self, base_encoder="net.st_gcn.Model", pretrain=True, feature_dim=128, queue_size=32768,
                 momentum=0.999, Temperature=0.2, mlp=True, in_channels=3, hidden_channels=16, hidden_dim=256,
                 num_class=60, dropout=0.5, swap_cfg=None, graph_args=None, edge_importance_weighting=True,
                 sigma=0.5, target_init="copy"):
        # sigma: accepted for upstream configs, unused there too
        super().__init__(base_encoder=base_encoder, pretrain=pretrain, feature_dim=feature_dim,
                         queue_size=queue_size, momentum=momentum, Temperature=Temperature, mlp=False,
                         in_channels=in_channels, hidden_channels=hidden_channels, hidden_dim=hidden_dim,
                         num_class=num_class, dropout=dropout, graph_args=graph_args,
                         edge_importance_weighting=edge_importance_weighting, target_init=target_init)
        if not pretrain:
            return
        if mlp:  # upstream wraps the feature_dim Linear: fc.0 Linear, fc.1 BN, fc.2 ReLU, fc.3 the old fc
            for enc in (self.encoder_q, self.encoder_k):
                enc.fc = bn_projector(hidden_dim, enc.fc)
            self.encoder_q.fc.apply(weights_init)
            init_target(self.encoder_q, self.encoder_k, target_init)
        cfg = {**DEFAULT_SWAP_CFG, **(swap_cfg or {})}
        unknown = sorted(set(cfg) - set(DEFAULT_SWAP_CFG))
        if unknown:
            raise ValueError(f"swap_cfg: unknown key(s) {unknown}; known: {sorted(DEFAULT_SWAP_CFG)}")
        if cfg["swap_mode"] not in SWAP_MODES or cfg["spatial_mode"] not in SPATIAL_MODES:
            raise ValueError(f"swap_cfg: swap_mode must be one of {SWAP_MODES} and spatial_mode one of "
                             f"{SPATIAL_MODES}, got {cfg['swap_mode']!r} / {cfg['spatial_mode']!r}")
        rows = [list(r) for r in cfg["swap_params"]]
        if not rows or any(len(r) != 6 for r in rows):
            raise ValueError(f"swap_cfg.swap_params: rows of [spa_l, spa_u, tem_l, tem_u, repeat, weight], got {rows}")
        self.swap_params = [[int(v) for v in r[:5]] + [float(r[5])] for r in rows]
        self.swap_mode, self.spatial_mode = cfg["swap_mode"], cfg["spatial_mode"]
        self.per_sample, self.random_joints = bool(cfg["per_sample"]), list(cfg["random_joints"])
        self.custom_parts = cfg["body_parts"]
        layout = (graph_args or {}).get("layout", "ntu-rgb+d")
        self.layout_name = layout if isinstance(layout, str) else None
        self.views = multi_resolution_names(len(self.swap_params))  # a query view per swap_params row, then the key

    # --- SkeleMix ---------------------------------------------------------------------------------
    def parts_matrix(self, layout, num_joints: int, device) -> torch.Tensor | None:
        """(P, V) bool membership of the semantic parts of the batch's layout (None in `random` mode)."""
        if self.spatial_mode == "random":
            return None
        parts = self.custom_parts
        if parts is None:
            name = getattr(layout, "name", layout) or self.layout_name
            if name not in BODY_PARTS:
                raise ValueError(f"SkeleMix has no body parts for layout {name!r}: set swap_cfg.body_parts "
                                 f"(1-based joint lists) or swap_cfg.spatial_mode: random")
            parts = BODY_PARTS[name]
        m = torch.zeros(len(parts), num_joints, dtype=torch.bool, device=device)
        for i, part in enumerate(parts):
            m[i, [j - 1 for j in part]] = True
        return m

    @torch.no_grad()
    def make_mix(self, x, row, parts, generator=None):
        """(partner (N,), mixed x, cells (D, T/4, V)) for one swap_params row."""
        n, _, t, v, _ = x.shape
        if n < 2:
            raise ValueError("SkeleMix needs at least 2 samples in a batch (a partner to mix with)")
        # one cyclic shift s in [1, N-2] as upstream (s = 1 when N = 2): no sample is its own partner
        shift = torch.randint(1, max(n - 1, 2), (1,), generator=generator, device=x.device)
        partner = (torch.arange(n, device=x.device) + shift) % n
        spa_l, spa_u, tem_l, tem_u = row[:4]
        cells, frames = mix_region(n, t, v, (spa_l, spa_u), (tem_l, tem_u), parts, self.random_joints,
                                   self.per_sample, generator, x.device)
        return partner, skelemix(x, frames, partner, self.swap_mode, generator), cells

    def mixed_features(self, x_mix, cells):
        """Trimmed and residual features of a mixed batch, each through the projector, L2-normalised."""
        enc = self.encoder_q
        fmap = enc.forward_feature_map(x_mix)
        if fmap.shape[2:] != cells.shape[1:]:
            raise ValueError(f"SkeleMix mask grid {tuple(cells.shape[1:])} does not match the encoder's feature map "
                             f"{tuple(fmap.shape[2:])}: the encoder must downsample time by {TEMPORAL_STRIDE}")
        trimmed, residual = mask_pool(fmap, cells, x_mix.shape[0])
        return F.normalize(enc.forward_head(trimmed), dim=1), F.normalize(enc.forward_head(residual), dim=1)

    # --- training -----------------------------------------------------------------------------------
    def pretrain_step(self, batch):
        gen = batch.get("generator")
        queries, x_k = [batch["views"][name] for name in self.views[:-1]], batch["views"]["key"]
        parts = self.parts_matrix(batch.get("layout"), x_k.shape[3], x_k.device)
        mixes = []  # (partner, mixed sample, cells, weight)
        for x_q, row in zip(queries, self.swap_params):
            for _ in range(row[4]):
                mixes.append(self.make_mix(x_q, row, parts, gen) + (row[5],))

        qs = [F.normalize(self.encoder_q(x_q), dim=1) for x_q in queries]
        feats = [self.mixed_features(x_mix, cells) for _, x_mix, cells, _ in mixes]
        with torch.no_grad():
            momentum_update(self.encoder_q, self.encoder_k, self.m)
            k = F.normalize(self.encoder_k(x_k), dim=1)
        queue = self.queue.clone().detach().to(k.dtype)

        loss_ins, top1 = 0.0, 0.0
        for q, row in zip(qs, self.swap_params):
            loss, logits = nce((q * k).sum(1), q @ queue, temperature=self.T)
            loss_ins = loss_ins + row[5] * loss
            top1 = top1 + top1_of_positive(logits.detach()) / len(qs)
        loss_trim, loss_resid, loss_reg = 0.0, 0.0, 0.0
        for (partner, _, _, weight), (t, c) in zip(mixes, feats):
            l_t, _ = nce((t * k[partner]).sum(1), t @ queue, (t * c.detach()).sum(1), self.T)
            l_c, _ = nce((c * k).sum(1), c @ queue, (c * t.detach()).sum(1), self.T)
            loss_reg = loss_reg + weight * (0.5 * l_t + 0.5 * l_c)
            loss_trim, loss_resid = loss_trim + l_t.detach(), loss_resid + l_c.detach()
        if self.mix_reduction == "mean" and mixes:
            loss_reg = loss_reg / len(mixes)
        enqueue(self.queue, self.queue_ptr, k)
        count = max(len(mixes), 1)
        return {"loss": loss_ins + loss_reg, "loss_ins": torch.as_tensor(loss_ins).detach(),
                "loss_reg": torch.as_tensor(loss_reg).detach(), "loss_trim": torch.as_tensor(loss_trim) / count,
                "loss_resid": torch.as_tensor(loss_resid) / count, "pos_top1": torch.as_tensor(top1)}


class SkeleMixCLRv1(SkeleMixCLR):
    """Single-view SkeleMixCLR (`pretrain_skeletonclr_multi_swap`, upstream `net.skeletonclr_multi_swap.
    SkeletonCLR`): views [query, key], `repeat` mixes of the query with fixed ranges, the mix loss
    averaged over the repeats, instance loss weight 1. Upstream's flat keys."""

    mix_reduction = "mean"

    def __init__(self, spa_l=1, spa_u=4, tem_l=1, tem_u=15, repeat=1, swap_mode="swap", spatial_mode="semantic",
                 per_sample=False, body_parts=None, **kwargs):
        swap_cfg = {"swap_params": [[spa_l, spa_u, tem_l, tem_u, repeat, 1.0]], "swap_mode": swap_mode,
                    "spatial_mode": spatial_mode, "per_sample": per_sample, "body_parts": body_parts}
        super().__init__(swap_cfg=swap_cfg, **kwargs)
