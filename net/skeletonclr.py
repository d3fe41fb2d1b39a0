"""SkeletonCLR (Li et al., CVPR 2021, the single-view baseline of CrosSCLR): MoCo v2 on skeletons.

Pretraining (`pretrain: true`): query / momentum-key ST-GCN encoders with MLP projectors, a queue of
negatives and InfoNCE between two augmented views. `target_init`: the key encoder starts as a copy of the
query encoder (`copy`, default) or as its own random draw (`independent`: what the lineage's code did, its
processor re-initialising the whole model after the copy; the paper configs set it). Evaluation (`pretrain: false`): only
`encoder_q` with a `num_class` head, as every lineage evaluation builds it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from torchlight.util import import_class

from .base import Method
from .modules import (enqueue, info_nce, init_queue, init_target, mlp_projector, moco_logits, momentum_update,
                      top1_of_positive, weights_init)


class SkeletonCLR(Method):
    views = ("query", "key")
    default_views = {"recipe": "normal_pair", "shear_amplitude": 0.5, "temperal_padding_ratio": 6}

    def __init__(self, base_encoder="net.st_gcn.Model", pretrain=True, feature_dim=128, queue_size=32768,
                 momentum=0.999, Temperature=0.07, mlp=True, in_channels=3, hidden_channels=16, hidden_dim=256,
                 num_class=60, dropout=0.5, graph_args=None, edge_importance_weighting=True, target_init="copy"):
        super().__init__()
        self.pretrain = pretrain
        encoder = import_class(base_encoder)
        enc_args = dict(in_channels=in_channels, hidden_channels=hidden_channels, hidden_dim=hidden_dim,
                        dropout=dropout, graph_args=graph_args, edge_importance_weighting=edge_importance_weighting)
        if not pretrain:
            self.encoder_q = encoder(num_class=num_class, **enc_args)
            self.apply(weights_init)
            return
        self.K, self.m, self.T = queue_size, momentum, Temperature
        self.encoder_q = encoder(num_class=feature_dim, **enc_args)
        self.encoder_k = encoder(num_class=feature_dim, **enc_args)
        if mlp:
            self.encoder_q.fc = mlp_projector(hidden_dim, feature_dim)
            self.encoder_k.fc = mlp_projector(hidden_dim, feature_dim)
        # Initialise, then k from q: a copy, or (target_init: independent) the lineage's own draw
        self.apply(weights_init)
        self.target_init = target_init
        init_target(self.encoder_q, self.encoder_k, target_init)
        init_queue(self, feature_dim, queue_size)

    # --- evaluation interface, shared by every protocol -------------------------------------------
    def forward_features(self, x):
        return self.encoder_q.forward_features(x)

    def forward_head(self, features):
        return self.encoder_q.forward_head(features)

    def head_prefixes(self) -> list:
        """State-dict prefixes of the classifier that evaluation trains from scratch."""
        return ["encoder_q.fc"]

    # --- training -----------------------------------------------------------------------------------
    def pretrain_step(self, batch):
        x_q, x_k = batch["views"]["query"], batch["views"]["key"]
        q = F.normalize(self.encoder_q(x_q), dim=1)
        with torch.no_grad():
            momentum_update(self.encoder_q, self.encoder_k, self.m)
            k = F.normalize(self.encoder_k(x_k), dim=1)
        logits = moco_logits(q, k, self.queue.clone().detach(), self.T)
        loss = info_nce(logits)
        enqueue(self.queue, self.queue_ptr, k)
        return {"loss": loss, "pos_top1": top1_of_positive(logits.detach())}
