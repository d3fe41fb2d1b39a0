"""A video -> 2-D poses with MediaPipe's offline BlazePose, written as the MMPose prediction JSON the importer reads.

    python tools/video_to_pose.py video.avi poses/video.json            # 33 BlazePose landmarks
    python tools/pose_import.py --format mmpose --input poses/ --layout mediapipe-33 \\
        --to_layout penn-action-13 --split val --out_folder data/my_video   # then: python main.py extract ...

Optional: needs `pip install -r requirements-video.txt` (mediapipe 0.10.14, whose wheel bundles the
`pose_landmark_full` and `pose_detection` models, so `model_complexity=1` runs without network; later
releases dropped this legacy API). Nothing else in the project imports mediapipe.

The output is a list with one entry per frame, `{"frame_id": i, "instances": [{"keypoints": [[x, y], ...],
"keypoint_scores": [...]}]}` (MMPose's inferencer format): x, y in pixels, the score is BlazePose's landmark
visibility; a frame without a detected person has no instance. The report gives the frames read, the frames
with a person and the video's size.
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def video_poses(path: str, model_complexity: int = 1, min_detection_confidence: float = 0.5) -> tuple:
    """(frames: list of instance lists, (width, height), fps) of a video, one BlazePose person per frame."""
    import cv2
    import mediapipe as mp

    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise ValueError(f"{path}: not a video OpenCV can read")
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
    frames = []
    with mp.solutions.pose.Pose(static_image_mode=False, model_complexity=model_complexity,
                                min_detection_confidence=min_detection_confidence) as pose:
        while True:
            ok, image = capture.read()
            if not ok:
                break
            result = pose.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
            if result.pose_landmarks is None:
                frames.append([])
                continue
            marks = result.pose_landmarks.landmark
            frames.append([{"keypoints": [[lm.x * width, lm.y * height] for lm in marks],
                            "keypoint_scores": [lm.visibility for lm in marks]}])
    capture.release()
    if not frames:
        raise ValueError(f"{path}: no frame could be read")
    return frames, (width, height), fps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video")
    p.add_argument("out", help="the MMPose-style JSON to write")
    p.add_argument("--model_complexity", type=int, default=1, choices=(1,),
                   help="1 (pose_landmark_full, bundled); 0 and 2 download their models and fail offline")
    p.add_argument("--min_detection_confidence", type=float, default=0.5)
    args = p.parse_args(argv)
    try:
        frames, (w, h), fps = video_poses(args.video, args.model_complexity, args.min_detection_confidence)
    except ImportError as e:
        print(f"error: {e.name or e}: install the optional video extra: pip install -r requirements-video.txt",
              file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    records = [{"frame_id": i, "instances": people} for i, people in enumerate(frames)]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(records, f)
    os.replace(tmp, args.out)
    seen = sum(1 for people in frames if people)
    print(f"{args.video}: {len(frames)} frames ({w} x {h}, {fps:.1f} fps), a person in {seen} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
