"""Shared test fixtures. The repo root goes on sys.path so tests import feeder/ and tools/."""
import os
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

NW_UCLA_ARCHIVE = os.path.join(REPO_ROOT, "data", "nw_ucla", "nw_ucla_skeletons.npz")


@pytest.fixture(scope="session")
def nw_ucla_frame50(tmp_path_factory):
    """pathlib.Path of a folder holding the NW-UCLA cross-view frame-50 arrays, made once per
    session from the bundled archive: {train,val}_position.npy (N, 3, 50, 20, 1) with
    N = 1,020 / 464, {train,val}_label.pkl = (names, labels), manifest.json."""
    from tools.nw_ucla_gendata import make_frames

    out = tmp_path_factory.mktemp("nw_ucla_frame50")
    make_frames(NW_UCLA_ARCHIVE, str(out), 50, command="tests/conftest.py::nw_ucla_frame50")
    return out
