"""SkeletonCLR pretraining step: samples/s and peak memory, SkelSSL vs the upstream formulation.

    python bench/pretrain.py [--batch 128] [--frames 50] [--persons 2] [--joints 25] [--steps 4]

"upstream" is the lineage's ST-GCN written the way the research code computes it (NCHW tensors,
an einsum graph convolution, nn.Dropout's Bernoulli kernel), with the same parameters, inside the
same SkeletonCLR step (query + key encoder, InfoNCE against the queue, SGD step), WITHOUT data
augmentation (upstream does it per sample in DataLoader workers: see bench/augment.py).
"skelssl" is this repository's step INCLUDING its batched augmentation of both views.
Both run in this process, interleaved, so they see the same machine.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch
from torch import nn


from feeder import augment  # noqa: E402
from net import st_gcn  # noqa: E402
from net.skeletonclr import SkeletonCLR  # noqa: E402
from torchlight.hardware import host_summary  # noqa: E402


class EinsumGraphConv(st_gcn.GraphConv):
    """The upstream formulation: NCHW activations, einsum over (k, v), then a contiguous copy."""

    def forward(self, x, A):
        y = self.conv(x)
        n, kc, t, v = y.shape
        y = y.view(n, self.kernel_size, kc // self.kernel_size, t, v)
        return torch.einsum("nkctv,kvw->nctw", y, A).contiguous()


def to_upstream(model: SkeletonCLR) -> SkeletonCLR:
    """Same weights, upstream computation: einsum graph conv, Bernoulli dropout, NCHW memory."""
    for enc in (model.encoder_q, model.encoder_k):
        enc.channels_last = False
        for block in enc.st_gcn_networks:
            gcn = EinsumGraphConv(1, 1, block.gcn.kernel_size)
            gcn.conv = block.gcn.conv
            block.gcn = gcn
            block.tcn[4] = nn.Dropout(block.tcn[4].p, inplace=True)
    return model


def build(args, upstream: bool):
    layout = "ntu-rgb+d" if args.joints == 25 else "nw-ucla"
    torch.manual_seed(0)
    model = SkeletonCLR(queue_size=32768, num_class=60, graph_args={"layout": layout, "strategy": "spatial"})
    if upstream:
        model = to_upstream(model)
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9,
                          weight_decay=1e-4)
    return model, opt


def make_step(args, upstream: bool, compile_model: bool = False):
    model, opt = build(args, upstream)
    if compile_model:  # the encoders only: the queue bookkeeping stays eager
        model.encoder_q, model.encoder_k = torch.compile(model.encoder_q), torch.compile(model.encoder_k)
    x = torch.randn(args.batch, 3, args.frames, args.joints, args.persons)
    gen = torch.Generator().manual_seed(0)

    def step():
        if upstream:
            views = [x, x.clone()]  # augmentation happened in the workers, not timed
        else:
            views = [augment.normal_augment(x, 0.5, 6, generator=gen) for _ in range(2)]
        loss = model({"views": {"query": views[0], "key": views[1]}})["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def reset_peak_rss():
    """Linux: reset the process's resident-memory high-water mark (VmHWM)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--frames", type=int, default=50)
    p.add_argument("--persons", type=int, default=2)
    p.add_argument("--joints", type=int, default=25, choices=(20, 25))
    p.add_argument("--steps", type=int, default=4, help="timed steps per variant (after 1 warm-up)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--compile", action="store_true", help="add torch.compile'd encoders (a few minutes to compile)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    steps = {"upstream": make_step(args, True), "skelssl": make_step(args, False)}
    if args.compile:
        steps["skelssl+compile"] = make_step(args, False, compile_model=True)
    times = {k: [] for k in steps}
    peaks = {k: 0.0 for k in steps}
    for fn in steps.values():
        fn()  # warm-up (allocator, oneDNN primitive caches)
    for _ in range(args.steps):  # interleave so both see the same machine load
        for name, fn in steps.items():
            reset_peak_rss()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            peaks[name] = max(peaks[name], peak_rss_mb())
    print(f"host: {host_summary()}")
    print(f"SkeletonCLR step, batch {args.batch}, {args.frames} frames, {args.joints} joints, {args.persons} "
          f"persons, {args.threads} threads, torch {torch.__version__}")
    print(f"{'variant':<16} {'samples/s':>10} {'s/step':>8} {'peak RSS MB':>12}  note")
    rate = {}
    for name, t in times.items():
        med = statistics.median(t)
        rate[name] = args.batch / med
        note = "augmentation excluded" if name == "upstream" else "incl. batched augmentation of 2 views"
        print(f"{name:<16} {rate[name]:>10.1f} {med:>8.2f} {peaks[name]:>12.0f}  {note}")
    for name in rate:
        if name != "upstream":
            print(f"speed-up {name} / upstream: {rate[name] / rate['upstream']:.2f}x")
    print(f"(median of {args.steps} "
          f"interleaved steps; peak RSS = the process's high-water mark during that variant's steps)")


if __name__ == "__main__":
    main()
