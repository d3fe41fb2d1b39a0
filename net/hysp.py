"""HYSP (Franco, Mandica, Munjal, Galasso, ICLR 2023): hyperbolic self-paced learning, BYOL-style.

Pretraining (`pretrain: true`), one stream per run (the loop converts the views to the config's `stream`):

  online_encoder    ST-GCN, hidden_channels 64, last block 1024 wide, no classifier (pooled, persons averaged)
  online_projector  Linear(1024, 1024) - BN - ReLU - Linear(1024, 1024)   (keys net.0, net.1, net.3)
  online_predictor  the same shape, on the projection
  target_encoder / target_projector   EMA copies (constant decay 0.999, parameters only), never trained by
                    the optimiser; `ema_update` says when they move (below)

Views: [strong, weak] (feeder `Feeder_double`). Per direction, q = predictor(projector(encoder(view_a))) and
k = target_projector(target_encoder(view_b)) without gradient; both are mapped to the Poincaré ball of
curvature -c by exp_0 (in float64, then projected inside radius (1 - 1e-5) / sqrt(c)), and

  loss_euc = 2 - 2 cos(exp_0 q, exp_0 k)          (BYOL; the radial map does not change the angle)
  loss_hyp = d_c(exp_0 q, exp_0 k) = 2 / sqrt(c) artanh(sqrt(c) |(-x) (+)_c y|)
  L = (1 - lam) loss_euc + lam loss_hyp, symmetrised over the two directions, averaged over the batch.

lam follows the curriculum of upstream's HyperTrainLearner with 0-based epochs e:
lam(e) = clip((e - (e0 - 1)) / ((e1 - 1) - (e0 - 1)), 0, 1) (rounded through float32 as upstream's
torch.max / torch.min of a float32 tensor), e0 = initial_hyper_epoch, e1 = final_hyper_epoch;
`curriculum: false` gives lam = 1; `hyper: false` is plain cosine BYOL on the raw outputs (upstream's
TrainLearner). As upstream, a term whose weight is 0 (lam <= 1e-7 or >= 1 - 1e-7) is not differentiated.

EMA timing (`ema_update`). Upstream updates the targets in Lightning's `on_before_zero_grad`, which its
automatic optimisation calls inside the step closure after the forward pass and before backward, so from
the online weights the forward pass used: `before_backward` (what the paper's code computed; the paper
configs set it). `after_step` (default) updates them from the weights the optimiser step just wrote
(BYOL's order).

The self-pacing is implicit in the distance (no weight is computed). Note, checked numerically in
tests/test_hysp.py: the Euclidean gradient of d_c wrt the online point x has norm 2 / (1 - c|x|^2) for ANY
target (the Riemannian gradient of a distance has unit norm), so the target's radius changes the
direction of the pull, not its size in the ball; what grows with the target's radius is the loss itself.

Saturation (upstream behaviour, kept): geoopt clamps artanh's argument at 1 - 1e-7, so d_c never exceeds
ln(2e7) / sqrt(c) = 16.81 and its gradient is 0 beyond: for c = 1, two embeddings of Euclidean norm 6 (radius
1 - 1.2e-5) hit the cap once they are ~3 degrees apart (norm 4.5: ~65 degrees), so in the Poincaré phase
such pairs give no gradient (the NW-UCLA demo's default-initialised projector starts there). `clip_r` (not upstream, default off) clips the Euclidean
vectors to norm clip_r before exp_0 (clipped hyperbolic networks, Guo et al. CVPR 2022): d_c(0, exp_0 v) =
2|v|, so every distance is at most 4 clip_r by the triangle inequality, under the cap for clip_r < 4.2.

Evaluation (`pretrain: false`): `online_encoder` plus `online_projector` = `.net.0`, a Linear(1024, C)
on the Euclidean feature (`hyper: false`) or, with `hyper: true`, exp_0 of the feature then a Möbius
linear layer (Ganea et al. 2018, as upstream's hyrnn-derived MobiusLinear: Möbius matrix-vector product,
Möbius addition of a bias that is a point of the ball, projection), computed in float64 with autocast off;
its outputs are the logits. `encoder_lr` (model_args) is the encoder's lr (upstream's param group), the
head runs at base_lr.

Upstream's key names (`online_encoder.*`, `online_projector.net.*`, `target_*`), so its Lightning
checkpoints load once their `model.` prefix is stripped (tools/convert_checkpoint.py does it).
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from torchlight.util import import_class

from .base import Method
from .modules import copy_params, momentum_update

# --- Poincaré ball (curvature -c) ------------------------------------------------------------------
# geoopt's boundary margin per dtype (stereographic math `_project`): 4e-3 for float32, 1e-5 otherwise.
BOUNDARY_EPS = {torch.float32: 4e-3, torch.float64: 1e-5}
MIN_NORM = 1e-15
ARTANH_LIMIT = 1 - 1e-7  # geoopt clamps artanh's argument here
TANH_LIMIT = 15.0        # and tanh's (tanh(15) is 1 in float32, 1 - 2e-13 in float64)


def _float(x: torch.Tensor) -> torch.Tensor:
    """Half-precision inputs computed in float32 at least (fp16 cannot hold 1 - 1e-5)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _norm(x: torch.Tensor) -> torch.Tensor:
    return x.norm(dim=-1, keepdim=True).clamp_min(MIN_NORM)


