"""The CTR-GCN / MAMP `.npz` preprocessing (tools/raw/ctrgcn.py): golden outputs, each denoising rule, splits.

The synthetic cases build bodies with known joints, compute what upstream's rules should keep in
the test itself (motions in float64, frame bookkeeping by hand) and compare with the module.
"""
import lzma
import os

import numpy as np
import pytest
from conftest import NTU_SIX, REPO_ROOT

from tools.raw import ctrgcn, ntu

A058 = "S001C003P008R002A058"
ID_738, ID_734 = 72057594037944738, 72057594037944734  # A058's bodies, in the order the file lists them


@pytest.fixture(scope="module")
def six_outputs(ntu_six_files):
    """name -> (skeleton, denoised, report, final row), all columns parsed."""
    out = {}
    for name in NTU_SIX:
        skeleton = ntu.read_skeleton(os.path.join(ntu_six_files, name + ".skeleton"))
        denoised, report = ctrgcn.denoise(skeleton, name)
        row, _ = ctrgcn.sample_to_npz_row(skeleton, name, "ntu60")
        out[name] = (skeleton, denoised, report, row)
    return out


def golden(golden_dir, name):
    return np.load(os.path.join(golden_dir, "ntu_pipeline", name))


# ---- golden: the six genuine files ----------------------------------------------------------------

def test_denoised_and_final_arrays_are_bit_identical_to_upstream(golden_dir, six_outputs):
    denoised, final = golden(golden_dir, "ctrgcn_denoised.npz"), golden(golden_dir, "ctrgcn_final.npz")
    assert sorted(denoised.files) == sorted(NTU_SIX) == sorted(final.files)
    for name, (_, seq, report, row) in six_outputs.items():
        assert seq.dtype == row.dtype == np.float32
        assert seq.shape == denoised[name].shape, name
        assert np.array_equal(seq, denoised[name]), name
        assert row.shape == (300, 150) and np.array_equal(row, final[name]), name
        assert report.summary() == [] and report.frames == len(seq)


def test_reading_xyz_only_gives_the_same_rows(ntu_six_files, six_outputs):
    for name in (A058, NTU_SIX[0]):
        skeleton = ntu.read_skeleton(os.path.join(ntu_six_files, name + ".skeleton"), columns=ntu.XYZ)
        row, _ = ctrgcn.sample_to_npz_row(skeleton, name)
        assert np.array_equal(row, six_outputs[name][3])


def test_logs_and_actors_info_are_byte_identical_to_upstream(golden_dir, six_outputs):
    logs = ctrgcn.upstream_logs([six_outputs[n][2] for n in sorted(NTU_SIX)])
    folder = os.path.join(golden_dir, "ntu_pipeline", "ctrgcn_logs")
    assert sorted(logs) == sorted(f for f in os.listdir(folder) if f.endswith(".log"))
    for file, text in logs.items():
        with open(os.path.join(folder, file), newline="") as f:
            assert text == f.read(), file
    with open(os.path.join(folder, f"actors_info_{A058}.txt"), newline="") as f:
        assert six_outputs[A058][2].actors_info() == f.read()
    assert all(six_outputs[n][2].actors_info() is None for n in NTU_SIX if n != A058)


def test_a058_actors_are_ordered_by_motion_not_by_file_order(six_outputs):
    skeleton, seq, report, row = six_outputs[A058]
    assert [b.body_id for b in report.bodies] == [ID_738, ID_734]  # file order
    first_listed = skeleton.body_id[skeleton.slot == 0]
    assert (first_listed == ID_738).all()
    motion = {}
    for body in (ID_738, ID_734):
        xyz = skeleton.joints[skeleton.body_id == body][:, :, :3].astype(np.float32).astype(np.float64)
        motion[body] = xyz.reshape(-1, 3).var(axis=0).sum()
    assert motion[ID_734] == pytest.approx(0.237029, abs=1e-6) and motion[ID_738] == pytest.approx(0.198066, abs=1e-6)
    assert [b.body_id for b in report.actor1] == [ID_734] and [b.body_id for b in report.actor2] == [ID_738]
    for columns, body in ((slice(0, 75), ID_734), (slice(75, 150), ID_738)):
        xyz = skeleton.joints[skeleton.body_id == body][:, :, :3].astype(np.float32).reshape(-1, 75)
        assert np.array_equal(seq[:, columns], xyz)
    # the final row: one origin (actor 1's spine middle in frame 0) for both actors
    origin = seq[0, 3:6]
    assert np.array_equal(row[:70], seq - np.tile(origin, 50)) and not row[70:].any()


