"""tools/results.py over real work_dirs of a tiny pretraining and its evaluations."""
import csv
import glob
import os

import pytest

from processor.evaluation import Evaluation
from processor.knn import KNN
from processor.pretrain import Pretrain
from test_processors import eval_config, pretrain_config
from tools import results

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def runs(nw_ucla_small, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    Pretrain(pretrain_config(nw_ucla_small, root / "pretext", num_epoch=1), name="pretrain_skeletonclr").run()
    weights = root / "pretext" / "latest.pt"
    lin = "config/demo/skeletonclr_linear.yaml"
    knn = "config/demo/skeletonclr_knn.yaml"
    Evaluation(eval_config("skeletonclr_linear.yaml", nw_ucla_small, root / "linear", weights, num_epoch=1,
                           config=lin), name="linear_evaluation").run()
    Evaluation(eval_config("skeletonclr_linear.yaml", nw_ucla_small, root / "semi", weights, num_epoch=1,
                           label_fraction=0.2, batch_size=5, config=lin), name="linear_evaluation").run()
    KNN(eval_config("skeletonclr_knn.yaml", nw_ucla_small, root / "knn", weights, knn_k=[1, 5], config=knn),
        name="knn").run()
    KNN(eval_config("skeletonclr_knn.yaml", nw_ucla_small, root / "fewshot", None, knn_k=[1], shots_per_class=2,
                    config=knn), name="knn").run()
    return root


def test_table_of_real_runs(runs, tmp_path, capsys):
    results.main([str(runs), "--csv", str(tmp_path / "r.csv"), "--md", str(tmp_path / "r.md")])
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert len(rows) == 4 == len(glob.glob(str(runs / "**" / "results.json"), recursive=True))
    by_dir = {os.path.basename(r["work_dir"]): r for r in rows}
    assert {r["dataset"] for r in rows} == {"nw_ucla"} and {r["benchmark"] for r in rows} == {"xview"}
    assert by_dir["linear"]["method"] == "SkeletonCLR" and by_dir["linear"]["protocol"] == "linear"
    assert by_dir["semi"]["protocol"] == "semi 20% linear"
    assert by_dir["knn"]["protocol"] == "knn k=1" and by_dir["knn"]["epochs"] == ""
    assert by_dir["fewshot"]["method"] == "random init" and by_dir["fewshot"]["protocol"] == "2-shot knn k=1"
    import json
    assert float(by_dir["linear"]["top1_last"]) == json.loads((runs / "linear" / "results.json").read_text())["top1"]
    md = (tmp_path / "r.md").read_text()
    assert md.startswith("| method |") and md.count("\n") == 6
    assert "4 results" in capsys.readouterr().out


def test_paper_numbers_found_from_config_paths():
    paper = results.load_paper()
    assert len(paper) >= 50 and all(isinstance(v[0], float) and v[1] for v in paper.values())
    where = results.from_config_path("config/ntu60/linear_eval/linear_eval_skeletonclr_xview_joint.yaml")
    assert where == {"dataset": "ntu60", "benchmark": "xview", "method": "SkeletonCLR"}
    row = {"method": "SkeletonCLR", "protocol": "linear", "stream": "joint", **where}
    assert results.paper_number(row, paper) == 76.4
    row = {"method": "STARS", "dataset": "ntu120", "benchmark": "xset", "stream": "joint", "protocol": "knn k=1"}
    assert results.paper_number(row, paper) == 67.7
    row = {"method": "AimCLR", "dataset": "ntu60", "benchmark": "xsub", "stream": "bone+joint+motion",
           "protocol": "linear"}  # how results.describe reports an ensemble of three linear evaluations
    assert results.paper_number(row, paper) == 79.18


def test_an_ensemble_row(runs, tmp_path):
    from tools import ensemble
    assert ensemble.main([str(runs / "linear"), str(runs / "semi"), "--weights", "1", "1", "--scores", "last",
                          "--out", str(tmp_path / "ens")]) == 0
    row = results.describe(str(tmp_path / "ens" / "results.json"))
    assert row["protocol"] == "linear" and row["stream"] == "joint+joint" and row["method"] == "SkeletonCLR"
    assert row["dataset"] == "nw_ucla"


def test_no_results_is_an_error(tmp_path):
    with pytest.raises(SystemExit, match="no results.json"):
        results.main([str(tmp_path)])
