"""Readers of 2-D pose files, one module per family; tools/pose_import.py turns what they read
into training arrays. Each `plan_*(inputs, options, problems)` returns a common.Plan."""
from .coco import plan_coco, plan_mmpose
from .openpose import plan_kinetics, plan_openpose
from .penn_action import plan_penn_action
from .pose_file import plan_pose
from .pyskl2d import plan_pyskl

READERS = {
    "openpose": plan_openpose,
    "kinetics": plan_kinetics,
    "pose": plan_pose,
    "coco": plan_coco,
    "mmpose": plan_mmpose,
    "pyskl": plan_pyskl,
    "penn_action": plan_penn_action,
}
