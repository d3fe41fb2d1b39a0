"""Skeleton layouts (feeder/layouts.py) and the ST-GCN graph built from them (net/graph.py)."""
import os

import numpy as np
import pytest
from conftest import GOLDEN, SHARED

from feeder.layouts import BUILTIN, JOINT_NAMES, NTU_RGBD, NW_UCLA, Layout, get_layout, layout_from_dict
from net.graph import Graph, hop_distance, normalize_digraph



def golden(name):
    path = os.path.join(GOLDEN, name)
    if not os.path.isfile(path):
        pytest.skip(f"golden file {name} not available (../shared beside the repo)")
    return path


# --------------------------------------------------------------------------- built-in layouts


def test_builtin_names():
    assert set(BUILTIN) == {"ntu-rgb+d", "nw-ucla", "coco-17", "openpose-18", "openpose-25", "mediapipe-33",
                            "penn-action-13"}
    assert get_layout("ntu-rgb+d") is NTU_RGBD
    assert get_layout("nw-ucla") is NW_UCLA
    assert get_layout(NTU_RGBD) is NTU_RGBD


def test_ntu_parents_match_golden_bone_pairs():
    pairs = np.load(golden("actclr_stgcn_golden.npz"))["bone_pairs_1based"]
    assert pairs.shape == (25, 2)
    expected = {int(c) - 1: int(p) - 1 for c, p in pairs}
    assert sorted(expected) == list(range(25))
    assert NTU_RGBD.parents == [expected[j] for j in range(25)]
    assert NTU_RGBD.parents[NTU_RGBD.center] == NTU_RGBD.center == 20


def test_ntu_parents_literal():
    # the lineage bone list (1-based child, parent), independent of the golden file
    pairs = [(1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9), (11, 10),
             (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19), (21, 21),
             (22, 23), (23, 8), (24, 25), (25, 12)]
    assert NTU_RGBD.parents == [p - 1 for _, p in pairs]


def test_nw_ucla_parents():
    bones = [(1, 2), (2, 3), (4, 3), (5, 3), (6, 5), (7, 6), (8, 7), (9, 3), (10, 9), (11, 10), (12, 11),
             (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19)]
    expected = {c - 1: p - 1 for c, p in bones}
    expected[2] = 2  # the centre (joint 3) is its own parent
    assert NW_UCLA.num_joints == 20 and NW_UCLA.center == 2
    assert NW_UCLA.parents == [expected[j] for j in range(20)]


def test_ntu_flip_permutation():
    perm = NTU_RGBD.flip_permutation
    assert perm == [0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 16, 17, 18, 19, 12, 13, 14, 15, 20, 23, 24, 21, 22]
    assert [perm[p] for p in perm] == list(range(25))  # an involution


def test_nw_ucla_flip_is_involution():
    perm = NW_UCLA.flip_permutation
    assert sorted(perm) == list(range(20))
    assert [perm[p] for p in perm] == list(range(20))
    assert perm[4] == 8 and perm[12] == 16 and perm[2] == 2


# --------------------------------------------------------------------------- custom layouts

CUSTOM = """\
num_joints: 5
center: 1
edges: [[0, 1], [1, 2], [2, 3], [1, 4]]
flip_pairs: [[3, 4]]
shoulders: [3, 4]
"""


