"""The method contract (net/base.py) held by every method class, and views by name on every reader.

Every class derives from `Method`, declares the views it consumes (which its default recipe makes), has the
hooks with their defaults, and builds its evaluation model with a working feature / head split. Then one
real pretraining step of every method runs on both readers (the lineage arrays and the CTR-GCN / MAMP .npz),
and a feeder that makes other views than the method consumes stops at start-up, naming both sides.
"""
import numpy as np
import pytest
import torch

from feeder.views import make_recipe
from net.base import Method
from torchlight.errors import ConfigError
from torchlight.util import import_class

NTU = {"layout": "ntu-rgb+d", "strategy": "spatial"}
STGCN = {"hidden_channels": 4, "hidden_dim": 16, "dropout": 0.0}
MOCO = {**STGCN, "feature_dim": 8, "queue_size": 16}
CACA = {"hidden_channels": 4, "feature_dim": 16, "projection_hidden_size": 16, "projection_size": 8,
        "prediction_hidden_size": 16, "dropout": 0.0}
TRANSFORMER = {"dim_feat": 16, "depth": 2, "num_heads": 2, "num_frames": 16, "num_joints": 25}
# class -> (pretraining args, evaluation args or None when the class has no evaluation mode)
METHODS = {
    "net.skeletonclr.SkeletonCLR": (MOCO, {**STGCN, "num_class": 5}),
    "net.aimclr.AimCLR": ({**MOCO, "mining_epoch": 0}, {**STGCN, "num_class": 5}),
    "net.asar.ASAR": ({**MOCO, "nn_num": 2, "active_sampling_epoch": 0}, {**STGCN, "num_class": 5}),
    "net.skelemixclr.SkeleMixCLR": ({**MOCO, "swap_cfg": {"swap_params": [[1, 2, 1, 3, 1, 1.0]]}},
                                    {**STGCN, "num_class": 5}),
    "net.skelemixclr.SkeleMixCLRv1": ({**MOCO, "tem_u": 3}, {**STGCN, "num_class": 5}),
    "net.crossclr.CrosSCLR": ({**MOCO, "cross_epoch": 0}, {**STGCN, "num_class": 5}),
    "net.crossclr.CrosSCLR3Views": ({**MOCO, "cross_epoch": 0}, {**STGCN, "num_class": 5}),
    "net.caca.CACA": (CACA, {**CACA, "num_class": 5}),
    "net.caca.CACA3Views": ({**CACA, "cross_epoch": 0, "topk": 1}, {**CACA, "num_class": 5}),
    "net.hysp.HYSP": ({"hidden_channels": 4, "out_channels": 16, "projection_hidden_size": [16, 16],
                       "predictor_hidden_size": [16, 16], "dropout": 0.0, "initial_hyper_epoch": 0,
                       "final_hyper_epoch": 2}, {"hidden_channels": 4, "out_channels": 16, "num_classes": 5}),
    "net.mamp.MAMP": ({**TRANSFORMER, "decoder_dim_feat": 16, "decoder_depth": 1}, None),
    "net.stars.STARS": ({**TRANSFORMER, "hidden_dim": 16, "feature_dim": 16, "queue_size": 16}, None),
    "net.transformer.Transformer": (None, {**TRANSFORMER, "num_classes": 5}),
}


def build(path, args, pretrain=True):
    import inspect

    cls = import_class(path)
    torch.manual_seed(0)
    params = inspect.signature(cls.__init__).parameters.values()
    takes_pretrain = any(p.name == "pretrain" or p.kind == p.VAR_KEYWORD for p in params)
    return cls(**args, **({"pretrain": pretrain} if takes_pretrain else {}))


@pytest.mark.parametrize("path", METHODS)
def test_every_method_keeps_the_contract(path):
    cls = import_class(path)
    assert issubclass(cls, Method), f"{path} does not derive from net.base.Method"
    pretrain_args, eval_args = METHODS[path]
    if pretrain_args is not None:
        model = build(path, pretrain_args)
        assert model.pretrain and model.views, f"{path} declares no views"
        default = getattr(cls, "default_views", None)
        if default is not None:  # the method's default recipe makes what the method consumes
            assert set(model.views) <= set(make_recipe(default).names)
        for hook in ("before_backward", "after_optimizer_step"):
            getattr(model, hook)(0)  # callable, with a default
        assert isinstance(model.fresh_prefixes(), list)
        groups = model.param_groups({"weight_decay": 0.0, "base_lr": 0.1})
        assert groups is None or all("params" in g for g in groups)
    if eval_args is not None:
        model = build(path, eval_args, pretrain=False).eval()
        assert not model.pretrain
        frames = 16
        x = torch.randn(2, 3, frames, 25, 2)
        feats = model.forward_features(x)
        logits = model.forward_head(feats) if feats.dim() == 2 else None
        if logits is not None:
            assert feats.shape[0] == 2 and logits.shape == (2, 5)
            torch.testing.assert_close(model(x), logits)  # forward = head(features) in evaluation
        for prefix in model.head_prefixes():
            assert model.get_submodule(prefix) is not None
        assert torch.isfinite(model.monitor_features(x)).all()


# --- views by name, on every reader ---------------------------------------------------------------
def npz_file(tmp_path, n=8, frames=16):
    """A CTR-GCN / MAMP .npz (x_train (N, T, 150), one-hot y_train) of smooth random motion."""
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(scale=0.05, size=(n, frames, 150)), axis=1).astype(np.float32)
    y = np.eye(4)[np.arange(n) % 4]
    path = tmp_path / "data.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y)
    return path


