"""tools/visualize.py on real data: skeleton renders, augmented views, curves of a real run, t-SNE."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from processor.pretrain import Pretrain
from test_processors import eval_config, pretrain_config
from tools import visualize
from torchlight.config import load_yaml


def not_blank(img: np.ndarray) -> bool:
    return img.ndim == 3 and img.shape[2] in (3, 4) and float(img[..., :3].std()) > 5


@pytest.fixture(scope="module")
def sample(nw_ucla_frame50):
    return np.array(np.load(nw_ucla_frame50 / "train_position.npy", mmap_mode="r")[7], dtype=np.float32)


def test_skeleton_gif_and_strip_of_a_real_sample(sample, nw_ucla_frame50, tmp_path):
    gif, png = tmp_path / "s.gif", tmp_path / "s.png"
    visualize.main(["skeleton", "--data", str(nw_ucla_frame50 / "train_position.npy"), "--index", "7",
                    "--out", str(gif), "--strip", str(png)])
    with Image.open(gif) as im:
        assert im.n_frames == visualize._valid_frames(sample) == 50
        im.seek(10)
        assert not_blank(np.asarray(im.convert("RGB")))
    strip = np.asarray(Image.open(png))
    assert strip.shape[0] > 100 and strip.shape[1] > 6 * strip.shape[0] and not_blank(strip)  # 8 frames in a row


def test_frames_move_with_the_body(sample):
    first, later = visualize.render_frames([sample], "nw-ucla", frames=[0, 40])
    assert first.shape == later.shape and not_blank(first)
    assert np.abs(first.astype(int) - later.astype(int)).sum() > 0


def test_augmented_views_come_from_the_configs_feeder(sample, tmp_path, nw_ucla_frame50):
    cfg = load_yaml(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                 "config", "demo", "skeletonclr_pretrain.yaml"))
    cfg["train_feeder_args"].update(data_path=str(nw_ucla_frame50 / "train_position.npy"),
                                    label_path=str(nw_ucla_frame50 / "train_label.pkl"))
    views, titles = visualize.augmented_views(sample, cfg, seed=0)
    assert titles == ["original", "query", "key"] and len(views) == 3
    np.testing.assert_array_equal(views[0], sample)
    assert all(v.shape == sample.shape for v in views)
    assert not np.allclose(views[1], sample) and not np.allclose(views[1], views[2])  # shear + crop differ
    again, _ = visualize.augmented_views(sample, cfg, seed=0)
    np.testing.assert_array_equal(again[1], views[1])  # seeded
    strip = visualize.render_strip(views, "nw-ucla", n_frames=4, titles=titles)
    assert not_blank(strip) and strip.shape[0] > 2.5 * visualize.render_strip(views[:1], "nw-ucla", 4).shape[0]


def test_curves_of_a_real_run_and_tsne(nw_ucla_small, tmp_path):
    Pretrain(pretrain_config(nw_ucla_small, tmp_path / "pre", num_epoch=3), name="pretrain_skeletonclr").run()
    records = [json.loads(line) for line in (tmp_path / "pre" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    visualize.main(["curves", str(tmp_path / "pre"), "--out", str(tmp_path / "curves.png")])
    img = np.asarray(Image.open(tmp_path / "curves.png"))
    assert not_blank(img) and img.shape[1] > 1.5 * img.shape[0]  # loss, lr and accuracy panels side by side

    cfg = eval_config("skeletonclr_linear.yaml", nw_ucla_small, tmp_path / "unused", None)
    feats, labels = visualize.features_of(cfg, str(tmp_path / "pre" / "latest.pt"), "test",
                                                 str(tmp_path / "tsne_run"), max_samples=25, seed=0)
    assert feats.shape == (25, 32)  # TINY_MODEL hidden_dim
    xy = visualize.embed(feats, "tsne")
    assert xy.shape == (25, 2) and np.isfinite(xy).all()
    visualize.plot_embedding(xy, labels, str(tmp_path / "tsne.png"), "test")
    assert not_blank(np.asarray(Image.open(tmp_path / "tsne.png")))
    with pytest.raises(SystemExit, match="metrics.jsonl"):
        visualize.read_metrics(str(tmp_path / "nothing"))


def test_the_curves_draw_the_random_init_level_the_monitor_logged(tmp_path):
    """The kNN monitor logs accuracy and its gap to the random init; the plot recovers the random-init
    level from them (a dashed line), and pos_top1 (a fraction) is drawn as a percentage."""
    from torchlight.plots import plot_curves, random_init_level

    records = [{"epoch": e, "loss": 4.0 - e / 10, "lr": 0.1, "pos_top1": 0.5,
                "knn_top1_k1": 50.0 + e, "knn_gap_k1": -15.0 + e} for e in (5, 10)]
    assert random_init_level(records, "knn_top1_k1") == 65.0
    assert random_init_level(records, "pos_top1") is None and random_init_level([{"epoch": 1}], "knn_top1_k1") is None
    plot_curves([records], str(tmp_path / "c.png"), ["run"])
    img = np.asarray(Image.open(tmp_path / "c.png"))
    assert not_blank(img)
