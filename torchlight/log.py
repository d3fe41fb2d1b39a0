"""Run logging: console + work_dir/log.txt, per-epoch metrics.jsonl, tensorboardX, optional wandb."""
from __future__ import annotations

import json
import os
import sys
import time


class Logger:
    def __init__(self, work_dir: str, enabled: bool = True, tensorboard: bool = True, wandb_cfg: dict | None = None,
                 run_config: dict | None = None):
        self.work_dir, self.enabled = work_dir, enabled
        self.tb = self.wandb = None
        if not enabled:
            return
        os.makedirs(work_dir, exist_ok=True)
        self.log_file = open(os.path.join(work_dir, "log.txt"), "a")
        if tensorboard:
            from tensorboardX import SummaryWriter
            self.tb = SummaryWriter(os.path.join(work_dir, "tensorboard"))
        wandb_cfg = wandb_cfg or {}
        if wandb_cfg.get("enable"):
            import wandb
            self.wandb = wandb.init(project=wandb_cfg.get("project", "skelssl"), name=wandb_cfg.get("name"),
                                    group=wandb_cfg.get("group"), entity=wandb_cfg.get("entity"),
                                    mode=wandb_cfg.get("mode", "offline"), dir=work_dir, config=run_config)

    def info(self, msg: str):
        if not self.enabled:
            return
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {msg}"
        print(line, flush=True, file=sys.stdout)
        self.log_file.write(line + "\n")
        self.log_file.flush()

    def scalars(self, values: dict, step: int, prefix: str = ""):
        if not self.enabled:
            return
        for k, v in values.items():
            if isinstance(v, (int, float)):
                if self.tb is not None:
                    self.tb.add_scalar(f"{prefix}{k}", v, step)
        if self.wandb is not None:
            self.wandb.log({f"{prefix}{k}": v for k, v in values.items()}, step=step)

    def close(self):
        if not self.enabled:
            return
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
        self.log_file.close()


def read_metrics(path: str) -> list:
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