# ---- synthetic files ----------------------------------------------------------------------------

def as_printed(x):
    """The values a .skeleton file round-trips to (7 significant digits), as float64."""
    return np.vectorize(lambda v: float(f"{v:.7G}"))(x)


def pose(rng, n, width=0.3, height=1.0, depth=0.3, centre=(0.0, 0.0, 3.0)):
    """(n, 25, 3) joints spread uniformly in a width x height x depth box (upright when width < height)."""
    box = rng.uniform(-0.5, 0.5, (n, 25, 3)) * [width, height, depth]
    return as_printed(box + centre)


def build(num_frames, bodies):
    """A Skeleton from [(body_id, file frames, (L, 25, 3) joints)], bodies listed in the given order per frame."""
    records = sorted(((t, k, i) for k, (_, frames, _) in enumerate(bodies) for i, t in enumerate(frames)))
    frame, slot, body_id, joints = [], [], [], []
    for t, k, i in records:
        slot.append(sum(1 for f in frame if f == t))
        frame.append(t)
        body_id.append(bodies[k][0])
        record = np.zeros((25, 12))
        record[:, :3] = bodies[k][2][i]
        record[:, 11] = 2
        joints.append(record)
    return ntu.Skeleton(num_frames, np.array(frame, np.int64), np.array(slot, np.int64),
                        np.array(body_id, np.int64), np.zeros((len(frame), 9)), np.array(joints).reshape(-1, 25, 12))


def motion64(joints):
    return np.asarray(joints, np.float32).astype(np.float64).reshape(-1, 3).var(axis=0).sum()


def flat(joints):
    return np.asarray(joints, np.float32).reshape(len(joints), 75)


NAME = "S001C001P001R001A050"  # a two-person label: no "denoising failed" entry when 2 actors are kept


def test_body_tracked_in_10_frames_is_dropped_and_a_sample_left_with_one_actor_is_75_wide(tmp_path):
    rng = np.random.default_rng(1)
    a, b = pose(rng, 30, height=1.6), pose(rng, 10)
    path = str(tmp_path / (NAME + ".skeleton"))
    ntu.write_skeleton(path, build(30, [(1, range(30), a), (2, range(5, 15), b)]))
    seq, report = ctrgcn.denoise(ntu.read_skeleton(path), NAME)
    assert seq.shape == (30, 75) and np.array_equal(seq, flat(a))
    assert [(i, n) for i, n, _ in report.too_short] == [(2, 10)] and not report.spread_checked
    assert report.log_messages()["denoised_failed_2.log"] == [NAME]  # a two-person label kept one actor
    assert report.actors_info().endswith("Filter out: 2, 10 (length).\n\nMain actor: 1\n")


@pytest.mark.parametrize("length, kept", [(11, False), (12, True)])
def test_length_threshold_is_inclusive(length, kept):
    rng = np.random.default_rng(length)
    a, b = pose(rng, 30, height=1.6), pose(rng, length)
    seq, _ = ctrgcn.denoise(build(30, [(1, range(30), a), (2, range(length), b)]), NAME)
    assert seq.shape == ((30, 150) if kept else (30, 75))
    if kept:
        assert np.array_equal(seq[:length, 75:], flat(b)) and not seq[length:, 75:].any()


def test_a_single_body_id_skips_every_rule_and_keeps_its_zero_frames():
    rng = np.random.default_rng(2)
    a = pose(rng, 8, width=2.0, height=0.2)  # short and wide: both rules would drop it
    a[3] = 0
    seq, report = ctrgcn.denoise(build(8, [(7, range(8), a)]), NAME)
    assert seq.shape == (8, 75) and np.array_equal(seq, flat(a)) and report.bodies[0].motion is None
    assert report.actors_info() is None and report.removed_frames == 0
    moved = ctrgcn.translate(seq)
    assert np.array_equal(moved[3], -np.tile(seq[0, 3:6], 25))  # no re-zeroing for one actor


