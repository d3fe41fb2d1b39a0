"""torchlight.io (atomic writes, checkpoint loading, strict weight loading) and torchlight.seed RNG state."""
import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from torchlight.io import CheckpointError, atomic_save, atomic_write, extract_state_dict, load_checkpoint, \
    load_weights, matches_prefix
from torchlight.seed import get_rng_state, set_rng_state


def sample_state():
    g = torch.Generator().manual_seed(7)
    return {
        "w": torch.randn(4, 3, generator=g),
        "half": torch.randn(5, generator=g).to(torch.float16),
        "idx": torch.tensor([0, 2**40 + 3, -(2**62)], dtype=torch.int64),
        "flag": torch.tensor([True, False]),
        "nested": {"m": torch.randn(2, 2, 1, 1, generator=g), "step": torch.tensor(12345678901, dtype=torch.int64),
                   "inner": {"z": torch.zeros(0)}},
        "epoch": 3,
    }


def assert_same(a, b):
    assert type(a) is type(b) or isinstance(a, dict) and isinstance(b, dict)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b)
    else:
        assert a == b


# --------------------------------------------------------------------------- atomic writes / load_checkpoint


def test_atomic_save_roundtrip_bit_exact(tmp_path):
    path = tmp_path / "sub" / "ckpt.pt"  # the folder is created
    state = sample_state()
    atomic_save(state, str(path))
    assert_same(state, load_checkpoint(str(path)))
    assert os.listdir(path.parent) == ["ckpt.pt"]
    # overwriting replaces the file
    atomic_save({"x": torch.ones(1)}, str(path))
    assert torch.equal(load_checkpoint(str(path))["x"], torch.ones(1))


def test_interrupted_write_keeps_previous_file(tmp_path):
    path = tmp_path / "ckpt.pt"
    atomic_save({"v": torch.arange(10)}, str(path))
    before = path.read_bytes()

    def half_then_crash(f):
        f.write(b"PK\x03\x04 partial bytes of a new checkpoint")
        raise KeyboardInterrupt  # a BaseException, like Ctrl-C mid-save

    with pytest.raises(KeyboardInterrupt):
        atomic_write(str(path), half_then_crash)

    def fail_in_torch_save(f):
        torch.save({"v": torch.arange(3)}, f)
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        atomic_write(str(path), fail_in_torch_save)
    assert path.read_bytes() == before
    assert torch.equal(load_checkpoint(str(path))["v"], torch.arange(10))
    assert os.listdir(tmp_path) == ["ckpt.pt"]  # no temp files left behind


def test_interrupted_first_write_leaves_nothing(tmp_path):
    path = tmp_path / "new.pt"

    def crash(f):
        f.write(b"abc")
        raise ValueError("boom")

    with pytest.raises(ValueError):
        atomic_write(str(path), crash)
    assert os.listdir(tmp_path) == []


def test_oserror_names_path(tmp_path):
    path = tmp_path / "x.pt"

    def crash(f):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError) as e:
        atomic_write(str(path), crash)
    assert str(path) in str(e.value)
    assert os.listdir(tmp_path) == []


def test_truncated_checkpoint(tmp_path):
    good = tmp_path / "good.pt"
    atomic_save(sample_state(), str(good))
    data = good.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(str(bad))
    assert str(bad) in str(e.value)


@pytest.mark.parametrize("content", [b"this is not a checkpoint\n" * 10, bytes(range(256)) * 4,
                                     b"\x80\x02}q\x00(X\x01",
                                     b"version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 3345\n",
                                     b"<html><body>403 Forbidden</body></html>\n"])
def test_garbage_checkpoint(tmp_path, content):
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(content)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(str(bad))
    assert str(bad) in str(e.value)


