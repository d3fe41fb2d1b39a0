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


@pytest.mark.parametrize("stream", ["joint", "motion", "bone"])
@pytest.mark.parametrize("method", ["crossclr", "caca"])
def test_one_stream_of_a_three_stream_model(tmp_path, method, stream):
    """--stream turns a 3s-CrosSCLR / 3s-CACA checkpoint into the single-stream model's: its encoder
    gives exactly that stream's features of the three-stream model, and nothing of the other streams
    comes along."""
    from feeder.streams import to_stream
    from net.caca import CACA, CACA3Views
    from net.crossclr import CrosSCLR3Views

    layout = {"layout": "ntu-rgb+d", "strategy": "spatial"}
    torch.manual_seed(0)
    if method == "crossclr":
        tiny = dict(hidden_channels=8, hidden_dim=16, dropout=0.0, graph_args=layout)
        multi = CrosSCLR3Views(feature_dim=8, queue_size=12, **tiny)
        single, ignore = SkeletonCLR(pretrain=False, num_class=5, **tiny), ["encoder_q.fc", "encoder_k", "queue"]
        encoder = {"joint": "encoder_q", "motion": "encoder_q_motion", "bone": "encoder_q_bone"}[stream]
        single_encoder = single.encoder_q
    else:
        tiny = dict(hidden_channels=8, feature_dim=16, projection_hidden_size=16, projection_size=8,
                    prediction_hidden_size=16, dropout=0.0, graph_args=layout)
        multi, single = CACA3Views(**tiny), CACA(pretrain=False, num_class=5, **tiny)
        ignore = ["online_projector", "online_predictor", "target_backbone", "target_projector"]
        encoder, single_encoder = f"online_backbone_{stream}", single.online_backbone
    state = convert(tmp_path, {"model": multi.state_dict(), "config": {}}, "--stream", stream)["model"]
    others = [s for s in ("motion", "bone", "joint") if s != stream]
    assert not any(f"_{s}." in k or k.endswith(f"_{s}") for k in state for s in others)
    head = "encoder_q.fc" if method == "crossclr" else "online_projector"
    load_weights(single, str(tmp_path / "dst.pt"), ignore=ignore, allow_missing=[head])  # raises on any other mismatch
    x = torch.randn(3, 3, 12, 25, 2)
    multi.eval(), single.eval()
    with torch.no_grad():
        want = multi.get_submodule(encoder).forward_features(to_stream(x, stream))
        got = single_encoder.forward_features(to_stream(x, stream))
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_one_stream_of_a_single_stream_checkpoint_is_refused(tmp_path, capsys):
    src, dst = tmp_path / "src.pt", tmp_path / "dst.pt"
    torch.save({"model": SkeletonCLR(hidden_channels=8, hidden_dim=16, feature_dim=8, queue_size=12).state_dict(),
                "config": {}}, src)
    assert convert_checkpoint.main([str(src), str(dst), "--stream", "motion"]) == 2
    assert "no per-stream tensors" in capsys.readouterr().err and not dst.exists()
