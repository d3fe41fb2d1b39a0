"""Skeleton layouts (feeder/layouts.py) and the ST-GCN graph built from them (net/graph.py)."""
import os

import numpy as np
import pytest
from conftest import GOLDEN

from feeder.layouts import BUILTIN, NTU_RGBD, NW_UCLA, Layout, get_layout, layout_from_dict
from net.graph import Graph, hop_distance, normalize_digraph



def golden(name):
    path = os.path.join(GOLDEN, name)
    if not os.path.isfile(path):
        pytest.skip(f"golden file {name} not available (../shared beside the repo)")
    return path


# --------------------------------------------------------------------------- built-in layouts


def test_builtin_names():
    assert set(BUILTIN) == {"ntu-rgb+d", "nw-ucla"}
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
