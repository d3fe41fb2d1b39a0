"""2-D skeletons from pose estimators: tools/pose_import.py, its readers (tools/pose_formats/) and the
2-D preprocessing of feeder/preprocess.py, on the real files of ../shared/data/pose_formats and
../shared/data/penn_action (skipped when absent). Bad inputs are edited copies of real files."""
import glob
import json
import os
import pickle
import shutil

import numpy as np
import pytest
from conftest import SHARED

from feeder.layouts import JOINT_NAMES
from feeder.preprocess import (clean_2d, normalize_2d, person_gaps_2d, resize_time, resize_time_2d,
                               select_persons_2d)
from tools.raw.common import InputError
from tools.pose_import import import_poses, main

POSE = os.path.join(SHARED, "data", "pose_formats")
OPENPOSE = os.path.join(POSE, "openpose_json")
SITTING = os.path.join(OPENPOSE, "keypoints_sitting_0.json")
STANDING = os.path.join(OPENPOSE, "keypoints_standing_0.json")
KINETICS = os.path.join(POSE, "kinetics_skeleton")
POSE_FILES = os.path.join(POSE, "pose_format")
COCO = os.path.join(POSE, "coco_keypoints", "test_coco.json")
PENN = os.path.join(SHARED, "data", "penn_action", "labels")

pytestmark = pytest.mark.skipif(not os.path.isdir(POSE), reason=f"real pose files not found at {POSE}")


# --------------------------------------------------------------------------- helpers

def openpose_people(folder):
    """Independent reading of an OpenPose folder: per frame (file order) a (P, 25, 3) array."""
    frames = []
    for path in sorted(glob.glob(os.path.join(folder, "*_keypoints.json"))):
        with open(path) as f:
            people = json.load(f)["people"]
        frames.append(np.array([p["pose_keypoints_2d"] for p in people], np.float64).reshape(-1, 25, 3))
    return frames


def openpose_raw(folder):
    """(3, T, 25, P) raw array of a folder, from openpose_people."""
    frames = openpose_people(folder)
    out = np.zeros((3, len(frames), 25, max(len(f) for f in frames)))
    for t, people in enumerate(frames):
        for m, p in enumerate(people):
            out[:, t, :, m] = p.T
    return out


def write_csv(path, rows):
    path.write_text("name,label,split\n" + "".join(f"{n},{lab},{s}\n" for n, lab, s in rows))
    return str(path)


def read_out(folder):
    out = {}
    for s in ("train", "val"):
        with open(os.path.join(folder, f"{s}_label.pkl"), "rb") as f:
            names, labels = pickle.load(f)
        out[s] = (np.load(os.path.join(folder, f"{s}_position.npy")), list(names), list(labels))
    with open(os.path.join(folder, "manifest.json")) as f:
        return out, json.load(f)


def skipped(manifest):
    return {os.path.basename(s["input"].rstrip("/")): s["reason"] for s in manifest["skipped"]}


def kinetics_files():
    return sorted(glob.glob(os.path.join(KINETICS, "*", "*.json")))


def visible_box_normalise(raw):
    """Independent 'visible' normalisation of a (3, T, V, M) array whose missing joints are 0."""
    vis = raw[2] > 0
    xs, ys = raw[0][vis], raw[1][vis]
    cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
    scale = max(xs.max() - xs.min(), ys.max() - ys.min())
    out = raw.copy()
    out[0] = np.where(vis, (raw[0] - cx) / scale, 0)
    out[1] = np.where(vis, (raw[1] - cy) / scale, 0)
    return out


# --------------------------------------------------------------------------- 2-D preprocessing

def test_clean_2d_makes_every_missing_marker_one_thing():
    raw = openpose_raw(SITTING)[:, :20, :, :1].copy()
    assert (raw[2] == 0).any() and (raw[2] > 0).any()  # OpenPose's own 0, 0, 0 joints are in there
    raw[:, 1, 0, 0] = (-1, -1, 0.9)  # the -1 marker
    raw[:, 2, 0, 0] = np.nan  # all NaN
    raw[:, 3, 0, 0] = (0.4, 0.3, 0.0)  # score 0 with a position
    raw[:, 4, 0, 0] = (np.nan, np.nan, 0.0)  # NaN position, score 0
    raw[:, 5, 0, 0] = (0.4, 0.3, -1.0)  # visibility -1
    raw[:, 6, 0, 0] = (0.4, 0.3, np.nan)  # NaN score
    x = clean_2d(raw)
    assert x.dtype == np.float32 and np.isfinite(x).all()
    missing = x[2] <= 0
    assert (x[:, missing] == 0).all()  # coordinates 0 and score 0, never NaN
    for t in range(1, 7):
        assert (x[:, t, 0, 0] == 0).all()
    kept = (raw[2] > 0) & ~((raw[0] == 0) & (raw[1] == 0))
    kept[1:7, 0, 0] = False
    np.testing.assert_array_equal(x[:, kept], raw[:, kept].astype(np.float32))
    assert np.count_nonzero(x[2]) == kept.sum()
    # a higher min_score drops the weak joints too
    weak = clean_2d(raw, min_score=0.5)
    assert (weak[2][weak[2] > 0] > 0.5).all() and (weak[:, weak[2] == 0] == 0).all()


def test_clean_2d_rejects_nan_in_a_visible_joint_naming_the_frame():
    raw = openpose_raw(SITTING)[:, :20, :, :1].copy()
    raw[0, 7, 0, 0] = np.nan  # score stays > 0
    assert raw[2, 7, 0, 0] > 0
    names = [f"f{t:03d}.json" for t in range(20)]
    with pytest.raises(ValueError) as e:
        clean_2d(raw, frame_names=names)
    assert "f007.json" in str(e.value) and "joint 0" in str(e.value) and "NaN" in str(e.value)
    raw[0, 7, 0, 0] = np.inf
    with pytest.raises(ValueError, match="frame 7"):
        clean_2d(raw)


def test_resize_time_2d_is_the_lineage_resize_where_all_is_visible():
    raw = clean_2d(openpose_raw(SITTING)[..., :1])
    always = np.flatnonzero((raw[2, :, :, 0] > 0).all(axis=0))  # joints seen in every frame
    assert len(always) >= 5
    x = raw[:, :, always]
    for frames in (50, 64, 300, 411):
        np.testing.assert_array_equal(resize_time_2d(x, frames), resize_time(x, frames))


