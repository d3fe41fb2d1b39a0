"""STARS stage 2: nearest-neighbour contrastive loss, support queue, what trains, loading stage-1 weights."""
import os

import numpy as np
import pytest
import torch

from net.stars import STARS

TINY = dict(dim_feat=32, depth=4, num_heads=4, num_frames=8, num_joints=25, t_patch_size=4, hidden_dim=64,
            feature_dim=32, queue_size=16)  # feature_dim = dim_feat, as STARS (256 / 256)


def tiny(**kw):
    torch.manual_seed(0)
    return STARS(**{**TINY, **kw})


def ce(logits, labels):
    logits = logits - logits.max(axis=1, keepdims=True)
    return float(np.mean(np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(len(labels)), labels]))


def test_loss_equals_an_independent_computation():
    model = tiny()
    model.train()
    g = torch.Generator().manual_seed(1)
    x0 = x1 = torch.randn(6, 3, 8, 25, 2, generator=g)  # STARS' two views are the same clip
    ids = torch.arange(100, 106)
    model.queue_id[:6] = ids  # the queue holds entries of the batch's own samples: never their positives
    queue, queue_id = model.queue.clone().numpy().astype(np.float64), model.queue_id.clone().numpy()
    with torch.no_grad():
        p0, z0 = model.encode(x0)
        p1, z1 = model.encode(x1)
        loss = model({"views": {"clip": x0}, "index": ids})["loss"].item()
    p0, z0, p1, z1 = (t.numpy().astype(np.float64) for t in (p0, z0, p1, z1))

    def neighbours(z):
        sim = z @ queue
        sim[queue_id[None, :] == ids.numpy()[:, None]] = -1
        return queue[:, sim.argmax(axis=1)].T

    labels = np.arange(6)
    expected = 0.5 * (ce(neighbours(z1) @ p0.T / 0.07, labels) + ce(neighbours(z0) @ p1.T / 0.07, labels))
    assert abs(loss - expected) < 1e-4
    # z of view 0 went into the queue with the ids, at the pointer
    np.testing.assert_allclose(model.queue[:, :6].T.numpy(), z0, atol=1e-6)
    assert model.queue_id[:6].tolist() == ids.tolist() and int(model.queue_ptr) == 6


def test_own_entries_are_never_the_neighbour_and_the_queue_wraps():
    model = tiny()
    z = torch.nn.functional.normalize(torch.randn(3, 32), dim=1)
    ids = torch.tensor([7, 8, 9])
    model.queue[:, :3] = z.T  # the samples' own embeddings: similarity 1
    model.queue_id[:3] = ids
    nn = model.nearest_neighbours(z, ids)
    assert not any(torch.allclose(nn[i], z[i]) for i in range(3))
    model.queue_ptr[0] = 14
    model.enqueue(z, ids)
    assert model.queue_id[[14, 15, 0]].tolist() == [7, 8, 9] and int(model.queue_ptr) == 1


def test_what_trains_in_each_stage():
    third = tiny(third_stage=True, layer_decay=0.5)
    groups = {g["name"]: g["lr_scale"] for g in third.param_groups({"weight_decay": 0.01})}
    assert groups["encoder_student.blocks.3.attn.qkv.weight"] == 0.5
    assert groups["encoder_student.blocks.2.mlp.fc1.bias"] == 0.25
    assert groups["encoder_student.norm.weight"] == 1.0 and groups["encoder_student.head.predictor.0.weight"] == 1.0
    frozen = [n for n, p in third.named_parameters() if not p.requires_grad]
    assert "encoder_student.blocks.1.attn.qkv.weight" in frozen and "encoder_student.temp_embed" in frozen
    assert not any(n in groups for n in frozen)
    second = tiny(third_stage=False)
    assert {n.split(".")[1] for n, p in second.named_parameters() if p.requires_grad} == {"head"}
    everything = tiny(third_stage=True, fully_tune=True, layer_decay=0.5)
    names = {g["name"] for g in everything.param_groups({"weight_decay": 0.0})}
    assert "encoder_student.blocks.0.norm1.weight" in names and "encoder_student.pos_embed" not in names


def test_stage_one_weights_load_with_a_fresh_head(golden_dir):
    from torchlight.io import load_weights

    model = STARS()  # the published size: the MAMP encoder
    report = load_weights(model, os.path.join(golden_dir, "mamp_seed0_state_dict.pt"),
                          ignore=["encoder_student.decoder", "encoder_student.mask_token"],
                          rename={"": "encoder_student."}, allow_missing=model.fresh_prefixes())
    assert len(report.loaded) == 102 and all(k.startswith("encoder_student.head") or k.startswith("queue")
                                             for k in report.missing)
    state = torch.load(os.path.join(golden_dir, "mamp_seed0_state_dict.pt"), map_location="cpu", weights_only=True)
    state = state.get("model", state)
    torch.testing.assert_close(model.encoder_student.blocks[7].mlp.fc2.weight, state["blocks.7.mlp.fc2.weight"])
    assert len(model.state_dict()) == 118  # STARS' stage-2 checkpoint has 118 entries


