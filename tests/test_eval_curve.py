"""tools/eval_curve.py: the rows it keeps and the picture it draws (the evaluations are tested elsewhere)."""
import numpy as np

from tools import eval_curve


def test_rows_round_trip_and_plot_one_protocol(tmp_path):
    rows = [{"epoch": e, "seed": s, "protocol": "lineage", "linear_top1": 40 + e / 10 + s,
             "linear_best_top1": 41 + e / 10, "knn_k1": 45 + e / 20, "knn_k20": 30 + e / 20}
            for e, s in [(0, 0), (0, 1), (0, 2), (20, 0), (40, 0)]]
    csv_path = tmp_path / "curve.csv"
    eval_curve.write_rows(str(csv_path), rows)
    back = eval_curve.read_rows(str(csv_path))
    assert [(int(r["epoch"]), int(r["seed"])) for r in back] == [(0, 0), (0, 1), (0, 2), (20, 0), (40, 0)]
    assert float(back[3]["linear_top1"]) == 42.0
    png = tmp_path / "curve.png"
    eval_curve.plot(back, str(png), "test", method="MAMP", protocols=["lineage"])
    import matplotlib.image as mpimg
    img = mpimg.imread(str(png))
    assert img.shape[1] < 800 and img.shape[0] > 200  # one panel, not two
    assert np.asarray(img[..., :3]).std() > 0.05  # something is drawn


def test_checkpoints_sorted_by_epoch(tmp_path):
    for e in (100, 20, 5):
        (tmp_path / f"epoch{e}_model.pt").write_bytes(b"")
    (tmp_path / "latest.pt").write_bytes(b"")
    assert list(eval_curve.checkpoints(str(tmp_path))) == [5, 20, 100]
