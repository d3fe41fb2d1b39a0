"""The spatio-temporal transformer of MAMP and STARS: blocks, the encoder, the evaluation model and its heads.

Input layout everywhere: (N, C=3, T, V, M). Tokens are one joint over `t_patch_size` frames, ordered
person-major within a sample (N*M sequences) and time-major within a sequence (index = t * V + v). Parameter
names are MAMP's, so the upstream checkpoints (`{"model": state_dict}`) load without conversion.

* `STEncoder`: token embedding, learned factorised positions, joint space-time attention blocks, final norm
  (the backbone MAMP pretrains and STARS tunes; net/mamp.py, net/stars.py).
* `Transformer`: the downstream model (`protocol: linprobe | finetune`) with the evaluation interface of
  net/base.py (`forward_features`, `forward_head`, `head_prefixes`, `param_groups`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Method

# ----------------------------------------------------------------------------- building blocks


def _resolve_qk_scale(qk_scale):
    """MAMP's YAMLs write `qk_scale: None`, which YAML reads as the string "None"."""
    if qk_scale is None or (isinstance(qk_scale, str) and qk_scale.strip().lower() in ("none", "null", "")):
        return None
    return float(qk_scale)


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero the residual branch of whole samples with probability p, rescale the rest."""
    if p <= 0.0 or not training:
        return x
    keep = 1.0 - p
    alive = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * alive / keep


class DropPath(nn.Module):
    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x):
        return drop_path(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Mlp(nn.Module):
    """Linear - GELU - dropout - Linear - dropout (keys fc1, fc2)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Attention(nn.Module):
    """Multi-head self-attention with one fused projection: qkv rows are [q; k; v], each split into
    heads of dim // num_heads. Scale head_dim ** -0.5 unless qk_scale is given (upstream MAMP ignores
    qk_scale; every published config leaves it None). `proj` is registered before `qkv` so the
    state_dict lists the keys in MAMP's order."""

    use_sdpa = True  # torch's fused kernel; within 1e-6 of the explicit softmax(q k^T) v on the goldens

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, qk_scale=None, attn_drop: float = 0.0,
                 proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        qk_scale = _resolve_qk_scale(qk_scale)
        self.scale = qk_scale if qk_scale is not None else self.head_dim ** -0.5
        self.attn_drop = float(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        p = self.attn_drop if self.training else 0.0
        if self.use_sdpa:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, scale=self.scale)
        else:
            weights = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
            y = F.dropout(weights, p, training=p > 0) @ v
        return self.proj_drop(self.proj(y.transpose(1, 2).reshape(b, n, d)))


