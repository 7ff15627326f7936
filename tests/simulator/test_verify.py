"""The verification command against the captured H100/H200 tensor-core results.

Element counts come from each folder's index.json (tiles x 16 x 8 per suite), not from
the command under test.
"""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from simulator import verify

REPO = Path(__file__).resolve().parents[2]
REFERENCE = Path(__file__).resolve().parents[3] / "shared/reference"
H100 = REFERENCE / "h100_mma"
PROBES = REFERENCE / "hopper_probes"
TILE = 16 * 8  # elements of one m16n8 result tile

LINE = re.compile(r"^(\S+) (\S+) (\d+)/(\d+)(  \(\d+\.\d+ %\))?$")


def _files(folder):
    return sorted(folder.glob("*.npz")) if folder.is_dir() else []


def _params(folder):
    """One parameter per capture file, or one skipped parameter that says why."""
    return _files(folder) or [pytest.param(None, marks=pytest.mark.skip(
        reason=f"reference captures not found at {folder} (the shared/ checkout beside the repo)"))]


def _need(folder):
    if not folder.is_dir() or not _files(folder):
        pytest.skip(f"reference captures not found at {folder} (the shared/ checkout beside the repo)")


def _index(folder):
    """{op: {suite: elements}} from the folder's index.json."""
    out = {}
    for e in json.loads((folder / "index.json").read_text()):
        out.setdefault(e["op"], {})[e["suite"]] = e["tiles"] * TILE
    return out


def _parse(stdout):
    lines = stdout.strip().splitlines()
    assert lines, "no output"
    total = re.fullmatch(r"TOTAL (\d+)/(\d+)", lines[-1])
    assert total, f"last line must be 'TOTAL m/n', not {lines[-1]!r}"
    rows = []
    for line in lines[:-1]:
        m = LINE.match(line)
        assert m, f"unexpected line {line!r}"
        rows.append((m[1], m[2], int(m[3]), int(m[4])))
    return rows, (int(total[1]), int(total[2]))