def test_empty_and_missing_checkpoint(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(str(empty))
    assert str(empty) in str(e.value) and "empty" in str(e.value)
    missing = tmp_path / "missing.pt"
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(str(missing))
    assert str(missing) in str(e.value)


# --------------------------------------------------------------------------- extract_state_dict


def test_extract_state_dict_layouts():
    sd = {"encoder.x": torch.ones(1), "fc.weight": torch.zeros(2)}
    for obj in (sd, {"model": sd, "epoch": 3}, {"state_dict": sd, "optimizer": {}}):
        out = extract_state_dict(obj)
        assert list(out) == list(sd)
        assert all(out[k] is sd[k] for k in sd)


def test_extract_state_dict_strips_whole_module_segments_only():
    t = torch.ones(1)
    out = extract_state_dict({"module.encoder.x": t, "encoder.submodule.x": t, "encoder.module.y": t,
                              "modules.z": t, "module_a.w": t})
    assert list(out) == ["encoder.x", "encoder.submodule.x", "encoder.y", "modules.z", "module_a.w"]


def test_extract_state_dict_rejects_non_state_dict():
    with pytest.raises(CheckpointError, match="some.pt"):
        extract_state_dict({"epoch": 3, "lr": 0.1}, "some.pt")
    with pytest.raises(CheckpointError, match="some.pt"):
        extract_state_dict([torch.ones(1)], "some.pt")


def test_matches_prefix():
    assert matches_prefix("queue", "queue")
    assert matches_prefix("queue_ptr", "queue")
    assert matches_prefix("queue.x", "queue")
    assert not matches_prefix("queues", "queue")
    assert not matches_prefix("encoder_q.fc2.weight", "encoder_q.fc")
    assert matches_prefix("encoder_q.fc.weight", "encoder_q.fc")


# --------------------------------------------------------------------------- load_weights


class Encoder(nn.Module):
    def __init__(self, d=4, k=3, conv_head=False):
        super().__init__()
        self.body = nn.Linear(2, d)
        self.fc = nn.Conv2d(d, k, 1) if conv_head else nn.Linear(d, k)
        self.fc2 = nn.Linear(d, d)


class MoCoLike(nn.Module):
    def __init__(self, conv_head=False):
        super().__init__()
        self.encoder_q = Encoder(conv_head=conv_head)
        self.register_buffer("queue", torch.randn(4, 5))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))


class Classifier(nn.Module):
    def __init__(self, conv_head=False):
        super().__init__()
        self.encoder_q = Encoder(conv_head=conv_head)


def save_model(model, path, wrap=None):
    sd = model.state_dict()
    atomic_save(sd if wrap is None else {wrap: sd}, str(path))
    return sd


def test_load_weights_strict_success(tmp_path):
    torch.manual_seed(0)
    src = Classifier()
    sd = save_model(src, tmp_path / "w.pt", wrap="model")
    dst = Classifier()
    report = load_weights(dst, str(tmp_path / "w.pt"))
    assert sorted(report.loaded) == sorted(sd)
    assert report.missing == [] and report.unexpected == [] and report.ignored == [] and report.reshaped == []
    for k, v in dst.state_dict().items():
        assert torch.equal(v, sd[k])
    assert "tensors loaded" in report.summary()


def test_load_weights_uses_a_state_the_caller_has_read_without_reading_the_file_again(tmp_path):
    torch.manual_seed(0)
    src = Classifier()
    save_model(src, tmp_path / "w.pt", wrap="model")
    state = extract_state_dict(load_checkpoint(str(tmp_path / "w.pt")), "w.pt")
    os.remove(tmp_path / "w.pt")  # the file is not opened a second time
    dst = Classifier()
    report = load_weights(dst, str(tmp_path / "w.pt"), state=state)
    assert sorted(report.loaded) == sorted(state)
    for k, v in dst.state_dict().items():
        assert torch.equal(v, state[k])


