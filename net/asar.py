"""ASAR (Wang et al., ICIP 2023): SkeletonCLR with adaptive relabeling and active sampling of the queue.

Two changes to MoCo v2 on ST-GCN (WGQ109/ASAR: net/asar.py; notes in docs/notes/asar_upstream.md):
- adaptive relabeling: the key's `nn_num` nearest queue entries become extra positives of the query,
  each weighted by the key's confidence c = 1 - H(softmax(k . queue / T2)) / log K, in a soft-target
  cross-entropy over [q . k | q . queue] / T1 (target [1, c, .., c] / (1 + nn_num c));
- active sampling (from 0-based epoch `active_sampling_epoch` on): the queue no longer takes the current
  keys blindly. Candidates are the keys and the queue entries they would overwrite; their gradient
  embeddings (the gradient of an auxiliary cross-entropy q . candidates^T, each query's own key as its
  class) are clustered by k-means into as many clusters as keys, and the candidates enter the queue
  in upstream's order: one per cluster first, then the second of each cluster, and so on.
Evaluation (`pretrain: false`) is SkeletonCLR's: `encoder_q` with a `num_class` head, same keys.
"""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F

from torchlight.dist import all_gather_cat, broadcast

from .modules import at_least_float32, enqueue, moco_logits, momentum_update, top1_of_positive
from .skeletonclr import SkeletonCLR


def _float32(device: torch.device):
    """A context that computes in float32 even under autocast (entropies over 32k columns, k-means)."""
    return torch.autocast(device_type=device.type, enabled=False)


# ----------------------------------------------------------------------------- adaptive relabeling
@torch.no_grad()
def key_confidence(pseudo_logits: torch.Tensor) -> torch.Tensor:
    """(N,) 1 - entropy(softmax(row)) / log(columns): 0 for a flat row, near 1 for a peaked one.

    Clamped at 0: rounding can put the entropy of a flat row a hair above log(columns), which upstream
    turned into tiny negative target weights."""
    log_p = F.log_softmax(at_least_float32(pseudo_logits), dim=1)
    entropy = -(log_p.exp() * log_p).sum(dim=1)
    return (1.0 - entropy / math.log(pseudo_logits.shape[1])).clamp_min(0.0)


@torch.no_grad()
def relabel_targets(k: torch.Tensor, queue: torch.Tensor, nn_num: int = 5, temperature: float = 0.07) -> tuple:
    """(targets (N, 1 + K), confidence (N,)) of the adaptive relabeling.

    Row n: 1 for the key, c_n for each of the `nn_num` queue columns most similar to k_n, 0 elsewhere,
    divided by the row sum 1 + nn_num c_n; c_n = key_confidence(k_n . queue / temperature).
    """
    with _float32(k.device):
        sims = at_least_float32(k) @ at_least_float32(queue).to(at_least_float32(k).dtype) / temperature
        conf = key_confidence(sims)
        neighbours = torch.zeros_like(sims).scatter_(1, sims.topk(nn_num, dim=1).indices, 1.0)
        targets = torch.cat([torch.ones_like(sims[:, :1]), neighbours * conf[:, None]], dim=1)
    return targets / targets.sum(dim=1, keepdim=True), conf


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """mean_n(-sum_j target_nj log softmax(logits)_nj), in float32."""
    return -(targets * F.log_softmax(at_least_float32(logits), dim=1)).sum(dim=1).mean()


# ----------------------------------------------------------------------------- active sampling
def gradient_embeddings(q: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """d/d candidates of mean_i CE(q_i . candidates^T, class i), (2N, D) for N queries.

    Closed form (1/N) (P - Y)^T q, P the row softmax of q . candidates^T and Y = [I_N | 0]. Computed
    with torch.autograd.grad on a detached q, so no gradient reaches any parameter (upstream called
    backward through encoder_q and discarded the result with the next zero_grad).
    """
    with torch.enable_grad(), _float32(q.device):
        cand = at_least_float32(candidates.detach()).requires_grad_(True)
        logits = at_least_float32(q.detach()).to(cand.dtype) @ cand.T
        target = torch.arange(q.shape[0], device=q.device)
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, target), cand)
    return grad


