"""Faults injected into real runs: SIGKILL at random moments and inside a checkpoint write, a full
disk, an unwritable work_dir. After each, the same command resumes and ends exactly where an
uninterrupted run ends; no checkpoint is ever half-written.

The random-kill test is marked slow (`python -m pytest --slow`); the rest run in CI.
"""
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from test_processors import pretrain_config
from torchlight.io import load_checkpoint

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs main.main after patching torchlight.io.atomic_write so that the N-th write of latest.pt writes
# half of its bytes and then SIGKILLs the process, before the rename.
KILL_IN_WRITE = """
import io, os, signal, sys
import torchlight.io as tio
original, calls = tio.atomic_write, [0]
def faulty(path, write_fn, mode="wb"):
    if path.endswith("latest.pt"):
        calls[0] += 1
        if calls[0] == {n}:
            def half(f):
                buf = io.BytesIO()
                write_fn(buf)
                f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return original(path, half, mode)
    return original(path, write_fn, mode)
tio.atomic_write = faulty
import main
sys.exit(main.main({argv!r}))
"""


def cli(cfg: dict, work_dir, processor="pretrain_skeletonclr") -> list:
    path = work_dir.parent / f"{work_dir.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return [processor, "--config", str(path)]


def metrics(work_dir) -> list:
    path = work_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def same_run(a, b):
    assert [h["loss"] for h in metrics(a)] == [h["loss"] for h in metrics(b)]
    wa, wb = (load_checkpoint(str(d / "latest.pt"))["model"] for d in (a, b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not [n for n in os.listdir(b) if n.endswith(".tmp")], "a temp file of a killed write was left"


@pytest.fixture(scope="module")
def reference(nw_ucla_small, tmp_path_factory):
    """An uninterrupted 4-epoch run."""
    work = tmp_path_factory.mktemp("ref") / "run"
    argv = cli(pretrain_config(nw_ucla_small, work, num_epoch=4, num_worker=0), work)
    subprocess.run([sys.executable, os.path.join(REPO_ROOT, "main.py"), *argv], check=True, capture_output=True,
                   timeout=600)
    return work


def test_kill_inside_a_checkpoint_write_keeps_the_previous_one(nw_ucla_small, reference, tmp_path):
    work = tmp_path / "run"
    argv = cli(pretrain_config(nw_ucla_small, work, num_epoch=4, num_worker=0), work)
    script = KILL_IN_WRITE.format(root=REPO_ROOT, n=3, argv=argv)  # dies writing epoch 3's latest.pt
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL
    assert load_checkpoint(str(work / "latest.pt"))["epoch"] == 2  # the previous checkpoint, whole
    assert [n for n in os.listdir(work) if n.startswith(".latest.pt.")], "the half-written temp file should exist"
    rerun = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "main.py"), *argv], capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "unfinished temp file" in (work / "log.txt").read_text()
    same_run(reference, work)


def test_disk_full_names_the_file_and_keeps_the_last_checkpoint(nw_ucla_small, reference, tmp_path):
    work = tmp_path / "run"
    argv = cli(pretrain_config(nw_ucla_small, work, num_epoch=4, num_worker=0, save_interval=0), work)
    subprocess.run([sys.executable, os.path.join(REPO_ROOT, "main.py"), *argv[:2], argv[2], "--num_epoch", "2"],
                   check=True, capture_output=True, timeout=600)
    size = (work / "latest.pt").stat().st_size

    def full_disk():  # a file-size limit below one checkpoint: writes fail with EFBIG, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))

    proc = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "main.py"), *argv], capture_output=True,
                          text=True, timeout=600, preexec_fn=full_disk)
    assert proc.returncode == 3, proc.stderr
    assert "latest.pt" in proc.stderr and "disk full" in proc.stderr and "resume" in proc.stderr
    assert load_checkpoint(str(work / "latest.pt"))["epoch"] == 2  # untouched and usable
    rerun = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "main.py"), *argv], capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    same_run(reference, work)


