"""The command line (main.py): help, and exit code 2 with a named culprit for every config mistake.

Each subprocess pays the torch import (~3 s): two cases run as real `python main.py` subprocesses,
started together, and the other two call `main.main(argv)` in this process meanwhile (the same
function whose return value `python main.py` passes to sys.exit).
"""
import contextlib
import io
import os
import subprocess
import sys

import pytest

from processor import PROCESSORS

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    typo = tmp / "typo.yaml"
    typo.write_text("model: net.skeletonclr.SkeletonCLR\nbase_lrr: 0.1\n")
    missing = tmp / "does_not_exist.yaml"
    commands = {
        "help": ["--help"],
        "key_typo": ["pretrain_skeletonclr", "--config", str(typo), "--work_dir", str(tmp / "work")],
    }
    in_process = {
        "processor_typo": ["pretrain_skeletonclrr", "--config", "x.yaml"],
        "missing_config": ["linear_evaluation", "--config", str(missing)],
    }
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    procs = {name: subprocess.Popen([sys.executable, "main.py", *args], cwd=REPO_ROOT, env=env, text=True,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for name, args in commands.items()}
    out = {}
    import main  # after the subprocesses have started: its torch import overlaps theirs

    for name, argv in in_process.items():
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main.main(argv)
        out[name] = (code, stdout.getvalue(), stderr.getvalue())
    for name, p in procs.items():
        stdout, stderr = p.communicate(timeout=120)
        out[name] = (p.returncode, stdout, stderr)
    out["paths"] = {"typo": str(typo), "missing": str(missing), "work": str(tmp / "work")}
    return out


def test_help(runs):
    code, stdout, stderr = runs["help"]
    assert code == 0, stderr
    for name in PROCESSORS:
        assert name in stdout
    assert "--config" in stdout


def test_unknown_processor(runs):
    code, stdout, stderr = runs["processor_typo"]
    assert code == 2, stderr
    assert "pretrain_skeletonclrr" in stderr
    assert "`pretrain_skeletonclr`" in stderr
    assert "Traceback" not in stderr


def test_mistyped_config_key(runs):
    code, stdout, stderr = runs["key_typo"]
    assert code == 2, stderr
    assert "base_lrr" in stderr and "`base_lr`" in stderr
    assert runs["paths"]["typo"] in stderr  # the message names the config file
    assert "Traceback" not in stderr
    assert not os.path.exists(runs["paths"]["work"])  # failed before creating the work dir


def test_missing_config_file(runs):
    code, stdout, stderr = runs["missing_config"]
    assert code == 2, stderr
    assert runs["paths"]["missing"] in stderr
    assert "Traceback" not in stderr