@pytest.mark.parametrize("wide, dropped", [(21, True), (20, False)])  # 21/30 = 0.70 >= 0.69754 > 20/30
def test_spread_rule_drops_a_body_mostly_wider_than_tall(wide, dropped):
    rng = np.random.default_rng(3)
    a = pose(rng, 30, height=1.6)
    b = pose(rng, 30)
    b[:wide] = pose(rng, wide, width=1.0, height=0.2)
    seq, report = ctrgcn.denoise(build(30, [(1, range(30), a), (2, range(30), b)]), NAME)
    ((body, ratio, motion, new),) = report.spread
    assert body == 2 and ratio == pytest.approx(wide / 30) and motion == pytest.approx(motion64(b), rel=1e-5)
    if dropped:
        assert new is None and seq.shape == (30, 75) and np.array_equal(seq, flat(a))
        assert report.log_messages()["noise_spread.log"] == [f"{NAME}\t2\t{motion:.6f}\t{wide / 30:.6f}"]
    else:
        expected = min(motion64(b), motion64(b[wide:]))
        assert new == pytest.approx(expected, rel=1e-5) and seq.shape == (30, 150)
        assert np.array_equal(seq[:, 75:], flat(b))  # its wide frames are kept


def test_spread_update_of_the_motion_changes_which_body_is_actor_1():
    rng = np.random.default_rng(4)
    a = pose(rng, 30, height=1.0)
    b = pose(rng, 30, width=0.2, height=0.6)
    b[:20] = pose(rng, 20, width=2.0, height=0.3)
    assert motion64(b) > motion64(a) > motion64(b[20:])  # b leads before the update, a after it
    seq, report = ctrgcn.denoise(build(30, [(1, range(30), a), (2, range(30), b)]), NAME)
    assert [x.body_id for x in report.actor1] == [1] and [x.body_id for x in report.actor2] == [2]
    assert np.array_equal(seq[:, :75], flat(a)) and np.array_equal(seq[:, 75:], flat(b))


def test_spread_rule_stops_checking_once_one_body_is_left():
    rng = np.random.default_rng(5)
    wide = [pose(rng, 30, width=1.0, height=0.2) for _ in range(3)]
    seq, report = ctrgcn.denoise(build(30, [(k, range(30), wide[k]) for k in range(3)]), NAME)
    assert [s[0] for s in report.spread] == [0, 1] and all(s[3] is None for s in report.spread)
    assert seq.shape == (30, 75) and np.array_equal(seq, flat(wide[2]))  # as noisy, but never checked


def test_spread_comparison_uses_numpy_1_float64_arithmetic():
    joints = np.zeros((1, 25, 3), np.float32)
    joints[0, 0, :2] = (-0.4, -0.5)
    joints[0, 1, :2] = (0.4, 0.5)  # x extent float32(0.8) = 0.800000012 > 0.8 * 1.0 in float64
    assert ctrgcn.noisy_spread_frames(joints).tolist() == [True]
    joints[0, 1, 0] = 0.39
    assert ctrgcn.noisy_spread_frames(joints).tolist() == [False]


def test_two_bodies_that_do_not_overlap_each_other_share_actor_2():
    rng = np.random.default_rng(6)
    a, b, c = pose(rng, 40, height=1.8), pose(rng, 20, height=1.2), pose(rng, 20, height=0.8)
    assert motion64(a) > motion64(b) > motion64(c)  # b first: c after it fits actor 2 too
    seq, report = ctrgcn.denoise(build(40, [(1, range(40), a), (2, range(20), b), (3, range(20, 40), c)]), NAME)
    assert [x.body_id for x in report.actor2] == [2, 3] and not report.discarded
    assert np.array_equal(seq[:, :75], flat(a)) and np.array_equal(seq[:, 75:], np.vstack([flat(b), flat(c)]))


def test_a_body_after_actor_1_joins_actor_1_and_may_share_one_frame():
    rng = np.random.default_rng(7)
    a, b = pose(rng, 20, height=1.6), pose(rng, 21)
    assert motion64(a) > motion64(b)
    seq, report = ctrgcn.denoise(build(40, [(1, range(20), a), (2, range(19, 40), b)]), NAME)
    assert [x.body_id for x in report.actor1] == [1, 2] and report.actor2 == [] and report.two_actors
    expected = np.vstack([flat(a)[:19], flat(b)])  # frame 19 overwritten by the later body
    assert seq.shape == (40, 150) and np.array_equal(seq[:, :75], expected) and not seq[:, 75:].any()
    assert report.log_messages()["missing_skes_2.log"] == [f"{NAME}\t{40:^10d}\t{0:^6d}\t{40:^6d}"]


def test_actor_2_interval_starts_at_frame_0_so_an_early_body_is_discarded():
    rng = np.random.default_rng(8)
    a, b, c = pose(rng, 40, height=1.8), pose(rng, 20, height=1.2), pose(rng, 16, height=0.8)
    assert motion64(a) > motion64(b) > motion64(c)
    seq, report = ctrgcn.denoise(build(40, [(1, range(40), a), (2, range(20, 40), b), (3, range(16), c)]), NAME)
    # c ([0, 15]) overlaps a, and actor 2's interval is [0, 39] (virtual start 0), not b's [20, 39]
    assert [x.body_id for x in report.actor2] == [2] and [x.body_id for x in report.discarded] == [3]
    assert not seq[:20, 75:].any() and np.array_equal(seq[20:, 75:], flat(b))
    assert "3 [0, 15] dropped: overlaps both actors" in report.summary()[0]


