"""PKU-MMD raw files: reader and byte-exact writer, labels, splits, names, and each lineage's cut."""
import hashlib
import os

import numpy as np
import pytest
from conftest import GOLDEN, SHARED

from tools.raw import pku
from tools.raw.common import InputError

GENUINE_SHA256 = "740a0e6136152d3ae4cbd9f6b0d3830baf958f227453aedfb51d536715253e39"
SAMPLE_FOLDERS = (os.path.join(SHARED, "data", "pku_mmd_sample"), os.path.join(GOLDEN, "..", "data", "pku_mmd_sample"))


@pytest.fixture(scope="module")
def genuine():
    """Path of the genuine part II file A10N08-L.txt (1,040 frames, second person in 728)."""
    for folder in SAMPLE_FOLDERS:
        path = os.path.join(folder, "A10N08-L.txt")
        if os.path.isfile(path):
            return path
    pytest.skip("the genuine PKU-MMD file A10N08-L.txt is not in shared/data/pku_mmd_sample")


def numbered_sequence(frames: int, second_person=None) -> np.ndarray:
    """(frames, 2, 25, 3) where every value tells its frame (1-based), person, joint and axis;
    person 2 is present only in the frames (1-based) listed in second_person."""
    t, m, v, c = np.meshgrid(np.arange(1, frames + 1), np.arange(2), np.arange(25), np.arange(3), indexing="ij")
    x = (t + 0.001 * (m * 75 + v * 3 + c + 1)).astype(np.float32)
    present = np.zeros(frames, bool)
    present[[f - 1 for f in (second_person or [])]] = True
    x[~present, 1] = 0
    return x


# ---- the skeleton file -----------------------------------------------------------------------------

