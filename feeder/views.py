"""View recipes: how a batch read from any dataset becomes the named views a method consumes.

A recipe is a small callable made from the config: `recipe(x, generator) -> {name: view}` on a whole
batch (N, C, T, V, M) already on the training device, batched, from the run's generator. Its `names` say
which views it makes; a method's `views` say which it consumes, by name, and the pretraining loop checks
the two at start-up (ConfigError naming both sides). Readers (`feeder.ntu_feeder.Feeder`,
`feeder.npz_feeder.Feeder`, ...) only read a format; any recipe runs on any reader.

The recipes (config `views: {recipe: <name>, <its arguments>}`):

| recipe | views | used by |
|---|---|---|
| `clip` | clip | MAMP, STARS, a fine-tuning run that augments |
| `normal_pair` | query, key | SkeletonCLR, CrosSCLR, 3s-CACA, ASAR |
| `extreme_normal_pair` | extreme, query, key | AimCLR |
| `strong_weak` | strong, weak | HYSP |
| `multi_resolution` | query, query_1, ..., key | SkeleMixCLR(+): a query per `frames` entry |

Every view starts from the *normal* augmentation: a random MAMP crop of the valid frames resized to
`window_size` (`p_interval: [p0, p1]`), a uniform rotation (`random_rot`), a temporal crop with reflection
padding (`temperal_padding_ratio`, the lineage's spelling) and a shear (`shear_amplitude`); each step is off
unless asked for. The extreme / strong views add AimCLR's augmentations named by the digits of
`aug_method` (1 flip, 2 rotate, 3 noise, 4 blur, 5 axis mask, 6 time flip).

2-D data from video pose estimators (channels x, y[, score]): `coords: 2`. Shear, `scale: [lo, hi]` and
`rotate_deg` act on x, y in the image plane (no rotation out of it), the extreme rotation is in-plane, noise,
blur and axis mask touch x, y only, the flip swaps the layout's left / right joints with their scores, and a
missing joint (score 0) stays exactly zero after every augmentation.
"""
from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

from torchlight.config import ConfigError

from . import augment


class NormalView:
    """The normal augmentation of one view (see the module docstring); every step off by default."""

    def __init__(self, shear_amplitude=-1.0, temperal_padding_ratio=-1, p_interval=None, window_size=-1,
                 random_rot=False, min_crop_frames=64, coords=3, scale=None, rotate_deg=0.0):
        if int(coords) not in (2, 3):
            raise ConfigError(f"views: coords must be 3 (x, y, z) or 2 (x, y[, score] from 2-D pose), got {coords}")
        self.coords = int(coords)
        if self.coords == 3 and (scale is not None or rotate_deg):
            raise ConfigError("views: `scale` and `rotate_deg` are the 2-D (image-plane) augmentations: set coords: 2")
        self.scale, self.rotate_deg = scale, float(rotate_deg)
        self.shear_amplitude, self.padding_ratio = float(shear_amplitude), int(temperal_padding_ratio)
        p = None if p_interval is None else [float(v) for v in (p_interval if isinstance(p_interval, (list, tuple))
                                                               else [p_interval])]
        # a single p is a deterministic centre crop, which the reader applies when it reads (evaluation too)
        self.random_crop = p if p is not None and len(p) == 2 else None
        if self.random_crop is not None and int(window_size) <= 0:
            raise ConfigError(f"views: a random crop p_interval {p} needs window_size (the frames to resize to)")
        self.window_size, self.random_rot, self.min_crop_frames = int(window_size), bool(random_rot), int(min_crop_frames)

    @property
    def augments(self) -> bool:
        return (self.shear_amplitude > 0 or self.padding_ratio > 0 or self.random_crop is not None or self.random_rot
                or self.scale is not None or self.rotate_deg > 0)

    def __call__(self, x, generator=None):
        if self.random_crop is not None:
            x = augment.valid_crop_resize(x, self.random_crop, self.window_size, self.min_crop_frames, generator)
        if self.coords == 2:  # image-plane data: temporal crop, then shear / scale / rotation of x, y only
            x = augment.temporal_crop(x, self.padding_ratio, generator)
            x = augment.shear_2d(x, self.shear_amplitude, generator)
            if self.scale is not None:
                x = augment.scale_2d(x, self.scale, generator)
            if self.rotate_deg > 0:
                x = augment.rotate_2d(x, self.rotate_deg, generator)
            return augment.keep_missing(x)
        if self.random_rot:
            x = augment.uniform_rotate(x, generator=generator)
        return augment.normal_augment(x, self.shear_amplitude, self.padding_ratio, generator=generator)


class ViewRecipe:
    """Base of the recipes: `names` of the views made, `augments` (whether any view differs from the input)."""

    names: tuple = ()

    def __init__(self, layout=None, **normal):
        self.layout = layout
        self.normal = NormalView(**normal)

    @property
    def augments(self) -> bool:
        return self.normal.augments

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        raise NotImplementedError

    def extreme(self, x, generator, aug_method, blur_normalize):
        flip = self.layout.flip_permutation if self.layout is not None else None
        return augment.extreme_augment(x, aug_method, flip, generator=generator, blur_normalize=blur_normalize,
                                       coords=self.normal.coords)

    def __repr__(self):
        return f"{type(self).__name__} -> {', '.join(self.names)}"


class Clip(ViewRecipe):
    """One view: the normal augmentation (MAMP's clip, a fine-tuning run's augmented input)."""

    names = ("clip",)

    def __call__(self, x, generator=None):
        return {"clip": self.normal(x, generator)}


class NormalPair(ViewRecipe):
    """Two independently augmented views (SkeletonCLR's `Feeder_dual`)."""

    names = ("query", "key")

    def __call__(self, x, generator=None):
        return {"query": self.normal(x, generator), "key": self.normal(x, generator)}


