"""AimCLR (Guo et al., AAAI 2022): contrastive learning from extremely augmented skeleton sequences.

SkeletonCLR's MoCo v2 plus three things (Levigty/AimCLR: net/aimclr.py, net/att_drop.py,
processor/pretrain_aimclr.py):
- a third, extremely augmented view x_e (views `extreme`, `query`, `key`: the recipe extreme_normal_pair);
- EADM, the energy-based attention-guided drop: the last feature map of x_e with its most attended
  joints and entries zeroed gives a second extreme query q_ed (no parameters, no state_dict keys);
- DDM: the softmax distribution of the normal query over [key | queue], detached, supervises the
  distributions of q_e and q_ed (a cross-entropy);
- after `mining_epoch` epochs, nearest-neighbour mining: the `topk` queue entries most similar to each
  of q, q_e, q_ed become extra positives of the normal query's InfoNCE.
Evaluation (`pretrain: false`) is SkeletonCLR's: `encoder_q` with a `num_class` head, same keys.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .modules import at_least_float32, enqueue, info_nce, moco_logits, momentum_update, top1_of_positive
from .skeletonclr import SkeletonCLR


@torch.no_grad()
def energy_attention(x: torch.Tensor, e_lambda: float = 1e-4) -> torch.Tensor:
    """SimAM attention of a feature map x (NM, C, T, V): sigmoid(d / (4 (sum d / (T V - 1) + lambda)) + 1/2),
    d = (x - mean over T, V)^2, per sample and channel. Large where an entry stands out."""
    x = at_least_float32(x)
    d = (x - x.mean(dim=(2, 3), keepdim=True)).pow(2)
    var = d.sum(dim=(2, 3), keepdim=True) / (x.shape[2] * x.shape[3] - 1)
    return torch.sigmoid(d / (4 * (var + e_lambda)) + 0.5)


def _keep_scaled(keep: torch.Tensor) -> torch.Tensor:
    """A 0/1 keep mask times numel / (kept count) over the whole batch; all dropped: zeros (not NaN)."""
    return keep * (keep.numel() / keep.sum().clamp_min(1.0))


def attention_drop(x: torch.Tensor, keep_prob: float = 0.7, e_lambda: float = 1e-4) -> torch.Tensor:
    """EADM on the last feature map x (NM, C, T, V).

    From the attention a of x (energy_attention): spatial drop zeroes the joints whose mean attention
    over (C, T) is >= keep_prob, temporal drop every entry with a >= keep_prob (both masks from the
    same a, computed on the undropped map); each mask is rescaled by numel / kept over the batch.
    The masks carry no gradient (upstream overwrote every entry with constants).
    """
    att = energy_attention(x, e_lambda)
    joints = _keep_scaled((att.mean(dim=(1, 2), keepdim=True) < keep_prob).to(att.dtype))  # (NM, 1, 1, V)
    entries = _keep_scaled((att < keep_prob).to(att.dtype))  # (NM, C, T, V)
    return x * (joints * entries).to(x.dtype)


def ddm_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean_n(-sum_j target_nj log softmax(logits)_nj): upstream's log(softmax), as a log_softmax."""
    return -(target * F.log_softmax(at_least_float32(logits), dim=1)).sum(dim=1).mean()


def neighbour_positives(*queue_logits: torch.Tensor, topk: int = 1) -> torch.Tensor:
    """(N, 1 + K) 0/1 mask: the key (column 0) and the union of every query's top-k queue columns."""
    mask = torch.zeros_like(queue_logits[0])
    for sim in queue_logits:
        mask.scatter_(1, sim.topk(topk, dim=1).indices, 1.0)
    return torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)


