"""The reference-layout reader (``reference_layout.py``): semantics on hand-written files, errors
naming file and line, agreement with our generator on every request, and an end-to-end run."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from raybench.core.spec import ParamsError
from raybench.registry import get_workload, make_library, workload_params
from workloads.dlrmv3.dataset import load_library
from workloads.dlrmv3.generator import generate, preset
from workloads.dlrmv3.reference_layout import ReferenceData

ROOT = Path(__file__).resolve().parents[3]

# ---------------------------------------------------------------------------------------------
# A hand-written dataset: 4 timestamps (train 0..1, eval at 2, inference 2..3), 2 files x 2 users.
# Slot columns: 0 base, 1 train t0, 2 train t1, 3 eval, 4 inference t2, 5 inference t3.
# Activity (x): user 0: t1 t2 t3; user 1: t0 t3; user 2: t0 t2 t3; user 3: t1 t2 t3.
SLOTS: dict[int, dict[int, tuple[list[int], list[str], list[int], list[str]]]] = {
    0: {0: ([10], ["4.0"], [10, 11], ["4.0", "2.0"]),
        2: ([12], ["3.5"], [12, 13], ["3.5", "1.0"]),
        3: ([14, 15], ["5.0", "1.0"], [14, 15], ["5.0", "1.0"]),
        4: ([16, 17, 18], ["3.4999999999999996", "3.5", "1.0"], [17], ["3.5"]),
        5: ([19, 20, 21], ["4.0", "2.0", "3.0"], [20], ["2.0"])},
    1: {0: ([30], ["1.0"], [30, 31], ["1.0", "4.5"]),
        1: ([32], ["4.5"], [32], ["4.5"]),
        3: ([33], ["2.0"], [33], ["2.0"]),
        5: ([34, 35], ["4.0", "3.0"], [35], ["3.0"])},
    2: {0: ([40], ["2.5"], [40], ["2.5"]),
        1: ([41], ["3.75"], [41, 42], ["3.75", "1.5"]),
        3: ([43], ["3.0"], [43], ["3.0"]),
        4: ([44, 45], ["5.0", "1.0"], [44], ["5.0"]),
        5: ([46, 47], ["2.0", "4.0"], [47], ["4.0"])},
    3: {0: ([50], ["4.0"], [50], ["4.0"]),
        2: ([51], ["4.0"], [51], ["4.0"]),
        3: ([52], ["1.0"], [52], ["1.0"]),
        4: ([53, 54], ["3.5", "1.0"], [53], ["3.5"]),
        5: ([55, 56], ["1.0", "5.0"], [56], ["5.0"])},
}
REQUESTS = {0: [1, 2], 1: [0, 3], 2: [0, 2, 3], 3: [0, 1, 2, 3]}
CUMSUM = {0: [1, 2], 1: [1, 2], 2: [1, 3], 3: [2, 4]}
HAND = {"train_ts": 2, "num_items": 64, "num_categories": 4}


def _csv_line(fields: list[str]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerow(fields)          # the reference writes with csv.writer: \r\n, quoting
    return buf.getvalue().encode()


def _offsets_of(lines: list[bytes]) -> list[int]:
    return [sum(len(x) for x in lines[:k]) for k in range(len(lines))]


def write_hand(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    offset_rows = []
    for f in (0, 1):
        lines = []
        for u in (2 * f, 2 * f + 1):
            fields = [""] * 24
            for col, (ci, cr, ui, ur) in SLOTS[u].items():
                fields[4 * col:4 * col + 4] = [",".join(map(str, ci)), ",".join(cr),
                                               ",".join(map(str, ui)), ",".join(ur)]
            lines.append(_csv_line(fields))
        (d / f"{f}.csv").write_bytes(b"".join(lines))
        offset_rows.append(_csv_line([",".join(map(str, _offsets_of(lines)))]))
    (d / "offset.csv").write_bytes(b"".join(offset_rows))
    req = [_csv_line([",".join(map(str, REQUESTS[t]))]) for t in range(4)]
    (d / "requests_per_ts.csv").write_bytes(b"".join(req))
    (d / "requests_per_ts_offset.csv").write_bytes(_csv_line([",".join(map(str, _offsets_of(req)))]))
    (d / "users_cumsum_per_ts.csv").write_bytes(b"".join(_csv_line([",".join(map(str, CUMSUM[t]))])
                                                         for t in range(4)))
    return d


@pytest.fixture
def hand(tmp_path: Path) -> Path:
    return write_hand(tmp_path / "hand")


def _hand_lib(d: Path, **extra: Any) -> Any:
    wl = get_workload("dlrmv3")
    return make_library(wl, workload_params(wl, {"layout": "reference", "data_dir": str(d), **HAND, **extra}))


def test_hand_written_files_follow_the_reference_semantics(hand: Path) -> None:
    data = ReferenceData(hand, **HAND)
    p = data.params
    assert (p.num_users, p.num_files, p.users_per_file, p.num_timestamps, p.train_ts) == (4, 2, 2, 4, 2)
    assert p.items_per_category == 16
    assert [data.requests(t).tolist() for t in range(4)] == [REQUESTS[t] for t in range(4)]
    # inference at t3: base + train t1 + inference t2 (never the eval slot); slot timestamps.
    ex = data.example(0, 3)
    assert ex["uih_ids"].tolist() == [10, 11, 12, 13, 17]
    assert ex["uih_ts"].tolist() == [-1, -1, 1, 1, 2]
    assert ex["uih_ratings"].tolist() == [4.0, 2.0, 3.5, 1.0, 3.5]
    assert ex["cand_ids"].tolist() == [19, 20, 21] and ex["labels"].tolist() == [1.0, 0.0, 0.0]
    assert (ex["user"], ex["ts"]) == (0, 3)
    # at t2 the label uses the rating as written: 3.4999999999999996 < 3.5 (3.5 in float32).
    ex = data.example(0, 2)
    assert ex["uih_ids"].tolist() == [10, 11, 12, 13] and ex["labels"].tolist() == [0.0, 1.0, 0.0]
    ex = data.example(3, 3)
    assert ex["uih_ids"].tolist() == [50, 51, 53] and ex["uih_ts"].tolist() == [-1, 1, 2]
    # train at t1: the slots before it (user 0 was inactive at t0); candidates: slot t1.
    ex = data.example(0, 1, "train")
    assert ex["uih_ids"].tolist() == [10, 11] and ex["cand_ids"].tolist() == [12]
    assert ex["labels"].tolist() == [1.0]
    ex = data.example(2, 0, "train")
    assert ex["uih_ids"].tolist() == [40] and ex["cand_ids"].tolist() == [41]
    # eval: every train slot is history; candidates are the eval slot.
    ex = data.example(1, 0, "eval")
    assert ex["ts"] == 2 and ex["uih_ids"].tolist() == [30, 31, 32]
    assert ex["cand_ids"].tolist() == [33] and ex["labels"].tolist() == [0.0]
    with pytest.raises(ValueError, match=r"no 'inference' request at timestamp 1 \(train 0..1, eval 2, "
                                         r"inference 2..3\)"):
        data.example(0, 1)


def test_library_request_order_is_the_reference_shuffle(hand: Path) -> None:
    """Python ``random.Random(seed).shuffle`` of each inference timestamp, one after the other:
    seed 123 gives [2, 1, 0] then [3, 2, 1, 0]; seed 1001 gives [1, 2, 0] then [3, 1, 2, 0]."""
    lib = _hand_lib(hand)
    assert lib.counts_per_ts == [3, 4] and lib.total_count == 7
    assert [lib.key(i) for i in range(7)] == [(0, 2), (0, 1), (0, 0), (1, 3), (1, 2), (1, 1), (1, 0)]
    assert [lib.get(i)["user"] for i in range(7)] == [3, 2, 0, 3, 2, 1, 0]
    assert [lib.get(i)["ts"] for i in range(7)] == [2, 2, 2, 3, 3, 3, 3]
    lib = _hand_lib(hand, order_seed=1001)
    assert [lib.key(i)[1] for i in range(7)] == [1, 2, 0, 3, 1, 2, 0]
    assert lib.index_of(1, 2) == 5 and lib.get(5)["user"] == 2
    # dataset_percentage keeps the first int(count * p) users, then shuffles (123: [1, 0], [1, 0])
    lib = _hand_lib(hand, dataset_percentage=0.5)
    assert lib.counts_per_ts == [1, 2]
    assert [lib.get(i)["user"] for i in range(3)] == [0, 1, 0]


def _fails(d: Path, match: str, *, build: Any = None) -> str:
    with pytest.raises(ValueError, match=match) as info:
        (build or (lambda: _hand_lib(d).get(0)))()
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_missing_files_are_named(hand: Path) -> None:
    (hand / "users_cumsum_per_ts.csv").unlink()
    _fails(hand, r"^dlrmv3: missing reference file .*/hand/users_cumsum_per_ts.csv$")
    write_hand(hand)
    (hand / "1.csv").unlink()   # users 2 and 3: request 1 of timestamp 2 (order by user id) is user 2
    _fails(hand, r"request 1 of timestamp 2 is user 2, whose file .*/hand/1.csv is missing "
                 r"\(lower dataset_percentage to keep at most 1 requests per timestamp\)$")
    lib = _hand_lib(hand, dataset_percentage=0.5)      # only user 0 (t2) and users 0, 1 (t3)
    assert [lib.get(i)["user"] for i in range(3)] == [0, 1, 0]
    with pytest.raises(ValueError, match=r"does not exist"):
        load_library({"layout": "reference", "data_dir": str(hand / "nope")})


def test_bad_column_count(hand: Path) -> None:
    lines = (hand / "0.csv").read_bytes().split(b"\r\n")
    (hand / "0.csv").write_bytes(lines[0] + b"\r\n" + lines[1].rsplit(b",", 1)[0] + b"\r\n")
    _fails(hand, r"^dlrmv3: .*/hand/0.csv:2: 23 columns, expected 24 \(4 per slot: 4 timestamps "
                 r"\+ base \+ eval\)$", build=lambda: ReferenceData(hand, **HAND).example(1, 3))


def test_non_integer_values(hand: Path) -> None:
    raw = (hand / "0.csv").read_bytes()
    (hand / "0.csv").write_bytes(raw.replace(b'"19,20,21"', b'"19,2x,21"'))     # same length
    _fails(hand, r"^dlrmv3: .*/hand/0.csv:1: column 21 \(candidate item ids\): non-integer value '2x'$",
           build=lambda: ReferenceData(hand, **HAND).example(0, 3))
    write_hand(hand)
    raw = (hand / "requests_per_ts.csv").read_bytes()
    (hand / "requests_per_ts.csv").write_bytes(raw.replace(b'"0,2,3"', b'"0,2,a"'))
    _fails(hand, r"^dlrmv3: .*/hand/requests_per_ts.csv:3: user id: non-integer value 'a'$")
    write_hand(hand)
    (hand / "users_cumsum_per_ts.csv").write_bytes(b'"1,2"\r\n"1,2"\r\n"1,3.0"\r\n"2,4"\r\n')
    _fails(hand, r"^dlrmv3: .*/hand/users_cumsum_per_ts.csv:3: count: non-integer value '3.0'$")


def test_truncated_last_line(hand: Path) -> None:
    raw = (hand / "1.csv").read_bytes()
    (hand / "1.csv").write_bytes(raw[:-2])
    _fails(hand, r"^dlrmv3: .*/hand/1.csv:2: truncated line \(no line end\)$",
           build=lambda: ReferenceData(hand, **HAND).example(3, 2))
    write_hand(hand)
    raw = (hand / "users_cumsum_per_ts.csv").read_bytes()
    (hand / "users_cumsum_per_ts.csv").write_bytes(raw[:-4])
    _fails(hand, r"^dlrmv3: .*/hand/users_cumsum_per_ts.csv:4: truncated line \(no line end\)$")


def test_offsets_past_eof_or_off_a_line_start(hand: Path) -> None:
    size = (hand / "1.csv").stat().st_size
    rows = (hand / "offset.csv").read_bytes().split(b"\r\n")
    (hand / "offset.csv").write_bytes(rows[0] + b'\r\n"0,99999"\r\n')
    _fails(hand, rf"^dlrmv3: .*/hand/offset.csv:2: offset 99999 \(entry 2\) is past the end of "
                 rf".*/hand/1.csv \({size} bytes\)$")
    write_hand(hand)
    (hand / "offset.csv").write_bytes(rows[0] + b'\r\n"0,7"\r\n')
    _fails(hand, r"^dlrmv3: .*/hand/offset.csv:2: offset 7 of user 3 does not start a line of .*/hand/1.csv$",
           build=lambda: ReferenceData(hand, **HAND).example(3, 2))
    write_hand(hand)
    (hand / "requests_per_ts_offset.csv").write_bytes(b'"0,7,15,23"\r\n')
    _fails(hand, r"^dlrmv3: .*/hand/requests_per_ts_offset.csv:1: offset 15 \(entry 3\) does not start a "
                 r"line of .*/hand/requests_per_ts.csv$")
    (hand / "requests_per_ts_offset.csv").write_bytes(b'"0,8,16,5000"\r\n')
    _fails(hand, r"^dlrmv3: .*/hand/requests_per_ts_offset.csv:1: offset 5000 \(entry 4\) is past the end "
                 r"of .*/hand/requests_per_ts.csv \(\d+ bytes\)$")


def test_inconsistent_metadata(hand: Path) -> None:
    (hand / "users_cumsum_per_ts.csv").write_bytes(b'"1,2"\r\n"1,2"\r\n"1,4"\r\n"2,4"\r\n')
    _fails(hand, r"^dlrmv3: .*/hand/requests_per_ts.csv:3: 3 users, but users_cumsum_per_ts.csv:3 counts 4$")
    write_hand(hand)
    (hand / "users_cumsum_per_ts.csv").write_bytes(b'"1,2"\r\n"1,2"\r\n"1,3"\r\n')
    _fails(hand, r"users_cumsum_per_ts.csv: 3 lines, but requests_per_ts_offset.csv has 4 timestamps$")
    write_hand(hand)
    raw = (hand / "requests_per_ts.csv").read_bytes()
    (hand / "requests_per_ts.csv").write_bytes(raw.replace(b'"0,1,2,3"', b'"0,2,1,3"'))
    _fails(hand, r"^dlrmv3: .*/hand/requests_per_ts.csv:4: user ids not increasing \(expected file order, "
                 r"ascending\)$")
    write_hand(hand)
    _fails(hand, r"^dlrmv3: train_ts=4 must be in 1..3 \(4 timestamps in .*\)$",
           build=lambda: ReferenceData(hand, train_ts=4))


def test_params_validation() -> None:
    wl = get_workload("dlrmv3")
    with pytest.raises(ParamsError, match=r"^workload.params: data_dir is required with layout 'reference'"):
        workload_params(wl, {"layout": "reference"})
    with pytest.raises(ParamsError, match=r"^workload.params.train_ts: applies to layout 'reference' only$"):
        workload_params(wl, {"train_ts": 3})
    with pytest.raises(ParamsError, match=r"^workload.params.shards: applies to layout 'npz' only$"):
        workload_params(wl, {"layout": "reference", "data_dir": "x", "shards": [0]})
    with pytest.raises(ParamsError, match="dataset_percentage"):
        workload_params(wl, {"dataset_percentage": 0})
    assert workload_params(wl, {})["layout"] == "npz"


# ---------------------------------------------------------------------------------------------
# Our generator written in both layouts.
@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("both")
    p = preset("tiny", num_users=64)        # 2 files of 32 users, 100 timestamps, 64 candidates
    return generate(p, root / "npz"), generate(p, root / "ref", layout="reference")


def _same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for k, v in a.items():
        if isinstance(v, np.ndarray):
            assert v.dtype == b[k].dtype and np.array_equal(v, b[k]), k
        else:
            assert v == b[k], k


@pytest.mark.parametrize("extra", [{"order": "reference"}, {"order": "numpy", "order_seed": 9},
                                   {"order": "reference", "dataset_percentage": 0.5}])
def test_reader_and_generator_agree_on_every_request(both: tuple[Path, Path], extra: dict[str, Any]) -> None:
    npz, ref = both
    a = load_library({"data_dir": str(npz), **extra})
    b = load_library({"layout": "reference", "data_dir": str(ref), **extra})
    assert a.counts_per_ts == b.counts_per_ts and a.total_count == b.total_count
    full = [48, 40, 46, 47, 46, 47, 43, 37, 45, 41]      # users active per inference timestamp
    pct = extra.get("dataset_percentage", 1.0)
    assert b.counts_per_ts == [int(c * pct) for c in full]
    for i in range(a.total_count):
        assert a.key(i) == b.key(i)
        _same(a.get(i), b.get(i))
    assert b.data.params.num_items == 8192 and b.data.params.num_categories == 16  # from meta.json


def test_train_and_eval_requests_agree_with_the_generator(both: tuple[Path, Path]) -> None:
    from workloads.dlrmv3.dataset import DLRMv3Data
    from workloads.dlrmv3.generator import KIND_EVAL, KIND_TRAIN

    npz, ref = both
    gen, rd = DLRMv3Data(npz), ReferenceData(ref)
    checked = 0
    for kind, split in ((KIND_TRAIN, "train"), (KIND_EVAL, "eval")):
        for slot in gen.slots_of(kind)[::7]:
            want = gen.example(int(slot))
            got = rd.example(want["user"], want["ts"], split)
            _same(want, got)
            checked += 1
    n_train = int((gen.slot_kind == KIND_TRAIN).sum())
    assert checked == -(-n_train // 7) + -(-64 // 7)      # every 7th train slot, every 7th eval slot


def test_written_files_are_the_reference_layout(both: tuple[Path, Path]) -> None:
    _, ref = both
    names = {p.name for p in ref.iterdir()}
    assert {"0.csv", "1.csv", "offset.csv", "requests_per_ts.csv", "requests_per_ts_offset.csv",
            "users_cumsum_per_ts.csv", "meta.json"} <= names
    ts_files = {n for n in names if n.startswith("ts_")}
    assert len(ts_files) == 200                               # both files have users at every t
    req_rows = (ref / "requests_per_ts.csv").read_bytes().split(b"\r\n")[:-1]
    offs = [int(x) for x in (ref / "requests_per_ts_offset.csv").read_text().strip().strip('"').split(",")]
    assert len(req_rows) == len(offs) == 100
    raw = (ref / "requests_per_ts.csv").read_bytes()
    for t, off in enumerate(offs):
        assert raw[off:].split(b"\r\n", 1)[0] == req_rows[t]
        users = [int(x) for x in req_rows[t].strip(b'"').split(b",")]
        per_file = [[int(x) for x in (ref / f"ts_{f}_{t}.csv").read_text().split()] for f in (0, 1)]
        assert users == per_file[0] + per_file[1] == sorted(users)
        cum = (ref / "users_cumsum_per_ts.csv").read_text().splitlines()[t].strip('"')
        assert cum == f"{len(per_file[0])},{len(users)}"
    for f, row in enumerate((ref / "offset.csv").read_text().splitlines()):
        data = (ref / f"{f}.csv").read_bytes()
        starts = [int(x) for x in row.strip('"').split(",")]
        assert len(starts) == 32 and starts[0] == 0
        assert all(data[s - 1:s] == b"\n" for s in starts[1:]) and data.endswith(b"\r\n")
        assert data.count(b"\r\n") == 32
        assert all(len(next(csv.reader([line]))) == 408 for line in data.decode().split("\r\n")[:-1])


def test_cli_writes_the_reference_layout(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "workloads.dlrmv3.generator", "--preset", "tiny",
                        "--num-users", "32", "--num-shards", "2", "--layout", "reference",
                        "--out", str(tmp_path / "cli")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    data = ReferenceData(tmp_path / "cli")
    assert (data.params.num_users, data.params.num_files, data.params.train_ts) == (32, 2, 90)
    r = subprocess.run([sys.executable, "-m", "workloads.dlrmv3.generator", "--preset", "tiny",
                        "--num-users", "33", "--layout", "reference", "--out", str(tmp_path / "odd")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip() == ("dlrmv3: num_users=33 must be a multiple of num_shards=2 for the "
                                "reference layout (equal files)")
    assert not (tmp_path / "odd").exists()


def test_npz_layout_refuses_a_reference_directory(both: tuple[Path, Path], tmp_path: Path) -> None:
    _, ref = both
    shutil.copytree(ref, tmp_path / "r")
    with pytest.raises(ValueError, match=r"is in the reference layout; set workload.params.layout=reference$"):
        load_library({"data_dir": str(tmp_path / "r")})


def test_offline_accuracy_run_on_the_reference_layout(both: tuple[Path, Path], tmp_path: Path) -> None:
    """``raybench run --workload dlrmv3 --sut dlrmv3_hstu`` in Offline (AccuracyOnly, in-process,
    real clock: the SUT scores in a worker thread) on the reference-layout files."""
    pytest.importorskip("torch")
    from raybench.config import load_run_config
    from raybench.inprocess import InProcessExecutor
    from raybench.run import run_benchmark
    from workloads.dlrmv3.payload import decode_payload

    _, ref = both
    sets = ["workload.params.layout=reference", f"workload.params.data_dir={ref}",
            "workload.params.max_requests_per_ts=3"]
    cfg = load_run_config(None, ["workload=dlrmv3", "sut=dlrmv3_hstu", "scenario=Offline",
                                 "mode=AccuracyOnly", f"out={tmp_path}", *sets])
    out = run_benchmark(cfg, InProcessExecutor())
    m = out.metrics
    assert (m.samples_issued, m.samples_completed, m.num_errors) == (30, 30, 0)
    assert out.accuracy is not None and out.accuracy_error is None
    acc = out.accuracy.metrics
    lib = load_library({"layout": "reference", "data_dir": str(ref), "max_requests_per_ts": 3})
    labels = np.concatenate([lib.get(i)["labels"] for i in range(30)])
    assert (acc["num_requests"], acc["num_candidates"], acc["coverage"]) == (30, 30 * 64, 1.0)
    assert acc["label_rate"] * 1920 == pytest.approx(float(labels.sum()), abs=1e-9)   # positives
    assert all(np.isfinite(acc[k]) for k in ("ne", "accuracy", "gauc"))
    text = (out.run_dir / "accuracy.txt").read_text()
    assert "metric/lifetime_ne/rating: " in text and "metric/lifetime_gauc/rating: " in text
    import json

    log = json.loads((out.run_dir / "mlperf_log_accuracy.json").read_text())
    assert sorted(e["qsl_idx"] for e in log) == list(range(30))
    assert all(decode_payload(bytes.fromhex(e["data"]))[:2] == lib.key(e["qsl_idx"]) for e in log)
