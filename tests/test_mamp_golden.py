"""MAMP transformer: the upstream golden outputs, and masking / target / loss against independent computations."""
import os

import numpy as np
import pytest
import torch

from net.mamp import MAMP, Transformer, masked_mse, num_visible


@pytest.fixture(scope="module")
def golden(golden_dir):
    g = dict(np.load(os.path.join(golden_dir, "mamp_golden.npz")))
    state = torch.load(os.path.join(golden_dir, "mamp_seed0_state_dict.pt"), map_location="cpu", weights_only=True)
    with open(os.path.join(golden_dir, "mamp_keys.txt")) as f:
        keys = [line.split("\t")[0] for line in f if "\t" in line]
    return g, state.get("model", state), keys


def test_seeded_state_dict_loads_strictly_in_upstream_order(golden):
    _, state, keys = golden
    model = MAMP(decoder_depth=3)
    model.load_state_dict(state, strict=True)
    assert list(model.state_dict()) == keys == list(state)


def test_pretraining_forward_reproduces_upstream(golden):
    g, state, _ = golden
    model = MAMP(decoder_depth=3)
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        noise = torch.from_numpy(g["pretrain_mask_uniform_noise"])
        out = model.forward_pretrain(torch.from_numpy(g["input"]), noise=noise)
    np.testing.assert_array_equal(out["mask"].numpy(), g["pretrain_mask"])
    assert int(out["mask"].sum(1)[0]) == 676  # 74 visible tokens of 750, as upstream's int(750 * (1 - 0.9))
    np.testing.assert_allclose(out["latent"].numpy(), g["pretrain_latent"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["pred"].numpy(), g["pretrain_pred"], rtol=1e-5, atol=1e-5)
    assert abs(out["loss"].item() - float(g["pretrain_loss"])) < 1e-5


def test_linear_probe_path_reproduces_upstream(golden):
    g, state, _ = golden
    model = Transformer(protocol="linprobe", num_classes=60)
    missing = model.load_state_dict({k: v for k, v in state.items() if not k.startswith(("decoder", "mask_token"))},
                                    strict=False).missing_keys
    assert missing == ["head.fc.weight", "head.fc.bias"]
    model.head.fc.weight.data = torch.from_numpy(g["linprobe_head_fc_weight"])
    model.head.fc.bias.data = torch.from_numpy(g["linprobe_head_fc_bias"])
    model.eval()
    x = torch.from_numpy(g["input"])
    with torch.no_grad():
        tokens = model.forward_tokens(x)
        pooled = model.forward_features(x)
        bn = torch.nn.BatchNorm1d(256, affine=False, eps=1e-6).eval()  # the probe's BN, default statistics
        logits = model.forward_head(bn(pooled))
    np.testing.assert_allclose(tokens.reshape(4, 750, 256).numpy(), g["linprobe_encoder_tokens"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pooled.numpy(), g["linprobe_pooled_feature"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits.numpy(), g["linprobe_logits"], rtol=1e-5, atol=1e-5)


# ---- independent computations on a small model ----------------------------------------------------

SMALL = dict(dim_feat=32, decoder_dim_feat=32, depth=2, decoder_depth=1, num_heads=4, num_frames=16, num_joints=5,
             t_patch_size=4)  # 4 x 5 = 20 tokens per person


def test_masking_hides_the_highest_gumbel_scores_of_the_motion_softmax():
    torch.manual_seed(0)
    model = MAMP(**SMALL, mask_ratio=0.75, motion_aware_tau=0.5)
    xs = torch.randn(3, 16, 5, 3)
    noise = torch.rand(3, 20)
    ids_keep, mask = model.mask(xs, noise=noise)
    seg = xs.numpy().astype(np.float64).reshape(3, 4, 4, 5, 3).transpose(0, 1, 3, 2, 4).reshape(3, 4, 5, 12)
    motion = np.zeros_like(seg)
    motion[:, 1:] = np.abs(seg[:, 1:] - seg[:, :-1])
    motion[:, 0] = motion[:, 1]
    m = motion.mean(-1).reshape(3, 20)
    scaled = m / (m.max(1, keepdims=True) * 0.5 + 1e-10)
    log_p = scaled - np.log(np.exp(scaled).sum(1, keepdims=True))
    score = log_p - np.log(-np.log(noise.numpy() + 1e-10) + 1e-10)
    keep = int(20 * (1 - 0.75))
    for i in range(3):
        assert set(ids_keep[i].tolist()) == set(np.argsort(score[i])[:keep].tolist())
        assert mask[i].sum() == 20 - keep and (mask[i, ids_keep[i]] == 0).all()


def test_moving_tokens_are_masked_more_often():
    torch.manual_seed(0)
    model = MAMP(**SMALL, mask_ratio=0.5, motion_aware_tau=0.2)
    xs = torch.zeros(400, 16, 5, 3)
    xs[:, :, 2] = torch.arange(16.0).view(1, 16, 1)  # joint 2 moves, the others stand still
    _, mask = model.mask(xs, generator=torch.Generator().manual_seed(1))
    rate = mask.view(400, 4, 5).mean(dim=(0, 1))
    assert rate[2] > 0.95 and rate[[0, 1, 3, 4]].max() < 0.45


def test_target_is_the_normalised_motion_and_constant_for_constant_velocity():
    model = MAMP(**SMALL)
    xs = torch.randn(2, 1, 5, 3) + 0.1 * torch.arange(16.0).view(1, 16, 1, 1)  # linear motion: velocity 0.1
    raw = MAMP(**SMALL, norm_skes_loss=False).target(xs)
    # every token of the first 3 segments holds 0.1 everywhere; the last segment ends in the zero frame
    torch.testing.assert_close(raw.view(2, 4, 5, 12)[:, :3], torch.full((2, 3, 5, 12), 0.1), atol=1e-5, rtol=0)
    tokens = model.target(xs + torch.randn(2, 16, 5, 3))  # var >> the 1e-6 of the normalisation
    torch.testing.assert_close(tokens.mean(-1), torch.zeros(2, 20), atol=1e-5, rtol=0)
    torch.testing.assert_close(tokens.var(-1), torch.ones(2, 20), atol=1e-3, rtol=0)


def test_loss_counts_the_masked_tokens_only():
    pred, target = torch.randn(2, 6, 4), torch.randn(2, 6, 4)
    mask = torch.tensor([[1, 0, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=torch.float32)
    per = ((pred - target) ** 2).mean(-1)
    assert torch.isclose(masked_mse(pred, target, mask), (per[0, 0] + per[0, 2] + per[1, 3:].sum()) / 5)
    assert num_visible(750, 0.9) == 74 and num_visible(20, 0.75) == 5


def test_encoder_sees_only_the_visible_tokens():
    model = MAMP(**SMALL, mask_ratio=0.75)
    seen = []
    model.blocks[0].register_forward_pre_hook(lambda mod, args: seen.append(tuple(args[0].shape)))
    model({"views": {"clip": torch.randn(2, 3, 16, 5, 2)}})["loss"].backward()
    assert seen == [(4, 5, 32)]  # 2 samples x 2 persons, 5 of 20 tokens


def test_temporal_embedding_is_resized_on_load_and_layer_decay_by_hand():
    pre = MAMP(**SMALL)
    encoder = {k: v for k, v in SMALL.items() if not k.startswith("decoder")}
    model = Transformer(**{**encoder, "num_frames": 8}, protocol="finetune", num_classes=3, layer_decay=0.5,
                        head_hidden_dim=8)
    state = {k: v for k, v in pre.state_dict().items() if not k.startswith(("decoder", "mask_token"))}
    model.load_state_dict(state, strict=False)  # 4 time tokens -> 2
    assert model.temp_embed.shape == (1, 2, 1, 32)
    groups = model.param_groups({"weight_decay": 0.05})
    scale = {id(p): (g["lr_scale"], g["weight_decay"]) for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert scale[id(named["pos_embed"])] == (0.5 ** 3, 0.05)  # layer 0 of depth 2: 0.5^(2 + 1 - 0)
    assert scale[id(named["blocks.0.attn.qkv.weight"])] == (0.5 ** 2, 0.05)
    assert scale[id(named["blocks.1.attn.qkv.bias"])] == (0.5, 0.0)
    assert scale[id(named["head.fc2.weight"])] == (1.0, 0.05) and scale[id(named["norm.weight"])] == (1.0, 0.0)
