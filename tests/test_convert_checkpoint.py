"""tools/convert_checkpoint.py on the real upstream weights in ../shared/golden, in each upstream layout."""
import argparse
import os

import pytest
import torch

from net.mamp import MAMP, Transformer
from net.skeletonclr import SkeletonCLR
from tools import convert_checkpoint
from torchlight.io import load_weights


@pytest.fixture(scope="module")
def mamp_state(golden_dir):
    return torch.load(os.path.join(golden_dir, "mamp_seed0_state_dict.pt"), map_location="cpu", weights_only=True)


def convert(tmp_path, obj, *args):
    src, dst = tmp_path / "src.pt", tmp_path / "dst.pt"
    torch.save(obj, src)
    assert convert_checkpoint.main([str(src), str(dst), *args]) == 0
    return torch.load(dst, map_location="cpu", weights_only=True)  # tensors only: safe to open


def test_mamp_release_with_an_args_namespace(tmp_path, mamp_state):
    release = {"model": mamp_state, "optimizer": {"state": {}, "param_groups": []}, "epoch": 399, "scaler": {},
               "args": argparse.Namespace(batch_size=32, blr=1e-3)}  # MAE's misc.save_model layout
    torch.save(release, tmp_path / "release.pth")
    with pytest.raises(Exception, match="weights_only"):  # why the conversion exists
        torch.load(tmp_path / "release.pth", weights_only=True)
    out = convert(tmp_path, release)
    assert out["converted_from"]["layout"] == "mamp" and out["converted_from"]["epoch"] == 399
    assert list(out["model"]) == list(mamp_state)
    model = MAMP(decoder_depth=3)
    model.load_state_dict(out["model"], strict=True)
    encoder = convert(tmp_path, release, "--encoder_only")["model"]
    assert not any(k.startswith(("decoder", "mask_token")) for k in encoder)
    probe = Transformer(protocol="linprobe", num_classes=60)
    report = load_weights(probe, str(tmp_path / "dst.pt"), allow_missing=["head"])
    assert not report.ignored and all(k.startswith("head") for k in report.missing)
    torch.testing.assert_close(probe.state_dict()["joints_embed.proj.weight"], mamp_state["joints_embed.proj.weight"])


def test_stars_stage2_flat_dict_to_an_encoder(tmp_path, mamp_state):
    flat = {f"encoder_student.{k}": v for k, v in mamp_state.items() if not k.startswith(("decoder", "mask"))}
    flat["queue"] = torch.randn(128, 16)
    flat["head.fc1.weight"] = torch.randn(4, 4)
    out = convert(tmp_path, flat, "--encoder_only")
    assert out["converted_from"]["layout"] == "stars"
    assert set(out["model"]) == {k[len("encoder_student."):] for k in flat if k.startswith("encoder_student.")}
    probe = Transformer(protocol="linprobe", num_classes=60)
    load_weights(probe, str(tmp_path / "dst.pt"), allow_missing=["head"])  # no rename / ignore needed


def test_lineage_actclr_checkpoint(tmp_path, golden_dir):
    src = os.path.join(golden_dir, "actclr_ntu60_xview_joint_linear.pt")
    dst = tmp_path / "actclr_encoder.pt"
    assert convert_checkpoint.main([src, str(dst), "--encoder_only"]) == 0
    out = torch.load(dst, map_location="cpu", weights_only=True)
    assert out["converted_from"]["layout"] == "lineage"
    assert not any(k.startswith("encoder_q.fc") for k in out["model"]) and len(out["model"]) == 179 - 2
    model = SkeletonCLR(pretrain=False, num_class=60)
    report = load_weights(model, str(dst), allow_missing=["encoder_q.fc"])
    assert sorted(report.missing) == ["encoder_q.fc.bias", "encoder_q.fc.weight"]


def test_lightning_with_hyperparameters_and_rename(tmp_path, golden_dir):
    actclr = torch.load(os.path.join(golden_dir, "actclr_ntu60_xview_joint_linear.pt"), weights_only=True)
    ckpt = {"state_dict": {f"model.{k}": v for k, v in actclr.items()}, "pytorch-lightning_version": "1.9.0",
            "global_step": 1234, "epoch": 3, "hyper_parameters": argparse.Namespace(lr=0.1)}
    out = convert(tmp_path, ckpt, "--rename", "model.=")
    assert out["converted_from"]["layout"] == "lightning" and out["converted_from"]["global_step"] == 1234
    assert list(out["model"]) == list(actclr)
    SkeletonCLR(pretrain=False, num_class=60).load_state_dict(
        {k: v.reshape(60, 256) if k == "encoder_q.fc.weight" else v for k, v in out["model"].items()}, strict=True)


def test_unknown_or_corrupt_files_are_named(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert convert_checkpoint.main([str(bad), str(tmp_path / "o.pt")]) == 2
    assert "bad.pt" in capsys.readouterr().err and not (tmp_path / "o.pt").exists()
    torch.save({"epoch": 3}, tmp_path / "odd.pt")
    assert convert_checkpoint.main([str(tmp_path / "odd.pt"), str(tmp_path / "o.pt")]) == 2
    assert "layout" in capsys.readouterr().err
