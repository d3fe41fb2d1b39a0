"""Skeleton graphs built from a layout: the ST-GCN partitions (Yan et al., AAAI 2018) and the 2s-AGCN one.

`spatial` / `distance` / `uniform` are ST-GCN's partitions (the CrosSCLR / AimCLR lineage). `agcn` is the
2s-AGCN labelling (Shi et al., CVPR 2019) that SkeleMixCLR's encoders build (its `net/utils/ntu_rgb_d.py`):
three subsets [I, inward, outward], where inward links every joint to its parent on the way to the
layout's centre and outward is the reverse, each column-normalised.
"""
from __future__ import annotations

import numpy as np

from feeder.layouts import get_layout


def hop_distance(num_node: int, edges, max_hop: int = 1) -> np.ndarray:
    adjacency = np.zeros((num_node, num_node))
    for i, j in edges:
        adjacency[i, j] = adjacency[j, i] = 1
    adjacency += np.eye(num_node)  # self links
    dist = np.full((num_node, num_node), np.inf)
    reach = [np.linalg.matrix_power(adjacency, d) for d in range(max_hop + 1)]
    for d in range(max_hop, -1, -1):
        dist[reach[d] > 0] = d
    return dist


def normalize_digraph(a: np.ndarray) -> np.ndarray:
    """A · D^-1 with D the column sums, so every column sums to one."""
    col = a.sum(0)
    inv = np.zeros_like(col)
    inv[col > 0] = 1.0 / col[col > 0]
    return a @ np.diag(inv)


def agcn_partition(num_node: int, parents) -> np.ndarray:
    """(3, V, V) [I, In, Out] of 2s-AGCN: In[p, j] = 1 for every joint j with parent p (columns summing to
    one, since a joint has one parent), Out = its transpose with each column divided by the child count."""
    inward = np.zeros((num_node, num_node))
    for joint, parent in enumerate(parents):
        if joint != parent:  # the centre is its own parent: no link
            inward[parent, joint] = 1
    return np.stack([np.eye(num_node), normalize_digraph(inward), normalize_digraph(inward.T)])


STRATEGIES = ("uniform", "distance", "spatial", "agcn")


class Graph:
    """Adjacency tensor A (K, V, V) for the `uniform`, `distance` or `spatial` partition of ST-GCN, or the
    `agcn` labelling of 2s-AGCN (K = 3; max_hop and dilation do not apply to it).

    layout: a built-in name ('ntu-rgb+d', 'nw-ucla', ...), a layout YAML file, a dict or a Layout.
    """

    def __init__(self, layout="ntu-rgb+d", strategy: str = "spatial", max_hop: int = 1, dilation: int = 1):
        self.layout = get_layout(layout)
        self.num_node = self.layout.num_joints
        self.center = self.layout.center
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown graph strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
        self.strategy = strategy
        self.hop_dis = hop_distance(self.num_node, self.layout.edges, max_hop)
        if strategy == "agcn":
            self.A = agcn_partition(self.num_node, self.layout.parents).astype(np.float32)
            return
        valid_hop = range(0, max_hop + 1, dilation)
        adjacency = np.zeros((self.num_node, self.num_node))
        for hop in valid_hop:
            adjacency[self.hop_dis == hop] = 1
        norm = normalize_digraph(adjacency)
        if strategy == "uniform":
            self.A = norm[None]
        elif strategy == "distance":
            self.A = np.stack([norm * (self.hop_dis == hop) for hop in valid_hop])
        else:
            self.A = self._spatial(norm, valid_hop)
        self.A = self.A.astype(np.float32)

    def _spatial(self, norm: np.ndarray, valid_hop) -> np.ndarray:
        to_center = self.hop_dis[:, self.center]
        parts = []
        for hop in valid_hop:
            on_hop = self.hop_dis == hop
            # root: same distance to the centre; close: the neighbour j is farther than i ... as in ST-GCN
            root = norm * on_hop * (to_center[:, None] == to_center[None, :])
            close = norm * on_hop * (to_center[:, None] > to_center[None, :])
            further = norm * on_hop * (to_center[:, None] < to_center[None, :])
            if hop == 0:
                parts.append(root)
            else:
                parts.append(root + close)
                parts.append(further)
        return np.stack(parts)
