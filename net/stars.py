"""STARS stage 2 (Mehraban et al. 2024): nearest-neighbour contrastive tuning of a MAMP encoder.

One encoder, no momentum teacher. The pooled feature f (mean over persons, time tokens and joints,
after the final norm) goes through a projector (a BatchNorm) to z and a predictor (Linear 256 ->
4096 -> BN -> ReLU -> Linear -> 256) to p; both are L2-normalised. Each sample's positive is the
nearest neighbour of z in a support queue of earlier z's (entries of the sample itself excluded),
and the loss is the cross-entropy of that neighbour against every p of the (global) batch, at
temperature 0.07, symmetrised over the two views; then z of view 0 is enqueued with the sample ids.

The state_dict is STARS's: `encoder_student.*` (MAMP's encoder keys + `head.projector.0.*`,
`head.predictor.{0,1,3}.*`), `queue` (256, K), `queue_ptr`, `queue_id`, so STARS checkpoints load
as they are and a MAMP checkpoint loads with `rename_weights: {"": "encoder_student."}`.

What is trained (`third_stage`, `fully_tune`, `layer_decay`, upstream processor keys, here model
keys): the second stage trains the head only (the encoder stays MAMP's); the third also trains
blocks depth//2 .. depth-1 (all blocks with fully_tune) with lr * layer_decay^(depth - i), and the
final norm. Parameters outside the optimiser are frozen (requires_grad False); upstream's typo
`required_grad` left them collecting gradients that were never used.

`second_pass`: upstream runs its (identical) second view through the encoder again, so the head's BatchNorm
running statistics move twice a step; one pass gives the same loss and gradients but moves them once, which
changes only eval-mode uses of the head (the kNN monitor, hence best_epoch.pt). True runs the second pass.

`legacy_view1_no_grad`: upstream un-shuffles view 1's predictions p1 under no_grad, so the second loss
term (neighbours of view 0 against p1) adds to the loss but not to the gradient, which is half the
symmetric loss's (with AdamW, the per-tensor clip at 3 then acts on the full gradient at 6); true
reproduces that, false (default) lets both terms train.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from torchlight.dist import all_gather_cat, all_gather_grad, rank

from .base import Method
from .transformer import STEncoder, person_sequences


class CLRHead(nn.Module):
    """STARS' PretrainHead: z = BatchNorm(f); p = predictor(z)."""

    def __init__(self, dim: int = 256, hidden: int = 4096, out_dim: int = 256):
        super().__init__()
        self.projector = nn.Sequential(nn.BatchNorm1d(dim))
        self.predictor = nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.BatchNorm1d(hidden),
                                       nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))

    def forward(self, f):
        z = self.projector(f)
        return self.predictor(z), z


