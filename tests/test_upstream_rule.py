"""The rule for paper configs: they compute what the upstream code computed; each correction is an opt-in key.

First, every paper config (config/ntu60, ntu120, pku_part1, pku_part2) resolves to upstream's value of every
key of the README's table "Paper configs and upstream quirks". Then each key that selects an upstream
behaviour is shown to do what the table says, against an independent computation.
"""
import glob
import math
import os

import numpy as np
import pytest
import torch

from torchlight.config import load_yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER = sorted(p for d in ("ntu60", "ntu120", "pku_part1", "pku_part2")
               for p in glob.glob(os.path.join(ROOT, "config", d, "**", "*.yaml"), recursive=True))
LINEAGE_MODELS = ("net.skeletonclr.SkeletonCLR", "net.aimclr.AimCLR", "net.asar.ASAR", "net.crossclr.CrosSCLR3Views",
                  "net.caca.CACA", "net.caca.CACA3Views", "net.skelemixclr.SkeleMixCLR")


def configs(where, model=None, pretrain=None):
    """(path, resolved config) of the paper configs under `where` (a path part), optionally of one model class
    and of pretraining (model_args.pretrain) or evaluation."""
    out = []
    for path in PAPER:
        if where not in path:
            continue
        cfg = load_yaml(path)
        args = cfg.get("model_args", {})
        if model is not None and cfg.get("model") not in ((model,) if isinstance(model, str) else model):
            continue
        if pretrain is not None and bool(args.get("pretrain", False)) != pretrain:
            continue
        out.append((os.path.relpath(path, ROOT), cfg))
    assert out, f"no paper config matches {where} {model} {pretrain}"
    return out


# (which configs, key, upstream's value): one row per line of the README's table
RULE = [
    (("pretext", LINEAGE_MODELS, True), "model_args.target_init", "independent"),
    (("pretext", LINEAGE_MODELS, True), "replay_augmentation", True),
    (("pretext", LINEAGE_MODELS, True), "sync_bn", True),
    (("pretext", "net.crossclr.CrosSCLR3Views", True), "model_args.legacy_crossclr_momentum", True),
    (("pretext", "net.crossclr.CrosSCLR3Views", True), "model_args.legacy_shared_projector", True),
    (("pretext", "net.asar.ASAR", True), "model_args.legacy_queue_candidates", True),
    (("pretext", "net.asar.ASAR", True), "model_args.legacy_enqueue_all_candidates", True),
    (("skelemixclr", None, None), "model_args.graph_args.strategy", "agcn"),
    (("pretext", "net.hysp.HYSP", True), "model_args.ema_update", "before_backward"),
    (("pretext", "net.hysp.HYSP", True), "allow_tf32", True),
    (("pretext", "net.hysp.HYSP", True), "sync_bn", True),
    (("ntu60/pretext", "net.hysp.HYSP", True), "optimizer", "RiemannianSGD"),
    (("pku_part1/pretext", "net.hysp.HYSP", True), "optimizer", "RiemannianSGD"),
    (("ntu120/pretext", "net.hysp.HYSP", True), "optimizer", "SGD"),
    (("linear_eval", "net.hysp.HYSP", False), "frozen_encoder", "train"),
    (("ntu60/linear_eval/linear_eval_hysp_xview", "net.hysp.HYSP", False), "accumulate_grad_batches", 2),
    (("ntu60/finetune_eval/finetune_eval_hysp_xview", "net.hysp.HYSP", False), "accumulate_grad_batches", 2),
    (("ntu60/semi/semi10_hysp_xview", "net.hysp.HYSP", False), "accumulate_grad_batches", 2),
    (("semi10_hysp", "net.hysp.HYSP", False), "subset_rule", "hysp"),
    (("clrtuning", "net.stars.STARS", None), "model_args.legacy_view1_no_grad", True),
    (("clrtuning", "net.stars.STARS", None), "model_args.second_pass", True),
    (("clrtuning", "net.stars.STARS", None), "save_best_by", "knn_top1"),
    (("clrtuning", "net.stars.STARS", None), "knn_recalibrate_bn", False),
    (("semi", "net.transformer.Transformer", None), "subset_rule", "mamp"),
]