def test_resize_time_2d_never_pulls_a_joint_toward_a_missing_one():
    raw = clean_2d(openpose_raw(SITTING)[..., :1])
    joint = int(np.flatnonzero((raw[2, :, :, 0] > 0).all(axis=0))[0])
    x = raw[:, :, joint:joint + 1].copy()
    x[:, 100:150] = 0  # the joint is lost for 50 frames
    x[:, 201:203] = 0  # and for two
    lo, hi = x[0, x[2] > 0].min(), x[0, x[2] > 0].max()
    for frames in (37, 50, 300, 600):
        out = resize_time_2d(x, frames)
        vis = out[2] > 0
        assert (out[:, ~vis] == 0).all()  # missing stays exactly 0
        assert lo <= out[0][vis].min() and out[0][vis].max() <= hi  # no value pulled toward 0
        assert vis.any() and (~vis).any()
    # the lineage's resize blends the missing (0, 0) in: a spike the mask-aware one has not
    naive = resize_time(x, 37)
    assert (np.abs(naive[0][naive[2] > 0]) < lo - 1e-3).any()


def test_normalize_2d_is_the_same_for_pixel_and_normalised_coordinates():
    raw = clean_2d(openpose_raw(SITTING))
    pixels = raw.copy()
    vis = raw[2] > 0
    pixels[0] = np.where(vis, raw[0] * 1920 + 35, 0)
    pixels[1] = np.where(vis, raw[1] * 1920 + 12, 0)
    a, b = normalize_2d(raw, "visible"), normalize_2d(pixels, "visible")
    np.testing.assert_allclose(a, b, atol=2e-6)
    np.testing.assert_allclose(a, visible_box_normalise(raw.astype(np.float64)), atol=1e-6)
    assert (a[:, ~vis] == 0).all() and np.array_equal(a[2], raw[2])
    assert np.isclose(max(np.ptp(a[0][vis]), np.ptp(a[1][vis])), 1.0)
    # by the image: normalised coordinates are a 1 x 1 image (st-gcn's x - 0.5); pixels by their size
    np.testing.assert_allclose(normalize_2d(raw, "image", (1, 1))[:2][:, vis], raw[:2][:, vis] - 0.5, atol=1e-7)
    np.testing.assert_allclose(normalize_2d(pixels, "image", (1955, 1932))[:2][:, vis],
                               ((pixels[:2] - np.array([1955 / 2, 1932 / 2])[:, None, None, None]) / 1955)[:, vis],
                               atol=1e-6)
    with pytest.raises(ValueError, match="image size"):
        normalize_2d(raw, "image", None)


def test_select_persons_2d_per_frame_and_by_track():
    raw = clean_2d(openpose_raw(SITTING))
    assert raw.shape[3] == 3  # one frame of the real folder has three people
    per_frame = select_persons_2d(raw, 2, per_frame=True)
    totals = raw[2].sum(axis=1)  # (T, P)
    for t in range(raw.shape[1]):
        order = sorted(range(3), key=lambda m: -totals[t, m])
        for slot in range(2):
            np.testing.assert_array_equal(per_frame[:, t, :, slot], raw[:, t, :, order[slot]])
    tracks = select_persons_2d(raw, 4, per_frame=False)
    order = sorted(range(3), key=lambda m: -totals[:, m].sum())
    for slot, m in enumerate(order):
        np.testing.assert_array_equal(tracks[..., slot], raw[..., m])
    assert (tracks[..., 3] == 0).all()
    assert person_gaps_2d(per_frame)  # the second person comes and goes


# --------------------------------------------------------------------------- OpenPose

def test_openpose_folders_match_an_independent_reading(tmp_path):
    labels = write_csv(tmp_path / "labels.csv", [("keypoints_sitting_0.json", 0, "train"),
                                                 ("keypoints_standing_0.json", 1, "val")])
    out = tmp_path / "out"
    summary = import_poses("openpose", [OPENPOSE], str(out), labels=labels, frames=300, max_persons=1,
                           command="test")
    assert summary["counts"] == {"train": 1, "val": 1}
    data, manifest = read_out(out)
    assert manifest["layout"]["name"] == "openpose-25"  # detected from 75 values a person
    assert manifest["channels"] == ["x", "y", "score"] and manifest["pipeline"] == "pose2d"
    x, names, labs = data["train"]
    assert x.shape == (1, 3, 300, 25, 1) and x.dtype == np.float32 and names == ["keypoints_sitting_0.json"]
    assert labs == [0] and data["val"][1:] == (["keypoints_standing_0.json"], [1])
    # expected: in every frame the person with the highest summed score, 0,0,0 joints missing,
    # then the visible joints' box to [-0.5, 0.5]; 300 frames in, 300 out: no resize
    expected = np.zeros((3, 300, 25, 1))
    for t, people in enumerate(openpose_people(SITTING)):
        best = people[int(np.argmax(people[:, :, 2].sum(axis=1)))]
        seen = (best[:, 2] > 0) & ~((best[:, 0] == 0) & (best[:, 1] == 0))
        expected[:, t, :, 0] = np.where(seen[:, None], best, 0).T
    np.testing.assert_allclose(x[0], visible_box_normalise(expected), atol=1e-6)
    assert (x[0][:, x[0, 2] == 0] == 0).all() and np.isfinite(x).all()
    assert data["val"][0].shape == (1, 3, 300, 25, 1)  # 240 frames resized to 300


