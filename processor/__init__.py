"""The processor registry: every name a seed's users type resolves here to one of a few loops.

name -> (class path, one-line description, config defaults the name implies)
"""
from __future__ import annotations

PROCESSORS = {
    "pretrain": ("processor.pretrain.Pretrain", "self-supervised pretraining of any method in net/", {}),
    "pretrain_skeletonclr": ("processor.pretrain.Pretrain", "SkeletonCLR pretraining (MoCo v2 on ST-GCN)", {}),
    "pretrain_mamp": ("processor.pretrain.Pretrain", "MAMP masked motion pretraining of the transformer (STARS stage 1)",
                      {}),
    "pretrain_clrtuning": ("processor.pretrain.Pretrain",
                           "STARS stage 2: nearest-neighbour contrastive tuning of a MAMP encoder", {}),
    "pretrain_aimclr": ("processor.pretrain.Pretrain", "AimCLR pretraining (extreme augmentations, NN mining)", {}),
    "pretrain_crossclr": ("processor.pretrain.Pretrain",
                          "CrosSCLR pretraining over joint and motion (2s-CrosSCLR, net.crossclr.CrosSCLR)", {}),
    "pretrain_crossclr_3views": ("processor.pretrain.Pretrain",
                                 "CrosSCLR cross-view knowledge mining over joint, motion and bone in one run", {}),
    "pretrain_skeleton": ("processor.pretrain.Pretrain", "3s-CACA pretraining, one stream", {}),
    "pretrain_skeleton_3views": ("processor.pretrain.Pretrain",
                                 "3s-CACA cross-stream adversarial pretraining over joint, motion and bone", {}),
    "pretrain_skeletonclr_multi_swapv2": ("processor.pretrain.Pretrain",
                                          "SkeleMixCLR(+) pretraining (spatio-temporal skeleton mixing)", {}),
    "pretrain_skeletonclr_multi_swap": ("processor.pretrain.Pretrain",
                                        "SkeleMixCLR, single query view (net.skelemixclr.SkeleMixCLRv1)", {}),
    "pretrain_asar": ("processor.pretrain.Pretrain", "ASAR pretraining (active sampling, adaptive relabeling)", {}),
    "pretrain_hysp": ("processor.pretrain.Pretrain", "HYSP hyperbolic self-paced pretraining (HYSP's main_pretrain)",
                      {}),
    "linear_evaluation": ("processor.evaluation.Evaluation", "linear probe on a frozen pretrained encoder",
                          {"protocol": "linear"}),
    "linear_evaluation_3views": ("processor.evaluation.Evaluation",
                                 "linear probe of a multi-stream model (joint, motion, bone heads combined, as 3s-CACA)",
                                 {"protocol": "linear", "stream": "all"}),
    "semi_evaluation": ("processor.evaluation.Evaluation",
                        "semi-supervised: fine-tune on a class-balanced `label_fraction` of the labels",
                        {"protocol": "finetune"}),
    "finetune_evaluation": ("processor.evaluation.Evaluation", "fine-tune the whole pretrained encoder",
                            {"protocol": "finetune"}),
    "supervised": ("processor.evaluation.Evaluation",
                   "supervised training from scratch (random init, every parameter trains): the reference line",
                   {"protocol": "finetune"}),
    "knn": ("processor.knn.KNN", "kNN classification of frozen features (k list, cosine)", {}),
    "extract": ("processor.extract.Extract",
                "features (and predictions, nearest neighbours) of a trained encoder on a split or new sequences", {}),
}


def get_processor(name: str):
    """(class, defaults) for a registered name; an unknown name lists the known ones."""
    from torchlight.config import ConfigError, closest
    from torchlight.util import import_class

    if name not in PROCESSORS:
        raise ConfigError(f"unknown processor `{name}`{closest(name, PROCESSORS)}; known: {', '.join(PROCESSORS)}")
    path, _, defaults = PROCESSORS[name]
    return import_class(path), dict(defaults)