def value(cfg, dotted):
    for part in dotted.split("."):
        if not isinstance(cfg, dict) or part not in cfg:
            return None
        cfg = cfg[part]
    return cfg


@pytest.mark.parametrize("which, key, upstream", RULE, ids=[f"{w[0]}:{k}" for w, k, _ in RULE])
def test_paper_configs_take_upstreams_value(which, key, upstream):
    for path, cfg in configs(*which):
        assert value(cfg, key) == upstream, f"{path}: {key} is {value(cfg, key)!r}, upstream computed {upstream!r}"


def test_stars_evaluations_and_third_stages_load_the_kNN_selected_weights():
    for path, cfg in configs("", ("net.stars.STARS", "net.transformer.Transformer"), None):
        if "/stars/" in str(cfg.get("weights")):
            assert cfg["weights"].endswith("/best_epoch.pt"), f"{path} loads {cfg['weights']}"


# --- what the keys do ----------------------------------------------------------------------------
TINY = {"hidden_channels": 4, "hidden_dim": 16, "feature_dim": 8, "queue_size": 16,
        "graph_args": {"layout": "ntu-rgb+d", "strategy": "spatial"}}


@pytest.mark.parametrize("cls, args, pairs", [
    ("net.skeletonclr.SkeletonCLR", TINY, [("encoder_q", "encoder_k")]),
    ("net.aimclr.AimCLR", TINY, [("encoder_q", "encoder_k")]),
    ("net.asar.ASAR", TINY, [("encoder_q", "encoder_k")]),
    ("net.skelemixclr.SkeleMixCLR", TINY, [("encoder_q", "encoder_k")]),
    ("net.crossclr.CrosSCLR3Views", TINY, [("encoder_q", "encoder_k"), ("encoder_q_bone", "encoder_k_bone")]),
    ("net.caca.CACA3Views", {"hidden_channels": 4, "feature_dim": 16, "projection_hidden_size": 32,
                             "projection_size": 8, "prediction_hidden_size": 32},
     [("online_backbone_joint", "target_backbone_joint"), ("online_projector_motion", "target_projector_motion")]),
])
def test_target_init_copy_or_an_independent_lineage_draw(cls, args, pairs):
    from torchlight.util import import_class

    torch.manual_seed(0)
    copied = import_class(cls)(**args, target_init="copy")
    torch.manual_seed(0)
    drawn = import_class(cls)(**args, target_init="independent")
    for online, target in pairs:
        for model in (copied, drawn):
            assert not any(p.requires_grad for p in model.get_submodule(target).parameters())
        a, b = copied.get_submodule(online).state_dict(), copied.get_submodule(target).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
        a, b = drawn.get_submodule(online).state_dict(), drawn.get_submodule(target).state_dict()
        weights = [k for k in a if k.endswith("weight") and a[k].dim() > 1 and "edge_importance" not in k]
        assert weights and all(not torch.equal(a[k], b[k]) for k in weights), "the target is not its own draw"
        drawn_std = torch.cat([b[k].flatten() for k in weights]).std().item()
        assert drawn_std == pytest.approx(0.02, rel=0.1)  # the lineage's N(0, 0.02)
    with pytest.raises(ValueError, match="target_init"):
        import_class(cls)(**args, target_init="copied")