def test_openpose_default_pipeline_xy_channels_and_notes(tmp_path):
    labels = write_csv(tmp_path / "labels.csv", [("keypoints_sitting_0.json", 0, "train"),
                                                 ("keypoints_standing_0.json", 1, "val")])
    import_poses("openpose", [OPENPOSE], str(tmp_path / "xys"), labels=labels, command="test")
    import_poses("openpose", [OPENPOSE], str(tmp_path / "xy"), labels=labels, channels="xy", command="test")
    xys, manifest = read_out(tmp_path / "xys")
    xy, manifest_xy = read_out(tmp_path / "xy")
    assert xys["train"][0].shape == (1, 3, 50, 25, 2) and xy["train"][0].shape == (1, 2, 50, 25, 2)
    for s in ("train", "val"):
        np.testing.assert_array_equal(xy[s][0], xys[s][0][:, :2])
    sample = xys["train"][0][0]
    vis = sample[2] > 0
    assert (np.abs(sample[:2][:, vis]) <= 0.5 + 1e-6).all() and (sample[:, ~vis] == 0).all()
    assert manifest_xy["channels"] == ["x", "y"]
    # the real sitting folder has a frame with three people and a second person who comes and goes
    notes = manifest["notes"]
    assert any("more persons than" in k and v == ["keypoints_sitting_0.json"] for k, v in notes.items())
    assert any("disappears and comes back" in k for k in notes)


def kinetics_as_openpose(src, folder):
    """An OpenPose COCO-18 --write_json folder made from a real Kinetics-skeleton file."""
    os.makedirs(folder)
    with open(src) as f:
        frames = {d["frame_index"]: d["skeleton"] for d in json.load(f)["data"]}
    for t in range(max(frames) + 1):
        people = [{"person_id": [-1], "pose_keypoints_2d": [v for j in range(18) for v in
                                                            (s["pose"][2 * j], s["pose"][2 * j + 1], s["score"][j])]}
                  for s in frames.get(t, [])]
        with open(os.path.join(folder, f"clip_{t:012d}_keypoints.json"), "w") as f:
            json.dump({"version": 1.3, "people": people}, f)


def test_openpose_coco18_is_detected_and_matches_the_kinetics_reader(tmp_path):
    src = os.path.join(KINETICS, "sitting", "sitting_1_processed.json")
    kinetics_as_openpose(src, tmp_path / "op" / "sitting_1_processed")
    import_poses("openpose", [str(tmp_path / "op")], str(tmp_path / "a"), split="train",
                 labels=write_csv(tmp_path / "l.csv", [("sitting_1_processed", 0, "train")]), command="test")
    import_poses("kinetics", [src], str(tmp_path / "b"), label_json=os.path.join(KINETICS, "labels.json"),
                 split="train", command="test")
    a, manifest = read_out(tmp_path / "a")
    b, _ = read_out(tmp_path / "b")
    assert manifest["layout"]["name"] == "openpose-18" and a["train"][0].shape == (1, 3, 50, 18, 2)
    np.testing.assert_array_equal(a["train"][0], b["train"][0])


# --------------------------------------------------------------------------- Kinetics-skeleton

def stgcn_reference(path):
    """st-gcn's feeder_kinetics steps restated with plain loops: 5 skeletons in, x - 0.5, score-0 joints
    zeroed, persons of every frame ordered by summed score (descending), 2 out."""
    with open(path) as f:
        video = json.load(f)
    data = np.zeros((3, 300, 18, 5))
    for frame in video["data"]:
        for m, skeleton in enumerate(frame["skeleton"][:5]):
            for j in range(18):
                data[:, frame["frame_index"], j, m] = (skeleton["pose"][2 * j], skeleton["pose"][2 * j + 1],
                                                       skeleton["score"][j])
    data[:2] -= 0.5
    data[:2, data[2] == 0] = 0
    out = np.zeros((3, 300, 18, 2))
    for t in range(300):
        order = sorted(range(5), key=lambda m: -data[2, t, :, m].sum())
        out[:, t] = data[:, t][:, :, order[:2]]
    return out.astype(np.float32)


def test_kinetics_faithful_is_st_gcn(tmp_path):
    out = tmp_path / "out"
    import_poses("kinetics", [KINETICS], str(out), label_json=os.path.join(KINETICS, "labels.json"), split="val",
                 faithful=True, command="test")
    data, manifest = read_out(out)
    x, names, labels = data["val"]
    files = kinetics_files()
    assert names == sorted(os.path.basename(p) for p in files)  # st-gcn keeps .json in the names
    assert x.shape == (12, 3, 300, 18, 2) and data["train"][0].shape == (0, 3, 300, 18, 2)
    with open(os.path.join(KINETICS, "labels.json")) as f:
        label_file = json.load(f)
    assert labels == [label_file[n[:-len(".json")]]["label_index"] for n in names]
    by_name = {os.path.basename(p): p for p in files}
    for i, name in enumerate(names):
        np.testing.assert_array_equal(x[i], stgcn_reference(by_name[name]), err_msg=name)
    assert manifest["pipeline"] == "stgcn-kinetics" and manifest["frames"] == 300
    assert manifest["classes"] == ["sitting", "standing", "sleeping"]


def test_kinetics_image_normalisation_is_the_faithful_centring(tmp_path):
    label_json = os.path.join(KINETICS, "labels.json")
    import_poses("kinetics", [KINETICS], str(tmp_path / "f"), label_json=label_json, split="train", faithful=True,
                 command="test")
    import_poses("kinetics", [KINETICS], str(tmp_path / "p"), label_json=label_json, split="train",
                 normalize="image", frames=300, command="test")
    f, _ = read_out(tmp_path / "f")
    p, manifest = read_out(tmp_path / "p")
    assert manifest["normalize"] == "image"
    compared = 0
    for i, name in enumerate(p["train"][1]):
        with open(os.path.join(KINETICS, name.split("_")[0], name + ".json")) as fh:
            data = json.load(fh)["data"]
        if len(data) == 300 and data[0]["skeleton"] and data[-1]["skeleton"]:  # no padding, no empty ends
            np.testing.assert_allclose(p["train"][0][i], f["train"][0][f["train"][1].index(name + ".json")],
                                       atol=1e-7, err_msg=name)
            compared += 1
    assert compared >= 6


