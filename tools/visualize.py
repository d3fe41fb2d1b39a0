"""Pictures of a run: training curves, t-SNE of frozen features, skeleton renders of samples and views.

    python tools/visualize.py curves work_dir/demo/skeletonclr/pretext [more work_dirs] --out curves.png
    python tools/visualize.py tsne --config config/demo/skeletonclr_linear.yaml \\
        --weights work_dir/demo/skeletonclr/pretext/latest.pt --out tsne.png [--split test] [--method umap]
    python tools/visualize.py skeleton --data data/nw_ucla/frame50/train_position.npy --index 0 \\
        --out sample.gif [--strip sample.png] [--views config/demo/skeletonclr_pretrain.yaml]

`curves` reads each run's metrics.jsonl (one record per epoch: loss, lr, kNN monitor, accuracies).
`tsne` embeds the pooled features of an evaluation config's split (the same loading and feature
path as linear evaluation and kNN) in 2-D, coloured by class (UMAP with `--method umap` where
umap-learn is installed). `skeleton` draws any sample of any layout (front view, x-y plane) as an
animated GIF (MP4 if the name ends in .mp4 and ffmpeg is available) and a still strip; with
`--views` it draws the augmented views the config's training feeder makes, side by side.
Every function is importable: render_frames, render_strip, save_animation, plot_curves, embed.
"""
from __future__ import annotations

import argparse
import os


import numpy as np  # noqa: E402

from feeder.layouts import get_layout  # noqa: E402
from torchlight import plots  # noqa: E402


# --- skeletons ------------------------------------------------------------------------------------
def _valid_frames(sample: np.ndarray) -> int:
    """Frames up to the last non-zero one (the lineage pads with zeros)."""
    nonzero = np.flatnonzero(np.abs(sample).sum(axis=(0, 2, 3)) > 0)
    return int(nonzero[-1]) + 1 if len(nonzero) else sample.shape[1]


def render_frames(views: list, layout="ntu-rgb+d", titles=None, size: float = 2.6, frames=None) -> list:
    """RGB images (H, W, 3) uint8, one per frame, of the views (each (C, T, V, M)) side by side;
    a title may hold `{t}` for the frame index."""
    plt = plots.pyplot()
    layout = get_layout(layout)
    views = [np.asarray(v, dtype=np.float32) for v in views]
    t_max = max(_valid_frames(v) for v in views)
    frames = range(t_max) if frames is None else frames
    # one fixed box per view over all its frames, so the body moves rather than the axes
    boxes = []
    for v in views:
        pts = v[:2, :t_max].transpose(1, 2, 3, 0).reshape(-1, 2)
        pts = pts[np.abs(pts).sum(1) > 0] if (np.abs(pts).sum(1) > 0).any() else pts
        lo, hi = pts.min(0), pts.max(0)
        pad = 0.1 * max(float((hi - lo).max()), 1e-3)
        boxes.append((lo - pad, hi + pad))
    fig, axes = plt.subplots(1, len(views), figsize=(size * len(views), size), squeeze=False)
    axes = axes[0]
    images = []
    for t in frames:
        for i, (ax, v) in enumerate(zip(axes, views)):
            ax.cla()
            ax.set_xlim(boxes[i][0][0], boxes[i][1][0])
            ax.set_ylim(boxes[i][0][1], boxes[i][1][1])
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            if titles:
                ax.set_title(titles[i].format(t=t), fontsize=8)
            tt = min(t, v.shape[1] - 1)
            for m in range(v.shape[3]):
                xy = v[:2, tt, :, m]
                if not np.abs(xy).any():
                    continue  # an absent second body
                for a, b in layout.edges:
                    ax.plot(xy[0, [a, b]], xy[1, [a, b]], "-", color=f"C{m}", lw=1.5)
                ax.plot(xy[0], xy[1], "o", color=f"C{m}", ms=2.5)
        fig.canvas.draw()
        images.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    plt.close(fig)
    return images


