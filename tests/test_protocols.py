"""Supervised-from-scratch and transfer, through the shared evaluation processor."""
import pickle

import numpy as np
import pytest
import torch

from processor import get_processor
from processor.evaluation import Evaluation, head_dims
from processor.pretrain import Pretrain
from test_processors import eval_config, pretrain_config
from torchlight.io import load_checkpoint


def test_supervised_trains_every_parameter_from_random_init(nw_ucla_small, tmp_path):
    cls, implied = get_processor("supervised")
    assert cls is Evaluation and implied == {"protocol": "finetune"}
    cfg = {**implied, **eval_config("supervised_stgcn.yaml", nw_ucla_small, tmp_path, None, num_epoch=1,
                                   batch_size=16)}
    proc = Evaluation(cfg, name="supervised")
    assert proc.cfg["weights"] is None
    before = {k: v.clone() for k, v in proc.module.named_parameters()}
    proc.run()
    after = dict(proc.module.named_parameters())
    assert all(not torch.equal(before[k], after[k]) for k in before)  # the whole encoder trained


def test_transfer_to_a_dataset_with_other_classes(nw_ucla_small, tmp_path):
    """Pretrain on one dataset, fine-tune on another with a different class count: the encoder's
    weights arrive, the classifier is new."""
    Pretrain(pretrain_config(nw_ucla_small, tmp_path / "pre", num_epoch=1), name="pretrain_skeletonclr").run()
    target = tmp_path / "target"  # classes 0-4 of the val split, as a 5-class dataset
    target.mkdir()
    x = np.load(nw_ucla_small / "val_position.npy")
    with open(nw_ucla_small / "val_label.pkl", "rb") as f:
        names, labels = pickle.load(f)
    keep = [i for i, y in enumerate(labels) if y < 5]
    for part in ("train", "val"):
        np.save(target / f"{part}_position.npy", x[keep])
        with open(target / f"{part}_label.pkl", "wb") as f:
            pickle.dump(([names[i] for i in keep], [labels[i] for i in keep]), f)
    cfg = eval_config("skeletonclr_linear.yaml", target, tmp_path / "transfer", tmp_path / "pre" / "latest.pt",
                      num_epoch=1, protocol="finetune", model_args={"num_class": 5}, batch_size=5)
    proc = Evaluation(cfg, name="finetune_evaluation")
    pre = load_checkpoint(str(tmp_path / "pre" / "latest.pt"))["model"]
    state = proc.module.state_dict()
    torch.testing.assert_close(state["encoder_q.st_gcn_networks.0.gcn.conv.weight"],
                               pre["encoder_q.st_gcn_networks.0.gcn.conv.weight"])
    assert state["encoder_q.fc.weight"].shape[0] == 5
    proc.run()


# Each ST-GCN method's pretraining state (its own keys: query / key encoders, queues, targets,
# projectors), evaluated under every protocol through its demo evaluation configs.
STGCN_METHODS = ["skeletonclr", "aimclr", "crossclr", "caca", "skelemixclr", "asar", "hysp"]
PROTOCOLS = {
    "linear": {"protocol": "linear"},
    "linear_recalibrated": {"protocol": "linear", "recalibrate_bn": True, "head_norm": True},
    "finetune": {"protocol": "finetune"},
    "semi": {"protocol": "finetune", "label_fraction": 0.2, "subset_seed": 1},
}


@pytest.fixture(scope="module", params=STGCN_METHODS)
def method_checkpoint(request, nw_ucla_small, tmp_path_factory):
    """(method, path) of a pretraining-state checkpoint of the method's demo model (random weights)."""
    from conftest import demo_config
    from torchlight.io import atomic_save
    from torchlight.util import import_class

    method = request.param
    torch.manual_seed(0)
    cfg = demo_config(f"{method}_pretrain.yaml", nw_ucla_small, tmp_path_factory.mktemp(method))
    model = import_class(cfg["model"])(**cfg["model_args"])
    path = tmp_path_factory.mktemp(method + "_ckpt") / "pretrained.pt"
    atomic_save({"model": model.state_dict()}, str(path))
    return method, path


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_every_stgcn_method_under_every_protocol(method_checkpoint, protocol, nw_ucla_small, tmp_path):
    """The pretrained encoders arrive unchanged (every encoder key loaded), the protocol trains what it
    should (linear: only the heads; finetune / semi: the encoders too), results.json and the test scores
    for tools/ensemble.py are written; semi keeps its class-balanced subset."""
    import json

    from conftest import demo_config

    method, ckpt = method_checkpoint
    cfg = demo_config(f"{method}_linear.yaml", nw_ucla_small, tmp_path, weights=str(ckpt), num_epoch=1,
                      batch_size=10, eval_interval=1, **PROTOCOLS[protocol])
    linear = PROTOCOLS[protocol]["protocol"] == "linear"
    proc = Evaluation(cfg, name="semi_evaluation" if protocol == "semi" else
                      "linear_evaluation" if linear else "finetune_evaluation")
    if proc.cfg["head_norm"]:  # a parameter-free BatchNorm in front of every head, whatever the head's type
        for prefix in proc.module.head_prefixes():
            head = proc.module.get_submodule(prefix)
            assert isinstance(head, torch.nn.Sequential) and isinstance(head[0], torch.nn.BatchNorm1d), (method, prefix)
    pre = load_checkpoint(str(ckpt))["model"]
    state = {k: v.clone() for k, v in proc.module.state_dict().items()}
    params = dict(proc.module.named_parameters())  # BN statistics may be recalibrated (the demo probes)
    encoder = [k for k in params if k in pre and "fc" not in k and "projector" not in k]
    assert len(encoder) > 20
    for k in encoder:
        torch.testing.assert_close(state[k], pre[k], rtol=0, atol=0, msg=f"{method}: {k} not loaded")
    proc.run()
    after = proc.module.state_dict()
    weights = [k for k in encoder if k.endswith("conv.weight")]
    moved = [k for k in weights if not torch.equal(after[k], state[k])]
    assert (not moved) if linear else (len(moved) == len(weights)), (method, protocol, moved[:3])
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["protocol"] == PROTOCOLS[protocol]["protocol"] and 0 <= results["top1"] <= 100
    assert (tmp_path / "test_result.pkl").is_file()
    if protocol == "semi":
        assert results["label_fraction"] == 0.2 and len(proc.train_set) == 10  # 1 of 5 per class, 10 classes


def test_head_dims_reads_the_first_input_and_the_last_output():
    """The probe's BatchNorm takes the head's input width, the label check its output width: for a
    multi-layer head those are different layers (the first layer's output is a hidden width)."""
    from net.hysp import MobiusLinear

    assert head_dims(torch.nn.Linear(8, 4)) == (8, 4)
    mlp = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    assert head_dims(mlp) == (8, 4)
    assert head_dims(torch.nn.Sequential(MobiusLinear(8, 5))) == (8, 5)  # HYSP's hyperbolic head
    with pytest.raises(TypeError, match="ReLU"):
        head_dims(torch.nn.ReLU())
