"""CrosSCLR (Li et al., CVPR 2021): SkeletonCLR per stream, then cross-view consistent knowledge mining.

One SkeletonCLR branch per stream (query / momentum-key ST-GCN, MLP projector, a queue), every stream
derived inside the model from the joint views (`stream: all`), so the queues' column j is one sample
in every stream. Up to `cross_epoch` (1-based, as upstream: the first `cross_epoch` epochs) each stream
minimises its own InfoNCE. Afterwards (CVC-KM) stream a learns from each partner b:

    logits_ab = [q_a.k_a | q_a.Q_a | (q_a.Q_a) * (q_b.Q_b)] / T        (the last block: `context`)
    positives = [1 | top-`topk` of q_b.Q_b | the same columns]          (neighbours mined in view b)
    L_ab = -mean_n( sum_j pos_j log softmax(logits_ab)_j / sum_j pos_j ),  L_a = mean_b L_ab,

and the loss is sum_a L_a. `CrosSCLR` is upstream's 2-stream model (joint + motion, processor
`pretrain_crossclr`), `CrosSCLR3Views` the 3-stream one (joint, motion, bone;
`pretrain_crossclr_3views`, the paper's 3s-CrosSCLR). State-dict keys are upstream's: `encoder_q`,
`encoder_k`, `queue`, `queue_ptr` for the joint and `_motion` / `_bone` suffixed copies.

Upstream behaviours behind flags, off by default (the paper configs turn them on):
- `target_init: independent`: every key encoder starts as its own random draw, as upstream's processor
  re-initialised the model after the q -> k copy (default `copy`).
- `legacy_crossclr_momentum`: upstream's cross phase momentum-updates only the motion key encoder
  (the joint and bone key encoders freeze); here every key encoder moves unless this is true.
- `legacy_shared_projector`: upstream builds the motion / bone projectors as
  Linear-ReLU-<the joint projector module itself>, so their last two layers ARE the joint's
  (keys `encoder_q_motion.fc.2.0.*` ...); true rebuilds that (to resume an upstream pretraining
  checkpoint bit-compatibly), false gives every stream its own Linear-ReLU-Linear projector.

Evaluation (`pretrain: false`): one encoder per stream, each with a `num_class` classifier;
`forward_features` concatenates the streams' pooled features (N, S*d) and `forward_head` averages
the streams' logits, as upstream's `view: all` linear evaluation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from feeder.streams import to_stream
from torchlight.util import import_class

from .base import Method
from .modules import (at_least_float32, enqueue, info_nce, init_queue, init_target, mlp_projector, moco_logits,
                      momentum_update, top1_of_positive, weights_init)

SUFFIX = {"joint": "", "motion": "_motion", "bone": "_bone"}


def cross_view_loss(l_pos: torch.Tensor, l_neg: torch.Tensor, l_neg_partner: torch.Tensor, topk: int,
                    context: bool, temperature: float) -> torch.Tensor:
    """CVC-KM loss of one stream against one partner: l_pos (N, 1) and l_neg (N, K) are the stream's
    cosine similarities to its key and queue, l_neg_partner (N, K) the partner's to its own queue
    (the same samples column by column). The partner's top-k queue columns become positives."""
    idx = l_neg_partner.topk(topk, dim=1).indices
    mined = torch.zeros_like(l_neg).scatter_(1, idx, 1.0)
    blocks, masks = [l_pos, l_neg], [torch.ones_like(l_pos), mined]
    if context:
        blocks.append(l_neg * l_neg_partner)
        masks.append(mined)
    logits = at_least_float32(torch.cat(blocks, dim=1)) / temperature
    pos = torch.cat(masks, dim=1).to(logits.dtype)
    return -((F.log_softmax(logits, dim=1) * pos).sum(1) / pos.sum(1)).mean()