def multi_positive_nce(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """mean_n(-sum_j pos_nj log softmax(logits)_nj / sum_j pos_nj)."""
    log_p = F.log_softmax(at_least_float32(logits), dim=1)
    return (-(positives * log_p).sum(dim=1) / positives.sum(dim=1)).mean()


class AimCLR(SkeletonCLR):
    views = ("extreme", "query", "key")
    default_views = {"recipe": "extreme_normal_pair", "shear_amplitude": 0.5, "temperal_padding_ratio": 6,
                     "aug_method": "12345"}

    """Upstream keys: encoder_q / encoder_k (ST-GCN, MLP projector fc.0 / fc.2), queue, queue_ptr.

    mining_epoch: nearest-neighbour mining from upstream epoch mining_epoch + 1 on (upstream epochs
    are 1-based: it mines when epoch > mining_epoch; here batch["epoch"] is 0-based, so
    batch["epoch"] >= mining_epoch). topk: neighbours per query. keep_prob, e_lambda: EADM.
    """

    def __init__(self, base_encoder="net.st_gcn.Model", pretrain=True, feature_dim=128, queue_size=32768,
                 momentum=0.999, Temperature=0.07, mlp=True, in_channels=3, hidden_channels=16, hidden_dim=256,
                 num_class=60, dropout=0.5, graph_args=None, edge_importance_weighting=True, mining_epoch=150,
                 topk=1, keep_prob=0.7, e_lambda=1e-4, target_init="copy"):
        super().__init__(base_encoder=base_encoder, pretrain=pretrain, feature_dim=feature_dim,
                         queue_size=queue_size, momentum=momentum, Temperature=Temperature, mlp=mlp,
                         in_channels=in_channels, hidden_channels=hidden_channels, hidden_dim=hidden_dim,
                         num_class=num_class, dropout=dropout, graph_args=graph_args,
                         edge_importance_weighting=edge_importance_weighting, target_init=target_init)
        self.mining_epoch, self.topk = int(mining_epoch), int(topk)
        self.keep_prob, self.e_lambda = float(keep_prob), float(e_lambda)

    def mines(self, epoch: int) -> bool:
        """Whether 0-based epoch `epoch` uses nearest-neighbour mining (upstream: epoch + 1 > mining_epoch)."""
        return epoch + 1 > self.mining_epoch

    def extreme_queries(self, x_e):
        """(q_e, q_ed): the extreme view's projection without and with EADM, from one encoder pass."""
        enc = self.encoder_q
        fmap = enc.forward_feature_map(x_e)
        n = x_e.shape[0]
        q_e = enc.forward_head(enc.pool(fmap, n))
        q_ed = enc.forward_head(enc.pool(attention_drop(fmap, self.keep_prob, self.e_lambda), n))
        return q_e, q_ed

    def pretrain_step(self, batch):
        x_e, x_q, x_k = (batch["views"][name] for name in ("extreme", "query", "key"))
        q = F.normalize(self.encoder_q(x_q), dim=1)
        q_e, q_ed = (F.normalize(z, dim=1) for z in self.extreme_queries(x_e))
        with torch.no_grad():
            momentum_update(self.encoder_q, self.encoder_k, self.m)
            k = F.normalize(self.encoder_k(x_k), dim=1)
        queue = self.queue.clone().detach()
        logits, logits_e, logits_ed = (moco_logits(z, k, queue, self.T) for z in (q, q_e, q_ed))
        target = F.softmax(at_least_float32(logits.detach()), dim=1)
        ddm = (ddm_loss(logits_e, target) + ddm_loss(logits_ed, target)) / 2
        mining = self.mines(int(batch["epoch"]))
        if mining:
            positives = neighbour_positives(logits[:, 1:].detach(), logits_e[:, 1:].detach(),
                                            logits_ed[:, 1:].detach(), topk=self.topk)
            nce = multi_positive_nce(logits, positives)
        else:
            nce = info_nce(logits)
        enqueue(self.queue, self.queue_ptr, k)
        return {"loss": nce + ddm, "nce": nce.detach(), "ddm": ddm.detach(),
                "mining": torch.tensor(float(mining)), "pos_top1": top1_of_positive(logits.detach())}