class StudentEncoder(STEncoder):
    """The MAMP encoder (same keys) with the CLR head."""

    def __init__(self, dim_feat=256, hidden_dim=4096, feature_dim=256, **encoder_args):
        super().__init__(dim_feat=dim_feat, **encoder_args)
        self.head = CLRHead(dim_feat, hidden_dim, feature_dim)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, V, M) -> f (N, D): mean over persons, time tokens and joints."""
        n, m = x.shape[0], x.shape[-1]
        tokens = self.encode(self.embed(person_sequences(x)))
        return tokens.view(n, m * tokens.shape[1], -1).mean(dim=1)

    def forward(self, x):
        return self.head(self.pooled(x))


def _weights_init(m: nn.Module):
    """STARS re-initialises every Linear / BN of the model (the MAMP weights then overwrite the encoder)."""
    if isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm1d) and m.affine:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def nn_contrastive_loss(p: torch.Tensor, neighbours: torch.Tensor, temperature: float, rank: int = 0) -> torch.Tensor:
    """CE of each local neighbour (n, d) against every p of the global batch (N, d): the positive of row i
    is column rank * n + i. p, neighbours: L2-normalised."""
    logits = neighbours @ p.T / temperature
    labels = torch.arange(len(neighbours), device=p.device) + rank * len(neighbours)
    return F.cross_entropy(logits, labels)


class STARS(Method):
    views = ("clip",)  # upstream's two views are the same clip: one pass (`second_pass` runs the second)

    def __init__(self, dim_in=3, dim_feat=256, depth=8, num_heads=8, mlp_ratio=4.0, num_frames=120, num_joints=25,
                 patch_size=1, t_patch_size=4, qkv_bias=True, qk_scale=None, drop_rate=0.0, attn_drop_rate=0.0,
                 drop_path_rate=0.0, hidden_dim=4096, feature_dim=256, queue_size=32768, Temperature=0.07, topk=0,
                 third_stage=True, fully_tune=False, layer_decay=0.45, num_class=None, momentum=None,
                 legacy_view1_no_grad=False, second_pass=False):
        super().__init__()
        if feature_dim != dim_feat:
            raise ValueError(f"feature_dim ({feature_dim}) must equal dim_feat ({dim_feat}): the queue holds z "
                             "(dim_feat wide) and its neighbours are compared with p (feature_dim wide)")
        # num_class / momentum: accepted for upstream configs (feature_dim plays num_class's role; no teacher)
        self.encoder_student = StudentEncoder(
            dim_feat=dim_feat, hidden_dim=hidden_dim, feature_dim=feature_dim, dim_in=dim_in, depth=depth,
            num_heads=num_heads, mlp_ratio=mlp_ratio, num_frames=num_frames, num_joints=num_joints,
            patch_size=patch_size, t_patch_size=t_patch_size, qkv_bias=qkv_bias, qk_scale=qk_scale,
            drop_rate=drop_rate, attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate)
        self.apply(_weights_init)
        self.T, self.topk, self.K = Temperature, int(topk), int(queue_size)
        self.third_stage, self.fully_tune, self.layer_decay = bool(third_stage), bool(fully_tune), float(layer_decay)
        self.legacy_view1_no_grad, self.second_pass = bool(legacy_view1_no_grad), bool(second_pass)
        self.register_buffer("queue", F.normalize(torch.randn(feature_dim, queue_size), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
        self.register_buffer("queue_id", torch.full((queue_size,), -1, dtype=torch.long))
        for name, p in self.named_parameters():
            p.requires_grad_(self._lr_scale(name) is not None)

    # --- what trains ----------------------------------------------------------------------------------
    def _lr_scale(self, name: str):
        """lr multiplier of a parameter, or None if it stays frozen (STARS' load_optimizer)."""
        name = name.removeprefix("encoder_student.")
        if name.startswith("head."):
            return 1.0
        if not self.third_stage:
            return None
        if name.startswith("norm."):
            return 1.0
        if name.startswith("blocks."):
            i, depth = int(name.split(".")[1]), self.encoder_student.depth
            if self.fully_tune or i >= depth // 2:
                return self.layer_decay ** (depth - i)
        return None

    def param_groups(self, cfg: dict) -> list:
        """One group per tensor with its lr_scale; the config's weight_decay on every group (STARS'
        AdamW ran with torch's default 0.01 on all of them, biases and norms included)."""
        return [{"params": [p], "lr_scale": self._lr_scale(n), "weight_decay": cfg["weight_decay"], "name": n}
                for n, p in self.named_parameters() if p.requires_grad]

    def fresh_prefixes(self) -> list:
        """What a stage-1 (MAMP) checkpoint does not hold: the head and the queue start fresh."""
        return ["encoder_student.head", "queue", "queue_ptr", "queue_id"]

    # --- training -------------------------------------------------------------------------------------
    def encode(self, x):
        p, z = self.encoder_student(x)
        return F.normalize(p, dim=1), F.normalize(z, dim=1)

    @torch.no_grad()
    def nearest_neighbours(self, z: torch.Tensor, ids: torch.Tensor, generator=None) -> torch.Tensor:
        """The queue entry most similar to each z (topk > 0: one of the topk at random), never the
        sample itself: entries holding its id score -1."""
        sim = z @ self.queue
        sim = sim.masked_fill(self.queue_id[None, :] == ids[:, None], -1.0)
        if self.topk > 0:
            top = sim.topk(self.topk, dim=1).indices
            pick = torch.randint(0, self.topk, (len(z), 1), device=z.device, generator=generator)
            index = top.gather(1, pick).squeeze(1)
        else:
            index = sim.argmax(dim=1)
        return self.queue[:, index].T

    @torch.no_grad()
    def enqueue(self, z: torch.Tensor, ids: torch.Tensor) -> None:
        """FIFO write of every process's z and ids, wrapping around the end."""
        z, ids = all_gather_cat(z), all_gather_cat(ids)
        ptr, n = int(self.queue_ptr), len(z)
        slots = (torch.arange(n, device=z.device) + ptr) % self.K
        self.queue[:, slots] = z.T.to(self.queue.dtype)
        self.queue_id[slots] = ids
        self.queue_ptr[0] = (ptr + n) % self.K

    def pretrain_step(self, batch):
        clip, ids = batch["views"]["clip"], batch["index"].to(self.queue.device)
        p0, z0 = self.encode(clip)
        # STARS feeds the same clip twice (its second view is not augmented): one pass is the same
        p1, z1 = self.encode(clip) if self.second_pass else (p0, z0)
        if self.legacy_view1_no_grad:  # upstream: p1 came back through its no-grad batch unshuffle
            p1 = p1.detach()
        p0_all, p1_all = all_gather_grad(p0), all_gather_grad(p1)
        nn0, nn1 = self.nearest_neighbours(z0, ids), self.nearest_neighbours(z1, ids)
        r = rank()
        loss = 0.5 * (nn_contrastive_loss(p0_all, nn1, self.T, r) + nn_contrastive_loss(p1_all, nn0, self.T, r))
        self.enqueue(z0.detach(), ids)
        return {"loss": loss}

    # --- features -------------------------------------------------------------------------------------
    def forward_features(self, x):
        """The pooled encoder feature f (what stage-3 kNN and linear probes use)."""
        return self.encoder_student.pooled(x)

    def monitor_features(self, x):
        """STARS' online kNN feature: z in the third stage, p in the second (not f)."""
        p, z = self.encoder_student(x)
        return z if self.third_stage else p