def test_load_weights_ignore_prefix_boundaries(tmp_path):
    torch.manual_seed(0)
    src = MoCoLike()
    sd = save_model(src, tmp_path / "moco.pt")
    dst = Classifier()
    # `queue` drops queue and queue_ptr; `encoder_q.fc` drops fc.* but keeps fc2.*
    report = load_weights(dst, str(tmp_path / "moco.pt"), ignore=["queue", "encoder_q.fc"],
                          allow_missing=["encoder_q.fc"])
    assert sorted(report.ignored) == ["encoder_q.fc.bias", "encoder_q.fc.weight", "queue", "queue_ptr"]
    assert "encoder_q.fc2.weight" in report.loaded and "encoder_q.fc2.bias" in report.loaded
    assert sorted(report.missing) == ["encoder_q.fc.bias", "encoder_q.fc.weight"]
    assert torch.equal(dst.encoder_q.fc2.weight, sd["encoder_q.fc2.weight"])
    assert not torch.equal(dst.encoder_q.fc.weight, sd["encoder_q.fc.weight"])  # the new head stays


def test_load_weights_missing_key_raises(tmp_path):
    src = Classifier()
    sd = src.state_dict()
    del sd["encoder_q.fc2.bias"]
    atomic_save(sd, str(tmp_path / "w.pt"))
    dst = Classifier()
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(CheckpointError) as e:
        load_weights(dst, str(tmp_path / "w.pt"))
    assert "encoder_q.fc2.bias" in str(e.value) and str(tmp_path / "w.pt") in str(e.value)
    # nothing was loaded by the failed call
    for k, v in dst.state_dict().items():
        assert torch.equal(v, before[k])


def test_load_weights_unexpected_key_raises(tmp_path):
    save_model(MoCoLike(), tmp_path / "moco.pt")
    with pytest.raises(CheckpointError) as e:
        load_weights(Classifier(), str(tmp_path / "moco.pt"))
    assert "queue_ptr" in str(e.value) and "ignore_weights" in str(e.value)


def test_load_weights_allow_missing_keeps_head(tmp_path):
    src = Classifier()
    sd = src.state_dict()
    for k in ("encoder_q.fc.weight", "encoder_q.fc.bias"):
        del sd[k]
    atomic_save(sd, str(tmp_path / "w.pt"))
    dst = Classifier()
    head = dst.encoder_q.fc.weight.detach().clone()
    with pytest.raises(CheckpointError, match="encoder_q.fc.weight"):
        load_weights(dst, str(tmp_path / "w.pt"))
    report = load_weights(dst, str(tmp_path / "w.pt"), allow_missing=["encoder_q.fc"])
    assert sorted(report.missing) == ["encoder_q.fc.bias", "encoder_q.fc.weight"]
    assert torch.equal(dst.encoder_q.fc.weight, head)
    assert torch.equal(dst.encoder_q.body.weight, sd["encoder_q.body.weight"])


def test_load_weights_conv_head_into_linear(tmp_path):
    src = Classifier(conv_head=True)
    sd = save_model(src, tmp_path / "conv.pt")
    assert sd["encoder_q.fc.weight"].shape == (3, 4, 1, 1)
    dst = Classifier(conv_head=False)
    report = load_weights(dst, str(tmp_path / "conv.pt"))
    assert report.reshaped == ["encoder_q.fc.weight"]
    assert torch.equal(dst.encoder_q.fc.weight, sd["encoder_q.fc.weight"].reshape(3, 4))
    x = torch.randn(2, 4)
    assert torch.allclose(dst.encoder_q.fc(x), src.encoder_q.fc(x[:, :, None, None]).flatten(1), atol=1e-6)
    # and back: a linear head into a 1x1 conv head
    save_model(dst, tmp_path / "linear.pt")
    back = Classifier(conv_head=True)
    assert load_weights(back, str(tmp_path / "linear.pt")).reshaped == ["encoder_q.fc.weight"]
    assert torch.equal(back.encoder_q.fc.weight, sd["encoder_q.fc.weight"])


