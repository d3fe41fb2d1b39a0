"""The 2s-AGCN graph strategy (`agcn`) that SkeleMixCLR's encoders use, against an independent computation."""
import numpy as np
import pytest
import torch

from net.graph import Graph

# 2s-AGCN's NTU inward links, 1-based (child, parent), as its ntu_rgb_d.py lists them
NTU_INWARD = [(1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9), (11, 10), (12, 11),
              (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19), (22, 23), (23, 8),
              (24, 25), (25, 12)]


def agcn_reference(links, v):
    """[I, In, Out] by 2s-AGCN's recipe: a link (i, j) sets A[j, i] = 1, then each column is divided by its sum."""
    def links_to_matrix(pairs):
        a = np.zeros((v, v))
        for i, j in pairs:
            a[j, i] = 1
        return a

    def column_normalised(a):
        sums = a.sum(0)
        return a * np.where(sums > 0, 1 / np.where(sums > 0, sums, 1), 0)[None, :]

    inward = [(i - 1, j - 1) for i, j in links]
    outward = [(j, i) for i, j in inward]
    return np.stack([links_to_matrix([(i, i) for i in range(v)]), column_normalised(links_to_matrix(inward)),
                     column_normalised(links_to_matrix(outward))])


def test_ntu_agcn_graph_equals_the_2s_agcn_formula():
    a = Graph("ntu-rgb+d", strategy="agcn").A
    np.testing.assert_array_equal(a, agcn_reference(NTU_INWARD, 25).astype(np.float32))
    # the subset sizes that tell it from ST-GCN's spatial partition (25 / 40 / 8 non-zeros there)
    assert [int((s != 0).sum()) for s in a] == [25, 24, 24]
    assert [int((s != 0).sum()) for s in Graph("ntu-rgb+d", strategy="spatial").A] == [25, 40, 8]


def test_agcn_graph_of_every_builtin_layout_is_a_tree_towards_the_centre():
    from feeder.layouts import BUILTIN

    for name, layout in BUILTIN.items():
        a = Graph(name, strategy="agcn").A
        v = layout.num_joints
        assert a.shape == (3, v, v), name
        np.testing.assert_array_equal(a[0], np.eye(v))
        # every joint but the centre has exactly one parent; outward columns sum to one where a joint has children
        assert int((a[1] != 0).sum()) == v - 1, name
        np.testing.assert_allclose(a[1].sum(0)[np.arange(v) != layout.center], 1.0)
        np.testing.assert_array_equal(a[1] != 0, (a[2] != 0).T)
        links = [(j + 1, p + 1) for j, p in enumerate(layout.parents) if j != p]
        np.testing.assert_array_equal(a, agcn_reference(links, v).astype(np.float32))


def test_agcn_graph_of_a_yaml_layout(tmp_path):
    path = tmp_path / "chain.yaml"
    path.write_text("num_joints: 4\ncenter: 1\nedges: [[0, 1], [2, 1], [3, 2]]\n")
    a = Graph(str(path), strategy="agcn").A
    np.testing.assert_array_equal(a, agcn_reference([(1, 2), (3, 2), (4, 3)], 4).astype(np.float32))
    assert a[2][:, 1].tolist() == [0.5, 0, 0.5, 0]  # the centre's two children share its outward column


def test_st_gcn_runs_on_the_agcn_graph():
    from net.st_gcn import Model

    model = Model(hidden_channels=4, hidden_dim=8, num_class=5,
                  graph_args={"layout": "ntu-rgb+d", "strategy": "agcn"}).eval()
    assert model.A.shape == (3, 25, 25)
    assert model(torch.randn(2, 3, 16, 25, 2)).shape == (2, 5)


def test_unknown_strategy_names_the_choices():
    with pytest.raises(ValueError, match="agcn"):
        Graph("ntu-rgb+d", strategy="agnc")
