"""The CTR-GCN / MAMP .npz dataset on real NTU samples (the golden CTR-GCN pipeline output)."""
import os

import numpy as np
import pytest

from feeder.npz_feeder import Feeder
from feeder.ntu_feeder import DataError


@pytest.fixture(scope="module")
def real_npz(golden_dir, tmp_path_factory):
    final = np.load(os.path.join(golden_dir, "ntu_pipeline", "ctrgcn_final.npz"))
    names = sorted(final.files)
    x = np.stack([final[n] for n in names]).astype(np.float32)  # (6, 300, 150)
    labels = [int(n[-3:]) - 1 for n in names]
    onehot = np.eye(60)[labels]
    path = tmp_path_factory.mktemp("npz") / "NTU60_XSub.npz"
    np.savez(path, x_train=x[:4], y_train=onehot[:4], x_test=x[4:], y_test=onehot[4:])
    return path, x, labels


@pytest.mark.parametrize("mmap", [True, False])
def test_samples_in_the_lineage_layout(real_npz, mmap):
    path, x, labels = real_npz
    ds = Feeder(str(path), split="train", mmap=mmap)
    assert len(ds) == 4 and ds.label.tolist() == labels[:4] and ds.sample_name[0] == "train_0"
    sample, label, _ = ds[2]
    assert sample.shape == (3, 300, 25, 2) and label == labels[2]
    # (T, 150) is person-major, then joint, then xyz
    t, v, m = 10, 7, 0
    np.testing.assert_array_equal(sample[:, t, v, m].numpy(), x[2, t, m * 75 + v * 3: m * 75 + v * 3 + 3])
    batch, batch_labels, _ = ds.__getitems__([3, 0])
    np.testing.assert_array_equal(batch[1].numpy(), ds[0][0].numpy())
    assert batch_labels.tolist() == [labels[3], labels[0]]
    test = Feeder(str(path), split="val", mmap=mmap)
    assert len(test) == 2 and test.sample_name == ["test_0", "test_1"]
    if mmap:
        assert os.path.isfile(str(path)[:-4] + ".x_train.npy")


def test_bad_npz_files(tmp_path, real_npz):
    path, x, _ = real_npz
    with pytest.raises(DataError, match="not found"):
        Feeder(str(tmp_path / "nope.npz"))
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=x[:2])
    with pytest.raises(DataError, match="y_train"):
        Feeder(str(bad))
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(DataError, match="junk.npz"):
        Feeder(str(tmp_path / "junk.npz"))
    with pytest.raises(DataError, match="split"):
        Feeder(str(path), split="dev")


@pytest.mark.parametrize("mmap", [True, False])
def test_class_range_keeps_and_relabels_a_class_subset(real_npz, mmap):
    """STARS' few-shot set: only the labels in [lo, hi), relabelled from 0, read from the same file."""
    path, x, labels = real_npz
    lo, hi = 10, 60
    ds = Feeder(str(path), split="train", mmap=mmap, class_range=[lo, hi])
    keep = [i for i, y in enumerate(labels[:4]) if lo <= y < hi]
    assert 0 < len(keep) < 4, "the fixture must hold labels on both sides of the range"
    assert len(ds) == len(keep) and ds.label.tolist() == [labels[i] - lo for i in keep]
    assert ds.sample_name == [f"train_{i}" for i in keep]
    full = Feeder(str(path), split="train", mmap=mmap)
    batch, batch_labels, _ = ds.__getitems__(list(range(len(keep)))[::-1])
    for j, i in enumerate(keep[::-1]):
        np.testing.assert_array_equal(batch[j].numpy(), full[i][0].numpy())
    with pytest.raises(DataError, match="class_range"):
        Feeder(str(path), split="train", class_range=[5])
    with pytest.raises(DataError, match="empty"):
        Feeder(str(path), split="train", class_range=[58, 59])
