"""MAMP (Mao et al., ICCV 2023): masked motion prediction with the spatio-temporal transformer.

Each person-sequence (N*M of them) is cut into tokens of one joint over `t_patch_size` frames (30 x 25 =
750 for 120 frames); motion-aware masking hides 90 % of them, preferring tokens that move; the encoder
(net/transformer.py `STEncoder`) sees only the visible tokens; a light decoder fills the hidden positions
with a learned mask token and predicts, for every token, the per-token standardised *motion*
(frame-to-frame difference) of its frames. The loss is the MSE on the hidden tokens. The evaluation
model is net/transformer.py `Transformer`, importable from here as `net.mamp.Transformer` (the name the
configs use).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Method
from .transformer import (Attention, Block, DropPath, Mlp, SkeleEmbed, STEncoder, Transformer,  # noqa: F401
                          _init_vit, interpolate_temp_embed, layer_decay_groups, person_sequences, vit_layer_id,
                          weight_decay_groups)

# the names older code imports from here, besides MAMP's own
__all__ = ["MAMP", "Transformer", "STEncoder", "Block", "Attention", "Mlp", "DropPath", "SkeleEmbed", "patchify",
           "extract_motion", "normalize_tokens", "masked_mse", "num_visible", "token_motion", "masking_scores",
           "split_by_score", "interpolate_temp_embed", "layer_decay_groups", "weight_decay_groups", "vit_layer_id",
           "person_sequences"]

# ----------------------------------------------------------------------------- MAMP's token helpers


def patchify(x: torch.Tensor, t_patch_size: int, patch_size: int = 1) -> torch.Tensor:
    """(NM, T, V, C) -> (NM, TP*VP, t_patch_size*patch_size*C); a token's values run frame by frame,
    then joint, then coordinate; tokens are time-major."""
    nm, t, v, c = x.shape
    tp, vp = t // t_patch_size, v // patch_size
    x = x.reshape(nm, tp, t_patch_size, vp, patch_size, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(nm, tp * vp, t_patch_size * patch_size * c)


def extract_motion(x: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """(NM, T, V, C) positions -> motion m[:, t] = x[:, t + stride] - x[:, t]; the last `stride` frames are 0."""
    out = torch.zeros_like(x)
    out[:, :-stride] = x[:, stride:] - x[:, :-stride]
    return out


def normalize_tokens(target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Standardise each token over its values: (t - mean) / sqrt(var + eps), unbiased var as in MAMP."""
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True)
    return (target - mean) / (var + eps) ** 0.5


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token MSE over the last dim, averaged over the tokens where mask == 1 (the hidden ones)."""
    per_token = (pred - target).pow(2).mean(dim=-1)
    return (per_token * mask).sum() / mask.sum()


def num_visible(num_tokens: int, mask_ratio: float) -> int:
    """How many tokens stay visible: int(L * (1 - ratio)) in Python floats, as MAMP computes it.

    1 - 0.9 is 0.09999999999999998 in binary floating point, so 750 * (1 - 0.9) = 74.99999999999999
    and int() truncates to 74, not 75: the published models were trained with 74 visible tokens
    (676 of 750 masked). Kept on purpose for parity with the upstream checkpoints and losses.
    """
    return int(num_tokens * (1 - mask_ratio))


def token_motion(patches: torch.Tensor, t_grid: int, v_grid: int) -> torch.Tensor:
    """Motion score of every token: mean |difference| to the same joint's token one segment earlier
    (the first segment copies the second's). patches (NM, TP*VP, P) -> (NM, TP*VP)."""
    nm = patches.shape[0]
    seg = patches.reshape(nm, t_grid, v_grid, -1)
    diff = torch.zeros_like(seg)
    diff[:, 1:] = (seg[:, 1:] - seg[:, :-1]).abs()
    diff[:, 0] = diff[:, 1]
    return diff.mean(dim=-1).reshape(nm, t_grid * v_grid)


def uniform_noise(shape, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """U[0, 1) noise from `generator` (on its own device) or the global RNG, returned on like's device."""
    if generator is None:
        return torch.rand(shape, device=like.device)
    return torch.rand(shape, generator=generator, device=generator.device).to(like.device)


def masking_scores(motion: torch.Tensor, tau: float, noise: torch.Tensor) -> torch.Tensor:
    """Gumbel-perturbed log-probabilities whose top-k are the masked tokens.

    tau > 0: p = softmax(motion / (max(motion) * tau + 1e-10)) per sequence and the score is
    log p + Gumbel(noise), i.e. sampling tokens to hide without replacement, proportionally to p: a
    smaller tau sharpens p, so moving tokens are hidden more often. tau <= 0: uniform masking
    (MAE), the score is the noise itself. log(softmax) rather than log_softmax: the same rounding as
    upstream, so a recorded noise gives the same mask bit for bit.
    """
    if tau <= 0:
        return noise
    scaled = motion / (motion.max(dim=-1, keepdim=True).values * tau + 1e-10)
    log_p = torch.log(F.softmax(scaled, dim=-1))
    return log_p - torch.log(-torch.log(noise + 1e-10) + 1e-10)


def split_by_score(scores: torch.Tensor, keep: int) -> tuple:
    """The `keep` lowest scores stay visible. Returns ids_keep (NM, keep), in ascending score order,
    and mask (NM, L) with 1 = hidden, 0 = visible (in the scores' dtype)."""
    order = torch.argsort(scores, dim=1)
    ids_keep = order[:, :keep]
    mask = torch.ones_like(scores)
    mask.scatter_(1, ids_keep, 0.0)
    return ids_keep, mask


# ----------------------------------------------------------------------------- pretraining


class MAMP(STEncoder, Method):
    views = ("clip",)

    """MAMP pretraining: motion-aware masking, visible-only encoder, motion-prediction decoder.

    Constructor keys are MAMP's `model_args` plus the forward-time options of upstream
    (`mask_ratio`, `motion_aware_tau`, `motion_stride`; tau <= 0 is the uniform MAE masking).
    `forward(batch)` reads `batch["views"]["clip"]` (N, 3, T, V, M) and, when present,
    `batch["generator"]` for the masking noise; it returns {"loss", "loss_visible"} where
    loss_visible (the same MSE on the visible tokens, not optimised) is logged only.
    """

    def __init__(self, dim_in=3, dim_feat=256, decoder_dim_feat=256, depth=8, decoder_depth=3, num_heads=8,
                 mlp_ratio=4, num_frames=120, num_joints=25, patch_size=1, t_patch_size=4, qkv_bias=True,
                 qk_scale=None, drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0, norm_skes_loss=True,
                 mask_ratio=0.9, motion_aware_tau=0.8, motion_stride=1):
        super().__init__(dim_in, dim_feat, depth, num_heads, mlp_ratio, num_frames, num_joints, patch_size,
                         t_patch_size, qkv_bias, qk_scale, drop_rate, attn_drop_rate, drop_path_rate)
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
        if decoder_depth > depth and drop_path_rate > 0:
            # upstream indexes the encoder's schedule for the decoder and would crash here
            raise ValueError("decoder_depth > depth with drop_path_rate > 0 has no drop-path schedule (as upstream)")
        if not 1 <= motion_stride < num_frames:
            raise ValueError(f"motion_stride must be in [1, num_frames), got {motion_stride}")
        self.norm_skes_loss = norm_skes_loss
        self.mask_ratio, self.motion_aware_tau, self.motion_stride = mask_ratio, motion_aware_tau, motion_stride
        self.num_keep = num_visible(self.num_tokens, mask_ratio)
        # parameters first (state_dict order of MAMP), then the decoder modules
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim_feat))
        self.decoder_temp_embed = nn.Parameter(torch.zeros(1, self.t_grid, 1, decoder_dim_feat))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, 1, self.v_grid, decoder_dim_feat))
        self.decoder_embed = nn.Linear(dim_feat, decoder_dim_feat)
        self.decoder_blocks = nn.ModuleList([Block(decoder_dim_feat, drop_path=self.dpr[i] if i < depth else 0.0,
                                                   **self.block_args) for i in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_dim_feat)
        self.decoder_pred = nn.Linear(decoder_dim_feat, t_patch_size * patch_size * dim_in)
        self._init_encoder_embeddings()
        for p in (self.mask_token, self.decoder_temp_embed, self.decoder_pos_embed):
            nn.init.trunc_normal_(p, std=0.02)
        self.apply(_init_vit)

    # --- pieces -------------------------------------------------------------------------------------
    def patchify(self, xs: torch.Tensor) -> torch.Tensor:
        return patchify(xs, self.t_patch_size, self.patch_size)

    def extract_motion(self, xs: torch.Tensor) -> torch.Tensor:
        return extract_motion(xs, self.motion_stride)

    def target(self, xs: torch.Tensor) -> torch.Tensor:
        """The regression target of every token: patchified motion, standardised per token if norm_skes_loss."""
        t = self.patchify(self.extract_motion(xs))
        return normalize_tokens(t) if self.norm_skes_loss else t

    @torch.no_grad()
    def mask(self, xs: torch.Tensor, noise: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> tuple:
        """Motion-aware masking of (NM, T, V, C) positions -> ids_keep (NM, num_keep), mask (NM, L), 1 = hidden.
        noise: U[0, 1) of shape (NM, L) to inject (tests, replays); otherwise drawn from generator / global RNG."""
        nm = xs.shape[0]
        if noise is None:
            noise = uniform_noise((nm, self.num_tokens), xs, generator)
        motion = token_motion(self.patchify(xs), self.t_grid, self.v_grid)
        scores = masking_scores(motion, self.motion_aware_tau, noise.to(xs.device, xs.dtype))
        return split_by_score(scores, self.num_keep)

    def forward_encoder(self, xs: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """Embed all tokens (positions added), keep the visible ones, run the blocks on those only."""
        tok = self.embed(xs)
        vis = torch.gather(tok, 1, ids_keep.unsqueeze(-1).expand(-1, -1, tok.shape[-1]))
        return self.encode(vis)

    def forward_decoder(self, latent: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """Visible latents back to their places, the mask token elsewhere, decoder positions, blocks,
        norm, per-token prediction (NM, L, t_patch_size * patch_size * dim_in)."""
        vis = self.decoder_embed(latent)
        nm, _, d = vis.shape
        full = self.mask_token.to(vis.dtype).expand(nm, self.num_tokens, d)
        full = full.scatter(1, ids_keep.unsqueeze(-1).expand(-1, -1, d), vis)
        full = full.view(nm, self.t_grid, self.v_grid, d)
        full = full + self.decoder_pos_embed + self.decoder_temp_embed
        x = full.reshape(nm, self.num_tokens, d)
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))

    def forward_pretrain(self, x: torch.Tensor, noise: torch.Tensor | None = None,
                         generator: torch.Generator | None = None) -> dict:
        """Everything of one step: {loss, loss_visible, pred, mask, latent, ids_keep}. x: (N, C, T, V, M)."""
        xs = person_sequences(x)
        ids_keep, mask = self.mask(xs, noise, generator)
        latent = self.forward_encoder(xs, ids_keep)
        pred = self.forward_decoder(latent, ids_keep)
        target = self.target(xs.float())
        pred32 = pred.float()
        loss = masked_mse(pred32, target, mask.float())
        with torch.no_grad():
            loss_visible = masked_mse(pred32, target, 1.0 - mask.float()) if self.num_keep else pred32.new_zeros(())
        return {"loss": loss, "loss_visible": loss_visible, "pred": pred, "mask": mask, "latent": latent,
                "ids_keep": ids_keep}

    def pretrain_step(self, batch):
        out = self.forward_pretrain(batch["views"]["clip"], generator=batch.get("generator"))
        return {"loss": out["loss"], "loss_visible": out["loss_visible"]}

    # --- features of the pretrained encoder (no masking), e.g. for kNN --------------------------------
    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        n, _, _, _, m = x.shape
        return self.encode(self.embed(person_sequences(x))).view(n, m, self.t_grid, self.v_grid, -1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_tokens(x).mean(dim=(1, 2, 3))

    def param_groups(self, cfg: dict) -> list:
        """AdamW weight-decay groups as MAMP pretraining builds them (0 on biases / 1-D tensors)."""
        return weight_decay_groups(self, cfg.get("weight_decay", 0.05))