@torch.no_grad()
def kmeans(x: torch.Tensor, n_clusters: int, generator: torch.Generator | None = None, max_iter: int = 100,
           tol: float = 1e-4) -> torch.Tensor:
    """Cluster index (n,) of each row of x: Lloyd's k-means as upstream ran it (fast_pytorch_kmeans).

    Init: `n_clusters` distinct random rows (drawn from `generator`). Each iteration assigns every row to
    the nearest centroid (argmax of 2 x.c - |x|^2 - |c|^2), takes the cluster means (an empty cluster's
    centroid becomes the zero vector, as upstream), stops when the summed squared centroid shift is
    <= tol, else moves the centroids. Returns the assignment of the last iteration.
    """
    device = generator.device if generator is not None else x.device
    init = torch.randperm(x.shape[0], generator=generator, device=device)[:n_clusters].to(x.device)
    centroids = x[init]
    x_sq = x.pow(2).sum(dim=1, keepdim=True)
    clusters = torch.arange(n_clusters, device=x.device)
    closest = None
    for _ in range(max_iter):
        score = 2 * x @ centroids.T - x_sq - centroids.pow(2).sum(dim=1)[None]
        closest = score.argmax(dim=1)
        members = (closest[None] == clusters[:, None]).to(x.dtype)  # (n_clusters, n)
        counts = members.sum(dim=1, keepdim=True)
        means = torch.where(counts > 0, members @ x / counts.clamp_min(1), torch.zeros_like(centroids))
        if (means - centroids).pow(2).sum() <= tol:
            break
        centroids = means
    return closest


@torch.no_grad()
def cluster_rank_order(assign: torch.Tensor) -> tuple:
    """(all candidate indices in upstream's enqueue order, how many are in bins 1-3): net/asar.py, the
    ls1..ls4 counter loop.

    Upstream walks the candidates in index order with a per-cluster counter that starts at the cluster
    size and drops by one per member seen; that puts the last member of every cluster in bin 1, the one
    before it in bin 2, the one before that in bin 3 and all earlier members in bin 4. Vectorised: bin =
    1 + min(members of the same cluster with a larger index, 3); order by (bin, index).
    """
    n = assign.shape[0]
    idx = torch.arange(n, device=assign.device)
    later = ((assign[None, :] == assign[:, None]) & (idx[None, :] > idx[:, None])).sum(dim=1)
    return torch.argsort(later.clamp(max=3) * n + idx), int((later < 3).sum())