class CrosSCLR(Method):
    """Upstream's 2-stream CrosSCLR (joint + motion); `CrosSCLR3Views` adds the bone stream."""

    STREAMS = ("joint", "motion")
    derives_streams = True  # evaluated with `stream: all`: it takes the joints and derives the rest
    views = ("query", "key")
    default_views = {"recipe": "normal_pair", "shear_amplitude": 0.5, "temperal_padding_ratio": 6}

    def __init__(self, base_encoder="net.st_gcn.Model", pretrain=True, feature_dim=128, queue_size=32768,
                 momentum=0.999, Temperature=0.07, mlp=True, in_channels=3, hidden_channels=16, hidden_dim=256,
                 num_class=60, dropout=0.5, graph_args=None, edge_importance_weighting=True, cross_epoch=150,
                 topk=1, context=True, legacy_crossclr_momentum=False, legacy_shared_projector=False,
                 target_init="copy"):
        super().__init__()
        self.pretrain = pretrain
        self.layout = (graph_args or {}).get("layout", "ntu-rgb+d")
        self.hidden_dim = hidden_dim
        encoder = import_class(base_encoder)
        enc_args = dict(in_channels=in_channels, hidden_channels=hidden_channels, hidden_dim=hidden_dim,
                        dropout=dropout, graph_args=graph_args, edge_importance_weighting=edge_importance_weighting)
        if not pretrain:
            for s in self.STREAMS:
                setattr(self, "encoder_q" + SUFFIX[s], encoder(num_class=num_class, **enc_args))
            self.apply(weights_init)
            return
        self.K, self.m, self.T = queue_size, momentum, Temperature
        self.cross_epoch, self.topk, self.context = cross_epoch, topk, context
        self.legacy_momentum = legacy_crossclr_momentum
        for s in self.STREAMS:
            for role in ("encoder_q", "encoder_k"):
                enc = encoder(num_class=feature_dim, **enc_args)
                if mlp:
                    if legacy_shared_projector and s != "joint":  # upstream: Linear-ReLU-(joint's projector)
                        joint_fc = getattr(self, role).fc
                        enc.fc = nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.ReLU(inplace=True), joint_fc)
                    else:
                        enc.fc = mlp_projector(hidden_dim, feature_dim)
                setattr(self, role + SUFFIX[s], enc)
        # initialise, then k from q: a copy, or (target_init: independent) upstream's own draw after the copy
        self.apply(weights_init)
        for s in self.STREAMS:
            init_target(self.encoder("q", s), self.encoder("k", s), target_init)
            init_queue(self, feature_dim, queue_size, SUFFIX[s])

    def encoder(self, role: str, stream: str) -> nn.Module:
        return getattr(self, f"encoder_{role}{SUFFIX[stream]}")

    def queue_of(self, stream: str):
        return getattr(self, "queue" + SUFFIX[stream]), getattr(self, "queue_ptr" + SUFFIX[stream])

    # --- evaluation interface -------------------------------------------------------------------------
    def forward_features(self, x):
        """Joint input (N, C, T, V, M) -> the streams' pooled features concatenated, (N, S*d)."""
        return torch.cat([self.encoder("q", s).forward_features(to_stream(x, s, self.layout))
                          for s in self.STREAMS], dim=1)

    def forward_head(self, features):
        """The mean of the streams' classifier logits (upstream's `view: all` evaluation)."""
        chunks = features.split(self.hidden_dim, dim=1)
        logits = [self.encoder("q", s).forward_head(f) for s, f in zip(self.STREAMS, chunks)]
        return torch.stack(logits).mean(dim=0)

    def head_prefixes(self) -> list:
        return [f"encoder_q{SUFFIX[s]}.fc" for s in self.STREAMS]

    # --- training -------------------------------------------------------------------------------------
    def is_cross(self, epoch: int) -> bool:
        """Cross-view mining from 0-based epoch `cross_epoch` on (upstream: 1-based epoch > cross_epoch)."""
        return epoch >= self.cross_epoch

    def pretrain_step(self, batch):
        x_q, x_k = batch["views"]["query"], batch["views"]["key"]
        layout = batch.get("layout", self.layout)
        cross = self.is_cross(int(batch["epoch"]))
        q, k = {}, {}
        for s in self.STREAMS:
            q[s] = F.normalize(self.encoder("q", s)(to_stream(x_q, s, layout)), dim=1)
        with torch.no_grad():
            for s in self.STREAMS:
                if not (cross and self.legacy_momentum and s != "motion"):
                    momentum_update(self.encoder("q", s), self.encoder("k", s), self.m)
            for s in self.STREAMS:
                k[s] = F.normalize(self.encoder("k", s)(to_stream(x_k, s, layout)), dim=1)
        out, total = {}, 0.0
        if not cross:
            for s in self.STREAMS:
                logits = moco_logits(q[s], k[s], self.queue_of(s)[0].clone().detach(), self.T)
                out[f"loss_{s}"] = info_nce(logits)
                out[f"pos_top1_{s}"] = top1_of_positive(logits.detach())
                total = total + out[f"loss_{s}"]
        else:
            l_pos = {s: (q[s] * k[s]).sum(dim=1, keepdim=True) for s in self.STREAMS}
            l_neg = {s: q[s] @ self.queue_of(s)[0].clone().detach().to(q[s].dtype) for s in self.STREAMS}
            for a in self.STREAMS:
                partners = [b for b in self.STREAMS if b != a]
                loss_a = sum(cross_view_loss(l_pos[a], l_neg[a], l_neg[b], self.topk, self.context, self.T)
                             for b in partners) / len(partners)
                out[f"loss_{a}"] = loss_a
                total = total + loss_a
        for s in self.STREAMS:  # every queue gets this batch at the same columns
            enqueue(*self.queue_of(s), k[s])
        out["cross"] = torch.tensor(float(cross))  # 1 in the CVC-KM phase
        return {"loss": total, **out}


class CrosSCLR3Views(CrosSCLR):
    """3s-CrosSCLR: joint, motion and bone (upstream net/crossclr_3views.py, `pretrain_crossclr_3views`)."""

    STREAMS = ("joint", "motion", "bone")
