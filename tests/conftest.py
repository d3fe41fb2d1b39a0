"""Shared test fixtures. The project is installed (`pip install -r requirements.txt` installs it with `-e .`),
so tests import net/, feeder/, tools/ ... as packages."""
import os

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NW_UCLA_ARCHIVE = os.path.join(REPO_ROOT, "data", "nw_ucla", "nw_ucla_skeletons.npz")


@pytest.fixture(scope="session")
def nw_ucla_frame50(tmp_path_factory):
    """pathlib.Path of a folder holding the NW-UCLA cross-view frame-50 arrays, made once per
    session from the bundled archive: {train,val}_position.npy (N, 3, 50, 20, 1) with
    N = 1,020 / 464, {train,val}_label.pkl = (names, labels), manifest.json."""
    from tools.nw_ucla_gendata import make_frames

    out = tmp_path_factory.mktemp("nw_ucla_frame50")
    make_frames(NW_UCLA_ARCHIVE, str(out), 50, command="tests/conftest.py::nw_ucla_frame50")
    return out


# ../shared beside the repo (as CI has it): the upstream golden outputs and the genuine raw samples
SHARED = os.environ.get("SKELSSL_SHARED", os.path.join(REPO_ROOT, "..", "shared"))
GOLDEN = os.environ.get("SKELSSL_GOLDEN", os.path.join(SHARED, "golden"))


@pytest.fixture(scope="session")
def golden_dir():
    """The upstream golden outputs (shared/golden beside the repo, as CI has it)."""
    if not os.path.isdir(GOLDEN):
        pytest.skip(f"golden outputs not found at {GOLDEN} (set SKELSSL_GOLDEN)")
    return GOLDEN


def nw_ucla_subset(frame50, out, per_class: dict):
    """The first `per_class[part]` sequences of every NW-UCLA class of each part, in the lineage format."""
    import pickle

    import numpy as np

    for part, n in per_class.items():
        x = np.load(frame50 / f"{part}_position.npy", mmap_mode="r")
        with open(frame50 / f"{part}_label.pkl", "rb") as f:
            names, labels = pickle.load(f)
        labels = np.asarray(labels)
        idx = np.sort(np.concatenate([np.flatnonzero(labels == c)[:n] for c in range(10)]))
        np.save(out / f"{part}_position.npy", np.asarray(x[idx]))
        with open(out / f"{part}_label.pkl", "wb") as f:
            pickle.dump(([names[i] for i in idx], [int(labels[i]) for i in idx]), f)
    return out


@pytest.fixture(scope="session")
def nw_ucla_small(nw_ucla_frame50, tmp_path_factory):
    """A small real subset of NW-UCLA (the first 5 / 3 sequences of every class: 50 train / 30 val)
    in the lineage format, so end-to-end tests of the processors run in seconds."""
    return nw_ucla_subset(nw_ucla_frame50, tmp_path_factory.mktemp("nw_ucla_small"), {"train": 5, "val": 3})


NTU_SIX = ("S001C001P001R001A001", "S001C001P001R001A011", "S001C003P008R002A058", "S002C001P003R001A003",
           "S003C001P015R001A034", "S004C002P003R001A017")


@pytest.fixture(scope="session")
def ntu_six_files(golden_dir):
    """The folder of the six genuine NTU RGB+D .skeleton files the golden pipeline outputs were made from."""
    folder = os.path.join(golden_dir, "..", "data", "ntu_rgbd_sample")
    if not all(os.path.isfile(os.path.join(folder, n + ".skeleton")) for n in NTU_SIX):
        pytest.skip(f"the six genuine NTU files are not at {folder}")
    return folder


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="also run the slow fault-injection tests")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long fault-injection tests; run with `pytest --slow`")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow fault-injection test: run with `python -m pytest --slow`")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def assert_data_paths(cfg, folder: str, path: str = "config"):
    """The config's train / test feeders read ./data/<folder>/{train,val}_{position.npy,label.pkl}."""
    for key in ("train_feeder_args", "test_feeder_args"):
        split = "train" if key.startswith("train") else "val"
        if cfg.get(key):
            assert cfg[key]["data_path"] == f"./data/{folder}/{split}_position.npy", f"{path}: {key}.data_path"
            assert cfg[key]["label_path"] == f"./data/{folder}/{split}_label.pkl", f"{path}: {key}.label_path"


def same_checkpoints(a, b) -> tuple:
    """The latest.pt of two run folders, asserted bit-identical tensor by tensor (a run and its resumed twin)."""
    import torch

    from torchlight.io import load_checkpoint

    ca, cb = (load_checkpoint(str(os.path.join(d, "latest.pt"))) for d in (a, b))
    assert ca["epoch"] == cb["epoch"] and ca["model"].keys() == cb["model"].keys()
    for key in ca["model"]:
        torch.testing.assert_close(ca["model"][key], cb["model"][key], rtol=0, atol=0, msg=key)
    return ca, cb


def demo_config(name, data, work_dir, **overrides):
    """config/demo/<name> with its feeders pointed at `data` ({train,val}_position.npy / _label.pkl), the
    run in `work_dir`, no progress bars or tensorboard; overrides of dict keys (model_args, ...) merge."""
    from torchlight.config import load_yaml

    cfg = load_yaml(os.path.join(REPO_ROOT, "config", "demo", name))
    for key in ("train_feeder_args", "test_feeder_args"):
        if key in cfg:
            part = "train" if key.startswith("train") else "val"
            cfg[key] = {**cfg[key], "data_path": str(data / f"{part}_position.npy"),
                        "label_path": str(data / f"{part}_label.pkl")}
    cfg.update(work_dir=str(work_dir), progress=False, tensorboard=False)
    for k, v in overrides.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    return cfg