def test_riemannian_sgd_first_step_is_geoopts():
    """geoopt's RiemannianSGD (Euclidean parameters): buffer starts at the raw gradient g, then
    buf <- m buf + (g + wd p); torch's SGD starts buf at g + wd p. Later steps are the same."""
    from processor.base import RiemannianSGD

    lr, m, wd = 0.1, 0.9, 0.01
    p0, g1, g2 = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 0.25]), torch.tensor([-1.0, 2.0])
    p = torch.nn.Parameter(p0.clone())
    opt = RiemannianSGD([p], lr=lr, momentum=m, weight_decay=wd)
    p.grad = g1.clone()
    opt.step()
    buf1 = m * g1 + (g1 + wd * p0)
    p1 = p0 - lr * buf1
    torch.testing.assert_close(p.detach(), p1)
    p.grad = g2.clone()
    opt.step()
    torch.testing.assert_close(p.detach(), p1 - lr * (m * buf1 + g2 + wd * p1))
    q = torch.nn.Parameter(p0.clone())  # torch's SGD differs in the first step only
    torch_sgd = torch.optim.SGD([q], lr=lr, momentum=m, weight_decay=wd)
    q.grad = g1.clone()
    torch_sgd.step()
    torch.testing.assert_close(q.detach(), p0 - lr * (g1 + wd * p0))


def test_subset_rules_hysp_and_mamp():
    from sklearn.utils import resample

    from processor.evaluation import label_subset

    labels = np.repeat(np.arange(5), [40, 30, 20, 6, 4])
    rows = label_subset("hysp", labels, 0.1, 123)
    expected = resample(np.arange(100), replace=False, n_samples=10, stratify=labels,
                        random_state=np.random.RandomState(123))
    assert rows == sorted(expected.tolist()) and len(rows) == 10
    np.random.seed(1)  # MAMP's feeder: np.random.seed(seed + rank), shuffle, the first int(N * fraction)
    order = np.arange(100)
    np.random.shuffle(order)
    assert label_subset("mamp", labels, 0.05, 0, rank=1) == sorted(order[:5].tolist())
    assert label_subset("mamp", labels, 0.05, 0, rank=0) != label_subset("mamp", labels, 0.05, 0, rank=1)


def test_mamp_rule_permutation_equals_numpys_seeded_shuffle():
    """label_subset's `mamp` takes RandomState(seed).permutation, which equals np.random.seed + shuffle."""
    np.random.seed(7)
    a = np.arange(50)
    np.random.shuffle(a)
    assert np.array_equal(a, np.random.RandomState(7).permutation(50))


# --- processor keys through real runs on the bundled data -----------------------------------------
def eval_cfg(nw_ucla_small, work, **overrides):
    from test_processors import eval_config

    return eval_config("skeletonclr_linear.yaml", nw_ucla_small, work, None, num_epoch=1, eval_interval=1,
                       **overrides)


def test_frozen_encoder_train_moves_bn_statistics_and_is_not_cached(nw_ucla_small, tmp_path):
    from processor.evaluation import Evaluation

    runs = {}
    for mode in ("eval", "train"):
        proc = Evaluation(eval_cfg(nw_ucla_small, tmp_path / mode, frozen_encoder=mode, seed=3))
        before = {k: v.clone() for k, v in proc.module.state_dict().items() if "running_mean" in k}
        proc.run()
        after = proc.module.state_dict()
        runs[mode] = (proc.cached, sum(not torch.equal(before[k], after[k]) for k in before))
        encoder = [p for n, p in proc.module.named_parameters() if not n.startswith("encoder_q.fc")]
        assert not any(p.requires_grad for p in encoder)
    assert runs["eval"] == (True, 0)   # lineage protocol: cached features, statistics untouched
    assert runs["train"][0] is False and runs["train"][1] > 10  # HYSP's: BatchNorm statistics drift