def render_strip(views: list, layout="ntu-rgb+d", n_frames: int = 8, titles=None) -> np.ndarray:
    """One still image: n_frames evenly spaced frames (columns) of each view (rows)."""
    t_max = max(_valid_frames(np.asarray(v)) for v in views)
    picks = np.linspace(0, t_max - 1, n_frames).round().astype(int)
    rows = []
    for i, v in enumerate(views):
        title = (titles[i] + " " if titles else "") + "t={t}"
        imgs = render_frames([v], layout, titles=[title], size=1.6, frames=picks)
        rows.append(np.concatenate(imgs, axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, axis=0)


def save_animation(images: list, path: str, fps: int = 15):
    """GIF with Pillow (always available with matplotlib); MP4 through matplotlib's ffmpeg writer."""
    from PIL import Image

    from torchlight.io import atomic_write

    if path.endswith(".mp4"):
        import shutil
        if not shutil.which("ffmpeg"):
            raise SystemExit(f"error: {path}: MP4 needs ffmpeg on PATH; write a .gif instead")
        plt = plots.pyplot()
        from matplotlib.animation import FFMpegWriter
        fig = plt.figure(figsize=(images[0].shape[1] / 100, images[0].shape[0] / 100), dpi=100)
        ax = fig.add_axes([0, 0, 1, 1])
        ax.axis("off")
        writer = FFMpegWriter(fps=fps)
        with writer.saving(fig, path, dpi=100):
            for img in images:
                ax.imshow(img)
                writer.grab_frame()
        plt.close(fig)
        return
    frames = [Image.fromarray(img) for img in images]
    atomic_write(path, lambda f: frames[0].save(f, format="GIF", save_all=True, append_images=frames[1:],
                                                duration=int(1000 / fps), loop=0))


def save_png(image: np.ndarray, path: str):
    from PIL import Image

    from torchlight.io import atomic_write
    atomic_write(path, lambda f: Image.fromarray(image).save(f, format="PNG"))


def augmented_views(sample: np.ndarray, config, seed: int = 0) -> tuple:
    """([original, view 1, ...], titles): the views the training run of `config` (a path or a loaded
    dict) makes of this sample (its training feeder is built, so its data must exist; only the view
    recipe is used: the config's `views`, the legacy feeder's, or the method's default)."""
    import torch

    from feeder.views import recipe_for
    from torchlight.config import load_yaml, resolve_path
    from torchlight.util import import_class, instantiate

    cfg = load_yaml(config) if isinstance(config, str) else config
    args = {k: resolve_path(v) if k in ("data_path", "label_path") else v
            for k, v in (cfg.get("train_feeder_args") or {}).items()}
    feeder = cfg.get("train_feeder", "feeder.ntu_feeder.LineageReader")
    ds = instantiate(feeder, {**args, "check_data": False}, where="train_feeder_args")
    default = getattr(import_class(cfg["model"]), "default_views", None) if cfg.get("model") else None
    recipe = recipe_for(cfg.get("views"), ds, default, feeder)
    x = ds._read(torch.from_numpy(np.array(sample, dtype=np.float32))[None])
    views = recipe(x, torch.Generator().manual_seed(seed))
    return [x[0].numpy()] + [v[0].numpy() for v in views.values()], ["original"] + list(views)


# --- curves ---------------------------------------------------------------------------------------
def read_metrics(work_dir: str) -> list:
    try:
        return plots.read_metrics(work_dir)
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}") from None


def plot_curves(work_dirs: list, path: str, labels=None):
    """Training curves of several runs in one figure (torchlight.plots draws them)."""
    labels = labels or [os.path.basename(os.path.normpath(w)) for w in work_dirs]
    plots.plot_curves([read_metrics(w) for w in work_dirs], path, labels)


