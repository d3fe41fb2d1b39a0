"""tools/ensemble.py on the scores real joint / motion / bone evaluations saved."""
import json
import pickle

import numpy as np
import pytest

from processor.evaluation import Evaluation
from test_processors import eval_config
from tools import ensemble


@pytest.fixture(scope="module")
def three_streams(nw_ucla_small, tmp_path_factory):
    root = tmp_path_factory.mktemp("streams")
    for stream in ("joint", "motion", "bone"):
        cfg = eval_config("skeletonclr_linear.yaml", nw_ucla_small, root / stream, None, num_epoch=2,
                          eval_interval=1, stream=stream, seed=1)
        Evaluation(cfg, name="linear_evaluation").run()
    return root


def load(path):
    with open(path, "rb") as f:
        return pickle.load(f)


def test_weighted_sum_matches_numpy_and_stream_default_weights(three_streams, nw_ucla_small, capsys):
    runs = [str(three_streams / s) for s in ("joint", "motion", "bone")]
    assert ensemble.main(runs + ["--out", str(three_streams / "ens"), "--scores", "last"]) == 0
    result = json.loads((three_streams / "ens" / "results.json").read_text())
    assert result["stream_weights"] == [0.6, 0.4, 0.6]  # joint, motion, bone as AimCLR's scripts
    names, labels = load(nw_ucla_small / "val_label.pkl")
    scores = [load(f"{r}/test_result_last.pkl") for r in runs]
    total = sum(w * np.stack([s[n] for n in names]) for w, s in zip([0.6, 0.4, 0.6], scores))
    expected = 100.0 * float((total.argmax(1) == np.asarray(labels)).mean())
    assert abs(result["top1"] - expected) < 1e-3
    for run, alone in zip(runs, result["runs"]):
        assert alone["top1"] == json.loads(open(f"{run}/results.json").read())["top1"]  # the run's own last top1
    assert "ensemble" in capsys.readouterr().out


def test_explicit_weights_labels_file_and_search(three_streams, nw_ucla_small):
    runs = [str(three_streams / s) for s in ("joint", "bone")]
    assert ensemble.main(runs + ["--weights", "1", "0", "--labels", str(nw_ucla_small / "val_label.pkl"),
                                 "--scores", "last", "--out", str(three_streams / "ens2"), "--search"]) == 0
    result = json.loads((three_streams / "ens2" / "results.json").read_text())
    assert result["top1"] == result["runs"][0]["top1"]  # weight 0 on bone: the joint run alone
    assert result["test_tuned"]["top1"] >= max(r["top1"] for r in result["runs"])


def test_mismatched_runs_are_named(three_streams, tmp_path, capsys):
    scores = load(three_streams / "joint" / "test_result_last.pkl")
    del scores[next(iter(scores))]
    short = tmp_path / "short.pkl"
    short.write_bytes(pickle.dumps(scores))
    assert ensemble.main([str(three_streams / "joint"), str(short), "--weights", "1", "1", "--scores",
                          "last", "--out", str(tmp_path)]) == 2
    assert "other samples" in capsys.readouterr().err
    assert ensemble.main([str(three_streams / "joint"), str(tmp_path / "none"), "--weights", "1", "1"]) == 2
    assert "test_result.pkl" in capsys.readouterr().err
