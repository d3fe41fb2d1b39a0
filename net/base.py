"""The method contract: what the loops (processor/pretrain.py, evaluation.py, knn.py) need from a method.

A method is one class in one file of net/, deriving from `Method`, plus YAML. The same class builds the
pretraining model (`pretrain: true`) and the evaluation model (`pretrain: false`: its encoder with a
classifier), because that is how the lineage's configs and released checkpoints name things
(`model: net.aimclr.AimCLR` + `pretrain: False`, keys `encoder_q.*`): a separate evaluation class would
break every upstream config and checkpoint, so the split stays, and lives here once: `forward` dispatches.

Required
    views               the names of the views pretraining consumes, e.g. ("query", "key"); the loop checks
                        them against the view recipe's at start-up (feeder/views.py)
    pretrain_step(batch) -> {"loss": tensor to minimise, other scalars to log}
    forward_features(x) -> (N, d) pooled features of a raw (N, C, T, V, M) batch (every evaluation uses it)
    forward_head(f)     -> (N, classes) logits from those features
    head_prefixes()     -> state_dict prefixes of the classifier(s) an evaluation trains from scratch

Optional hooks (no-op defaults here)
    before_backward(epoch)       after the forward pass, before backward (HYSP's upstream EMA timing)
    after_optimizer_step(epoch)  after each optimiser step (EMA targets: 3s-CACA, HYSP)
    monitor_features(x)          the online kNN monitor's features (default: forward_features)
    param_groups(cfg)            optimiser groups (list of dicts, `lr_scale` allowed); None: every trainable
                                 parameter in one group
    fresh_prefixes()             state_dict prefixes a stage-1 checkpoint may lack (STARS' head and queue)
    derives_streams = False      True: the model takes joints and derives motion / bone itself (`stream: all`)

The batch a pretraining step receives:
    views       {name: (N, C, T, V, M) tensor} on the device, already in the run's stream (unless `all`)
    label       (N,) labels (unused by self-supervised losses; the kNN monitor uses the datasets')
    index       (N,) dataset indices (STARS' queue ids)
    epoch       0-based epoch (phase switches: mining, cross-view, active sampling, curricula)
    generator   the run's torch.Generator (random draws inside the method: SkeleMix regions, k-means starts)
    layout      the data's feeder.layouts.Layout
"""
from __future__ import annotations

from torch import nn


class Method(nn.Module):
    views: tuple = ()
    derives_streams = False
    pretrain = True

    def forward(self, batch):
        """Pretraining: the step's outputs from a batch dict. Evaluation: logits from a raw input tensor."""
        if self.pretrain:
            return self.pretrain_step(batch)
        return self.forward_head(self.forward_features(batch))

    def pretrain_step(self, batch) -> dict:
        raise NotImplementedError

    def forward_features(self, x):
        raise NotImplementedError

    def forward_head(self, features):
        raise NotImplementedError

    def head_prefixes(self) -> list:
        raise NotImplementedError

    # --- optional hooks ---------------------------------------------------------------------------
    def before_backward(self, epoch: int):
        pass

    def after_optimizer_step(self, epoch: int):
        pass

    def monitor_features(self, x):
        return self.forward_features(x)

    def param_groups(self, cfg: dict):
        return None

    def fresh_prefixes(self) -> list:
        return []