def test_motion_range_rule_is_disabled():
    rng = np.random.default_rng(9)
    a = pose(rng, 30, height=1.6)
    still = pose(rng, 30, width=0.01, height=0.05, depth=0.01)
    assert motion64(still) < ctrgcn.MOTION_LOW
    seq, report = ctrgcn.denoise(build(30, [(1, range(30), a), (2, range(30), still)]), NAME)
    assert seq.shape == (30, 150) and np.array_equal(seq[:, 75:], flat(still))
    assert report.log_messages()["noise_motion.log"] == []


def test_frames_without_bodies_are_deleted_and_later_frames_move_up(tmp_path):
    rng = np.random.default_rng(10)
    a, b = pose(rng, 28, height=1.6), pose(rng, 20)
    path = str(tmp_path / (NAME + ".skeleton"))
    frames_a = [t for t in range(30) if t not in (3, 4)]
    ntu.write_skeleton(path, build(30, [(1, frames_a, a), (2, range(10, 30), b)]))
    seq, report = ctrgcn.denoise(ntu.read_skeleton(path), NAME)
    assert report.dropped_frames == (3, 4) and seq.shape == (28, 150)
    assert np.array_equal(seq[:, :75], flat(a))
    assert not seq[:8, 75:].any() and np.array_equal(seq[8:, 75:], flat(b))  # file frame 10 is now 8
    assert report.log_messages()["frames_drop.log"] == [f"{NAME}: 2 frames missed: [3, 4]\n"]


def test_a_body_that_comes_back_is_numbered_without_its_gap():
    rng = np.random.default_rng(11)
    a, b = pose(rng, 30, height=1.6), pose(rng, 25)
    frames_b = [*range(15), *range(20, 30)]  # away in frames 15..19
    seq, report = ctrgcn.denoise(build(30, [(1, range(30), a), (2, frames_b, b)]), NAME)
    assert report.bodies[1][1:3] == (0, 24)
    assert np.array_equal(seq[:25, 75:], flat(b)) and not seq[25:, 75:].any()


def test_all_zero_frames_are_removed_from_a_multi_id_sample():
    rng = np.random.default_rng(12)
    a, b = pose(rng, 30, height=1.6), pose(rng, 30, centre=(0.0, 0.0, 0.0))
    a[5] = 0
    b[5] = 0
    b[9] = 0  # actor 2 alone missing: kept, and zero again after the translation
    assert motion64(a) > motion64(b)
    seq, report = ctrgcn.denoise(build(30, [(1, range(30), a), (2, range(30), b)]), NAME)
    keep = [t for t in range(30) if t != 5]
    assert seq.shape == (29, 150) and np.array_equal(seq, np.hstack([flat(a), flat(b)])[keep])
    assert report.removed_frames == 1 and report.missing_actor == (30, 1, 2, 0, 0)
    assert report.log_messages()["missing_skes.log"] == [f"{NAME}\t{30:^10d}\t{1:^11d}"]
    moved = ctrgcn.translate(seq)
    origin = flat(a)[0, 3:6]
    assert not moved[8, 75:].any() and np.array_equal(moved[8, :75], flat(a)[9] - np.tile(origin, 25))


def test_failures_where_upstream_crashes_raise_value_errors():
    rng = np.random.default_rng(13)
    with pytest.raises(ValueError, match="11 frames or fewer"):
        ctrgcn.denoise(build(30, [(1, range(5), pose(rng, 5)), (2, range(9, 20), pose(rng, 11))]))
    with pytest.raises(ValueError, match="none of the 4 frames"):
        ctrgcn.denoise(build(4, []))
    twice = build(3, [(1, [0, 1, 1, 2], pose(rng, 4))])  # one ID listed twice in frame 1
    with pytest.raises(ValueError, match="listed twice"):
        ctrgcn.denoise(twice)


# ---- translate, align, rows ------------------------------------------------------------------------