class ExtremeNormalPair(ViewRecipe):
    """AimCLR's three views (`Feeder_triple`): extreme = normal then the `aug_method` augmentations, and a
    normal pair; drawn in that order, as upstream's feeder does."""

    names = ("extreme", "query", "key")

    def __init__(self, layout=None, aug_method="12345", blur_normalize=False, **normal):
        super().__init__(layout, **normal)
        self.aug_method, self.blur_normalize = str(aug_method), bool(blur_normalize)

    @property
    def augments(self) -> bool:
        return True

    def __call__(self, x, generator=None):
        extreme = self.extreme(self.normal(x, generator), generator, self.aug_method, self.blur_normalize)
        return {"extreme": extreme, "query": self.normal(x, generator), "key": self.normal(x, generator)}


class StrongWeak(ExtremeNormalPair):
    """HYSP's views (`Feeder_double`): strong = normal then the `aug_method` augmentations (its default
    "123456" includes the time flip), weak = normal."""

    names = ("strong", "weak")

    def __init__(self, layout=None, aug_method="123456", blur_normalize=False, **normal):
        super().__init__(layout, aug_method, blur_normalize, **normal)

    def __call__(self, x, generator=None):
        strong = self.extreme(self.normal(x, generator), generator, self.aug_method, self.blur_normalize)
        return {"strong": strong, "weak": self.normal(x, generator)}


def resize_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    """(N, C, T, V, M) -> (N, C, frames, V, M) by linear interpolation over time with half-pixel
    centres and clamped ends (OpenCV's INTER_LINEAR, which SkeleMixCLR's `frames_resize` uses)."""
    n, c, t, v, m = x.shape
    if t == frames:
        return x
    flat = x.permute(0, 1, 3, 4, 2).reshape(n, c * v * m, t)
    out = F.interpolate(flat, size=frames, mode="linear", align_corners=False)
    return out.view(n, c, v, m, frames).permute(0, 1, 4, 2, 3).contiguous()


def multi_resolution_names(count: int) -> tuple:
    """("query", "query_1", ..., "key") for `count` query views."""
    return ("query",) + tuple(f"query_{i}" for i in range(1, count)) + ("key",)


class MultiResolution(ViewRecipe):
    """SkeleMixCLR+'s views (`Feeder_multi`): one query per entry of `frames`, each resized to that frame
    count, then a key at frames[0]; each view resized, then normally augmented, independently."""

    def __init__(self, layout=None, frames=(64,), **normal):
        super().__init__(layout, **normal)
        frames = [int(f) for f in (frames if isinstance(frames, (list, tuple)) else [frames])]
        if not frames or min(frames) <= 0:
            raise ConfigError(f"views: `frames` must be a non-empty list of positive frame counts, got {frames}")
        self.frames = frames
        self.names = multi_resolution_names(len(frames))

    @property
    def augments(self) -> bool:
        return True

    def __call__(self, x, generator=None):
        views = [self.normal(resize_frames(x, f), generator) for f in self.frames]
        views.append(self.normal(resize_frames(x, self.frames[0]), generator))
        return dict(zip(self.names, views))


RECIPES = {"clip": Clip, "normal_pair": NormalPair, "extreme_normal_pair": ExtremeNormalPair,
           "strong_weak": StrongWeak, "multi_resolution": MultiResolution}


def make_recipe(spec: dict, layout=None) -> ViewRecipe:
    """A recipe from a config mapping {recipe: name, <arguments>}; ConfigError naming a bad name or argument."""
    from torchlight.config import closest

    spec = dict(spec or {})
    name = spec.pop("recipe", None)
    if name not in RECIPES:
        raise ConfigError(f"config key `views.recipe`: {name!r} is not one of {list(RECIPES)}{closest(name, RECIPES)}")
    cls = RECIPES[name]
    accepted = {p for f in (NormalView.__init__, cls.__init__) for p in inspect.signature(f).parameters} - \
        {"self", "layout", "normal"}
    for key in spec:
        if key not in accepted:
            raise ConfigError(f"config key `views.{key}` is not an argument of the `{name}` recipe"
                              f"{closest(key, accepted)}; it takes {sorted(accepted)}")
    return cls(layout=layout, **spec)


def recipe_for(spec: dict | None, dataset, default: dict | None = None, feeder: str = "the feeder") -> ViewRecipe:
    """The views of a run's training batches: `spec` (the config's `views`), else what a legacy feeder class's
    augmentation arguments describe (`dataset.view_recipe`: Feeder_dual, ...), else `default` (a method's
    default recipe spec; None: one `clip` view without augmentation)."""
    legacy = getattr(dataset, "view_recipe", None)
    if spec:
        if legacy is not None and legacy.augments:
            raise ConfigError(f"augmentation is set twice: by `views` and by the arguments of `{feeder}` (a legacy "
                              f"feeder class); keep one (`views` and a reader such as feeder.ntu_feeder.LineageReader)")
        return make_recipe(spec, dataset.layout)
    if legacy is not None:
        return legacy
    return make_recipe(default, dataset.layout) if default else Clip(layout=dataset.layout)


def check_views(method_views, recipe: ViewRecipe, method: str) -> list:
    """ConfigError when the recipe does not make every view the method consumes; the names it makes that the
    method does not consume (the caller warns: computed for nothing)."""
    missing = [v for v in method_views if v not in recipe.names]
    if missing:
        raise ConfigError(f"{method} consumes the views {list(method_views)} but the view recipe {recipe!r} makes "
                          f"{list(recipe.names)} (missing {missing}); set `views: {{recipe: ...}}` (feeder/views.py "
                          f"lists the recipes) or use the method's feeder")
    return [v for v in recipe.names if v not in method_views]