def test_accumulated_micro_batches_equal_the_mean_of_their_losses(nw_ucla_small, tmp_path):
    """One step over 2 micro-batches of 8 = the gradient of (loss_a + loss_b) / 2, each micro-batch with its
    own BatchNorm statistics (an encoder in train mode: fine-tuning)."""
    from processor.evaluation import Evaluation

    cfg = eval_cfg(nw_ucla_small, tmp_path, protocol="finetune", accumulate_grad_batches=2, batch_size=16,
                   model_args={"dropout": 0.0})
    proc = Evaluation(cfg)
    x, y, _ = next(iter(proc.train_loader))
    proc.model.train()
    out, loss = proc.micro_batches(x, y)
    grads = {n: p.grad.clone() for n, p in proc.model.named_parameters() if p.grad is not None}
    proc.optimizer.zero_grad()
    ref = sum(torch.nn.functional.cross_entropy(proc.model(xc), yc) for xc, yc in zip(x.chunk(2), y.chunk(2))) / 2
    ref.backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    for n, p in proc.model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(grads[n], p.grad, rtol=1e-4, atol=1e-7)
    with pytest.raises(Exception, match="accumulate_grad_batches"):
        proc.cfg["accumulate_grad_batches"] = 3
        proc.micro_batches(x, y)


def test_replay_augmentation_draws_the_same_views_every_epoch(nw_ucla_small, tmp_path):
    from processor.pretrain import Pretrain
    from test_processors import pretrain_config

    seen = {}
    for replay in (False, True):
        proc = Pretrain(pretrain_config(nw_ucla_small, tmp_path / str(replay), replay_augmentation=replay))
        views = []
        original = proc.views
        proc.views = lambda x, g: views.append(g.get_state().clone()) or original(x, g)
        proc.train_epoch(0)
        proc.train_epoch(1)
        half = len(views) // 2
        seen[replay] = all(torch.equal(a, b) for a, b in zip(views[:half], views[half:]))
        proc.lock.release()
    assert seen == {False: False, True: True}


def test_save_best_by_knn_keeps_the_best_monitor_epoch(nw_ucla_small, tmp_path):
    from processor.pretrain import Pretrain
    from test_processors import pretrain_config
    from torchlight.io import load_checkpoint

    knn = {"knn_interval": 1, "knn_k": [1, 5], "save_best_by": "knn_top1",
           "knn_train_feeder_args": {"data_path": str(nw_ucla_small / "train_position.npy"),
                                     "label_path": str(nw_ucla_small / "train_label.pkl")},
           "knn_test_feeder_args": {"data_path": str(nw_ucla_small / "val_position.npy"),
                                    "label_path": str(nw_ucla_small / "val_label.pkl")}}
    proc = Pretrain(pretrain_config(nw_ucla_small, tmp_path, num_epoch=3, **knn))
    proc.run()
    best_per_epoch = [max(v for k, v in h.items() if k.startswith("knn_top1_k")) for h in proc.history]
    first_best = best_per_epoch.index(max(best_per_epoch)) + 1
    saved = load_checkpoint(str(tmp_path / "best_epoch.pt"))
    assert saved["epoch"] == first_best and saved["knn_top1"] == max(best_per_epoch)
    latest = load_checkpoint(str(tmp_path / f"epoch{first_best}_model.pt"))["model"]
    assert all(torch.equal(saved["model"][k], latest[k]) for k in latest)


def test_stars_second_pass_moves_the_head_statistics_twice_with_the_same_loss():
    from net.stars import STARS

    args = dict(dim_feat=16, depth=2, num_heads=2, num_frames=8, hidden_dim=32, feature_dim=16, queue_size=8)
    x = torch.randn(4, 3, 8, 25, 2)
    outs = {}
    for second in (False, True):
        torch.manual_seed(0)
        model = STARS(**args, second_pass=second).train()
        out = model({"views": {"clip": x}, "index": torch.arange(4), "epoch": 0})
        bn = model.encoder_student.head.projector[0]
        outs[second] = (out["loss"].item(), int(bn.num_batches_tracked), bn.running_mean.clone())
    assert outs[False][0] == pytest.approx(outs[True][0], rel=1e-6)
    assert (outs[False][1], outs[True][1]) == (1, 2)
    assert not torch.allclose(outs[False][2], outs[True][2])
    assert math.isfinite(outs[True][0])