def test_genuine_file_is_read_like_numpy_loadtxt(genuine):
    with open(genuine, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == GENUINE_SHA256
    x = pku.read_sequence(genuine)
    assert x.shape == (1040, 2, 25, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x, np.loadtxt(genuine).reshape(-1, 2, 25, 3).astype(np.float32))
    assert int((np.abs(x[:, 1]).sum(axis=(1, 2)) > 0).sum()) == 728  # as SOURCE.md describes it
    assert pku.parse_video(genuine) == (2, 0, 10, 8, "L")


def test_writer_reproduces_the_genuine_file_byte_for_byte(genuine, tmp_path):
    with open(genuine, "rb") as f:
        original = f.read()
    assert original[:1] != b" " and original.count(b"\n ") == 1039 and b"\r" not in original  # the layout
    out = tmp_path / "A10N08-L.txt"
    pku.write_sequence(str(out), pku.read_sequence(genuine))  # from the float32 values
    assert out.read_bytes() == original
    pku.write_sequence(str(out), pku.read_sequence(genuine, dtype=np.float64).reshape(1040, 150))
    assert out.read_bytes() == original


def test_written_files_read_back_exactly(tmp_path):
    x = np.round(np.random.default_rng(0).normal(0, 1, (7, 2, 25, 3)), 6).astype(np.float32)
    x[2:5, 1] = 0
    pku.write_sequence(str(tmp_path / "0002-L.txt"), x)
    np.testing.assert_array_equal(pku.read_sequence(str(tmp_path / "0002-L.txt")), x)


def bad_file(tmp_path, lines, name="0005-M.txt"):
    path = tmp_path / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    return str(path)


@pytest.mark.parametrize("line, value, message", [
    (3, None, "0005-M.txt line 3: 149 values, expected 150 (2 persons x 25 joints x xyz)"),
    (2, b"abc", "0005-M.txt line 2: not a number: 'abc'"),
    (4, b"nan", "0005-M.txt line 4: NaN or inf in frame 4"),
    (1, b"-inf", "0005-M.txt line 1: NaN or inf in frame 1"),
])
def test_a_bad_row_is_reported_with_file_and_line(tmp_path, line, value, message):
    rows = [b" ".join([b"0.500000"] * 150) for _ in range(5)]
    tokens = rows[line - 1].split()
    rows[line - 1] = b" ".join(tokens[:-1] if value is None else tokens[:70] + [value] + tokens[71:])
    with pytest.raises(InputError) as e:
        pku.read_sequence(bad_file(tmp_path, rows))
    assert str(e.value) == message


def test_blank_lines_are_skipped_but_keep_the_line_numbers(tmp_path):
    row = b" ".join([b"1.000000"] * 150)
    path = bad_file(tmp_path, [row, b"", b"  ", row + b" 2.0"])
    with pytest.raises(InputError, match="0005-M.txt line 4: 151 values"):
        pku.read_sequence(path)
    assert pku.read_sequence(bad_file(tmp_path, [row, b"", row])).shape == (2, 2, 25, 3)


def test_empty_files_are_reported(tmp_path):
    for content in (b"", b"\n \r\n"):
        (tmp_path / "0002-L.txt").write_bytes(content)
        with pytest.raises(InputError, match=r"^0002-L.txt: empty file"):
            pku.read_sequence(str(tmp_path / "0002-L.txt"))


# ---- labels, splits, names -------------------------------------------------------------------------

def test_labels_are_read_in_file_order_and_written_back(tmp_path):
    path = tmp_path / "0002-L.txt"
    path.write_bytes(b"41,52,117,1\r\n 7, 140 ,201,2\r\n\r\n51,300,420,1\r\n")
    rows = pku.read_labels(str(path))
    assert rows == [(41, 52, 117, 1), (7, 140, 201, 2), (51, 300, 420, 1)]
    pku.write_labels(str(path), rows)
    assert path.read_bytes() == b"41,52,117,1\n7,140,201,2\n51,300,420,1\n"
    assert pku.read_labels(str(path)) == rows


@pytest.mark.parametrize("line, message", [
    (b"41,52,117", "3 values, expected 4"),
    (b"41,52,x,1", "not a number: 'x'"),
    (b"41,52.5,117,1", "not an integer: '52.5'"),
    (b"0,52,117,1", "class id must be >= 1 and frames >= 0, got '0,52,117,1'"),
    (b"3,-1,117,1", "class id must be >= 1 and frames >= 0, got '3,-1,117,1'"),
])
def test_bad_label_rows_are_reported_with_the_line(tmp_path, line, message):
    path = tmp_path / "A01N02-R.txt"
    path.write_bytes(b"1,10,20,1\n" + line + b"\n")
    with pytest.raises(InputError, match=f"^A01N02-R.txt line 2: {message}"):
        pku.read_labels(str(path))


def test_class_ids_become_zero_based_labels():
    assert [pku.class_label(c) for c in (1, 41, 51)] == [0, 40, 50]
    for bad in (0, 52):
        with pytest.raises(ValueError, match="outside 1..51"):
            pku.class_label(bad)
    assert pku.parse_lineage_name("F002V001C041L001.skeleton").label == 40  # AimCLR: from the name's C field


def test_split_files_of_both_parts(tmp_path):
    part1 = tmp_path / "cross-subject.txt"
    part1.write_bytes(b"Training videos: \r\n0002-L, 0002-M,0002-R , 0003-L,\r\n"
                      b"Validataion videos: \r\n0291-L, 0291-M\r\n")
    train, test = pku.read_split(str(part1))
    assert train == {"0002-L", "0002-M", "0002-R", "0003-L"} and test == {"0291-L", "0291-M"}
    assert pku.is_train("0003-L.txt", train) and not pku.is_train("0004-L", train)  # unlisted -> test part
    part2 = tmp_path / "cross_subject_v2.txt"
    pku.write_split(str(part2), {"A01N01-L", "A01N01-M"}, {"A01N02-L"})
    assert part2.read_text() == "Training videos:\nA01N01-L, A01N01-M\nValidation videos:\nA01N02-L\n"
    assert pku.read_split(str(part2)) == ({"A01N01-L", "A01N01-M"}, {"A01N02-L"})


@pytest.mark.parametrize("content, message", [
    (b"Training:\n0002-L, 0002-X\nTest:\n0003-L\n", "cross.txt line 2: '0002-X' is not a video name"),
    (b"Training:\n0002-L, 0003-L\nTest:\n0003-L\n", "cross.txt: 1 video(s) in both lists, e.g. 0003-L"),
    (b"Training:\n\nTest:\n0003-L\n", "cross.txt line 2: no training video"),
])
def test_bad_split_files_are_reported(tmp_path, content, message):
    (tmp_path / "cross.txt").write_bytes(content)
    with pytest.raises(InputError) as e:
        pku.read_split(str(tmp_path / "cross.txt"))
    assert str(e.value).startswith(message)


def test_sample_names_of_both_lineages():
    assert pku.lineage_sample_name("0002-L", 41, 1) == "F002V001C041L001"
    assert pku.lineage_sample_name("0364-R.txt", 7, 23) == "F364V003C007L023"
    assert pku.lineage_sample_name("A10N08-M", 5, 12) == "A010N008V002C005L012"
    assert pku.lineage_sample_name("0010-L", 5, 1000) == "F010V001C005L1000"  # wider, never cut
    assert pku.parse_lineage_name("A010N008V002C005L012") == ("A10N08-M", 5, 12)
    assert pku.parse_lineage_name("F364V003C007L023.skeleton") == ("0364-R", 7, 23)
    assert pku.mamp_sample_name("0002-L.txt", 0) == "0002-L.txt_0"
    for bad in ("F002V004C041L001", "G002V001C041L001", "A10N08V001C001L001"):
        with pytest.raises(InputError):
            pku.parse_lineage_name(bad)
    for bad in ("002-L", "0002-X", "A1N08-L", "S001C001P001R001A001"):
        with pytest.raises(InputError, match="not a PKU-MMD video name"):
            pku.parse_video(bad)
    videos = pku.lineage_videos(1)
    assert len(videos) == 363 * 3 and videos[:3] == ["0002-L", "0002-M", "0002-R"] and "0001-L" not in videos
    assert len(pku.lineage_videos(2)) == 26 * 13 * 3 and pku.lineage_videos(2)[-1] == "A26N13-R"


# ---- the instance cut of each lineage -----------------------------------------------------------------

def frames_of(sample: np.ndarray) -> list:
    """The 1-based source frame each time step of a (3, T, 25, 2) sample came from."""
    return np.floor(sample[0, :, 0, 0]).astype(int).tolist()


def test_lineage_cut_is_one_based_inclusive_and_mamp_zero_based_exclusive():
    x = numbered_sequence(40, second_person=range(1, 41))
    lineage = pku.lineage_instance(x, 10, 20)
    assert lineage.shape == (3, 11, 25, 2) and lineage.dtype == np.float32
    assert frames_of(lineage) == list(range(10, 21))
    expected = np.stack([x[t - 1] for t in range(10, 21)]).transpose(3, 0, 2, 1)  # (C, T, V, M)
    np.testing.assert_array_equal(lineage, expected)
    mamp = pku.mamp_instance(x, 10, 20)
    assert mamp.shape == (300, 150) and mamp.dtype == np.float32
    assert np.floor(mamp[:10, 0]).astype(int).tolist() == list(range(11, 21))  # one frame later, one shorter
    np.testing.assert_array_equal(mamp[:10], np.stack([x[t].ravel() for t in range(10, 20)]))
    assert not mamp[10:].any()
    # MAMP's (T, 150) row is the file's row: person 1 x, y, z of joint 1, ... then person 2
    np.testing.assert_array_equal(mamp[0, 75:78], x[10, 1, 0])


def test_two_person_frames_and_their_layout():
    x = numbered_sequence(12, second_person=[3, 4, 9])
    x[5, 0] = 0  # frame 6: nobody listed first
    x[6, 0] = 0  # frame 7: person 1 absent, person 2 present -> stays in slot 1
    x[6, 1] = numbered_sequence(7, second_person=[7])[6, 1]
    out = pku.lineage_instance(x, 1, 12)
    present = np.abs(out[..., 1]).sum(axis=(0, 2)) > 0
    assert np.flatnonzero(present).tolist() == [2, 3, 6, 8]
    for t in range(12):
        np.testing.assert_array_equal(out[:, t, :, 0], x[t, 0].T)
        np.testing.assert_array_equal(out[:, t, :, 1], x[t, 1].T)
    # upstream tests "two persons" by the SUM of person 2's values: a body summing to zero is dropped
    x[10, 1] = 0
    x[10, 1, 0] = [0.5, -0.25, -0.25]
    out = pku.lineage_instance(x, 1, 12)
    assert not out[:, 10, :, 1].any() and out[:, 10, :, 0].any()
    np.testing.assert_array_equal(pku.mamp_instance(x, 0, 12)[10, 75:78], [0.5, -0.25, -0.25])  # MAMP keeps it


@pytest.mark.parametrize("length, first", [(300, 0), (301, 0), (302, 1), (401, 50), (700, 200)])
def test_long_instances_are_centre_cropped_by_the_lineage_and_truncated_by_mamp(length, first):
    x = numbered_sequence(length + 20)
    out = pku.lineage_instance(x, 11, 10 + length)
    assert out.shape == (3, 300, 25, 2)
    assert frames_of(out) == [11 + first + i for i in range(300)]
    mamp = pku.mamp_instance(x, 11, 10 + length)
    kept = min(length - 1, 300)  # MAMP's cut is one frame shorter
    assert np.floor(mamp[:, 0]).astype(int).tolist() == [12 + i for i in range(kept)] + [0] * (300 - kept)


def test_genuine_instances_against_an_independent_slice(genuine):
    x = pku.read_sequence(genuine)
    reference = np.loadtxt(genuine)  # (1040, 150) float64, the lineages' own reader
    start, end = 101, 520  # 420 frames: crop from frame 101 + 60
    out = pku.lineage_instance(x, start, end)
    kept = reference[start - 1 + 60:start - 1 + 360]
    second = np.where(kept[:, 75:].sum(axis=1, keepdims=True) != 0, kept[:, 75:], 0)
    expected = np.concatenate([kept[:, :75], second], axis=1).reshape(300, 2, 25, 3).transpose(3, 0, 2, 1)
    np.testing.assert_array_equal(out, expected.astype(np.float32))
    assert out[..., 1].any() and not out[..., 1].all()  # the genuine file has frames with and without person 2
    mamp = pku.mamp_instance(x, start, end)
    np.testing.assert_array_equal(mamp, reference[start:start + 300].astype(np.float32))


def aimclr_route(rows: np.ndarray, start: int, end: int) -> np.ndarray:
    """A model of AimCLR's two steps, written for this test: the cut goes to an NTU-style text
    (frame count, then per frame the body count, ONE body header, the joint count and 25 or 50
    `x y z` lines printed with str()) and comes back through a reader that reads the header of the
    first body only, centre-crops past 300 frames and fills (3, T, 25, 2)."""
    text = [str(end - start + 1)]
    for frame in rows[start - 1:end]:
        bodies = [frame[:75]] if np.sum(frame[75:]) == 0 else [frame[:75], frame[75:]]
        text += [str(len(bodies)), "6 1 0 0 1 1 0 -0.437266 -0.117168 2", "25"]
        text += [" ".join(str(v) for v in body[3 * j:3 * j + 3]) for body in bodies for j in range(25)]
    lines = iter(text)
    frames = []
    for _ in range(int(next(lines))):
        count = int(float(next(lines)))
        next(lines), next(lines)
        frames.append([[[float(v) for v in next(lines).split()] for _ in range(25)] for _ in range(count)])
    if len(frames) > 300:
        first = (len(frames) - 300) // 2
        frames = frames[first:first + 300]
    out = np.zeros((3, len(frames), 25, 2))
    for t, bodies in enumerate(frames):
        for m, body in enumerate(bodies[:2]):
            out[:, t, :, m] = np.array(body).T
    return out.astype(np.float32)


def test_genuine_instances_equal_a_model_of_the_aimclr_route(genuine):
    x = pku.read_sequence(genuine)
    rows = np.loadtxt(genuine)
    for start, end in ((1, 1), (37, 80), (290, 330), (600, 900), (1, 1040)):
        np.testing.assert_array_equal(pku.lineage_instance(x, start, end), aimclr_route(rows, start, end),
                                      err_msg=f"{start}..{end}")


def test_cuts_upstream_cannot_make():
    x = numbered_sequence(50)
    with pytest.raises(ValueError, match="start frame 0"):
        pku.lineage_instance(x, 0, 10)
    with pytest.raises(ValueError, match="end frame 51 is past the 50-frame video"):
        pku.lineage_instance(x, 45, 51)
    assert pku.lineage_cut_problem(50, 45, 50) is None
    assert pku.lineage_instance(x, 45, 50).shape == (3, 6, 25, 2)
    assert pku.lineage_instance(x, 20, 19).shape == (3, 0, 25, 2)  # upstream keeps an all-zero sample
    mamp = pku.mamp_instance(x, 45, 51)  # MAMP slices past the end without complaint
    assert np.floor(mamp[:6, 0]).astype(int).tolist() == [46, 47, 48, 49, 50] + [0]
    assert pku.mamp_instance(x, 0, 3)[0, 0] == x[0, 0, 0, 0]  # start 0 is fine 0-based
    assert pku.mamp_instance(x, 20, 20) is None and pku.mamp_instance(x, 60, 70) is None
    assert pku.mamp_instance(np.zeros((50, 2, 25, 3), np.float32), 1, 30) is None  # all zero: dropped


def test_a_fake_release_tree_round_trips(tmp_path):
    """What the CLI will do: official files in, both lineages' samples out, split by video."""
    (tmp_path / "skeleton").mkdir()
    (tmp_path / "label").mkdir()
    videos = {"0002-L": [(3, 2, 9, 1), (51, 12, 30, 2)], "0291-M": [(17, 1, 5, 1)]}
    for video, rows in videos.items():
        pku.write_sequence(str(tmp_path / "skeleton" / f"{video}.txt"), numbered_sequence(30, [4, 5]))
        pku.write_labels(str(tmp_path / "label" / f"{video}.txt"), rows)
    pku.write_split(str(tmp_path / "cross-subject.txt"), {"0002-L"}, {"0291-M"})
    train, _ = pku.read_split(str(tmp_path / "cross-subject.txt"))
    samples = []
    for video in sorted(videos):
        x = pku.read_sequence(str(tmp_path / "skeleton" / f"{video}.txt"))
        for index, (class_id, start, end, _) in enumerate(pku.read_labels(str(tmp_path / "label" / f"{video}.txt")), 1):
            name = pku.lineage_sample_name(video, class_id, index)
            part = "train" if pku.is_train(pku.parse_lineage_name(name).video, train) else "val"
            samples.append((name, part, pku.class_label(class_id), frames_of(pku.lineage_instance(x, start, end))))
    assert samples == [("F002V001C003L001", "train", 2, list(range(2, 10))),
                       ("F002V001C051L002", "train", 50, list(range(12, 31))),
                       ("F291V002C017L001", "val", 16, [1, 2, 3, 4, 5])]