def test_kinetics_st_gcn_folder_gives_both_splits(tmp_path):
    root = tmp_path / "kinetics-skeleton"
    with open(os.path.join(KINETICS, "labels.json")) as f:
        labels = json.load(f)
    parts = {"train": [], "val": []}
    for path in kinetics_files():
        parts["val" if path.endswith("_3_processed.json") else "train"].append(path)
    for split, paths in parts.items():
        os.makedirs(root / f"kinetics_{split}")
        for p in paths:
            os.symlink(p, root / f"kinetics_{split}" / os.path.basename(p))
        entries = {os.path.basename(p)[:-5]: dict(labels[os.path.basename(p)[:-5]]) for p in paths}
        if split == "train":
            entries["sitting_0_processed"]["has_skeleton"] = False
        (root / f"kinetics_{split}_label.json").write_text(json.dumps(entries))
    summary = import_poses("kinetics", [str(root)], str(tmp_path / "out"), command="test")
    assert summary["counts"] == {"train": 8, "val": 3}
    data, manifest = read_out(tmp_path / "out")
    assert "sitting_0_processed" not in data["train"][1]
    assert "has_skeleton is false" in skipped(manifest)["sitting_0_processed.json"]
    assert data["val"][1] == ["sitting_3_processed", "sleeping_3_processed", "standing_3_processed"]
    assert data["val"][2] == [0, 2, 1]


# --------------------------------------------------------------------------- .pose files

def read_pose(path):
    pose_format = pytest.importorskip("pose_format")
    with open(path, "rb") as f:
        return pose_format.Pose.read(f.read())


def test_pose_file_openpose_body25_by_image_size(tmp_path):
    path = os.path.join(POSE_FILES, "openpose.pose")
    pose = read_pose(path)
    import_poses("pose", [path], str(tmp_path / "out"), labels=write_csv(tmp_path / "l.csv", [("openpose", 3, "val")]),
                 normalize="image", frames=93, max_persons=1, command="test")
    data, manifest = read_out(tmp_path / "out")
    x = data["val"][0][0]
    assert manifest["layout"]["name"] == "openpose-25" and x.shape == (3, 93, 25, 1)
    # expected straight from pose-format: masked points missing, (p - image centre) / longer side
    xy = np.ma.getdata(pose.body.data)[:, 0, :25, :2].astype(np.float64)
    seen = ~np.ma.getmaskarray(pose.body.data)[:, 0, :25].any(-1) & (np.ma.getdata(pose.body.confidence)[:, 0, :25] > 0)
    w, h = pose.header.dimensions.width, pose.header.dimensions.height
    expected_x = np.where(seen, (xy[..., 0] - w / 2) / max(w, h), 0)
    expected_y = np.where(seen, (xy[..., 1] - h / 2) / max(w, h), 0)
    np.testing.assert_allclose(x[0, :, :, 0], expected_x, atol=1e-6)
    np.testing.assert_allclose(x[1, :, :, 0], expected_y, atol=1e-6)
    np.testing.assert_allclose(x[2, :, :, 0], np.where(seen, np.ma.getdata(pose.body.confidence)[:, 0, :25], 0),
                               atol=1e-7)


def test_pose_file_mediapipe_partial_component(tmp_path):
    path = os.path.join(POSE_FILES, "mediapipe.pose")
    pose = read_pose(path)
    labels = write_csv(tmp_path / "l.csv", [("mediapipe", 0, "train")])
    # the real test file keeps only 8 of the 33 BlazePose landmarks: a joint count that does not fit
    with pytest.raises(InputError) as e:
        import_poses("pose", [path], str(tmp_path / "a"), labels=labels, command="test")
    assert "no usable sample" in str(e.value)
    with pytest.raises(InputError) as e:
        import_poses("pose", [path], str(tmp_path / "b"), labels=labels, strict=True, command="test")
    assert "mediapipe.pose" in str(e.value) and "8 points" in str(e.value) and "33" in str(e.value)
    assert not os.path.exists(tmp_path / "b" / "manifest.json")
    import_poses("pose", [path], str(tmp_path / "c"), labels=labels, partial_joints=True, frames=170, command="test")
    data, manifest = read_out(tmp_path / "c")
    x = data["train"][0][0]
    assert manifest["layout"]["name"] == "mediapipe-33" and x.shape == (3, 170, 33, 2)
    body = pose.header.components[0]
    index = [JOINT_NAMES["mediapipe-33"].index(p) for p in body.points]
    assert (x[2][:, index, 0] > 0).all()
    others = [j for j in range(33) if j not in index]
    assert (x[:, :, others] == 0).all() and (x[..., 1] == 0).all()
    np.testing.assert_allclose(x[2][:, index, 0], np.ma.getdata(pose.body.confidence)[:, 0, :8], atol=1e-7)
    assert any("8 of the layout's 33 joints" in k for k in manifest["notes"])


# --------------------------------------------------------------------------- COCO and MMPose

def test_coco_images_by_image_size(tmp_path):
    with open(COCO) as f:
        coco = json.load(f)
    images = {img["id"]: img for img in coco["images"]}
    rows = [(os.path.splitext(img["file_name"])[0], i % 2, "train" if i < 2 else "val")
            for i, img in enumerate(coco["images"])]
    import_poses("coco", [COCO], str(tmp_path / "out"), labels=write_csv(tmp_path / "l.csv", rows),
                 coco_group="image", normalize="image", max_persons=5, frames=10, command="test")
    data, manifest = read_out(tmp_path / "out")
    assert manifest["layout"]["name"] == "coco-17"
    x, names, _ = data["train"]
    i = names.index("000000000785")
    (ann,) = [a for a in coco["annotations"] if a["image_id"] == 785]
    img = images[785]
    kp = np.array(ann["keypoints"], np.float64).reshape(17, 3)
    side = max(img["width"], img["height"])
    for t in range(10):  # one image: every frame the same
        np.testing.assert_allclose(x[i, 0, t, :, 0], (kp[:, 0] - img["width"] / 2) / side, atol=1e-6)
        np.testing.assert_allclose(x[i, 1, t, :, 0], (kp[:, 1] - img["height"] / 2) / side, atol=1e-6)
        np.testing.assert_array_equal(x[i, 2, t, :, 0], (kp[:, 2] > 0).astype(np.float32))
    assert (x[i, :, :, :, 1:] == 0).all()
    # an image with several people: ranked by their labelled keypoints, the empty ones left out
    j = names.index("000000040083")
    counts = sorted((np.array(a["keypoints"]).reshape(17, 3)[:, 2] > 0).sum()
                    for a in coco["annotations"] if a["image_id"] == 40083)[::-1]
    assert [int((x[j, 2, 0, :, m] > 0).sum()) for m in range(5)] == counts + [0] * (5 - len(counts))
    # all four images as one sequence (the file) and, without vid_id, no video grouping
    import_poses("coco", [COCO], str(tmp_path / "file"), labels=write_csv(tmp_path / "f.csv", [("test_coco", 0, "train")]),
                 max_persons=5, frames=4, command="test")
    assert read_out(tmp_path / "file")[0]["train"][0].shape == (1, 3, 4, 17, 5)
    with pytest.raises(InputError) as e:
        import_poses("coco", [COCO], str(tmp_path / "video"), coco_group="video", strict=True,
                     labels=write_csv(tmp_path / "v.csv", [("1", 0, "train")]), command="test")
    assert "test_coco.json" in str(e.value) and "vid_id" in str(e.value)