def _run_main(capsys, argv):
    rc = verify.main([str(x) for x in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _check_all_match(folder, path, rc, stdout):
    rows, (tm, tn) = _parse(stdout)
    op = path.stem
    want = _index(folder)[op]
    assert {s for o, s, _, _ in rows} == set(want), "every suite of the file is reported"
    for o, suite, m, n in rows:
        assert o == op
        assert n == want[suite], f"{op} {suite}: {n} elements reported, index.json says {want[suite]}"
        assert m == n, f"{op} {suite}: {m}/{n} match"
    assert tm == tn == sum(want.values())
    assert rc == 0


@pytest.mark.parametrize("path", _params(H100), ids=lambda p: getattr(p, "stem", "absent"))
def test_every_h100_capture_matches_bit_for_bit(capsys, path):
    rc, out, err = _run_main(capsys, [path])
    _check_all_match(H100, path, rc, out)
    assert err == ""


@pytest.mark.parametrize("path", _params(PROBES), ids=lambda p: getattr(p, "stem", "absent"))
def test_every_hopper_probe_matches_bit_for_bit(capsys, path):
    rc, out, err = _run_main(capsys, [path])
    _check_all_match(PROBES, path, rc, out)


def test_h100_folder_is_complete():
    _need(H100)
    assert {p.stem for p in _files(H100)} == set(verify.OPS) == set(_index(H100))


def test_command_line_on_all_h100_files():
    """The issue's bar, as a user runs it: one process, every file, exit status 0."""
    _need(H100)
    files = _files(H100)
    proc = subprocess.run([sys.executable, "-m", "simulator.verify", *map(str, files)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows, (tm, tn) = _parse(proc.stdout)
    want = sum(sum(s.values()) for s in _index(H100).values())
    assert tm == tn == want == 1_540_096
    assert all(m == n for _, _, m, n in rows)
    assert {(o, s) for o, s, _, _ in rows} == {(o, s) for o, ss in _index(H100).items() for s in ss}


def test_a_profile_known_to_differ_exits_1(capsys):
    _need(H100)
    rc, out, _ = _run_main(capsys, [H100 / "f16f32.npz", "--profile", "ampere"])
    rows, (tm, tn) = _parse(out)
    assert rc == 1
    assert tm < tn == sum(_index(H100)["f16f32"].values())
    assert any(m < n for _, _, m, n in rows)
    for line in out.splitlines()[:-1]:  # a suite short of 100 % says by how much
        m = LINE.match(line)
        assert (m[3] != m[4]) == bool(m[5]), line


def test_tiles_option_limits_the_work(capsys):
    _need(H100)
    rc, out, _ = _run_main(capsys, [H100 / "bf16f32.npz", "--tiles", "2"])
    rows, (tm, tn) = _parse(out)
    assert rc == 0 and tm == tn == 2 * TILE * len(rows)


# ---------------------------------------------------------------------------- bad inputs
def _write(tmp_path, name, arrays):
    p = tmp_path / name
    np.savez(p, **arrays)
    return p


def _good_suite(op="f16f32", tiles=2, k=16):
    rng = np.random.default_rng(0)
    in_u = np.uint32 if op == "tf32f32" else np.uint16
    acc_u = np.uint16 if op == "f16f16" else np.uint32
    return {"normal.a": rng.integers(0, 100, (tiles, 16, k)).astype(in_u),
            "normal.b": rng.integers(0, 100, (tiles, k, 8)).astype(in_u),
            "normal.c": np.zeros((tiles, 16, 8), acc_u), "normal.d": np.zeros((tiles, 16, 8), acc_u)}


def _expect_error(capsys, tmp_path, path, *patterns):
    """main exits 2 with one 'error: ...' line naming the file; load_suites raises ValueError."""
    rc, out, err = _run_main(capsys, [path])
    assert rc == 2
    assert "Traceback" not in err and err.startswith("error: ")
    assert str(path) in err
    for pat in patterns:
        assert re.search(pat, err), err
    with pytest.raises(ValueError, match=re.escape(str(path))):
        verify.load_suites(str(path))


def test_corrupt_file(capsys, tmp_path):
    p = tmp_path / "f16f32.npz"
    p.write_bytes(b"this is not a zip archive" * 10)
    _expect_error(capsys, tmp_path, p, "not a readable")


def test_truncated_file(capsys, tmp_path):
    src = H100 / "f16f32.npz"
    if not src.exists():
        src = _write(tmp_path, "src.npz", _good_suite())
    p = tmp_path / "f16f32.npz"
    p.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    _expect_error(capsys, tmp_path, p)


def test_truncated_member(capsys, tmp_path):
    """A readable archive whose member array is cut short."""
    import zipfile
    good = _write(tmp_path, "good.npz", _good_suite())
    p = tmp_path / "f16f32.npz"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(p, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info.filename, data[: len(data) - 100] if info.filename == "normal.a.npy" else data)
    _expect_error(capsys, tmp_path, p)


def test_missing_file(capsys, tmp_path):
    _expect_error(capsys, tmp_path, tmp_path / "f16f32.npz")


@pytest.mark.parametrize("stem", ["f16", "F16F32", "normal", "f16f32.old"])
def test_wrong_stem(capsys, tmp_path, stem):
    p = _write(tmp_path, f"{stem}.npz", _good_suite())
    _expect_error(capsys, tmp_path, p, "stem")


def test_missing_array(capsys, tmp_path):
    arrays = _good_suite()
    del arrays["normal.d"]
    _expect_error(capsys, tmp_path, _write(tmp_path, "f16f32.npz", arrays), "normal", "normal.d")


def test_stray_array_without_suite(capsys, tmp_path):
    arrays = {**_good_suite(), "junk": np.zeros(3, np.uint16)}
    _expect_error(capsys, tmp_path, _write(tmp_path, "f16f32.npz", arrays), "junk")


def test_empty_archive(capsys, tmp_path):
    _expect_error(capsys, tmp_path, _write(tmp_path, "f16f32.npz", {}), "no suites")


@pytest.mark.parametrize("key,shape", [
    ("normal.a", (2, 16, 15)),   # K of a != K of b
    ("normal.b", (3, 16, 8)),    # tile counts differ
    ("normal.c", (2, 16, 4)),    # c not (tiles, 16, N)
    ("normal.d", (2, 8, 8)),     # d not c's shape
    ("normal.a", (2, 16)),       # not 3-D
    ("normal.b", (2, 16, 8, 1)),
])
def test_inconsistent_shapes(capsys, tmp_path, key, shape):
    arrays = _good_suite()
    arrays[key] = np.zeros(shape, arrays[key].dtype)
    _expect_error(capsys, tmp_path, _write(tmp_path, "f16f32.npz", arrays), "inconsistent shapes|dtypes")


@pytest.mark.parametrize("key,dtype", [("normal.a", np.uint8), ("normal.a", np.float16), ("normal.c", np.uint16),
                                       ("normal.d", np.uint64), ("normal.b", np.int16)])
def test_wrong_dtypes(capsys, tmp_path, key, dtype):
    arrays = _good_suite()
    arrays[key] = arrays[key].astype(dtype)
    _expect_error(capsys, tmp_path, _write(tmp_path, "f16f32.npz", arrays), "dtypes")


def test_pickled_object_array_is_refused(capsys, tmp_path):
    arrays = _good_suite()
    arrays["normal.a"] = np.array([object()] * 4, dtype=object)
    p = tmp_path / "f16f32.npz"
    np.savez(p, **arrays)  # savez pickles object arrays; the loader must not unpickle
    rc, _, err = _run_main(capsys, [p])
    assert rc == 2 and "Traceback" not in err and str(p) in err


def test_unknown_profile_is_a_clear_error(capsys, tmp_path):
    p = _write(tmp_path, "f16f32.npz", _good_suite())
    rc, _, err = _run_main(capsys, [p, "--profile", "h100"])
    assert rc == 2 and "profile" in err and "Traceback" not in err


def test_a_good_file_after_a_bad_one_is_not_reached(capsys, tmp_path):
    bad = tmp_path / "f16f32.npz"
    bad.write_bytes(b"garbage")
    good = tmp_path / "ok" / "f16f32.npz"
    good.parent.mkdir()
    shutil.copy(_write(tmp_path, "src.npz", _good_suite()), good)
    rc, out, err = _run_main(capsys, [good, bad])
    assert rc == 2 and str(bad) in err and "Traceback" not in err


def test_command_line_error_has_no_traceback(tmp_path):
    p = tmp_path / "e4m3f32.npz"
    p.write_bytes(b"\x00" * 64)
    proc = subprocess.run([sys.executable, "-m", "simulator.verify", str(p)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and str(p) in proc.stderr


@pytest.mark.skipif(not (REFERENCE / "h100_mma" / "f16f32.npz").exists(), reason="needs ../shared/reference")
def test_a_folder_of_captures_stands_for_its_files(tmp_path, capsys):
    for op in ("f16f32", "e4m3f32"):
        shutil.copy(REFERENCE / "h100_mma" / f"{op}.npz", tmp_path / f"{op}.npz")
    (tmp_path / "index.json").write_text("[]")  # the capture layout's index: not an MMA-Sim one
    assert verify.main([str(tmp_path), "--tiles", "2"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^f16f32 normal \d+/\d+$", out, re.M) and re.search(r"^e4m3f32 ", out, re.M)


def test_a_folder_with_nothing_to_check_is_refused(tmp_path, capsys):
    assert verify.main([str(tmp_path)]) == 2
    assert "neither an MMA-Sim index.json nor OP.npz" in capsys.readouterr().err
