"""tools/video_to_pose.py: MediaPipe's offline BlazePose on a real video, then the importer. mediapipe is an optional
extra (requirements-video.txt, its own environment: it wants numpy < 2); the test runs where it is importable, by
this Python or by the one named in $SKELSSL_VIDEO_PYTHON, and is skipped elsewhere (CI)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT as REPO, SHARED

from tools.pose_import import main as pose_import

VIDEO = os.path.join(SHARED, "data", "pose_formats", "video", "exercise.avi")


def video_python():
    for python in (os.environ.get("SKELSSL_VIDEO_PYTHON"), sys.executable):
        if python and subprocess.run([python, "-c", "import mediapipe, cv2"], capture_output=True).returncode == 0:
            return python
    return None


PYTHON = video_python() if os.path.isfile(VIDEO) else None
pytestmark = pytest.mark.skipif(PYTHON is None, reason="needs mediapipe (requirements-video.txt; or set "
                                "SKELSSL_VIDEO_PYTHON) and the real video in ../shared")


def test_video_to_pose_then_import(tmp_path):
    out = tmp_path / "poses" / "exercise.json"
    run = subprocess.run([PYTHON, os.path.join(REPO, "tools", "video_to_pose.py"), VIDEO, str(out)],
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert "393 frames (384 x 288" in run.stdout
    records = json.loads(out.read_text())
    assert len(records) == 393 and [r["frame_id"] for r in records] == list(range(393))
    seen = [r["instances"][0] for r in records if r["instances"]]
    assert len(seen) > 350  # one person exercising in view nearly throughout
    kp = np.array([p["keypoints"] for p in seen])
    scores = np.array([p["keypoint_scores"] for p in seen])
    assert kp.shape == (len(seen), 33, 2) and scores.shape == (len(seen), 33)
    body = kp[:, [11, 12, 23, 24]]  # shoulders and hips: inside the 384 x 288 frame, in pixels
    assert (body[..., 0] > 0).all() and (body[..., 0] < 384).all() and (body[..., 1] > 0).all() and \
        (body[..., 1] < 288).all()
    assert pose_import(["--format", "mmpose", "--input", str(out.parent), "--layout", "mediapipe-33",
                        "--to_layout", "penn-action-13", "--split", "val", "--unlabelled", "--max_persons", "1",
                        "--out_folder", str(tmp_path / "data")]) == 0
    x = np.load(tmp_path / "data" / "val_position.npy")
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert x.shape == (1, 3, 50, 13, 1) and np.isfinite(x).all() and manifest["layout"]["name"] == "penn-action-13"
    assert (x[0, 2] > 0).mean() > 0.5  # most joints visible
