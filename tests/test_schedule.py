"""Learning-rate schedules of processor/base.py against their definitions."""
import math
from types import SimpleNamespace

import pytest

from processor.base import BASE_DEFAULTS, Processor


def lr(epoch_float, **cfg):
    return Processor.lr_at(SimpleNamespace(cfg={**BASE_DEFAULTS, **cfg}), epoch_float)


def test_lineage_step_schedule():
    """Epoch e (1-based) uses base * 0.1^#{s in step : e > s}: step [250] -> 0.1 for epochs 1-250."""
    cfg = dict(base_lr=0.1, step=[250], scheduler="step")
    assert lr(0, **cfg) == pytest.approx(0.1)
    assert lr(249.99, **cfg) == pytest.approx(0.1)  # inside epoch 250 (1-based)
    assert lr(250, **cfg) == pytest.approx(0.01)  # epoch 251
    assert lr(90, base_lr=1.0, step=[60, 80]) == pytest.approx(0.01)


def test_linear_warm_up_then_cosine():
    cfg = dict(base_lr=1e-3, min_lr=5e-4, warm_up_epoch=20, num_epoch=400, scheduler="cosine")
    assert lr(0, **cfg) == 0.0
    assert lr(10, **cfg) == pytest.approx(5e-4)
    assert lr(20, **cfg) == pytest.approx(1e-3)
    assert lr(210, **cfg) == pytest.approx(5e-4 + 5e-4 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr(400, **cfg) == pytest.approx(5e-4)


def test_constant():
    assert lr(123.4, base_lr=0.3, scheduler="constant", step=[1]) == 0.3
