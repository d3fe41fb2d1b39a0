"""ST-GCN encoder (Yan et al., AAAI 2018) as the contrastive lineage (CrosSCLR / AimCLR) builds it.

Importable as `net.st_gcn.Model` with the lineage constructor and state_dict keys, so upstream
configs and checkpoints load unchanged. Input (N, C, T, V, M); `forward_features` gives the pooled
(N, hidden_dim) feature, `forward_head` the classifier / projector output.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .graph import Graph


class GraphConv(nn.Module):
    """Spatial graph convolution: out = sum_k W_k x A_k (a 1x1 conv to K groups, then mixing joints).

    Parameters are the lineage's (`conv`: Conv2d(in, out*K, 1)), so checkpoints load unchanged, but
    the joints are mixed first and the K groups contracted in one matmul afterwards. The two
    orders are equal (W_k acts on channels, A_k on joints) and mixing first touches K*in channels
    instead of K*out: 4x less memory traffic in the widest block, the step's largest cost on CPU.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv2d(in_channels, out_channels * kernel_size, kernel_size=1)

    def forward(self, x, A):
        """x (N, C, T, V), best in channels-last memory; A (K, V, W). Returns channels-last (N, C', T, W)."""
        n, c, t, v = x.shape
        k, w = self.kernel_size, A.shape[2]
        out_c = self.conv.out_channels // k
        # z[n,t,w,k,c] = sum_v A[k,v,w] x[n,t,v,c]; channels-last x is already (n*t, v, c) in memory
        a = A.permute(2, 0, 1).reshape(w * k, v)
        z = torch.matmul(a, x.permute(0, 2, 3, 1).reshape(n * t, v, c))  # (n*t, w*k, c)
        weight = self.conv.weight.view(k, out_c, c).permute(0, 2, 1).reshape(k * c, out_c)
        out = z.view(n * t * w, k * c) @ weight  # contracts k and c at once
        # the conv bias passes through the joint mixing too: sum_k b_k * (column sums of A_k)
        bias = torch.einsum("kc,kw->wc", self.conv.bias.view(k, out_c), A.sum(1))
        out = out.view(n, t, w, out_c) + bias
        return out.permute(0, 3, 1, 2)


class StridedConv1x1(nn.Conv2d):
    """The residual's 1x1 convolution with temporal stride, run as subsampling then a unit-stride conv.

    Same numbers and keys as nn.Conv2d(in, out, 1, (s, 1)). Why: oneDNN 3.12 (torch 2.13 CPU), given a
    strided 1x1 backward-weights on channels-last input whose channel count is not a multiple of the
    ISA's block (8 on AVX2, 16 on AVX-512), writes past its workspace: heap corruption with 1 thread,
    hangs or silently wrong weight gradients with more (uxlfoundation/oneDNN issue 6035). A unit-stride
    1x1 conv never takes that path; it is slower, so inputs of 16 or more channels (the lineage widths,
    at or above the block on every x86 ISA) keep the strided conv.
    """

    def forward(self, x):
        if self.in_channels >= 16:
            return super().forward(x)
        s_t, s_v = self.stride
        return F.conv2d(x[:, :, ::s_t, ::s_v], self.weight, self.bias)


class FastDropout(nn.Dropout):
    """nn.Dropout with a cheaper mask on CPU (the dropout inside every block was 10 % of a step).

    p = 0.5 (every lineage config): each random byte gives 8 fair coins, 8x fewer draws than the
    Bernoulli kernel; other p: `rand < 1 - p`. Same distribution as nn.Dropout, other random stream.
    """

    _bit_values = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = 1.0 - self.p
        if self.p == 0.5:
            n = x.numel()
            coins = torch.empty((n + 7) // 8, dtype=torch.uint8, device=x.device).random_()
            bits = coins.unsqueeze(1).bitwise_and(self._bit_values.to(x.device)).view(-1)[:n]
            mask = bits.as_strided(x.size(), x.stride()).bool()  # x's (dense) memory layout
        else:
            mask = torch.rand_like(x) < keep
        return torch.where(mask, x, 0.0).mul_(1.0 / keep)


class STGCNBlock(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, dropout=0.0, residual=True):
        super().__init__()
        t_kernel, s_kernel = kernel_size
        pad = (t_kernel - 1) // 2
        self.gcn = GraphConv(in_channels, out_channels, s_kernel)
        self.tcn = nn.Sequential(
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, (t_kernel, 1), (stride, 1), (pad, 0)),
            nn.BatchNorm2d(out_channels),
            FastDropout(dropout),
        )
        if not residual:
            self.residual = None
        elif in_channels == out_channels and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = nn.Sequential(StridedConv1x1(in_channels, out_channels, 1, (stride, 1)),
                                          nn.BatchNorm2d(out_channels))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x, A):
        res = 0 if self.residual is None else self.residual(x)
        return self.relu(self.tcn(self.gcn(x, A)) + res)


