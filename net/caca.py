"""3s-CACA (Liu, Liu, Guo; code name CMCS): BYOL-style online / target networks per stream with a
cross-model adversarial term (CMAL), and, for three streams, cross-stream collaborative learning (CSCL).

`CACA` is one stream (processor `pretrain_skeleton`; the loop converts the views to the config's
`stream`). `CACA3Views` trains joint, motion and bone together (processor `pretrain_skeleton_3views`,
`stream: all`: it receives joint views and derives motion / bone itself). Per stream s:

  online_backbone_s   ST-GCN, width feature_dim (512), no classifier
  online_projector_s  Linear(512, 2048) - BN - ReLU - Linear(2048, 512)
  online_predictor_s  the same shape, on the projection
  target_backbone_s / target_projector_s   EMA copies (decay 0.996), never trained by the optimiser

CMAL with d(a, b) = 2 - 2 cos(a, b), online predictions p1, p2 of the two views and target
projections z1, z2 of the same views (no gradient):

  L_CMAL = d(p1, p2) - (d(p1, z1) + d(p2, z2)) / 2          (mean over the batch)

pull the two online views together, push each away from the target's embedding of the SAME view
(there is no BYOL cross-view term d(p1, z2); upstream `net/caca_single_modal.py`).

CSCL (three streams, from epoch `cross_epoch` on, 0-based, i.e. upstream's 1-based epochs > cross_epoch):
for stream s, S12_s = cos(p1_s, z2_s^T) and S21_s = cos(p2_s, z1_s^T) are (N, N); per direction the
mask is the identity plus the `topk` most similar columns of each row; B_s = A12_s * A21_s; the pseudo
positives are Y = [sum_s B_s >= vote_threshold]; the loss of each stream and direction is
-mean_i sum_j Y_ij log softmax_j(S_s[i]) (positives summed, no temperature). Total:
sum_s [L_CMAL_s + lamb (CSCL12_s + CSCL21_s)].

`target_init`: the targets start as copies of the online networks (`copy`, default) or as their own random
draws (`independent`: upstream's processor re-initialised the whole model after its deepcopy; the paper
configs set it).

The target networks follow the online ones after every optimiser step (`after_optimizer_step`, called
by the pretraining loop). Upstream stops that update in the cross phase (its call is commented out);
`ema_in_cross_phase: false` keeps that, `true` keeps the EMA running.

Evaluation (`pretrain: false`): `online_projector_s` is reused as the Linear(512, num_class)
classifier, as upstream names it. The three-stream model concatenates the three pooled features
(`forward_features`) and sums the three heads' logits (`forward_head`), the summed logits trained
with one cross-entropy as upstream's `linear_evaluation_3views`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from feeder.streams import STREAMS, to_stream
from torchlight.util import import_class

from .base import Method
from .modules import at_least_float32, init_target, momentum_update, weights_init


def byol_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """2 - 2 cos(a, b) per row: the normalised squared distance of BYOL."""
    return 2 - 2 * (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(dim=-1)


def cmal_loss(p1, p2, z1, z2) -> torch.Tensor:
    """Cross-model adversarial loss (mean over the batch); z1, z2 carry no gradient."""
    pull = byol_distance(p1, p2)
    push = byol_distance(p1, z1.detach()) + byol_distance(p2, z2.detach())
    return (pull - 0.5 * push).mean()


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, M) cosine similarities of the rows of a and b."""
    return F.normalize(a, dim=1) @ F.normalize(b, dim=1).T


@torch.no_grad()
def neighbour_mask(sim: torch.Tensor, topk: int) -> torch.Tensor:
    """1 on the diagonal and at the `topk` largest columns of each row, else 0 (float, no grad)."""
    n = sim.shape[0]
    mask = torch.eye(n, dtype=sim.dtype, device=sim.device)
    idx = sim.topk(min(topk, sim.shape[1]), dim=1).indices
    return mask.scatter_(1, idx, 1.0)


@torch.no_grad()
def vote_mask(sims: list, topk: int, threshold: int) -> torch.Tensor:
    """Pseudo-positive mask Y from [(S12_s, S21_s) for each stream]: a pair is positive when at least
    `threshold` streams agree on it in both directions."""
    votes = sum(neighbour_mask(s12, topk) * neighbour_mask(s21, topk) for s12, s21 in sims)
    return (votes >= threshold).to(sims[0][0].dtype)