def test_custom_layout_file_and_graph(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(CUSTOM)
    layout = get_layout(str(path))
    assert layout.name == "tiny"
    assert layout.num_joints == 5 and layout.center == 1
    assert layout.edges == ((0, 1), (1, 2), (2, 3), (1, 4))
    assert layout.parents == [1, 1, 1, 2, 1]
    assert layout.flip_permutation == [0, 1, 2, 4, 3]
    assert layout.shoulders == (3, 4)

    graph = Graph(str(path), strategy="spatial")
    assert graph.A.shape == (3, 5, 5) and graph.A.dtype == np.float32
    # the spatial partitions split the column-normalised 1-hop adjacency: their sum has unit columns
    np.testing.assert_allclose(graph.A.sum(0).sum(0), np.ones(5), atol=1e-6)
    # partition 0 is the self links (no two joints of the tree are at the same distance from the centre
    # unless they are siblings, which are not adjacent)
    assert np.count_nonzero(graph.A[0]) == 5
    assert np.count_nonzero(graph.A[1] + graph.A[2]) == 2 * len(layout.edges)

    # the same graph from the dict and from the Layout object
    np.testing.assert_array_equal(Graph(layout).A, graph.A)
    d = dict(num_joints=5, center=1, edges=[[0, 1], [1, 2], [2, 3], [1, 4]])
    np.testing.assert_array_equal(Graph(d).A, graph.A)


def test_normalize_digraph_columns_sum_to_one():
    for layout in (NTU_RGBD, NW_UCLA, layout_from_dict(dict(num_joints=5, center=1,
                                                            edges=[[0, 1], [1, 2], [2, 3], [1, 4]]))):
        v = layout.num_joints
        for max_hop in (1, 2):
            dist = hop_distance(v, layout.edges, max_hop)
            adjacency = (dist <= max_hop).astype(float)
            norm = normalize_digraph(adjacency)
            np.testing.assert_allclose(norm.sum(0), np.ones(v), atol=1e-12)
            for strategy in ("uniform", "distance", "spatial"):
                a = Graph(layout, strategy=strategy, max_hop=max_hop).A
                np.testing.assert_allclose(a.sum(0).sum(0), np.ones(v), atol=1e-6)
            # distance partition k holds exactly the hop-k links
            a = Graph(layout, strategy="distance", max_hop=max_hop).A
            assert a.shape == (max_hop + 1, v, v)
            for hop in range(max_hop + 1):
                assert ((a[hop] != 0) == (dist == hop)).all()
    # a column of zeros stays zero
    np.testing.assert_array_equal(normalize_digraph(np.zeros((3, 3))), np.zeros((3, 3)))


def test_unknown_strategy():
    with pytest.raises(ValueError, match="strategy"):
        Graph("ntu-rgb+d", strategy="spectral")


def base_layout(**changes):
    d = dict(num_joints=5, center=1, edges=[[0, 1], [1, 2], [2, 3], [1, 4]])
    d.update(changes)
    return d


@pytest.mark.parametrize("changes, words", [
    (dict(edges=[[0, 1], [1, 2], [2, 3], [1, 5]]), ["(1, 5)", "outside"]),
    (dict(edges=[[0, 1], [1, 2], [-1, 3], [1, 4]]), ["(-1, 3)", "outside"]),
    (dict(edges=[[0, 1], [1, 2], [1, 4]]), ["[3]", "not connected"]),
    (dict(center=5), ["center", "outside"]),
    (dict(flip_pairs=[[3, 7]]), ["flip pair", "outside"]),
    (dict(shoulders=[0, 9]), ["shoulders", "outside"]),
    (dict(joints=5), ["unknown key", "joints"]),
])
def test_bad_layouts(changes, words):
    with pytest.raises(ValueError) as e:
        layout_from_dict(base_layout(**changes), name="bad")
    for w in words:
        assert w in str(e.value)
    assert "'bad'" in str(e.value)


@pytest.mark.parametrize("key", ["num_joints", "edges", "center"])
def test_missing_key(key):
    d = base_layout()
    del d[key]
    with pytest.raises(ValueError) as e:
        layout_from_dict(d)
    assert "missing" in str(e.value) and key in str(e.value)


def test_bad_layout_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(CUSTOM.replace("[1, 4]]", "[1, 4]]\nflip: [[3, 4]]"))
    with pytest.raises(ValueError) as e:
        get_layout(str(path))
    assert "flip" in str(e.value) and "broken" in str(e.value)
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        get_layout(str(path))
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        get_layout(str(tmp_path / "nope.yaml"))


def test_unknown_builtin_name():
    with pytest.raises(ValueError) as e:
        get_layout("ntu_rgbd")
    assert "ntu_rgbd" in str(e.value) and "ntu-rgb+d" in str(e.value)
    with pytest.raises(ValueError):
        Graph("kinetics")


def test_layout_is_frozen():
    with pytest.raises(Exception):
        NTU_RGBD.center = 0
    assert isinstance(NTU_RGBD, Layout)


# --------------------------------------------------------------------------- the NTU spatial graph


def test_ntu_spatial_graph():
    a = Graph("ntu-rgb+d", strategy="spatial").A
    assert a.shape == (3, 25, 25)
    assert [int(np.count_nonzero(p)) for p in a] == [25, 40, 8]
    assert [round(float(p.sum()), 2) for p in a] == [8.95, 13.3, 2.75]
    np.testing.assert_allclose(a.sum(0).sum(0), np.ones(25), atol=1e-6)


def test_ntu_spatial_graph_matches_golden_checkpoint():
    import torch

    sd = torch.load(golden("actclr_ntu60_xview_joint_linear.pt"), map_location="cpu", weights_only=True)
    expected = sd["encoder_q.A"].numpy()
    a = Graph("ntu-rgb+d", strategy="spatial").A
    assert a.shape == expected.shape == (3, 25, 25)
    np.testing.assert_array_equal(a, expected)


# --------------------------------------------------------------------------- 2-D pose-estimator layouts

LAYOUTS_2D = ("coco-17", "openpose-18", "openpose-25", "mediapipe-33", "penn-action-13")
POSE_DATA = os.path.join(SHARED, "data", "pose_formats")


def openpose_style(name: str) -> bool:
    return len(name) > 2 and name[0] in "LR" and name[1].isupper() and name[2].islower()  # LShoulder, RBigToe


def side(name: str):
    """'left' / 'right' / None from a joint name in any of the layouts' spellings."""
    low = name.lower()
    if low.startswith("left") or low.endswith("_left") or (openpose_style(name) and name[0] == "L"):
        return "left"
    if low.startswith("right") or low.endswith("_right") or (openpose_style(name) and name[0] == "R"):
        return "right"
    return None


def unsided(name: str) -> str:
    """The name without its side: 'left_eye_inner' and 'RIGHT_EYE_INNER' give 'eye_inner'."""
    if openpose_style(name):
        return name[1:].lower()
    return "_".join(w for w in name.lower().split("_") if w not in ("left", "right"))


@pytest.mark.parametrize("name", LAYOUTS_2D)
def test_2d_layout_builds_the_st_gcn_graph_and_bone_stream(name):
    import torch

    from feeder.streams import bone

    layout = get_layout(name)
    v = layout.num_joints
    assert len(JOINT_NAMES[name]) == v and len(set(JOINT_NAMES[name])) == v
    a = Graph(name, strategy="spatial").A
    assert a.shape == (3, v, v) and a.dtype == np.float32
    np.testing.assert_allclose(a.sum(0).sum(0), np.ones(v), atol=1e-6)
    assert np.count_nonzero(a[0]) >= v  # the self links
    assert np.count_nonzero(a[1] + a[2]) == 2 * len(layout.edges) - (np.count_nonzero(a[0]) - v)
    # a connected graph: every joint reaches the centre, its parent one hop closer
    dist = hop_distance(v, layout.edges, max_hop=v)
    assert np.isfinite(dist).all()
    parents = layout.parents
    for j, p in enumerate(parents):
        assert dist[j, layout.center] == (0 if j == layout.center else dist[p, layout.center] + 1)
    x = torch.randn(2, 3, 4, v, 2)
    b = bone(x, name)
    assert b.shape == x.shape
    assert torch.equal(b[:, :, :, layout.center], torch.zeros_like(b[:, :, :, 0]))
    for j, p in enumerate(parents):
        assert torch.equal(b[:, :, :, j], x[:, :, :, j] - x[:, :, :, p])


@pytest.mark.parametrize("name", LAYOUTS_2D)
def test_2d_flip_pairs_are_left_right_pairs_by_name(name):
    layout, names = get_layout(name), JOINT_NAMES[name]
    sided = {j for j, n in enumerate(names) if side(n)}
    paired = set()
    for left, right in layout.flip_pairs:
        assert side(names[left]) == "left" and side(names[right]) == "right", (names[left], names[right])
        assert unsided(names[left]) == unsided(names[right]), (names[left], names[right])
        paired |= {left, right}
    assert paired == sided  # every left / right joint has its mirror, nothing else moves
    perm = layout.flip_permutation
    assert [perm[p] for p in perm] == list(range(layout.num_joints))
    left, right = layout.shoulders
    assert "shoulder" in names[left].lower() and side(names[left]) == "left"
    assert "shoulder" in names[right].lower() and side(names[right]) == "right"


def test_openpose_18_is_st_gcn_openpose_graph():
    # st-gcn net/utils/graph.py, layout 'openpose': its neighbour links and centre
    links = [(4, 3), (3, 2), (7, 6), (6, 5), (13, 12), (12, 11), (10, 9), (9, 8), (11, 5), (8, 2), (5, 1), (2, 1),
             (0, 1), (15, 0), (14, 0), (17, 15), (16, 14)]
    layout = get_layout("openpose-18")
    assert {frozenset(e) for e in layout.edges} == {frozenset(e) for e in links}
    assert layout.center == 1 and JOINT_NAMES["openpose-18"][1] == "Neck"
    # the OpenPose COCO-18 order is BODY_25 without MidHip (8) and the feet (19-24)
    body25 = JOINT_NAMES["openpose-25"]
    assert JOINT_NAMES["openpose-18"] == body25[:8] + body25[9:19]


def test_coco_17_is_pyskl_coco_tree():
    inward = [(15, 13), (13, 11), (16, 14), (14, 12), (11, 5), (12, 6), (9, 7), (7, 5), (10, 8), (8, 6), (5, 0),
              (6, 0), (1, 0), (3, 1), (2, 0), (4, 2)]
    layout = get_layout("coco-17")
    assert {frozenset(e) for e in layout.edges} == {frozenset(e) for e in inward}
    assert layout.parents == [0] + [p for _, p in sorted(inward)]  # pyskl's inward links are child -> parent


def test_penn_action_13_is_coco_without_eyes_and_ears():
    coco, penn = JOINT_NAMES["coco-17"], JOINT_NAMES["penn-action-13"]
    assert penn == ("head",) + coco[5:]
    # its graph is the COCO tree on those joints (the nose's links going to the head)
    keep = [0] + list(range(5, 17))
    coco_edges = {frozenset((keep.index(a), keep.index(b))) for a, b in get_layout("coco-17").edges
                  if a in keep and b in keep}
    assert {frozenset(e) for e in get_layout("penn-action-13").edges} == coco_edges


def test_mediapipe_33_keeps_mediapipe_pose_connections():
    # MediaPipe's POSE_CONNECTIONS (mediapipe/python/solutions/pose_connections.py)
    connections = [(0, 1), (1, 2), (2, 3), (3, 7), (0, 4), (4, 5), (5, 6), (6, 8), (9, 10), (11, 12), (11, 13),
                   (13, 15), (15, 17), (15, 19), (15, 21), (17, 19), (12, 14), (14, 16), (16, 18), (16, 20),
                   (16, 22), (18, 20), (11, 23), (12, 24), (23, 24), (23, 25), (24, 26), (25, 27), (26, 28),
                   (27, 29), (28, 30), (29, 31), (30, 32), (27, 31), (28, 32)]
    edges = {frozenset(e) for e in get_layout("mediapipe-33").edges}
    assert {frozenset(e) for e in connections} <= edges
    added = edges - {frozenset(e) for e in connections}
    names = JOINT_NAMES["mediapipe-33"]
    assert {tuple(sorted(names[j] for j in e)) for e in added} == {
        ("MOUTH_LEFT", "NOSE"), ("MOUTH_RIGHT", "NOSE"), ("LEFT_SHOULDER", "NOSE"), ("NOSE", "RIGHT_SHOULDER")}


def test_2d_joint_orders_match_the_published_files():
    import json

    path = os.path.join(POSE_DATA, "coco_keypoints", "test_coco.json")
    if not os.path.isfile(path):
        pytest.skip(f"real pose files not found at {POSE_DATA}")
    with open(path) as f:
        category = json.load(f)["categories"][0]
    assert tuple(category["keypoints"]) == JOINT_NAMES["coco-17"]
    # COCO's own skeleton (1-based) links only joints of the same side or the midline
    names = JOINT_NAMES["coco-17"]
    for a, b in category["skeleton"]:
        assert {side(names[a - 1]), side(names[b - 1])} != {"left", "right"} or \
            unsided(names[a - 1]) == unsided(names[b - 1])


def test_2d_joint_orders_match_pose_format_files():
    pytest.importorskip("pose_format")
    from pose_format import Pose

    folder = os.path.join(POSE_DATA, "pose_format")
    if not os.path.isdir(folder):
        pytest.skip(f"real .pose files not found at {folder}")
    with open(os.path.join(folder, "openpose.pose"), "rb") as f:
        header = Pose.read(f.read()).header
    assert tuple(header.components[0].points) == JOINT_NAMES["openpose-25"]
    with open(os.path.join(folder, "mediapipe.pose"), "rb") as f:
        header = Pose.read(f.read()).header
    body = [c for c in header.components if c.name == "POSE_LANDMARKS"][0]
    index = [JOINT_NAMES["mediapipe-33"].index(p) for p in body.points]  # the file keeps 8 of the 33, in order
    assert index == sorted(index) and len(index) == 8
    from pose_format.utils.openpose import BODY_LIMBS, BODY_POINTS

    assert tuple(BODY_POINTS) == JOINT_NAMES["openpose-25"]
    limbs = {frozenset(BODY_POINTS.index(p) for p in limb) for limb in BODY_LIMBS}
    ours = {frozenset(e) for e in get_layout("openpose-25").edges}
    # the same body and feet; pose-format links the ears to the nose, OpenPose (and we) to the eyes
    face = {j for j, n in enumerate(BODY_POINTS) if n in ("Nose", "LEye", "REye", "LEar", "REar")}
    assert {e for e in limbs if not e <= face} == {e for e in ours if not e <= face}