COCO_FROM_BODY25 = {"nose": "Nose", "left_eye": "LEye", "right_eye": "REye", "left_ear": "LEar", "right_ear": "REar",
                    "left_shoulder": "LShoulder", "right_shoulder": "RShoulder", "left_elbow": "LElbow",
                    "right_elbow": "RElbow", "left_wrist": "LWrist", "right_wrist": "RWrist", "left_hip": "LHip",
                    "right_hip": "RHip", "left_knee": "LKnee", "right_knee": "RKnee", "left_ankle": "LAnkle",
                    "right_ankle": "RAnkle"}


def coco17_people(folder):
    """The real OpenPose BODY_25 people of a folder in COCO-17 order (joints picked by name)."""
    pick = [JOINT_NAMES["openpose-25"].index(COCO_FROM_BODY25[n]) for n in JOINT_NAMES["coco-17"]]
    return [people[:, pick] for people in openpose_people(folder)]


def mmpose_video(frames, path):
    """MMPoseInferencer's video prediction file for the given per-frame (P, 17, 3) people."""
    predictions = [{"frame_id": t, "instances": [
        {"keypoints": p[:, :2].tolist(), "keypoint_scores": p[:, 2].tolist(),
         "bbox": [[float(p[:, 0].min()), float(p[:, 1].min()), float(p[:, 0].max()), float(p[:, 1].max())]],
         "bbox_score": float(p[:, 2].mean())} for p in people]} for t, people in enumerate(frames)]
    with open(path, "w") as f:
        json.dump(predictions, f)


def pyskl_pickle(frames, path, name):
    """A pyskl 2-D annotation pickle holding one track: each frame's highest-scoring person."""
    best = np.stack([people[int(np.argmax(people[:, :, 2].sum(axis=1)))] for people in frames])  # (T, 17, 3)
    anno = {"frame_dir": name, "label": 4, "img_shape": (1080, 1920), "original_shape": (1080, 1920),
            "total_frames": len(best), "keypoint": best[None, :, :, :2].astype(np.float16),
            "keypoint_score": best[None, :, :, 2].astype(np.float16)}
    with open(path, "wb") as f:
        pickle.dump({"split": {"xsub_train": [name], "xsub_val": [], "xview_train": [], "xview_val": [name]},
                     "annotations": [anno]}, f)
    return anno


def test_mmpose_and_pyskl_agree_on_the_same_real_sequence(tmp_path):
    frames = coco17_people(SITTING)
    mmpose_video(frames, tmp_path / "sitting.json")
    anno = pyskl_pickle(frames, tmp_path / "sitting_hrnet.pkl", "sitting")
    import_poses("mmpose", [str(tmp_path / "sitting.json")], str(tmp_path / "m"), max_persons=1,
                 labels=write_csv(tmp_path / "l.csv", [("sitting", 4, "train")]), command="test")
    import_poses("pyskl", [str(tmp_path / "sitting_hrnet.pkl")], str(tmp_path / "p"), benchmark="xsub",
                 max_persons=1, command="test")
    m, _ = read_out(tmp_path / "m")
    p, manifest = read_out(tmp_path / "p")
    assert p["train"][1:] == (["sitting"], [4]) and manifest["layout"]["name"] == "coco-17"
    assert m["train"][0].shape == p["train"][0].shape == (1, 3, 50, 17, 1)
    # pyskl stores float16: the same sequence up to that rounding
    np.testing.assert_allclose(m["train"][0], p["train"][0], atol=2e-3)
    # the pyskl reader takes the image size from img_shape (height, width)
    import_poses("pyskl", [str(tmp_path / "sitting_hrnet.pkl")], str(tmp_path / "pi"), benchmark="xview",
                 normalize="image", max_persons=1, frames=300, command="test")
    x = read_out(tmp_path / "pi")[0]["val"][0][0]
    kp = anno["keypoint"][0].astype(np.float64)
    seen = anno["keypoint_score"][0] > 0
    np.testing.assert_allclose(x[0, :, :, 0], np.where(seen, (kp[..., 0] - 960) / 1920, 0), atol=1e-6)
    np.testing.assert_allclose(x[1, :, :, 0], np.where(seen, (kp[..., 1] - 540) / 1920, 0), atol=1e-6)


def test_mmpose_image_and_demo_files(tmp_path):
    with open(COCO) as f:
        coco = json.load(f)
    instances = []
    for a in coco["annotations"]:
        if a["image_id"] == 196141:
            kp = np.array(a["keypoints"], np.float64).reshape(17, 3)
            instances.append({"keypoints": kp[:, :2].tolist(), "keypoint_scores": (kp[:, 2] > 0).astype(float).tolist(),
                              "bbox": [a["bbox"]], "bbox_score": 1.0})
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "image.json").write_text(json.dumps(instances))  # one image's predictions
    (tmp_path / "in" / "demo.json").write_text(json.dumps(
        {"meta_info": {"dataset_name": "coco"}, "instance_info": [{"frame_id": 0, "instances": instances},
                                                                   {"frame_id": 1, "instances": instances[:1]}]}))
    import_poses("mmpose", [str(tmp_path / "in")], str(tmp_path / "out"), frames=2, max_persons=5,
                 labels=write_csv(tmp_path / "l.csv", [("image", 0, "train"), ("demo", 1, "val")]), command="test")
    data, _ = read_out(tmp_path / "out")
    image, demo = data["train"][0][0], data["val"][0][0]
    persons = sum(1 for a in coco["annotations"] if a["image_id"] == 196141 and a["num_keypoints"] > 0)
    assert int((image[2, 0] > 0).any(axis=0).sum()) == persons
    assert int((demo[2, 1] > 0).any(axis=0).sum()) == 1


