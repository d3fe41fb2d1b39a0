"""Supervised-from-scratch and transfer, through the shared evaluation processor."""
import pickle

import numpy as np
import torch

from processor import get_processor
from processor.evaluation import Evaluation
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