class Block(nn.Module):
    """Pre-norm transformer block: x + DropPath(Attn(LN(x))), then x + DropPath(MLP(LN(x)))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True, qk_scale=None,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SkeleEmbed(nn.Module):
    """Token embedding: a Conv2d whose kernel and stride are (t_patch_size, patch_size) over (T, V),
    so each token is `patch_size` joints over `t_patch_size` frames. (NM, T, V, C) -> (NM, TP, VP, D)."""

    def __init__(self, dim_in=3, dim_feat=256, num_frames=120, num_joints=25, patch_size=1, t_patch_size=4):
        super().__init__()
        if num_frames % t_patch_size or num_joints % patch_size:
            raise ValueError(f"num_frames {num_frames} / num_joints {num_joints} must be multiples of "
                             f"t_patch_size {t_patch_size} / patch_size {patch_size}")
        self.num_frames, self.num_joints = num_frames, num_joints
        self.t_grid_size, self.grid_size = num_frames // t_patch_size, num_joints // patch_size
        self.proj = nn.Conv2d(dim_in, dim_feat, kernel_size=(t_patch_size, patch_size),
                              stride=(t_patch_size, patch_size))

    def forward(self, x):
        _, t, v, _ = x.shape
        if (t, v) != (self.num_frames, self.num_joints):
            raise ValueError(f"input has {t} frames and {v} joints but the model was built for "
                             f"num_frames {self.num_frames}, num_joints {self.num_joints}")
        return self.proj(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


# ----------------------------------------------------------------------------- token helpers


def person_sequences(x: torch.Tensor) -> torch.Tensor:
    """(N, C, T, V, M) -> (N*M, T, V, C), person-major within each sample."""
    n, c, t, v, m = x.shape
    return x.permute(0, 4, 2, 3, 1).reshape(n * m, t, v, c)


def interpolate_temp_embed(state_dict: dict, t_grid_size: int, key: str = "temp_embed") -> dict:
    """Resize a (1, TP, 1, D) temporal embedding to t_grid_size rows (bicubic along time, as MAMP's
    interpolate_temp_embed), so an encoder pretrained on one clip length loads into another.
    Returns a new dict; the input is left as it is."""
    if key not in state_dict or state_dict[key].shape[1] == t_grid_size:
        return state_dict
    emb = state_dict[key]
    grid = F.interpolate(emb.permute(0, 3, 1, 2).float(), size=(t_grid_size, 1), mode="bicubic", align_corners=False)
    out = dict(state_dict)
    out[key] = grid.permute(0, 2, 3, 1).to(emb.dtype)
    return out


def no_decay(name: str, p: torch.Tensor) -> bool:
    """timm's rule used by MAMP: biases and 1-D tensors (norms) get no weight decay."""
    return p.ndim <= 1 or name.endswith(".bias")


def vit_layer_id(name: str, depth: int) -> int:
    """MAMP / BEiT layer index: embeddings 0, blocks.i i+1, everything else depth+1."""
    if name in ("temp_embed", "pos_embed") or name.startswith("joints_embed."):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def layer_decay_groups(model: nn.Module, weight_decay: float, layer_decay: float, depth: int,
                       skip_decay: tuple = ()) -> list:
    """AdamW groups with layer-wise lr decay (MAMP util/lr_decay.py): lr_scale = layer_decay **
    (depth + 1 - layer_id); weight decay 0 for biases, 1-D tensors and the names in skip_decay.
    Only trainable parameters; groups in order of first appearance."""
    groups: dict = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lid = vit_layer_id(name, depth)
        off = no_decay(name, p) or name in skip_decay
        key = (lid, off)
        if key not in groups:
            groups[key] = {"params": [], "lr_scale": layer_decay ** (depth + 1 - lid),
                           "weight_decay": 0.0 if off else weight_decay, "layer_id": lid}
        groups[key]["params"].append(p)
    return list(groups.values())


def weight_decay_groups(model: nn.Module, weight_decay: float, skip_decay: tuple = ()) -> list:
    """Two AdamW groups (timm add_weight_decay, as MAMP pretraining): no decay on biases / 1-D
    tensors, `weight_decay` on everything else. MAMP lists no skip names, so its positional
    embeddings (4-D) and mask token are decayed; pass skip_decay to exempt them."""
    off = {"params": [], "weight_decay": 0.0}
    on = {"params": [], "weight_decay": weight_decay}
    for name, p in model.named_parameters():
        if p.requires_grad:
            (off if no_decay(name, p) or name in skip_decay else on)["params"].append(p)
    return [off, on]


def _init_vit(m: nn.Module):
    """MAMP's init: xavier-uniform Linear weights, zero biases, LayerNorm (1, 0); convs keep torch's."""
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# ----------------------------------------------------------------------------- the encoder