def test_pyskl_benchmark_choice_3d_annotation_and_unsafe_pickle(tmp_path):
    frames = coco17_people(STANDING)
    anno = pyskl_pickle(frames, tmp_path / "a.pkl", "standing")
    with pytest.raises(InputError) as e:
        import_poses("pyskl", [str(tmp_path / "a.pkl")], str(tmp_path / "o1"), command="test")
    assert "--benchmark" in str(e.value) and "xview_train" in str(e.value)
    three_d = dict(anno, frame_dir="three_d", keypoint=np.zeros((1, 5, 17, 3), np.float32))
    del three_d["keypoint_score"]
    with open(tmp_path / "b.pkl", "wb") as f:
        pickle.dump({"split": {"train": ["standing", "three_d"], "val": []},
                     "annotations": [dict(anno, label=2), three_d]}, f)
    summary = import_poses("pyskl", [str(tmp_path / "b.pkl")], str(tmp_path / "o2"), command="test")
    assert summary["counts"] == {"train": 1, "val": 0}
    data, manifest = read_out(tmp_path / "o2")
    assert data["train"][1:] == (["standing"], [2])
    reason = skipped(manifest)["b.pkl annotation three_d"]
    assert "3-D annotation" in reason and "pyskl_import" in reason

    class Payload:  # anything but plain data is refused before it is built
        def __reduce__(self):
            return (os.getcwd, ())

    with open(tmp_path / "c.pkl", "wb") as f:
        pickle.dump({"split": {"train": [], "val": []}, "annotations": [Payload()]}, f)
    with pytest.raises(InputError) as e:
        import_poses("pyskl", [str(tmp_path / "c.pkl")], str(tmp_path / "o3"), command="test")
    assert "c.pkl" in str(e.value) and "refused" in str(e.value) and "getcwd" in str(e.value)


# --------------------------------------------------------------------------- Penn Action

PENN_FILES = ("0001", "0002", "0170", "0400", "1000", "1516", "2326")


@pytest.fixture
def penn_dir(tmp_path):
    if not os.path.isdir(PENN):
        pytest.skip(f"Penn Action labels not found at {PENN}")
    folder = tmp_path / "labels"
    folder.mkdir()
    for n in PENN_FILES:
        os.symlink(os.path.join(PENN, n + ".mat"), folder / f"{n}.mat")
    return folder


def test_penn_action_labels_split_and_visibility(tmp_path, penn_dir):
    from scipy.io import loadmat

    from tools.pose_formats.penn_action import PENN_ACTION_CLASSES

    summary = import_poses("penn_action", [str(penn_dir)], str(tmp_path / "out"), normalize="image",
                           frames=151, max_persons=1, command="test")
    data, manifest = read_out(tmp_path / "out")
    assert manifest["layout"]["name"] == "penn-action-13" and manifest["classes"] == list(PENN_ACTION_CLASSES)
    mats = {n: loadmat(os.path.join(PENN, n + ".mat")) for n in PENN_FILES}
    for split, code in (("train", 1), ("val", -1)):
        x, names, labels = data[split]
        want = [n for n in PENN_FILES if int(mats[n]["train"].ravel()[0]) == code and n != "1516"]
        assert names == want
        assert labels == [PENN_ACTION_CLASSES.index(str(mats[n]["action"][0])) for n in want]
    assert summary["num_classes"] == 15
    # the real 1516.mat marks every joint invisible: nobody to learn from
    assert "no visible joint" in skipped(manifest)["1516.mat"]
    # 0001 has 151 frames: no resize; visibility 0 -> missing; (p - image centre) / longer side
    m = mats["0001"]
    assert m["x"].shape == (151, 13)
    h, w = m["dimensions"].ravel()[:2].astype(float)
    seen = m["visibility"] > 0
    assert (~seen).any()
    x = data["val"][0][data["val"][1].index("0001")]
    np.testing.assert_allclose(x[0, :, :, 0], np.where(seen, (m["x"] - w / 2) / max(w, h), 0), atol=1e-5)
    np.testing.assert_allclose(x[1, :, :, 0], np.where(seen, (m["y"] - h / 2) / max(w, h), 0), atol=1e-5)
    np.testing.assert_array_equal(x[2, :, :, 0], seen.astype(np.float32))