def cscl_loss(sim: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """-mean_i sum_j Y_ij log softmax_j(sim_i): soft cross-entropy toward the shared pseudo-label."""
    sim = at_least_float32(sim)
    return -(positives * F.log_softmax(sim, dim=1)).sum(dim=1).mean()


class _Head(nn.Module):
    """Projector / predictor MLP; its layers live in `.net` as upstream's (keys net.0, net.1, net.3)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, out_dim))

    def forward(self, x):
        return self.net(x)


class _CACABase(Method):
    """Module construction, EMA and the evaluation interface shared by the one- and three-stream models.

    `suffixes` are the module-name endings: [""] for one stream (online_backbone, ...), ["_joint",
    "_motion", "_bone"] for three.
    """

    suffixes: tuple = ("",)
    views = ("query", "key")
    default_views = {"recipe": "normal_pair", "shear_amplitude": 0.5, "temperal_padding_ratio": 6}

    def __init__(self, base_encoder="net.st_gcn.Model", pretrain=True, feature_dim=512, projection_hidden_size=2048,
                 projection_size=512, prediction_hidden_size=2048, moving_average_decay=0.996, use_momentum=True,
                 in_channels=3, hidden_channels=16, num_class=60, dropout=0.5, graph_args=None,
                 edge_importance_weighting=True, target_init="copy"):
        super().__init__()
        self.pretrain = pretrain
        self.use_momentum = use_momentum
        self.decay = moving_average_decay
        self.feature_dim = feature_dim
        graph_args = dict(graph_args or {"layout": "ntu-rgb+d", "strategy": "spatial"})
        self.layout = graph_args.get("layout", "ntu-rgb+d")
        encoder = import_class(base_encoder)
        enc_args = dict(in_channels=in_channels, hidden_channels=hidden_channels, hidden_dim=feature_dim,
                        num_class=None, dropout=dropout, graph_args=graph_args,
                        edge_importance_weighting=edge_importance_weighting)
        for s in self.suffixes:
            setattr(self, "online_backbone" + s, encoder(**enc_args))
            if not pretrain:
                setattr(self, "online_projector" + s, nn.Linear(feature_dim, num_class))
                continue
            setattr(self, "online_projector" + s, _Head(feature_dim, projection_hidden_size, projection_size))
            setattr(self, "online_predictor" + s, _Head(projection_size, prediction_hidden_size, projection_size))
        self.apply(weights_init)
        if not pretrain:
            return
        for s in self.suffixes:
            if use_momentum:  # EMA targets: copies, or (target_init: independent) upstream's re-initialised ones
                for part in ("backbone", "projector"):
                    online = getattr(self, f"online_{part}{s}")
                    target = encoder(**enc_args) if part == "backbone" else \
                        _Head(feature_dim, projection_hidden_size, projection_size)
                    init_target(online, target, target_init)
                    setattr(self, f"target_{part}{s}", target)
            else:  # SimSiam mode: the target is the online network itself (shared weights, as upstream)
                setattr(self, "target_backbone" + s, getattr(self, "online_backbone" + s))
                setattr(self, "target_projector" + s, getattr(self, "online_projector" + s))

    # --- EMA ----------------------------------------------------------------------------------------
    def ema_active(self, epoch: int) -> bool:
        return self.pretrain and self.use_momentum

    @torch.no_grad()
    def after_optimizer_step(self, epoch: int):
        """target <- decay * target + (1 - decay) * online (backbone and projector), after each step."""
        if not self.ema_active(epoch):
            return
        for s in self.suffixes:
            for part in ("backbone", "projector"):
                momentum_update(getattr(self, f"online_{part}{s}"), getattr(self, f"target_{part}{s}"), self.decay)

    # --- one stream's forward pieces ---------------------------------------------------------------
    def online(self, x, s: str):
        """(projection, prediction) of the online network of stream suffix s."""
        proj = getattr(self, "online_projector" + s)(getattr(self, "online_backbone" + s)(x))
        return proj, getattr(self, "online_predictor" + s)(proj)

    @torch.no_grad()
    def target(self, x, s: str):
        return getattr(self, "target_projector" + s)(getattr(self, "target_backbone" + s)(x)).detach()

    def stream_outputs(self, x1, x2, s: str):
        """Online predictions p1, p2 and target projections z1, z2 of the two views."""
        _, p1 = self.online(x1, s)
        _, p2 = self.online(x2, s)
        return p1, p2, self.target(x1, s), self.target(x2, s)

    # --- evaluation interface -----------------------------------------------------------------------
    def head_prefixes(self) -> list:
        return ["online_projector" + s for s in self.suffixes]


class CACA(_CACABase):
    """Single-stream 3s-CACA (SkeletonBYOL + CMAL); its views arrive already in the config's stream."""

    def forward_features(self, x):
        return self.online_backbone.forward_features(x)

    def forward_head(self, features):
        return self.online_projector(features)

    def pretrain_step(self, batch):
        p1, p2, z1, z2 = self.stream_outputs(batch["views"]["query"], batch["views"]["key"], "")
        return {"loss": cmal_loss(p1, p2, z1, z2)}


class CACA3Views(_CACABase):
    """Three-stream 3s-CACA: CMAL per stream, then CSCL across streams from epoch `cross_epoch` (0-based)."""

    suffixes = tuple("_" + s for s in STREAMS)
    derives_streams = True

    def __init__(self, base_encoder="net.st_gcn.Model", pretrain=True, feature_dim=512, projection_hidden_size=2048,
                 projection_size=512, prediction_hidden_size=2048, moving_average_decay=0.996, use_momentum=True,
                 in_channels=3, hidden_channels=16, num_class=60, dropout=0.5, graph_args=None,
                 edge_importance_weighting=True, topk=2, lamb=10.0, cross_epoch=1000, vote_threshold=2,
                 ema_in_cross_phase=False, target_init="copy"):
        super().__init__(base_encoder, pretrain, feature_dim, projection_hidden_size, projection_size,
                         prediction_hidden_size, moving_average_decay, use_momentum, in_channels, hidden_channels,
                         num_class, dropout, graph_args, edge_importance_weighting, target_init)
        self.topk, self.lamb, self.vote_threshold = topk, lamb, vote_threshold
        self.cross_epoch, self.ema_in_cross_phase = cross_epoch, ema_in_cross_phase

    def cross_phase(self, epoch: int) -> bool:
        """CSCL on from 0-based epoch `cross_epoch` (upstream: 1-based epochs > cross_epoch)."""
        return epoch >= self.cross_epoch

    def ema_active(self, epoch: int) -> bool:
        return super().ema_active(epoch) and (self.ema_in_cross_phase or not self.cross_phase(epoch))

    def streams_of(self, x, layout=None):
        layout = layout if layout is not None else self.layout
        return [to_stream(x, s, layout) for s in STREAMS]

    # --- evaluation interface -----------------------------------------------------------------------
    def forward_features(self, x):
        """Joint input -> the three streams' pooled features concatenated, (N, 3 * feature_dim)."""
        return torch.cat([getattr(self, "online_backbone" + s).forward_features(v)
                          for s, v in zip(self.suffixes, self.streams_of(x))], dim=1)

    def forward_head(self, features):
        """Sum of the three streams' classifier logits (upstream trains the summed logits jointly)."""
        chunks = features.split(self.feature_dim, dim=1)
        return sum(getattr(self, "online_projector" + s)(f) for s, f in zip(self.suffixes, chunks))

    @torch.no_grad()
    def monitor_features(self, x):
        """The kNN monitor's features while pretraining: the mean of the three online projections (upstream)."""
        if not self.pretrain:
            return self.forward_features(x)
        return sum(getattr(self, "online_projector" + s)(getattr(self, "online_backbone" + s)(v))
                   for s, v in zip(self.suffixes, self.streams_of(x))) / len(STREAMS)

    # --- training -----------------------------------------------------------------------------------
    def pretrain_step(self, batch):
        x1, x2 = batch["views"]["query"], batch["views"]["key"]
        layout = batch.get("layout")
        outs = {s: self.stream_outputs(v1, v2, "_" + s)
                for s, v1, v2 in zip(STREAMS, self.streams_of(x1, layout), self.streams_of(x2, layout))}
        result, total = {}, 0.0
        cmal = {s: cmal_loss(*o) for s, o in outs.items()}
        if self.cross_phase(batch["epoch"]):
            sims = {s: (cosine_matrix(p1, z2), cosine_matrix(p2, z1)) for s, (p1, p2, z1, z2) in outs.items()}
            positives = vote_mask(list(sims.values()), self.topk, self.vote_threshold)
            for s in STREAMS:
                cscl = cscl_loss(sims[s][0], positives) + cscl_loss(sims[s][1], positives)
                result[f"loss_{s}"] = cmal[s] + self.lamb * cscl
                result[f"cscl_{s}"] = cscl.detach()
            result["positives_per_row"] = positives.sum(dim=1).mean()
        else:
            for s in STREAMS:
                result[f"loss_{s}"] = cmal[s]
        for s in STREAMS:
            total = total + result[f"loss_{s}"]
            result[f"cmal_{s}"] = cmal[s].detach()
        result = {k: v.detach() if k.startswith("loss_") else v for k, v in result.items()}
        return {"loss": total, **result}
