"""Write a tiny checkpoint shaped like the MLPerf DLRMv3 reference's, in the reference's layout.

Random weights (seeded), the reference's module tree and key names
(``reference_suts/dlrmv3_hstu/reference_model.py``), small sizes:
``--out/non_sparse.ckpt`` (``{"dense_dict", "optimizer_dict", ...}``) and ``--out/sparse/``
(``torch.distributed.checkpoint`` of ``{"sparse_dict": <the three FP16 tables>}``), plus
``--out/model.json``: the ``sut.params.arch`` block the checkpoint needs.

Usage::

    python scripts/make_dlrmv3_reference_checkpoint.py --out /tmp/dlrmv3-ref            # tiny sizes
    python scripts/make_dlrmv3_reference_checkpoint.py --out /tmp/r --set num_layers=3 --set item_rows=16384
    raybench run --workload dlrmv3 --sut dlrmv3_reference --scenario Offline \\
        --set sut.params.checkpoint=/tmp/dlrmv3-ref --set "sut.params.arch=$(cat /tmp/dlrmv3-ref/model.json)"

The tiny sizes match the workload's ``tiny`` demo dataset (8192 items, 16 categories, 512 users).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def model_values(sets: list[str]) -> dict[str, Any]:
    """The tiny config with ``key=value`` overrides (``ValueError`` naming a bad one)."""
    from reference_suts.dlrmv3_hstu.reference_model import TINY

    values = TINY.to_dict()
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep or key not in values:
            raise ValueError(f"--set {item!r}: expected <field>=<value> with a field of {sorted(values)}")
        values[key] = json.loads(raw)
    return values


def make_checkpoint(out: str | Path, values: dict[str, Any], seed: int = 0) -> Path:
    """Build the random model and write it in the reference layout; returns ``out``."""
    import torch

    from reference_suts.dlrmv3_hstu.reference_checkpoint import save_reference_checkpoint
    from reference_suts.dlrmv3_hstu.reference_model import ReferenceDlrmHSTU, reference_config

    cfg = reference_config(values)
    rows = sum(cfg.table_rows().values())
    if rows * cfg.table_dim > 1 << 28:
        raise ValueError(f"tables of {rows} x {cfg.table_dim} are too big for a test checkpoint")
    torch.set_num_threads(1)
    model = ReferenceDlrmHSTU(cfg, seed=seed)
    path = save_reference_checkpoint(model, out)
    (path / "model.json").write_text(json.dumps(values, sort_keys=True) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="checkpoint directory to write")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a size of the tiny config (JSON value), e.g. num_layers=3")
    args = ap.parse_args(argv)
    try:
        path = make_checkpoint(args.out, model_values(args.set), args.seed)
    except (ValueError, OSError) as exc:
        print(f"make_dlrmv3_reference_checkpoint: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