def test_load_weights_shape_mismatch_names_key(tmp_path):
    from net.st_gcn import Model

    small = Model(hidden_channels=8, hidden_dim=16, num_class=5)
    save_model(small, tmp_path / "small.pt")
    big = Model(hidden_channels=16, hidden_dim=16, num_class=5)
    first_bad = next(k for k, v in small.state_dict().items() if v.shape != big.state_dict()[k].shape)
    with pytest.raises(CheckpointError) as e:
        load_weights(big, str(tmp_path / "small.pt"))
    msg = str(e.value)
    assert f"`{first_bad}`" in msg and "shape" in msg and str(tmp_path / "small.pt") in msg


def test_load_weights_rename_and_module(tmp_path):
    src = Classifier()
    sd = src.state_dict()
    # a Lightning-style checkpoint of a DDP-wrapped model
    atomic_save({"state_dict": {"model.module." + k: v for k, v in sd.items()}, "epoch": 1},
                str(tmp_path / "lightning.ckpt"))
    dst = Classifier()
    with pytest.raises(CheckpointError, match="model.encoder_q"):
        load_weights(dst, str(tmp_path / "lightning.ckpt"))
    report = load_weights(dst, str(tmp_path / "lightning.ckpt"), rename={"model.": ""})
    assert sorted(report.loaded) == sorted(sd)
    for k, v in dst.state_dict().items():
        assert torch.equal(v, sd[k])
    # a prefix to a different prefix
    atomic_save({"encoder." + k[len("encoder_q."):]: v for k, v in sd.items()}, str(tmp_path / "enc.pt"))
    report = load_weights(Classifier(), str(tmp_path / "enc.pt"), rename={"encoder.": "encoder_q."})
    assert sorted(report.loaded) == sorted(sd)


def test_load_weights_bad_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"nope")
    with pytest.raises(CheckpointError, match=str(bad)):
        load_weights(Classifier(), str(bad))


# --------------------------------------------------------------------------- RNG state


def draws(gen):
    return (random.random(), random.getrandbits(64), np.random.rand(3).tolist(),
            np.random.randint(0, 2**31, 2).tolist(),
            torch.rand(3).tolist(), torch.randint(0, 2**31, (2,)).tolist(), torch.rand(3, generator=gen).tolist())


def test_rng_state_restores_everything():
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    gen = torch.Generator().manual_seed(4)
    draws(gen)  # move away from the seeded states
    state = get_rng_state(gen)
    first = draws(gen)
    draws(gen)
    set_rng_state(state, gen)
    assert draws(gen) == first


def test_rng_state_survives_checkpoint(tmp_path):
    random.seed(11)
    np.random.seed(12)
    torch.manual_seed(13)
    gen = torch.Generator().manual_seed(14)
    draws(gen)
    atomic_save({"rng": get_rng_state(gen)}, str(tmp_path / "rng.pt"))
    first = draws(gen)
    # scramble everything, then restore from the file (weights_only load)
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    gen2 = torch.Generator().manual_seed(0)
    state = torch.load(str(tmp_path / "rng.pt"), map_location="cpu", weights_only=True)["rng"]
    set_rng_state(state, gen2)
    assert draws(gen2) == first
    random.seed(0)
    set_rng_state(load_checkpoint(str(tmp_path / "rng.pt"))["rng"], gen2)
    assert draws(gen2) == first


def test_checkpoint_with_an_argparse_namespace_loads_without_a_full_pickle(tmp_path):
    """Lightning / MAE checkpoints hold argparse Namespaces, which the checkpoint loader admits (and nothing
    else beyond tensors: tests/test_security.py)."""
    import argparse

    sd = Classifier().state_dict()
    atomic_save({"state_dict": sd, "hparams": argparse.Namespace(lr=0.1)}, str(tmp_path / "full.ckpt"))
    obj = load_checkpoint(str(tmp_path / "full.ckpt"))
    assert obj["hparams"].lr == 0.1
    report = load_weights(Classifier(), str(tmp_path / "full.ckpt"))
    assert sorted(report.loaded) == sorted(sd)