def test_translate_takes_actor_1_spine_middle_in_its_first_non_zero_frame():
    rng = np.random.default_rng(14)
    seq = rng.normal(size=(6, 150)).astype(np.float32)
    seq[0, :75] = 0  # actor 1 appears in frame 1
    seq[4, 75:] = 0
    expected = seq.copy()
    for t in range(6):
        for actor in (0, 1):
            part = expected[t, 75 * actor:75 * (actor + 1)]
            if part.any():
                part -= np.tile(seq[1, 3:6], 25)
    out = ctrgcn.translate(seq)
    assert out.dtype == np.float32 and np.array_equal(out, expected) and out is not seq
    with pytest.raises(ValueError, match="no origin"):
        ctrgcn.translate(np.zeros((3, 75), np.float32))


def test_align_pads_time_and_the_second_actor_as_each_dataset_does():
    seq = np.arange(4 * 75, dtype=np.float32).reshape(4, 75) + 1
    zeros, copy = ctrgcn.align(seq, 10), ctrgcn.align(seq, 10, fill="copy")
    assert zeros.shape == copy.shape == (10, 150) and zeros.dtype == np.float32
    assert np.array_equal(zeros[:4, :75], seq) and not zeros[:4, 75:].any() and not zeros[4:].any()
    assert np.array_equal(copy[:4, 75:], seq) and not copy[4:].any()
    assert np.array_equal(ctrgcn.align(np.hstack([seq, -seq]), 4), np.hstack([seq, -seq]))
    with pytest.raises(ValueError, match="longer than the 3"):
        ctrgcn.align(seq, 3)
    with pytest.raises(ValueError, match=r"\(T, 75\) or \(T, 150\)"):
        ctrgcn.align(seq[:, :74])


def test_ntu120_rows_repeat_a_single_actor(six_outputs):
    skeleton, _, _, row60 = six_outputs[NTU_SIX[0]]
    row120, _ = ctrgcn.sample_to_npz_row(skeleton, NTU_SIX[0], "ntu120")
    assert np.array_equal(row120[:, :75], row60[:, :75]) and np.array_equal(row120[:, 75:], row60[:, :75])
    assert not row60[:, 75:].any()


# ---- splits and labels ----------------------------------------------------------------------------

def test_split_order_is_id_by_id_in_the_order_of_the_id_lists():
    names = ["S001C001P003R001A001", "S001C002P002R001A001", "S001C003P001R001A001", "S002C001P002R002A005",
             "S002C002P041R001A001", "S003C003P001R002A007", "S004C001P040R001A002", "S005C002P038R001A001"]
    # subjects:  3  2  1  2  41  1  40  38 ; cameras: 1 2 3 1 2 3 1 2 ; setups 1 1 1 2 2 3 4 5
    train, test = ctrgcn.split_indices(names, "xsub")
    assert train.tolist() == [2, 5, 1, 3, 7] and test.tolist() == [0, 6]  # subject 41 is in neither
    assert train.dtype == test.dtype == np.int64
    train, test = ctrgcn.split_indices(names, "xview")
    assert train.tolist() == [1, 4, 7, 2, 5] and test.tolist() == [0, 3, 6]
    train, test = ctrgcn.split_indices(names, "xset")
    assert train.tolist() == [3, 4, 6] and test.tolist() == [0, 1, 2, 5, 7]
    train, test = ctrgcn.split_indices(names, "xsub120")
    assert train.tolist() == [2, 5, 1, 3, 7] and test.tolist() == [0, 6, 4]
    with pytest.raises(ValueError, match="benchmark"):
        ctrgcn.split_indices(names, "cs")


def test_split_sizes_on_the_available_release_names():
    with lzma.open(os.path.join(REPO_ROOT, "tests", "data", "ntu120_release_names.txt.xz"), "rt") as f:
        names = f.read().split()
    for benchmark, dataset in (("xview", "ntu60"), ("xsub120", "ntu120")):
        missing = ntu.read_missing_list(ntu.MISSING_LISTS[dataset])
        available = [n for n in names if n not in missing and (dataset == "ntu120" or n < "S018")]
        train, test = ctrgcn.split_indices(available, benchmark)
        assert {"train": len(train), "val": len(test)} == ntu.OFFICIAL_COUNTS[benchmark]
        assert len(np.union1d(train, test)) == len(available)


def test_one_hot_is_float64_and_round_trips_as_mamp_reads_it():
    labels = np.array([0, 59, 7, 7])
    y = ctrgcn.one_hot(labels, 60)
    assert y.dtype == np.float64 and y.shape == (4, 60) and y.sum() == 4
    assert np.where(y > 0)[1].tolist() == labels.tolist()  # MAMP's feeder
    for bad in ([60], [-1]):
        with pytest.raises(ValueError, match="labels"):
            ctrgcn.one_hot(bad, 60)