# --- t-SNE ----------------------------------------------------------------------------------------
def embed(features: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """(N, 2) embedding of L2-normalised features."""
    x = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise SystemExit("error: --method umap needs `pip install umap-learn`; or use tsne") from None
        return umap.UMAP(random_state=seed).fit_transform(x)
    from sklearn.manifold import TSNE
    return TSNE(n_components=2, init="pca", random_state=seed, perplexity=min(30.0, (len(x) - 1) / 3)).fit_transform(x)


def plot_embedding(xy: np.ndarray, labels: np.ndarray, path: str, title: str):
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(6, 5.5))
    classes = np.unique(labels)
    cmap = plt.get_cmap("tab20" if len(classes) > 10 else "tab10")
    for i, c in enumerate(classes):
        sel = labels == c
        ax.scatter(xy[sel, 0], xy[sel, 1], s=6, color=cmap(i % cmap.N), label=str(c) if len(classes) <= 20 else None)
    if len(classes) <= 20:
        ax.legend(fontsize=6, markerscale=2, title="class", title_fontsize=7, loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    plots.save_fig(fig, path)
    plt.close(fig)


def features_of(config, weights, split: str, work_dir: str, max_samples: int, seed: int) -> tuple:
    """Pooled features and labels of a split of an evaluation config (a path or a loaded dict), with
    the encoder loaded exactly as linear evaluation loads it."""
    from processor.evaluation import Evaluation
    from torchlight.config import load_yaml

    base = load_yaml(config) if isinstance(config, str) else dict(config)
    cfg = {**base, "config": config if isinstance(config, str) else base.get("config"), "weights": weights,
           "work_dir": work_dir, "num_epoch": 0, "tensorboard": False, "resume": "none"}
    proc = Evaluation(cfg, name="tsne")
    ds = proc.train_set if split == "train" else proc.test_set
    if len(ds) > max_samples:
        rows = np.sort(np.random.default_rng(seed).choice(len(ds), max_samples, replace=False))
        ds.select(rows)
    feats, labels, _ = proc.features(ds, f"{split} features")
    return feats.cpu().numpy(), labels.cpu().numpy()


# --- CLI ------------------------------------------------------------------------------------------
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("curves", help="training curves from metrics.jsonl")
    c.add_argument("work_dirs", nargs="+")
    c.add_argument("--out", required=True)
    t = sub.add_parser("tsne", help="2-D embedding of frozen features, coloured by class")
    t.add_argument("--config", required=True, help="an evaluation config (linear / knn)")
    t.add_argument("--weights", help="pretrained checkpoint (default: the config's; 'null' for random init)")
    t.add_argument("--split", choices=["train", "test"], default="test")
    t.add_argument("--method", choices=["tsne", "umap"], default="tsne")
    t.add_argument("--max_samples", type=int, default=3000)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True)
    s = sub.add_parser("skeleton", help="animated GIF / MP4 and a still strip of a sample")
    s.add_argument("--data", required=True, help="(N, C, T, V, M) .npy")
    s.add_argument("--index", type=int, default=0)
    s.add_argument("--layout", default=None, help="layout name or YAML (default: from the joint count)")
    s.add_argument("--views", help="a pretraining config: also draw the views its training feeder makes")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--fps", type=int, default=15)
    s.add_argument("--out", required=True, help=".gif or .mp4")
    s.add_argument("--strip", help="also write a still strip (.png)")
    args = p.parse_args(argv)

    if args.cmd == "curves":
        plot_curves(args.work_dirs, args.out)
    elif args.cmd == "tsne":
        from torchlight.config import load_yaml
        weights = load_yaml(args.config).get("weights") if args.weights is None else args.weights
        weights = None if weights in (None, "null", "none") else weights
        import shutil
        import tempfile
        out_dir = tempfile.mkdtemp(prefix="tsne_")  # the evaluation's log; nothing in it is kept
        try:
            feats, labels = features_of(args.config, weights, args.split, out_dir, args.max_samples, args.seed)
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
        xy = embed(feats, args.method, args.seed)
        title = f"{args.method.upper()} of {args.split} features ({len(labels)} samples)\n{weights or 'random init'}"
        plot_embedding(xy, labels, args.out, title)
    else:
        data = np.load(args.data, mmap_mode="r")
        if not 0 <= args.index < len(data):
            raise SystemExit(f"error: --index {args.index} outside 0..{len(data) - 1} of {args.data}")
        sample = np.asarray(data[args.index], dtype=np.float32)
        from feeder.ntu_feeder import LAYOUT_BY_JOINTS
        layout = args.layout or LAYOUT_BY_JOINTS.get(sample.shape[2])
        if layout is None:
            raise SystemExit(f"error: {args.data} has {sample.shape[2]} joints: pass --layout")
        views, titles = ([sample], None) if not args.views else augmented_views(sample, args.views, args.seed)
        save_animation(render_frames(views, layout, titles), args.out, args.fps)
        if args.strip:
            save_png(render_strip(views, layout, titles=titles), args.strip)
    print(f"wrote {args.out}" + (f" and {args.strip}" if getattr(args, "strip", None) else ""))


if __name__ == "__main__":
    main()
