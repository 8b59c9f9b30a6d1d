"""Train the DLRMv3 HSTU ranker on the train split of a generated dataset (CPU, minutes for tiny).

A train example is one train slot ``t`` of a user: the history is the user's base slot and
train slots before ``t``; the candidates are the slot's ``num_eval_candidates`` items, labels
``rating >= 3.5`` (as the reference's training path reads the streaming files). After
training, the model is scored on the inference split exactly as the SUT serves it and the
metrics become the accuracy targets of our checkpoint.

Outputs in ``--out``: ``model.pt`` (``{"config", "dense", "item_table"}``, loadable by the
SUT's ``checkpoint`` param) and ``reference_metrics.json`` (``ne``, ``accuracy``, ``gauc``;
pass it as the workload's ``reference_metrics`` param).

Usage: ``python scripts/train_dlrmv3.py --preset tiny --out /tmp/dlrmv3-ckpt``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def train(library: Any, *, config: str = "tiny", steps: int = 300, batch: int = 64, lr: float = 3e-3,
          seed: int = 0, log_every: int = 50) -> Any:
    """Train a ranker sized to ``library``'s dataset; returns the ``HSTURanker``."""
    import torch

    from reference_suts.dlrmv3_hstu.model import HSTURanker, make_request
    from reference_suts.dlrmv3_hstu.sut import _model_config
    from workloads.dlrmv3.generator import KIND_TRAIN

    data = library.data
    cfg = _model_config({"config": config, "seed": seed}, data.params)
    model = HSTURanker(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    slots = data.slots_of(KIND_TRAIN)
    rng = np.random.default_rng(seed)
    t0 = time.time()
    model.train()
    for step in range(steps):
        pick = rng.choice(slots, size=batch, replace=False)
        exs = [data.example(int(s)) for s in pick]
        reqs = [make_request(e, cfg) for e in exs]
        logits, valid = model.batch_logits(reqs)
        labels = torch.nn.utils.rnn.pad_sequence([torch.as_tensor(e["labels"]) for e in exs],
                                                 batch_first=True)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[valid], labels[valid])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"step {step} loss {loss.item():.4f} ({time.time() - t0:.0f}s)", flush=True)
    return model.eval()


def evaluate(library: Any, model: Any, *, microbatch: int = 64, batch: int = 16) -> dict[str, float]:
    """Score every request of the library in streaming order, as the SUT does."""
    from reference_suts.dlrmv3_hstu.engine import InferenceEngine
    from reference_suts.dlrmv3_hstu.model import make_request
    from reference_suts.dlrmv3_hstu.sharding import ShardedEmbedding
    from workloads.dlrmv3.accuracy import compute_metrics

    emb = ShardedEmbedding.from_table(model.item_emb.weight.detach(), 1)
    engine = InferenceEngine(model.dense, emb.lookup_many, microbatch=microbatch)
    reqs = []
    for a in range(0, library.total_count, batch):
        samples = [library.get(i) for i in range(a, min(a + batch, library.total_count))]
        preds = engine.predict([make_request(s, model.cfg) for s in samples])
        reqs += [(p.numpy(), s["labels"], np.ones_like(s["labels"])) for s, p in zip(samples, preds)]
    return compute_metrics(reqs)


def save(model: Any, metrics: dict[str, float], out: Path, extra: dict[str, Any]) -> None:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    state = {"config": model.cfg.to_dict(), "dense": model.dense.state_dict(),
             "item_table": model.item_emb.weight.detach().clone()}
    tmp = out / "model.pt.tmp"
    torch.save(state, tmp)
    tmp.replace(out / "model.pt")
    (out / "reference_metrics.json").write_text(json.dumps({**metrics, **extra}, indent=1))


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description="train the DLRMv3 HSTU ranker (CPU)")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--config", default="tiny", help="model config name (sizes; tables follow the data)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-requests-per-ts", type=int, default=None,
                    help="evaluate on this many requests per inference timestamp (default: all)")
    args = ap.parse_args(argv)

    import torch

    from workloads.dlrmv3.dataset import load_library

    torch.set_num_threads(args.threads)
    params = {"preset": args.preset, "data_dir": args.data_dir,
              "max_requests_per_ts": args.max_requests_per_ts}
    library = load_library(params)
    model = train(library, config=args.config, steps=args.steps, batch=args.batch, lr=args.lr,
                  seed=args.seed)
    metrics = evaluate(library, model)
    save(model, metrics, Path(args.out), {"preset": args.preset, "data_dir": args.data_dir,
                                          "max_requests_per_ts": args.max_requests_per_ts,
                                          "steps": args.steps, "seed": args.seed})
    print(json.dumps(metrics, indent=1))
    return metrics


if __name__ == "__main__":
    main()