@pytest.mark.parametrize("third_stage", [True, False])
def test_monitor_features_are_z_or_p(third_stage):
    model = tiny(third_stage=third_stage).eval()
    x = torch.randn(2, 3, 8, 25, 2)
    with torch.no_grad():
        p, z = model.encoder_student(x)
        torch.testing.assert_close(model.monitor_features(x), z if third_stage else p)
        assert model.forward_features(x).shape == (2, 32)


def tiny_stage_configs(data, work, weights=None):
    """Stage 1 and stage 2 configs of a tiny transformer on the small NW-UCLA subset (20 joints)."""
    from conftest import demo_config

    encoder = {"dim_feat": 32, "depth": 2, "num_heads": 4, "num_frames": 16, "num_joints": 20, "t_patch_size": 4}
    common = {"num_epoch": 2, "batch_size": 10, "save_interval": 1, "optimizer": "AdamW", "betas": [0.9, 0.95],
              "train_feeder": "feeder.ntu_feeder.Feeder_single", "knn_interval": 0}
    mamp = demo_config("skeletonclr_pretrain.yaml", data, work / "mamp", model="net.mamp.MAMP", base_lr=1e-3,
                       scheduler="cosine", warm_up_epoch=1, weight_decay=0.05, **common)
    mamp["model_args"] = {**encoder, "decoder_dim_feat": 32, "decoder_depth": 1}
    stars = demo_config("skeletonclr_pretrain.yaml", data, work / "stars", model="net.stars.STARS",
                        weights=weights, rename_weights={"": "encoder_student."},
                        ignore_weights=["encoder_student.decoder", "encoder_student.mask_token"],
                        base_lr=1e-3, scheduler="constant", weight_decay=0.01, clip_grad_per_tensor=3.0, **common)
    stars["model_args"] = {**encoder, "hidden_dim": 64, "feature_dim": 32, "queue_size": 40}
    for cfg in (mamp, stars):
        cfg["train_feeder_args"] = {**{k: cfg["train_feeder_args"][k] for k in ("data_path", "label_path")},
                                    "p_interval": [0.5, 1], "window_size": 16, "min_crop_frames": 8}
    return mamp, stars


def test_stage_one_then_two_train_and_resume_exactly(nw_ucla_small, tmp_path):
    """MAMP (random masks from the run's generator) and STARS (queue and ids in the checkpoint): a run
    stopped after epoch 1 and resumed ends with the weights of the uninterrupted run, bit for bit."""
    from processor.pretrain import Pretrain
    from torchlight.io import load_checkpoint

    mamp, _ = tiny_stage_configs(nw_ucla_small, tmp_path)
    Pretrain(mamp, name="pretrain_mamp").run()
    weights = str(tmp_path / "mamp" / "latest.pt")
    for name, stage in (("pretrain_mamp", 0), ("pretrain_clrtuning", 1)):
        full = tiny_stage_configs(nw_ucla_small, tmp_path / f"full{stage}", weights)[stage]
        Pretrain(full, name=name).run()
        split = tiny_stage_configs(nw_ucla_small, tmp_path / f"split{stage}", weights)[stage]
        Pretrain({**split, "num_epoch": 1}, name=name).run()
        Pretrain(split, name=name).run()  # resumes from latest.pt
        from conftest import same_checkpoints
        sub = "mamp" if stage == 0 else "stars"
        a, _ = same_checkpoints(tmp_path / f"full{stage}" / sub, tmp_path / f"split{stage}" / sub)
        assert a["epoch"] == 2
        if stage == 1:
            assert int(a["model"]["queue_ptr"]) == (2 * (50 // 10) * 10) % 40
            assert (a["model"]["queue_id"] >= 0).all()  # filled with sample ids
            # the first half of the encoder stayed MAMP's (frozen), the top block moved
            mamp_state = load_checkpoint(weights)["model"]
            torch.testing.assert_close(a["model"]["encoder_student.blocks.0.attn.qkv.weight"],
                                       mamp_state["blocks.0.attn.qkv.weight"], rtol=0, atol=0)
            assert not torch.equal(a["model"]["encoder_student.blocks.1.attn.qkv.weight"],
                                   mamp_state["blocks.1.attn.qkv.weight"])