class STEncoder(nn.Module):
    """Token embedding + learned factorised positions (temporal (1, TP, 1, D) + spatial (1, 1, VP, D))
    + `depth` joint space-time attention blocks + final LayerNorm. Parameter names are MAMP's
    (`temp_embed`, `pos_embed`, `joints_embed.proj`, `blocks.i`, `norm`) and live at the top level of
    the subclasses, so the checkpoints load without prefixes."""

    def __init__(self, dim_in=3, dim_feat=256, depth=8, num_heads=8, mlp_ratio=4.0, num_frames=120, num_joints=25,
                 patch_size=1, t_patch_size=4, qkv_bias=True, qk_scale=None, drop_rate=0.0, attn_drop_rate=0.0,
                 drop_path_rate=0.0):
        super().__init__()
        self.dim_in, self.dim_feat, self.depth = dim_in, dim_feat, depth
        self.num_frames, self.num_joints = num_frames, num_joints
        self.patch_size, self.t_patch_size = patch_size, t_patch_size
        self.temp_embed = nn.Parameter(torch.zeros(1, num_frames // t_patch_size, 1, dim_feat))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1, num_joints // patch_size, dim_feat))
        self.joints_embed = SkeleEmbed(dim_in, dim_feat, num_frames, num_joints, patch_size, t_patch_size)
        self.t_grid, self.v_grid = self.joints_embed.t_grid_size, self.joints_embed.grid_size
        self.num_tokens = self.t_grid * self.v_grid
        self.dpr = [float(r) for r in torch.linspace(0, drop_path_rate, depth)] if depth else []
        block_args = dict(num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale,
                          drop=drop_rate, attn_drop=attn_drop_rate)
        self.block_args = block_args
        self.blocks = nn.ModuleList([Block(dim_feat, drop_path=self.dpr[i], **block_args) for i in range(depth)])
        self.norm = nn.LayerNorm(dim_feat)

    def _init_encoder_embeddings(self):
        nn.init.trunc_normal_(self.temp_embed, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def embed(self, xs: torch.Tensor) -> torch.Tensor:
        """(NM, T, V, C) -> (NM, TP*VP, D) tokens with their positions added."""
        tok = self.joints_embed(xs)
        nm, tp, vp, d = tok.shape
        tok = tok + self.pos_embed[:, :, :vp] + self.temp_embed[:, :tp]
        return tok.reshape(nm, tp * vp, d)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            tokens = blk(tokens)
        return self.norm(tokens)


# ----------------------------------------------------------------------------- downstream


class LinprobeHead(nn.Module):
    """`head.fc`: a Linear on the pooled feature (mean over persons, time tokens and joints). The
    MAMP probe puts a parameter-free BatchNorm in front (keys head.fc.0.*, head.fc.1.*): the
    Evaluation processor's `head_norm: true` does exactly that wrap."""

    def __init__(self, dim_feat: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(dim_feat, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (N, M, TP, VP, D)
        return self.fc(tokens.mean(dim=(1, 2, 3)))


class FinetuneHead(nn.Module):
    """MAMP's ActionHeadFinetune: dropout on the tokens, mean over time, the joints' features
    concatenated (VP * D), mean over persons, fc1 -> BatchNorm1d -> ReLU -> fc2."""

    def __init__(self, dim_feat: int, num_joints: int, num_classes: int, hidden_dim: int = 2048, dropout: float = 0.3):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.bn = nn.BatchNorm1d(hidden_dim, momentum=0.1)
        self.relu = nn.ReLU(inplace=True)
        self.fc1 = nn.Linear(dim_feat * num_joints, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (N, M, TP, VP, D)
        n, m = tokens.shape[:2]
        feat = self.dropout(tokens).mean(dim=2).reshape(n, m, -1).mean(dim=1)
        return self.fc2(self.relu(self.bn(self.fc1(feat))))


class Transformer(STEncoder, Method):
    pretrain = False  # an evaluation model only: MAMP (net/mamp.py) and STARS pretrain this encoder

    """The MAMP encoder with a classifier, for linear probing (`protocol: linprobe`) and fine-tuning
    (`protocol: finetune`, where `drop_path_rate` (0.3 published) acts on the encoder and
    `layer_decay` (0.8 published; 0.75 is MAMP's CLI default, 1.0 from scratch) sets the layer-wise
    lr decay of `param_groups`). `num_classes` is MAMP's name; `num_class` (this repo's) is accepted
    too. The pretraining checkpoint's encoder keys load as they are; its decoder keys (`decoder*`,
    `mask_token`) go to `ignore_weights`; a temporal embedding of another length is resized bicubically
    on load (`interpolate_temp_embed`).
    """

    def __init__(self, dim_in=3, num_classes=60, dim_feat=256, depth=8, num_heads=8, mlp_ratio=4, num_frames=120,
                 num_joints=25, patch_size=1, t_patch_size=4, qkv_bias=True, qk_scale=None, drop_rate=0.0,
                 attn_drop_rate=0.0, drop_path_rate=0.0, protocol="linprobe", num_class=None, head_dropout=0.3,
                 head_hidden_dim=2048, layer_decay=0.75):
        super().__init__(dim_in, dim_feat, depth, num_heads, mlp_ratio, num_frames, num_joints, patch_size,
                         t_patch_size, qkv_bias, qk_scale, drop_rate, attn_drop_rate, drop_path_rate)
        if num_class is not None:
            num_classes = num_class
        self.num_classes, self.protocol, self.layer_decay = num_classes, protocol, layer_decay
        if protocol == "linprobe":
            self.head = LinprobeHead(dim_feat, num_classes)
        elif protocol == "finetune":
            self.head = FinetuneHead(dim_feat, self.v_grid, num_classes, head_hidden_dim, head_dropout)
        else:
            raise ValueError(f"model_args.protocol: {protocol!r} is not one of ['linprobe', 'finetune']")
        self._init_encoder_embeddings()
        self.apply(_init_vit)
        if protocol == "linprobe":  # MAMP's main_linprobe (following MoCo v3)
            nn.init.trunc_normal_(self.head.fc.weight, std=0.01)
            nn.init.zeros_(self.head.fc.bias)
        self.register_load_state_dict_pre_hook(self._resize_temp_embed_hook)

    def _resize_temp_embed_hook(self, module, state_dict, prefix, *args):
        key = prefix + "temp_embed"
        if key in state_dict and state_dict[key].dim() == 4 and state_dict[key].shape[1] != self.t_grid:
            state_dict[key] = interpolate_temp_embed({key: state_dict[key]}, self.t_grid, key)[key]

    def adapt_pretrained_state(self, state: dict) -> dict:
        """A pretrained state_dict made to fit this model: `temp_embed` resized to this clip length."""
        return interpolate_temp_embed(state, self.t_grid)

    # --- evaluation interface -------------------------------------------------------------------------
    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, V, M) -> encoder tokens (N, M, TP, VP, D), after the final norm."""
        n, _, _, _, m = x.shape
        return self.encode(self.embed(person_sequences(x))).view(n, m, self.t_grid, self.v_grid, -1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled feature (N, D): mean over persons, time tokens and joints (linear probe / kNN)."""
        return self.forward_tokens(x).mean(dim=(1, 2, 3))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """linprobe: logits of pooled features (N, D). finetune: logits of tokens (N, M, TP, VP, D),
        since that head keeps the joint axis (the pooled feature does not carry enough)."""
        if self.protocol == "linprobe":
            return self.head.fc(features)
        if features.dim() != 5:
            raise ValueError("the finetune head takes the encoder tokens (N, M, TP, VP, D) from forward_tokens, "
                             f"not pooled features {tuple(features.shape)}")
        return self.head(features)

    def head_prefixes(self) -> list:
        return ["head.fc"] if self.protocol == "linprobe" else ["head"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.forward_tokens(x)
        if self.protocol == "linprobe":
            return self.head.fc(tokens.mean(dim=(1, 2, 3)))
        return self.head(tokens)

    def param_groups(self, cfg: dict) -> list:
        """Optimiser groups for processor/base.py: layer-wise lr decay (lr_scale) and weight decay
        groups as MAMP's fine-tuning builds them; the linear probe trains its head alone, one group."""
        wd = cfg.get("weight_decay", 0.0)
        if self.protocol == "linprobe":
            return [{"params": [p for p in self.parameters() if p.requires_grad], "weight_decay": wd}]
        return layer_decay_groups(self, wd, self.layer_decay, self.depth)