def lineage_files(tmp_path, n=8, frames=16):
    import pickle

    rng = np.random.default_rng(1)
    x = np.cumsum(rng.normal(scale=0.05, size=(n, 3, frames, 25, 2)), axis=2).astype(np.float32)
    np.save(tmp_path / "train_position.npy", x)
    with open(tmp_path / "train_label.pkl", "wb") as f:
        pickle.dump(([f"s{i}" for i in range(n)], [i % 4 for i in range(n)]), f)
    return tmp_path / "train_position.npy", tmp_path / "train_label.pkl"


READERS = {
    "lineage": lambda tmp: ("feeder.ntu_feeder.LineageReader",
                            dict(zip(("data_path", "label_path"), map(str, lineage_files(tmp))), layout="ntu-rgb+d")),
    "npz": lambda tmp: ("feeder.npz_feeder.NpzReader", {"data_path": str(npz_file(tmp)), "split": "train"}),
}


def pretrain_cfg(path, reader, tmp_path, **extra):
    feeder, args = READERS[reader](tmp_path)
    model_args = dict(METHODS[path][0])
    if "mamp" not in path and "stars" not in path:
        model_args["graph_args"] = NTU
    cfg = {"model": path, "model_args": model_args, "train_feeder": feeder, "train_feeder_args": args,
           "batch_size": 4, "num_worker": 0, "work_dir": str(tmp_path / "work"), "progress": False,
           "tensorboard": False, "use_gpu": False, "base_lr": 0.01, "num_epoch": 1, "save_interval": 0,
           "stream": "all" if import_class(path).derives_streams else "joint", **extra}
    if "SkeleMixCLR" in path:
        cfg["views"] = {"recipe": "multi_resolution", "frames": [16], "shear_amplitude": 0.5,
                        "temperal_padding_ratio": 6}
    return cfg


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("path", [p for p, (pre, _) in METHODS.items() if pre is not None])
def test_every_method_trains_a_step_on_every_reader(path, reader, tmp_path):
    from processor.pretrain import Pretrain

    proc = Pretrain(pretrain_cfg(path, reader, tmp_path))
    try:
        x, label, index = next(iter(proc.train_loader))
        before = {n: p.detach().clone() for n, p in proc.module.named_parameters() if p.requires_grad}
        out = proc.train_step(x, label, index, 0, 0)
        assert torch.isfinite(out["loss"])
        assert any(not torch.equal(before[n], p) for n, p in proc.module.named_parameters() if n in before)
    finally:
        proc.lock.release()


def test_a_feeder_that_makes_other_views_stops_at_start_naming_both(tmp_path):
    from processor.pretrain import Pretrain

    cfg = pretrain_cfg("net.aimclr.AimCLR", "lineage", tmp_path, train_feeder="feeder.ntu_feeder.Feeder_dual")
    with pytest.raises(ConfigError, match=r"consumes the views \['extreme', 'query', 'key'\].*NormalPair.*"
                                          r"missing \['extreme'\]"):
        Pretrain(cfg)
    # a recipe making more views than the method consumes runs, and says which are made for nothing
    (tmp_path / "b").mkdir()
    cfg = pretrain_cfg("net.skeletonclr.SkeletonCLR", "lineage", tmp_path / "b",
                       views={"recipe": "extreme_normal_pair"})
    proc = Pretrain(cfg)
    log = (tmp_path / "b" / "work" / "log.txt").read_text()
    assert "warning: the views ['extreme'] are made for every batch" in log
    proc.lock.release()


def test_views_set_twice_are_refused(tmp_path):
    from processor.pretrain import Pretrain

    cfg = pretrain_cfg("net.skeletonclr.SkeletonCLR", "lineage", tmp_path, train_feeder="feeder.ntu_feeder.Feeder_dual",
                       views={"recipe": "normal_pair"})
    cfg["train_feeder_args"]["shear_amplitude"] = 0.5
    with pytest.raises(ConfigError, match="augmentation is set twice"):
        Pretrain(cfg)


def test_legacy_feeder_classes_are_the_reader_plus_their_recipe(tmp_path):
    from feeder.multi_feeder import Feeder_multi
    from feeder.ntu_feeder import Feeder_double, Feeder_dual, Feeder_single, Feeder_triple

    data, labels = map(str, lineage_files(tmp_path))
    expected = {Feeder_single: ("clip",), Feeder_dual: ("query", "key"), Feeder_triple: ("extreme", "query", "key"),
                Feeder_double: ("strong", "weak"), Feeder_multi: ("query", "key")}
    for cls, names in expected.items():
        ds = cls(data, labels, layout="ntu-rgb+d", **({"frames": [16]} if cls is Feeder_multi else {}))
        assert ds.view_recipe.names == names, cls.__name__
        views = ds.view_recipe(ds.__getitems__([0, 1])[0], torch.Generator().manual_seed(0))
        assert tuple(views) == names and all(v.shape == (2, 3, 16, 25, 2) for v in views.values())
    with pytest.raises(ConfigError, match="views.recipe"):
        make_recipe({"recipe": "normal_pairs"})
    with pytest.raises(ConfigError, match="shear_amplitud"):
        make_recipe({"recipe": "normal_pair", "shear_amplitud": 0.5})