def _tanh(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(-TANH_LIMIT, TANH_LIMIT).tanh()


def _artanh(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(-ARTANH_LIMIT, ARTANH_LIMIT)
    return 0.5 * (torch.log1p(x) - torch.log1p(-x))


class _NoAutocast:
    """Autocast off on x's device for the hyperbolic maths (float64 tensors are never autocast, but the
    float32 ones of a model running under fp16 autocast would be)."""

    def __init__(self, x: torch.Tensor):
        self.ctx = torch.autocast(x.device.type, enabled=False)

    def __enter__(self):
        self.ctx.__enter__()

    def __exit__(self, *exc):
        return self.ctx.__exit__(*exc)


def project(x: torch.Tensor, c: float = 1.0, eps: float | None = None) -> torch.Tensor:
    """Points beyond radius (1 - eps) / sqrt(c) pulled back onto it along their ray; eps by dtype as geoopt."""
    x = _float(x)
    eps = BOUNDARY_EPS.get(x.dtype, 1e-5) if eps is None else eps
    radius = (1.0 - eps) / math.sqrt(c)
    norm = _norm(x)
    return torch.where(norm > radius, x / norm * radius, x)


def expmap0(v: torch.Tensor, c: float = 1.0) -> torch.Tensor:
    """exp_0(v) = tanh(sqrt(c)|v|) v / (sqrt(c)|v|) in float64, projected inside the ball (upstream's
    HyperMapper.expmap). exp_0(0) = 0 with gradient the identity."""
    with _NoAutocast(v):
        v = v.double()
        sc = math.sqrt(c)
        n = _norm(v)
        return project(_tanh(sc * n) * v / (sc * n), c)


def mobius_add(x: torch.Tensor, y: torch.Tensor, c: float = 1.0) -> torch.Tensor:
    """x (+)_c y = ((1 + 2c<x,y> + c|y|^2) x + (1 - c|x|^2) y) / (1 + 2c<x,y> + c^2 |x|^2 |y|^2)."""
    x, y = _float(x), _float(y)
    x2 = (x * x).sum(-1, keepdim=True)
    y2 = (y * y).sum(-1, keepdim=True)
    xy = (x * y).sum(-1, keepdim=True)
    num = (1 + 2 * c * xy + c * y2) * x + (1 - c * x2) * y
    den = 1 + 2 * c * xy + c * c * x2 * y2
    return num / den.clamp_min(MIN_NORM)


def poincare_distance(x: torch.Tensor, y: torch.Tensor, c: float = 1.0) -> torch.Tensor:
    """d_c(x, y) = 2 / sqrt(c) artanh(sqrt(c) |(-x) (+)_c y|) per row (geoopt `dist`)."""
    with _NoAutocast(x):
        sc = math.sqrt(c)
        return 2.0 / sc * _artanh(sc * mobius_add(-x, y, c).norm(dim=-1))


def clip_norm(v: torch.Tensor, r: float) -> torch.Tensor:
    """v scaled down to norm r where it is longer (Guo et al. 2022, clipped hyperbolic networks)."""
    return v * (r / _norm(v)).clamp(max=1.0)


def cosine_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """2 - 2 cos(x, y) per row (upstream's cosine_distance: F.normalize, eps 1e-12)."""
    return 2 - 2 * (F.normalize(x, dim=-1) * F.normalize(y, dim=-1)).sum(dim=-1)


def mobius_matvec(weight: torch.Tensor, x: torch.Tensor, c: float = 1.0) -> torch.Tensor:
    """W (x)_c x = tan_c(|Wx| / |x| artan_c(|x|)) Wx / |Wx|, 0 where Wx = 0 (rows of x)."""
    sc = math.sqrt(c)
    xn = _norm(x)
    mx = x @ weight.T
    mxn = _norm(mx)
    out = _tanh(mxn / xn * _artanh(sc * xn)) / sc * (mx / mxn)
    return torch.where((mx == 0).all(dim=-1, keepdim=True), torch.zeros_like(out), out)


class MobiusLinear(nn.Module):
    """Hyperbolic linear layer on points of the ball: project(W (x)_c x (+)_c b), in float64, autocast off.

    `weight` (out, in) is Euclidean, N(0, (2 * out * in)^-1/2 / 100) at init; `bias` (out,) is a point of
    the ball, exp_0(N(0, 1) / 400) at init (upstream's MobiusLinear with hyperbolic_bias=True). Upstream
    makes the bias a geoopt ManifoldParameter, but its evaluation optimiser is torch's SGD, so it moves by
    plain Euclidean steps, as here.
    """

    def __init__(self, in_features: int, out_features: int, c: float = 1.0):
        super().__init__()
        self.in_features, self.out_features, self.c = in_features, out_features, c
        std = 1.0 / math.sqrt(2 * in_features * out_features) / 100
        self.weight = nn.Parameter(torch.randn(out_features, in_features) * std)
        with torch.no_grad():
            bias = expmap0(torch.randn(out_features) / 400, c).float()
        self.bias = nn.Parameter(bias)

    def forward(self, x):
        with _NoAutocast(x):
            x = x.double()
            out = mobius_matvec(self.weight.double(), x, self.c)
            out = mobius_add(out, self.bias.double().expand_as(out), self.c)
            return project(out, self.c)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, c={self.c}"


# --- the model -------------------------------------------------------------------------------------
class _MLP(nn.Module):
    """Upstream's MLP(in, sizes): Linear - BN - ReLU per hidden size, a plain Linear last; layers in `.net`."""

    def __init__(self, in_dim: int, sizes):
        super().__init__()
        layers, sizes = [], list(sizes)
        for i, out in enumerate(sizes):
            layers.append(nn.Linear(in_dim, out))
            if i < len(sizes) - 1:
                layers += [nn.BatchNorm1d(out), nn.ReLU(inplace=True)]
            in_dim = out
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class _Classifier(nn.Module):
    """The evaluation head in upstream's layout (`online_projector.net.0`): Linear or MobiusLinear."""

    def __init__(self, in_dim: int, num_classes: int, hyper: bool, c: float):
        super().__init__()
        self.hyper, self.c = hyper, c
        self.net = nn.Sequential(MobiusLinear(in_dim, num_classes, c) if hyper else nn.Linear(in_dim, num_classes))

    def forward(self, features):
        return self.net(expmap0(features, self.c) if self.hyper else features)


EMA_UPDATES = ("before_backward", "after_step")


def curriculum_weight(epoch: int, initial_hyper_epoch: int, final_hyper_epoch: int) -> float:
    """lam(epoch) of upstream's HyperTrainLearner (0-based epoch), float32-rounded as upstream's clip."""
    span = (final_hyper_epoch - 1) - (initial_hyper_epoch - 1)
    lam = (epoch - (initial_hyper_epoch - 1)) / span
    return float(np.float32(min(max(lam, 0.0), 1.0)))


class HYSP(Method):
    views = ("strong", "weak")
    default_views = {"recipe": "strong_weak", "shear_amplitude": 0.5, "temperal_padding_ratio": 6,
                     "aug_method": "123456"}

    def __init__(self, base_encoder="net.st_gcn.Model", pretrain=True, in_channels=3, hidden_channels=64,
                 out_channels=1024, projection_hidden_size=(1024, 1024), predictor_hidden_size=(1024, 1024),
                 num_classes=60, moving_average_decay=0.999, dropout=0.5, graph_args=None,
                 edge_importance_weighting=True, hyper=True, hyper_c=1.0, curriculum=True, initial_hyper_epoch=50,
                 final_hyper_epoch=100, encoder_lr=None, clip_r=None, ema_update="after_step"):
        super().__init__()
        if ema_update not in EMA_UPDATES:
            raise ValueError(f"ema_update {ema_update!r}: use one of {', '.join(EMA_UPDATES)}")
        self.ema_update = ema_update
        if curriculum and hyper and pretrain and final_hyper_epoch <= initial_hyper_epoch:
            raise ValueError(f"final_hyper_epoch ({final_hyper_epoch}) must be > initial_hyper_epoch "
                             f"({initial_hyper_epoch}); upstream divides by their difference")
        self.pretrain, self.hyper, self.c = pretrain, bool(hyper), float(hyper_c)
        self.decay = moving_average_decay
        self.curriculum, self.initial_hyper_epoch, self.final_hyper_epoch = curriculum, initial_hyper_epoch, \
            final_hyper_epoch
        self.encoder_lr = encoder_lr
        self.clip_r = clip_r
        graph_args = dict(graph_args or {"layout": "ntu-rgb+d", "strategy": "spatial"})
        # Upstream initialises nothing itself (its weights_init calls are commented out): torch's defaults.
        self.online_encoder = import_class(base_encoder)(
            in_channels=in_channels, hidden_channels=hidden_channels, hidden_dim=out_channels, num_class=None,
            dropout=dropout, graph_args=graph_args, edge_importance_weighting=edge_importance_weighting)
        if not pretrain:
            self.online_projector = _Classifier(out_channels, num_classes, self.hyper, self.c)
            return
        self.online_projector = _MLP(out_channels, projection_hidden_size)
        self.online_predictor = _MLP(list(projection_hidden_size)[-1], predictor_hidden_size)
        self.target_encoder = copy.deepcopy(self.online_encoder)
        self.target_projector = copy.deepcopy(self.online_projector)
        copy_params(self.online_encoder, self.target_encoder)  # exact copies, requires_grad False
        copy_params(self.online_projector, self.target_projector)

    # --- schedule and EMA ---------------------------------------------------------------------------
    def hyper_weight(self, epoch: int) -> float:
        """lam of the epoch (0-based): 0 without `hyper`, 1 without `curriculum`, else the ramp."""
        if not self.hyper:
            return 0.0
        if not self.curriculum:
            return 1.0
        return curriculum_weight(epoch, self.initial_hyper_epoch, self.final_hyper_epoch)

    @torch.no_grad()
    def update_targets(self):
        """target <- decay * target + (1 - decay) * online, encoder and projector, parameters only."""
        momentum_update(self.online_encoder, self.target_encoder, self.decay)
        momentum_update(self.online_projector, self.target_projector, self.decay)

    def before_backward(self, epoch: int):
        if self.pretrain and self.ema_update == "before_backward":
            self.update_targets()

    def after_optimizer_step(self, epoch: int):
        if self.pretrain and self.ema_update == "after_step":
            self.update_targets()

    def param_groups(self, cfg: dict) -> list:
        """The trainable encoder at `encoder_lr` (as a scale of base_lr) and the rest at base_lr."""
        trainable = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        if self.pretrain or self.encoder_lr is None:
            return [{"params": [p for _, p in trainable]}]
        enc = [p for n, p in trainable if n.startswith("online_encoder.")]
        rest = [p for n, p in trainable if not n.startswith("online_encoder.")]
        return [{"params": enc, "lr_scale": float(self.encoder_lr) / float(cfg["base_lr"])}, {"params": rest}]

    # --- pieces -------------------------------------------------------------------------------------
    def online(self, x):
        return self.online_predictor(self.online_projector(self.online_encoder(x)))

    @torch.no_grad()
    def target(self, x):
        return self.target_projector(self.target_encoder(x)).detach()

    def pair_losses(self, q, k, lam: float) -> tuple:
        """(loss_euc, loss_hyp, mapped q, mapped k) per sample for one direction; a term of weight 0 is
        computed without gradient (upstream returns zeros there and never differentiates it)."""
        if not self.hyper:
            return cosine_distance(q, k), torch.zeros(q.shape[0], device=q.device), q, k
        if self.clip_r is not None:  # not upstream: clipped-HNN feature clipping (see the module docstring)
            q, k = clip_norm(q, self.clip_r), clip_norm(k, self.clip_r)
        x, y = expmap0(q, self.c), expmap0(k, self.c)
        with torch.set_grad_enabled(torch.is_grad_enabled() and lam < 1 - 1e-7):
            euc = cosine_distance(x, y)
        with torch.set_grad_enabled(torch.is_grad_enabled() and lam > 1e-7):
            hyp = poincare_distance(x, y, self.c)
        return euc, hyp, x, y

    # --- evaluation interface -----------------------------------------------------------------------
    def forward_features(self, x):
        return self.online_encoder(x)

    def forward_head(self, features):
        return self.online_projector(features)

    def head_prefixes(self) -> list:
        return ["online_projector"]

    @torch.no_grad()
    def monitor_features(self, x):
        return self.online_encoder(x)

    # --- training -----------------------------------------------------------------------------------
    def pretrain_step(self, batch):
        x1, x2 = batch["views"]["strong"], batch["views"]["weak"]
        lam = self.hyper_weight(batch["epoch"])
        q1, q2 = self.online(x1), self.online(x2)
        k1, k2 = self.target(x1), self.target(x2)
        euc1, hyp1, p1, t2 = self.pair_losses(q1, k2, lam)
        euc2, hyp2, _, _ = self.pair_losses(q2, k1, lam)
        euc, hyp = (euc1 + euc2) / 2, (hyp1 + hyp2) / 2
        if not self.hyper or lam <= 1e-7:
            loss = euc
        elif lam >= 1 - 1e-7:
            loss = hyp
        else:
            loss = (1 - lam) * euc + lam * hyp
        return {"loss": loss.mean(), "loss_euc": euc.detach().mean(), "loss_hyp": hyp.detach().mean(),
                "lambda_hyper": torch.tensor(lam, dtype=torch.float64), "radius_online": p1.detach().norm(dim=-1).mean(),
                "radius_target": t2.detach().norm(dim=-1).mean()}
