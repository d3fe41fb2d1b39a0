"""Files from strangers run no code, and one run at a time writes a work_dir.

Every reader of an external pickle gets a crafted file whose unpickling would create a marker file (os.system
would run `touch`): it is refused, naming the file and the global it asked for, and the marker never appears.
"""
import argparse
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml

from test_processors import eval_config, pretrain_config
from torchlight.io import CheckpointError, WorkDirBusy, WorkDirLock, load_checkpoint, load_pickle, load_weights

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Payload:
    """Unpickling this runs `touch <marker>` (what an attacker's checkpoint or label file would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def evil_checkpoint(path, marker, **extra):
    torch.save({"model": {"w": torch.ones(2)}, "note": Payload(marker), **extra}, str(path))


def test_a_checkpoint_that_runs_code_is_refused_naming_file_and_global(tmp_path):
    marker = tmp_path / "pwned"
    evil_checkpoint(tmp_path / "evil.pt", marker)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(str(tmp_path / "evil.pt"))
    message = str(err.value)
    assert str(tmp_path / "evil.pt") in message and "system" in message  # os.system pickles as posix.system
    assert "tools/convert_checkpoint.py" in message and "trust_checkpoint" in message
    with pytest.raises(CheckpointError):
        load_weights(torch.nn.Linear(2, 2), str(tmp_path / "evil.pt"))
    assert not marker.exists()


def test_trust_checkpoint_loads_with_a_full_pickle_and_warns(tmp_path):
    marker = tmp_path / "ran"
    evil_checkpoint(tmp_path / "trusted.pt", marker)
    with pytest.warns(UserWarning, match="full pickle"):
        obj = load_checkpoint(str(tmp_path / "trusted.pt"), trust=True)
    assert torch.equal(obj["model"]["w"], torch.ones(2))
    assert marker.exists()  # the opt-in really is a full pickle: only for files one trusts


def test_upstream_layouts_load_without_a_full_pickle(tmp_path):
    """MAE / MAMP release files keep an argparse Namespace; Lightning (HYSP) an AttributeDict of Namespaces.
    Both load with the weights-only unpickler plus exactly those types."""
    import types

    sd = {"encoder.weight": torch.randn(3, 2)}
    torch.save({"model": sd, "optimizer": {}, "epoch": 399, "args": argparse.Namespace(blr=1e-3, batch_size=32)},
               str(tmp_path / "mamp.pth"))
    assert load_checkpoint(str(tmp_path / "mamp.pth"))["args"].blr == 1e-3
    # a Lightning AttributeDict, pickled under its real module name, loaded where Lightning is not installed
    names = ("pytorch_lightning", "pytorch_lightning.utilities", "pytorch_lightning.utilities.parsing")
    fake = {n: types.ModuleType(n) for n in names}
    attribute_dict = type("AttributeDict", (dict,), {"__module__": names[-1]})
    fake[names[-1]].AttributeDict = attribute_dict
    sys.modules.update(fake)
    try:
        hp = attribute_dict(cfg=argparse.Namespace(stream="joint", model_args=argparse.Namespace(hyper=True)))
        torch.save({"state_dict": {f"model.{k}": v for k, v in sd.items()}, "hyper_parameters": hp,
                    "pytorch-lightning_version": "1.9.0", "global_step": 10}, str(tmp_path / "hysp.ckpt"))
    finally:
        for n in names:
            del sys.modules[n]
    obj = load_checkpoint(str(tmp_path / "hysp.ckpt"))
    assert obj["hyper_parameters"]["cfg"].model_args.hyper is True
    assert torch.equal(obj["state_dict"]["model.encoder.weight"], sd["encoder.weight"])


def test_our_own_full_checkpoint_never_needs_trust(pretrained_run):
    state = load_checkpoint(str(pretrained_run / "latest.pt"))  # optimizer, RNG states, history, config
    assert {"model", "optimizer", "rng", "history", "config"} <= set(state)


@pytest.fixture(scope="module")
def pretrained_run(nw_ucla_small, tmp_path_factory):
    from processor.pretrain import Pretrain

    work = tmp_path_factory.mktemp("secure_pretext")
    Pretrain(pretrain_config(nw_ucla_small, work, num_epoch=1), name="pretrain_skeletonclr").run()
    return work


def test_weights_and_resume_files_that_run_code_stop_the_run(nw_ucla_small, pretrained_run, tmp_path):
    """Through the CLI: `weights:` pointing at a crafted file, and a crafted latest.pt to resume from."""
    import main

    marker = tmp_path / "pwned"
    evil_checkpoint(tmp_path / "shared_encoder.pt", marker)
    cfg = eval_config("skeletonclr_linear.yaml", nw_ucla_small, tmp_path / "linear", tmp_path / "shared_encoder.pt",
                      num_epoch=1)
    (tmp_path / "linear.yaml").write_text(yaml.safe_dump(cfg))
    assert main.main(["linear_evaluation", "--config", str(tmp_path / "linear.yaml")]) == 2
    work = tmp_path / "resume"
    work.mkdir()
    state = load_checkpoint(str(pretrained_run / "latest.pt"))
    state["extra"] = {"x": Payload(marker)}
    torch.save(state, str(work / "latest.pt"))
    cfg = pretrain_config(nw_ucla_small, work, num_epoch=2)
    (tmp_path / "pretrain.yaml").write_text(yaml.safe_dump(cfg))
    assert main.main(["pretrain_skeletonclr", "--config", str(tmp_path / "pretrain.yaml")]) == 2
    assert not marker.exists()


def test_convert_checkpoint_copies_the_tensors_out_inertly(tmp_path, capsys):
    """A file naming objects of packages one lacks, and a payload: the tensors come out, nothing runs."""
    from tools import convert_checkpoint

    marker = tmp_path / "pwned"
    weights = {"encoder_q.w": torch.randn(4, 3), "encoder_q.b": torch.zeros(4)}
    evil_checkpoint(tmp_path / "shared.pt", marker, model=weights)
    assert convert_checkpoint.main([str(tmp_path / "shared.pt"), str(tmp_path / "safe.pt")]) == 0
    out = torch.load(str(tmp_path / "safe.pt"), weights_only=True)
    assert out["model"].keys() == weights.keys() and all(torch.equal(out["model"][k], weights[k]) for k in weights)
    assert any("system" in name for name in out["converted_from"]["inert_objects"])
    assert "read inertly" in capsys.readouterr().out
    assert not marker.exists()


def lineage_labels(path, names, labels, protocol=4):
    with open(path, "wb") as f:
        pickle.dump((names, labels), f, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_label_files_with_numpy_labels_load(tmp_path, protocol):
    from feeder.ntu_feeder import read_labels

    lineage_labels(tmp_path / "labels.pkl", ["a.skeleton", "b.skeleton"], np.array([3, 1]), protocol)
    names, labels = read_labels(str(tmp_path / "labels.pkl"))
    assert names == ["a.skeleton", "b.skeleton"] and labels.tolist() == [3, 1]
    lineage_labels(tmp_path / "labels.pkl", ["a"], [np.int64(2)], protocol)
    assert read_labels(str(tmp_path / "labels.pkl"))[1].tolist() == [2]


def test_a_label_file_that_runs_code_is_refused(tmp_path):
    from feeder.ntu_feeder import DataError, read_labels

    marker = tmp_path / "pwned"
    lineage_labels(tmp_path / "labels.pkl", ["a"], [Payload(marker)])
    with pytest.raises(DataError, match="system") as err:
        read_labels(str(tmp_path / "labels.pkl"))
    assert str(tmp_path / "labels.pkl") in str(err.value)
    assert not marker.exists()


def test_a_score_file_that_runs_code_is_refused(tmp_path):
    from tools.ensemble import EnsembleError, read_scores

    marker = tmp_path / "pwned"
    with open(tmp_path / "test_result.pkl", "wb") as f:
        pickle.dump({"a": np.zeros(3), "b": Payload(marker)}, f)
    with pytest.raises(EnsembleError, match="system"):
        read_scores(str(tmp_path / "test_result.pkl"))
    with open(tmp_path / "ok.pkl", "wb") as f:
        pickle.dump({"a": np.arange(3.0)}, f)
    assert read_scores(str(tmp_path / "ok.pkl"))["a"].tolist() == [0.0, 1.0, 2.0]
    assert not marker.exists()


def test_an_annotation_pickle_that_runs_code_is_refused(tmp_path):
    from tools.raw.common import InputError
    from tools.pyskl_import import load_annotations

    marker = tmp_path / "pwned"
    anno = {"split": {"xsub_train": ["s1"], "xsub_val": []},
            "annotations": [{"frame_dir": "s1", "label": 0, "keypoint": np.zeros((1, 2, 25, 3), np.float32),
                             "total_frames": 2, "extra": Payload(marker)}]}
    with open(tmp_path / "anno.pkl", "wb") as f:
        pickle.dump(anno, f)
    with pytest.raises(InputError, match="system"):
        load_annotations(str(tmp_path / "anno.pkl"))
    del anno["annotations"][0]["extra"]
    with open(tmp_path / "anno.pkl", "wb") as f:
        pickle.dump(anno, f)
    split, by_name = load_annotations(str(tmp_path / "anno.pkl"))
    assert by_name["s1"]["keypoint"].shape == (1, 2, 25, 3)
    assert not marker.exists()


@pytest.mark.parametrize("global_name", ["builtins.eval", "subprocess.Popen", "numpy.load", "torch.load",
                                         "copyreg._reconstructor"])
def test_data_pickles_admit_no_callable_beyond_plain_data(tmp_path, global_name):
    module, name = global_name.rsplit(".", 1)
    payload = b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n)R."  # GLOBAL, EMPTY_TUPLE, REDUCE
    (tmp_path / "x.pkl").write_bytes(payload)
    with pytest.raises(pickle.UnpicklingError, match=name):
        load_pickle(str(tmp_path / "x.pkl"))


# --- one writer per work_dir --------------------------------------------------------------------
def test_the_lock_names_its_holder_and_is_free_again_after_release(tmp_path):
    first = WorkDirLock(str(tmp_path), "python main.py pretrain --config a.yaml")
    with pytest.raises(WorkDirBusy, match=f"process {os.getpid()}.*a.yaml"):
        WorkDirLock(str(tmp_path), "python main.py pretrain --config b.yaml")
    first.release()
    WorkDirLock(str(tmp_path)).release()


def test_a_second_run_on_a_busy_work_dir_stops_and_runs_after_the_first_is_killed(nw_ucla_small, tmp_path):
    """Two real processes: the second is refused while the first trains, and succeeds once the first is
    SIGKILLed (the kernel drops its lock), resuming from the first one's last checkpoint."""
    work = tmp_path / "run"
    cfg = pretrain_config(nw_ucla_small, work, num_epoch=200, num_worker=0, save_interval=0)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    command = [sys.executable, os.path.join(REPO_ROOT, "main.py"), "pretrain_skeletonclr", "--config",
               str(tmp_path / "run.yaml")]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not (work / "latest.pt").exists():  # the first run holds the lock and has written an epoch
            assert first.poll() is None and time.time() < deadline, "the first run ended or took too long"
            time.sleep(0.5)
        second = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert second.returncode == 2
        assert f"in use by process {first.pid}" in second.stderr and "run.yaml" in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    cfg["num_epoch"] = 1  # the killed run finished at least one epoch: the third run resumes and stops
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    third = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr
    assert "in use" not in third.stderr
