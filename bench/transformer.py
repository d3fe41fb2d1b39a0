"""MAMP pretraining step and STARS tuning step: samples/s and peak memory, SkelSSL vs the upstream formulation.

    python bench/transformer.py [--batch 16] [--steps 3] [--only mamp|stars]

The published model (8 blocks of width 256, 8 heads, 120-frame clips of 25 joints, 2 persons: 750
tokens per person), AdamW steps. "upstream" computes attention the way the research code does
(softmax(q k^T) v materialised) and takes the 120-frame clips ready-made (upstream crops and resizes
per sample in DataLoader workers: not timed); "skelssl" is this repository's step with torch's fused
attention, INCLUDING the batched random crop + resize + rotation of the raw 300-frame batch. MAMP:
90 % of the tokens masked, the encoder sees the 74 visible ones, the 3-block decoder all 750. STARS:
third stage (blocks 4-7, norm and head train), queue 32768, one pass (upstream's two views are the same
clip; it ran the encoder twice: "upstream" does too). Variants run interleaved in one process.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


from bench.pretrain import peak_rss_mb, reset_peak_rss  # noqa: E402
from feeder import augment  # noqa: E402
from net import mamp as mamp_module  # noqa: E402
from net.mamp import MAMP  # noqa: E402
from net.stars import STARS  # noqa: E402
from torchlight.hardware import host_summary  # noqa: E402


def set_attention(model, fused: bool):
    for m in model.modules():
        if isinstance(m, mamp_module.Attention):
            m.use_sdpa = fused  # an instance attribute overrides the class default


def make_step(kind: str, upstream: bool, batch: int):
    torch.manual_seed(0)
    if kind == "mamp":
        model = MAMP(decoder_depth=3)
        groups = model.param_groups({"weight_decay": 0.05})
    else:
        model = STARS(second_pass=upstream)  # upstream runs its identical second view again
        groups = model.param_groups({"weight_decay": 0.01})
    set_attention(model, fused=not upstream)
    model.train()
    opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.95))
    raw = torch.randn(batch, 3, 300, 25, 2)
    raw[:, :, 200:] = 0
    clip = augment.valid_crop_resize(raw, [0.95], 120)
    gen = torch.Generator().manual_seed(0)
    index = torch.arange(batch)

    def step():
        if upstream:
            x = clip  # cropped and resized in the workers, not timed
        else:
            x = augment.uniform_rotate(augment.valid_crop_resize(raw, [0.5, 1], 120, 64, gen), generator=gen)
        loss = model({"views": {"clip": x}, "index": index, "generator": gen})["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=3, help="timed steps per variant (after 1 warm-up)")
    p.add_argument("--only", choices=("mamp", "stars"), default=None)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    kinds = [args.only] if args.only else ["mamp", "stars"]
    print(f"host: {host_summary()}")
    print(f"batch {args.batch}, 120 frames, 25 joints, 2 persons, {args.threads} threads, torch {torch.__version__}")
    print(f"{'step':<6} {'variant':<9} {'samples/s':>10} {'s/step':>8} {'peak RSS MB':>12}")
    for kind in kinds:
        steps = {"upstream": make_step(kind, True, args.batch), "skelssl": make_step(kind, False, args.batch)}
        times, peaks = {k: [] for k in steps}, {k: 0.0 for k in steps}
        for fn in steps.values():
            fn()  # warm-up
        for _ in range(args.steps):
            for name, fn in steps.items():
                reset_peak_rss()
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
                peaks[name] = max(peaks[name], peak_rss_mb())
        rate = {}
        for name, t in times.items():
            med = statistics.median(t)
            rate[name] = args.batch / med
            print(f"{kind:<6} {name:<9} {rate[name]:>10.2f} {med:>8.2f} {peaks[name]:>12.0f}")
        print(f"{kind:<6} speed-up skelssl / upstream: {rate['skelssl'] / rate['upstream']:.2f}x")
    print(f"(median of {args.steps} interleaved steps)")


if __name__ == "__main__":
    main()