class ASAR(SkeletonCLR):
    """Upstream keys: encoder_q / encoder_k (ST-GCN, MLP projector fc.0 / fc.2), queue, queue_ptr, labels.

    nn_num: neighbours relabelled as positives; T1: temperature of the loss logits; T2: of the
    pseudo logits that pick the neighbours and give the confidence (both hard-coded 0.07 upstream,
    which never reads `Temperature`: it is accepted for upstream configs and only warned about).
    active_sampling_epoch: active sampling from 0-based epoch active_sampling_epoch on (upstream's
    1-based `epoch > 150`: the last 150 of 300 epochs). kmeans_iters, kmeans_tol: upstream's k-means.
    legacy_queue_candidates: take the old-queue candidates as upstream did, the rows of the
    (feature_dim, N) queue slice instead of its columns (a missing transpose that only ran because
    N = feature_dim = 128; the rows are not queue entries). Off: the N oldest queue entries.
    legacy_enqueue_all_candidates: when fewer than N candidates fall in the counter's first three bins (k-means
    left clusters empty), upstream enqueued all 2N candidates (and crashed when they overran the queue's end;
    here the write wraps around). Off: always the first N in that order.
    """

    def __init__(self, base_encoder="net.st_gcn.Model", pretrain=True, feature_dim=128, queue_size=32768,
                 momentum=0.999, Temperature=0.07, mlp=True, in_channels=3, hidden_channels=16, hidden_dim=256,
                 num_class=60, dropout=0.5, graph_args=None, edge_importance_weighting=True, nn_num=5, T1=0.07,
                 T2=0.07, active_sampling_epoch=150, kmeans_iters=100, kmeans_tol=1e-4,
                 legacy_queue_candidates=False, legacy_enqueue_all_candidates=False, target_init="copy"):
        super().__init__(base_encoder=base_encoder, pretrain=pretrain, feature_dim=feature_dim,
                         queue_size=queue_size, momentum=momentum, Temperature=Temperature, mlp=mlp,
                         in_channels=in_channels, hidden_channels=hidden_channels, hidden_dim=hidden_dim,
                         num_class=num_class, dropout=dropout, graph_args=graph_args,
                         edge_importance_weighting=edge_importance_weighting, target_init=target_init)
        self.nn_num, self.T1, self.T2 = int(nn_num), float(T1), float(T2)
        self.active_sampling_epoch = int(active_sampling_epoch)
        self.kmeans_iters, self.kmeans_tol = int(kmeans_iters), float(kmeans_tol)
        self.legacy_queue_candidates = bool(legacy_queue_candidates)
        self.legacy_enqueue_all = bool(legacy_enqueue_all_candidates)
        if not pretrain:
            return
        if Temperature != T1:
            warnings.warn(f"ASAR: model_args.Temperature {Temperature} is not used (as upstream); the loss uses "
                          f"T1 {T1} and the relabeling T2 {T2}", stacklevel=2)
        if not 0 < self.nn_num <= queue_size:
            raise ValueError(f"ASAR: nn_num {nn_num} must be in 1..queue_size ({queue_size})")
        # upstream's buffer of queue labels, never written: kept so its checkpoints load with strict keys
        self.register_buffer("labels", torch.full((queue_size,), -1, dtype=torch.long))

    def samples_actively(self, epoch: int) -> bool:
        """Whether 0-based epoch `epoch` uses active sampling (upstream: 1-based epoch > start)."""
        return epoch + 1 > self.active_sampling_epoch

    @torch.no_grad()
    def select_for_queue(self, q: torch.Tensor, k: torch.Tensor, generator: torch.Generator | None) -> tuple:
        """(vectors (n, D), chosen indices (n,)) to write at the queue pointer, n = the global batch.

        Under DDP every rank gathers the queries and keys of all ranks (the same candidates everywhere),
        runs the selection, and takes rank 0's chosen indices, so every queue stays identical and the
        result equals one process with the global batch (and rank 0's generator).
        """
        q, k = all_gather_cat(q.detach()), all_gather_cat(k.detach())
        n, size = k.shape[0], self.queue.shape[1]
        if n > size:
            raise ValueError(f"ASAR active sampling: the global batch {n} exceeds the queue size {size}")
        slots = (int(self.queue_ptr) + torch.arange(n, device=self.queue.device)) % size  # the oldest n
        old = self.queue[:, slots]  # (D, n)
        if self.legacy_queue_candidates and old.shape[0] != n:
            raise ValueError(f"ASAR legacy_queue_candidates needs the global batch ({n}) to equal feature_dim "
                             f"({old.shape[0]}): upstream's concatenation only ran for 128 = 128")
        candidates = torch.cat([k.to(self.queue.dtype), old if self.legacy_queue_candidates else old.T], dim=0)
        grads = gradient_embeddings(q, candidates)
        with _float32(grads.device):
            assign = kmeans(grads, n, generator, self.kmeans_iters, self.kmeans_tol)
        order, in_first_bins = cluster_rank_order(assign)
        take = 2 * n if self.legacy_enqueue_all and in_first_bins < n else n
        chosen = broadcast(order[:take].contiguous())
        return candidates[chosen], chosen

    def pretrain_step(self, batch):
        x_q, x_k = batch["views"]["query"], batch["views"]["key"]
        q = F.normalize(self.encoder_q(x_q), dim=1)
        with torch.no_grad():
            momentum_update(self.encoder_q, self.encoder_k, self.m)
            k = F.normalize(self.encoder_k(x_k), dim=1)
        queue = self.queue.clone().detach()
        targets, conf = relabel_targets(k, queue, self.nn_num, self.T2)
        logits = moco_logits(q, k, queue, self.T1)
        loss = soft_cross_entropy(logits, targets)
        out = {"loss": loss, "confidence": conf.mean(), "pos_top1": top1_of_positive(logits.detach())}
        active = self.samples_actively(int(batch["epoch"]))
        if active:
            keys, chosen = self.select_for_queue(q, k, batch.get("generator"))
            enqueue(self.queue, self.queue_ptr, keys, gathered=True)
            share = (chosen < chosen.shape[0]).float().mean()  # current keys among the entries written
        else:
            enqueue(self.queue, self.queue_ptr, k)
            share = torch.tensor(1.0)
        out.update(active=torch.tensor(float(active)), new_key_share=share)
        return out