def test_penn_action_mat_without_x_or_y(tmp_path, penn_dir):
    from scipy.io import loadmat, savemat

    m = {k: v for k, v in loadmat(os.path.join(PENN, "0002.mat")).items() if not k.startswith("__")}
    bad = tmp_path / "bad"
    bad.mkdir()
    savemat(bad / "no_x.mat", {k: v for k, v in m.items() if k != "x"})
    savemat(bad / "no_y.mat", {k: v for k, v in m.items() if k != "y"})
    savemat(bad / "good.mat", m)
    (bad / "broken.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    summary = import_poses("penn_action", [str(bad)], str(tmp_path / "out"), command="test")
    assert summary["counts"] == {"train": 1, "val": 0}
    reasons = skipped(read_out(tmp_path / "out")[1])
    assert "'x'" in reasons["no_x.mat"] and "'y'" in reasons["no_y.mat"]
    assert "cannot be read as a .mat file" in reasons["broken.mat"]
    with pytest.raises(InputError) as e:
        import_poses("penn_action", [str(bad)], str(tmp_path / "strict"), strict=True, command="test")
    assert "broken.mat" in str(e.value)


# --------------------------------------------------------------------------- bad input

def edit_frames(folder, edit):
    """Rewrite every frame file of folder with edit(frame number, content) (None deletes the file)."""
    for path in sorted(glob.glob(os.path.join(folder, "*_keypoints.json"))):
        t = int(os.path.basename(path).split("_")[-2])
        with open(path) as f:
            content = edit(t, json.load(f))
        if content is None:
            os.remove(path)
        else:
            with open(path, "w") as f:
                json.dump(content, f)


def set_joint(frame, person, joint, values):
    frame["people"][person]["pose_keypoints_2d"][3 * joint:3 * joint + 3] = values
    return frame


BAD_OPENPOSE = {
    # name: (edit, words the report must hold, or None when the sequence is fine)
    "gap": (lambda t, f: None if t in (5, 17, 18) else f, ["frame(s) 5, 17-18 missing", "0..299"]),
    "nan": (lambda t, f: set_joint(f, 0, 1, [float("nan"), 0.4, 0.8]) if t == 10 else f,
            ["sitting_0_000000000010_keypoints.json", "joint 1", "NaN"]),
    "zeros": (lambda t, f: {**f, "people": [{**p, "pose_keypoints_2d": [0] * 75} for p in f["people"]]},
              ["no visible joint in any of the 300 frames"]),
    "nobody": (lambda t, f: {**f, "people": []}, ["nobody in any of its 300 frames"]),
    "joints": (lambda t, f: {**f, "people": [{**p, "pose_keypoints_2d": p["pose_keypoints_2d"][:72]}
                                             for p in f["people"]]} if t == 7 else f,
               ["sitting_0_000000000007_keypoints.json", "24 keypoints", "25 joints"]),
    "garbled": (lambda t, f: "not a frame" if t == 3 else f, ["sitting_0_000000000003_keypoints.json", "'people'"]),
    "extra_key": (lambda t, f: {**f, "detector": "v2"}, None),
    "empty_frame": (lambda t, f: {**f, "people": []} if t in (0, 3, 299) else f, None),
    "nan_missing": (lambda t, f: set_joint(f, 0, 1, [float("nan"), float("nan"), 0]) if t == 12 else f, None),
}


@pytest.fixture(scope="module")
def bad_openpose(tmp_path_factory):
    if not os.path.isdir(SITTING):
        pytest.skip(f"real OpenPose folder not found at {SITTING}")
    root = tmp_path_factory.mktemp("bad_openpose")
    for name, (edit, _) in BAD_OPENPOSE.items():
        shutil.copytree(SITTING, root / name)
        edit_frames(root / name, edit)
    return root


def test_bad_openpose_inputs_are_named_skipped_and_reported(tmp_path, bad_openpose, capsys):
    labels = write_csv(tmp_path / "labels.csv", [(n, i % 3, "train") for i, n in enumerate(BAD_OPENPOSE)])
    summary = import_poses("openpose", [str(bad_openpose)], str(tmp_path / "out"), labels=labels, frames=300,
                           command="test")
    data, manifest = read_out(tmp_path / "out")
    bad = {n for n, (_, words) in BAD_OPENPOSE.items() if words}
    assert set(data["train"][1]) == set(BAD_OPENPOSE) - bad
    reasons = skipped(manifest)
    assert set(reasons) == bad and summary["skipped"]["train"] == len(bad)
    for name in bad:
        for word in BAD_OPENPOSE[name][1]:
            assert word in reasons[name], (name, reasons[name])
    captured = capsys.readouterr()
    report = captured.out + captured.err
    assert f"skipped {len(bad)}:" in report and "frame(s) 5, 17-18 missing" in report
    # unknown keys: a warning in the notes, the sequence kept
    assert any("'detector'" in k and v == ["extra_key"] for k, v in manifest["notes"].items())
    x = data["train"][0]
    assert np.isfinite(x).all()
    # an empty frame at either end is dropped, one inside stays missing; a NaN marker with score 0 is missing
    plain = openpose_raw(SITTING)
    i = data["train"][1].index("nan_missing")
    assert (x[i][:, 12, 1] == 0).all() and plain[2, 12, 1].max() > 0
    j = data["train"][1].index("empty_frame")
    assert (x[j][:, 2] == 0).all() and (x[j][2, 1] > 0).any()  # resized 298 -> 300: frame 3 near output 2


def test_bad_openpose_strict_stops_at_the_first(tmp_path, bad_openpose):
    labels = write_csv(tmp_path / "labels.csv", [(n, 0, "train") for n in BAD_OPENPOSE])
    with pytest.raises(InputError) as e:
        import_poses("openpose", [str(bad_openpose)], str(tmp_path / "out"), labels=labels, strict=True,
                     command="test")
    assert str(e.value).startswith(str(bad_openpose / "gap")) and "missing from the numbering" in str(e.value)
    assert not os.path.exists(tmp_path / "out" / "manifest.json")
    # the CLI says the same and exits 1
    rc = main(["--format", "openpose", "--input", str(bad_openpose / "garbled"), "--labels", labels,
               "--out_folder", str(tmp_path / "cli"), "--strict"])
    assert rc == 1 and not os.path.exists(tmp_path / "cli" / "manifest.json")


def test_labels_csv_mismatches_are_reported(tmp_path):
    labels = write_csv(tmp_path / "labels.csv", [("keypoints_sitting_0.json", 0, "train"), ("ghost", 1, "val")])
    summary = import_poses("openpose", [OPENPOSE], str(tmp_path / "out"), labels=labels, command="test")
    assert summary["counts"] == {"train": 1, "val": 0}
    reasons = skipped(read_out(tmp_path / "out")[1])
    assert reasons["labels.csv line 3"] == "no sequence 'ghost' among the inputs"
    assert "no label row for 'keypoints_standing_0.json'" in reasons["keypoints_standing_0.json"]
    with pytest.raises(InputError, match="no labels"):
        import_poses("openpose", [OPENPOSE], str(tmp_path / "none"), command="test")


def test_bad_kinetics_files(tmp_path):
    src = os.path.join(KINETICS, "sitting", "sitting_1_processed.json")
    with open(src) as f:
        video = json.load(f)
    folder = tmp_path / "clips"
    folder.mkdir()
    variants = {
        "wrong_label": dict(video, label_index=2),
        "late_frame": dict(video, data=video["data"] + [{"frame_index": 300, "skeleton": video["data"][0]["skeleton"]}]),
        "nan_pose": dict(video, data=[dict(d, skeleton=[dict(s, pose=[float("nan")] + s["pose"][1:])
                                                        for s in d["skeleton"]]) if d["frame_index"] == 4 else d
                                      for d in video["data"]]),
        "short_pose": dict(video, data=[dict(d, skeleton=[dict(s, score=s["score"][:17]) for s in d["skeleton"]])
                                        for d in video["data"]]),
        "fine": video,
    }
    for name, content in variants.items():
        (folder / f"{name}.json").write_text(json.dumps(content))
    (tmp_path / "labels.json").write_text(json.dumps(
        {n: {"has_skeleton": True, "label": "sitting", "label_index": 0} for n in variants}))
    import_poses("kinetics", [str(folder)], str(tmp_path / "out"), label_json=str(tmp_path / "labels.json"),
                 split="train", faithful=True, command="test")
    data, manifest = read_out(tmp_path / "out")
    assert data["train"][1] == ["fine.json"]
    reasons = skipped(manifest)
    assert "label_index 2 differs" in reasons["wrong_label.json"]
    assert "frame_index 300 is outside the 300-frame window" in reasons["late_frame.json"]
    assert "frame_index 4" in reasons["nan_pose.json"] and "NaN" in reasons["nan_pose.json"]
    assert "17 keypoints" in reasons["short_pose.json"] and "18 joints" in reasons["short_pose.json"]


def test_bad_mmpose_files(tmp_path):
    frames = coco17_people(STANDING)[:40]
    folder = tmp_path / "pred"
    folder.mkdir()
    mmpose_video(frames, folder / "fine.json")
    content = json.loads((folder / "fine.json").read_text())
    (folder / "gap.json").write_text(json.dumps([f for f in content if f["frame_id"] not in (6, 7, 30)]))
    no_scores = [dict(f) for f in content]
    no_scores[2] = {"frame_id": 2, "instances": [{"keypoints": content[2]["instances"][0]["keypoints"]}]}
    (folder / "no_scores.json").write_text(json.dumps(no_scores))
    odd = [dict(f) for f in content]
    odd[0] = {"frame_id": 0, "instances": [dict(content[0]["instances"][0], track_id=3, heatmap_id=7)]}
    (folder / "odd_keys.json").write_text(json.dumps(odd))
    (folder / "truncated.json").write_text((folder / "fine.json").read_text()[:500])
    labels = write_csv(tmp_path / "l.csv", [(n, 0, "train") for n in ("fine", "gap", "no_scores", "odd_keys",
                                                                        "truncated")])
    import_poses("mmpose", [str(folder)], str(tmp_path / "out"), labels=labels, command="test")
    data, manifest = read_out(tmp_path / "out")
    assert data["train"][1] == ["fine", "odd_keys"]
    reasons = skipped(manifest)
    assert "frame_id(s) 6-7, 30 missing" in reasons["gap.json"]
    assert "frame_id 2 instance 0" in reasons["no_scores.json"] and "keypoint_scores" in reasons["no_scores.json"]
    assert "not valid JSON" in reasons["truncated.json"]
    assert any("'heatmap_id'" in k and "track_id" not in k for k in manifest["notes"])


def test_imported_penn_action_feeds_an_st_gcn(tmp_path, penn_dir):
    import torch

    from feeder.ntu_feeder import Feeder_single
    from net.st_gcn import Model

    import_poses("penn_action", [str(penn_dir)], str(tmp_path / "out"), frames=16, command="test")
    feeder = Feeder_single(str(tmp_path / "out" / "val_position.npy"), str(tmp_path / "out" / "val_label.pkl"))
    assert feeder.layout.name == "penn-action-13"  # from the manifest
    x = torch.stack([feeder[i][0] for i in range(len(feeder))])
    assert x.shape == (5, 3, 16, 13, 2) and torch.isfinite(x).all()
    model = Model(in_channels=3, hidden_channels=4, hidden_dim=8, num_class=15,
                  graph_args={"layout": feeder.layout.name, "strategy": "spatial"}).eval()
    with torch.no_grad():
        assert model(x).shape == (5, 15)


def test_to_layout_keeps_the_named_joints(tmp_path):
    """--to_layout penn-action-13 on a COCO-17 sequence equals importing the 13 joints it names (head = nose)
    as a Penn Action layout file; a layout without the joints is refused naming them; --unlabelled gives -1."""
    from feeder.layouts import joint_map

    frames = coco17_people(SITTING)
    mmpose_video(frames, tmp_path / "sitting.json")
    picked = joint_map("coco-17", "penn-action-13")
    assert [JOINT_NAMES["coco-17"][i] for i in picked] == ["nose"] + list(JOINT_NAMES["penn-action-13"][1:])
    (tmp_path / "sub").mkdir()
    mmpose_video([people[:, picked] for people in frames], tmp_path / "sub" / "sitting.json")
    labels = write_csv(tmp_path / "l.csv", [("sitting", 2, "val")])
    import_poses("mmpose", [str(tmp_path / "sitting.json")], str(tmp_path / "mapped"), labels=labels,
                 to_layout="penn-action-13", max_persons=1, command="test")
    import_poses("mmpose", [str(tmp_path / "sub" / "sitting.json")], str(tmp_path / "direct"), labels=labels,
                 layout="penn-action-13", max_persons=1, command="test")
    (mapped, manifest), (direct, _) = read_out(tmp_path / "mapped"), read_out(tmp_path / "direct")
    assert mapped["val"][0].shape == (1, 3, 50, 13, 1) and manifest["layout"]["name"] == "penn-action-13"
    assert manifest["mapped_from"] == {"layout": "coco-17", "joints": picked}
    np.testing.assert_array_equal(mapped["val"][0], direct["val"][0])
    with pytest.raises(InputError, match=r"--to_layout: layout 'coco-17' has no joint for \['neck'"):
        import_poses("mmpose", [str(tmp_path / "sitting.json")], str(tmp_path / "x"), labels=labels,
                     to_layout="openpose-18", command="test")
    assert main(["--format", "mmpose", "--input", str(tmp_path / "sitting.json"), "--split", "val", "--unlabelled",
                 "--to_layout", "penn-action-13", "--max_persons", "1", "--out_folder", str(tmp_path / "new")]) == 0
    new, _ = read_out(tmp_path / "new")
    assert new["val"][1:] == (["sitting"], [-1])
    np.testing.assert_array_equal(new["val"][0], mapped["val"][0])