class Model(nn.Module):
    """ST-GCN with the lineage's 10 blocks (h, h, h, h, 2h/2, 2h, 2h, 4h/2, 4h, d).

    in_channels: coordinates per joint; hidden_channels h (16 in the SSL lineage); hidden_dim d
    (256), the feature size; num_class: classes or projector output size; dropout inside blocks 1-9;
    graph_args: {layout, strategy[, max_hop, dilation]}; edge_importance_weighting: learnable
    per-block masks on A. num_class None: no classifier (`fc` is the identity, no state_dict keys), the
    encoder alone as 3s-CACA's backbones are built.
    """

    def __init__(self, in_channels=3, hidden_channels=16, hidden_dim=256, num_class=60, dropout=0.5,
                 graph_args=None, edge_importance_weighting=True):
        super().__init__()
        self.graph = Graph(**(graph_args or {"layout": "ntu-rgb+d", "strategy": "spatial"}))
        A = torch.tensor(self.graph.A, dtype=torch.float32)
        self.register_buffer("A", A)
        k, v = A.shape[0], A.shape[1]
        kernel = (9, k)
        h = hidden_channels
        self.data_bn = nn.BatchNorm1d(in_channels * v)
        plan = [(in_channels, h, 1, False, 0.0), (h, h, 1, True, dropout), (h, h, 1, True, dropout),
                (h, h, 1, True, dropout), (h, 2 * h, 2, True, dropout), (2 * h, 2 * h, 1, True, dropout),
                (2 * h, 2 * h, 1, True, dropout), (2 * h, 4 * h, 2, True, dropout),
                (4 * h, 4 * h, 1, True, dropout), (4 * h, hidden_dim, 1, True, dropout)]
        self.st_gcn_networks = nn.ModuleList(
            STGCNBlock(cin, cout, kernel, stride, p, residual) for cin, cout, stride, residual, p in plan)
        self.fc = nn.Identity() if num_class is None else nn.Linear(hidden_dim, num_class)
        if edge_importance_weighting:  # registered after fc: the lineage's state_dict order
            self.edge_importance = nn.ParameterList(nn.Parameter(torch.ones(A.shape)) for _ in plan)
        else:
            self.edge_importance = [1] * len(plan)
        self.hidden_dim = hidden_dim
        self.channels_last = True

    def forward_feature_map(self, x):
        """(N, C, T, V, M) -> (N*M, d, T', V), the last block's output."""
        n, c, t, v, m = x.shape
        x = x.permute(0, 4, 3, 1, 2).reshape(n * m, v * c, t)
        x = self.data_bn(x)
        x = x.view(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)
        # channels-last: the 1x1 / (9,1) convolutions run about 2x faster on CPU, and the graph
        # convolution becomes one matmul (see GraphConv)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for block, importance in zip(self.st_gcn_networks, self.edge_importance):
            x = block(x, self.A * importance)
        return x

    def pool(self, fmap, n: int):
        """Global average over (T', V), then the mean over persons (an absent person counts too)."""
        return fmap.mean(dim=(2, 3)).view(n, -1, fmap.shape[1]).mean(dim=1)

    def forward_features(self, x):
        return self.pool(self.forward_feature_map(x), x.shape[0])

    def forward_head(self, features):
        return self.fc(features)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))