def test_unwritable_work_dir_is_named(nw_ucla_small, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    work = blocker / "run"  # a folder inside a file: cannot exist, whoever runs the test (root included)
    argv = cli(pretrain_config(nw_ucla_small, work, num_epoch=1, num_worker=0), tmp_path / "cfg")
    proc = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "main.py"), *argv], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 2 and "work_dir" in proc.stderr and str(work) in proc.stderr


@pytest.mark.slow
def test_random_sigkills_then_resume_equal_an_uninterrupted_run(nw_ucla_small, reference, tmp_path):
    """SIGKILL at seeded random moments: for each of four kills, wait until the run has finished a
    random number of epochs (0-3), then a random fraction of an epoch more (inside steps, a
    checkpoint write, the next epoch's start); then a last run to the end. The result equals the
    uninterrupted run bit for bit."""
    work = tmp_path / "run"
    argv = cli(pretrain_config(nw_ucla_small, work, num_epoch=4, num_worker=0), work)
    epoch_seconds = max(h["time"] for h in metrics(reference))
    rng = random.Random(0)
    command = [sys.executable, os.path.join(REPO_ROOT, "main.py"), *argv]
    killed_at = []
    for target in sorted(rng.randrange(4) for _ in range(4)):
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and len(metrics(work)) < target:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 1.5) * epoch_seconds)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed_at.append(len(metrics(work)))
        proc.wait()
    assert len(killed_at) >= 2, f"only {len(killed_at)} kills landed before the end"
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    assert [h["epoch"] for h in metrics(work)] == [1, 2, 3, 4]
    same_run(reference, work)


def test_fp16_overflow_is_handled_by_the_scaler_and_logged(nw_ucla_small, tmp_path):
    from processor.pretrain import Pretrain
    proc = Pretrain(pretrain_config(nw_ucla_small, tmp_path, num_epoch=1, amp="fp16"), name="pretrain_skeletonclr")
    proc.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 120)  # the first steps must overflow
    before = {k: v.clone() for k, v in proc.model.encoder_q.state_dict().items() if v.is_floating_point()}
    proc.run()
    assert proc.amp_skipped_steps >= 1 and "fp16 overflow at iteration 1" in (tmp_path / "log.txt").read_text()
    after = proc.model.encoder_q.state_dict()
    assert all(torch.isfinite(after[k]).all() for k in before)  # skipped, not applied
    assert proc.scaler.get_scale() < 2.0 ** 120


@pytest.mark.slow
def test_sigkills_during_an_evaluation_then_resume_equal_an_uninterrupted_one(nw_ucla_small, reference, tmp_path):
    """The same for an evaluation run (fine-tuning with a test pass every epoch): SIGKILL at seeded random
    moments (feature loading, training steps, test passes, checkpoint writes), resume each time; the
    per-epoch losses and test accuracies, the final weights and results.json equal an uninterrupted run's."""
    from test_processors import eval_config

    def argv_for(work):
        cfg = eval_config("skeletonclr_linear.yaml", nw_ucla_small, work, reference / "latest.pt", num_epoch=5,
                          protocol="finetune", base_lr=0.05, eval_interval=1, num_worker=0, batch_size=10)
        return [sys.executable, os.path.join(REPO_ROOT, "main.py"), *cli(cfg, work, "finetune_evaluation")]

    clean = tmp_path / "clean"
    started = time.time()
    subprocess.run(argv_for(clean), check=True, capture_output=True, timeout=600)
    total = time.time() - started
    work, rng, killed = tmp_path / "killed", random.Random(1), 0
    for _ in range(4):
        proc = subprocess.Popen(argv_for(work), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.2, 0.8) * total)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
    assert killed >= 2, f"only {killed} kills landed before the end"
    subprocess.run(argv_for(work), check=True, capture_output=True, timeout=600)
    same_run(clean, work)
    assert [h.get("test_top1") for h in metrics(clean)] == [h.get("test_top1") for h in metrics(work)]
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (clean, work))
    assert {k: v for k, v in ra.items() if k != "config"} == {k: v for k, v in rb.items() if k != "config"}
