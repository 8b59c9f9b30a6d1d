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


def user_sequences(data: Any) -> list[dict[str, np.ndarray]]:
    """One training sequence per user: the whole train-period history, plus the candidates of
    every train slot, each to be scored seeing only the history before its slot.

    This is HSTU's causal training in ranking form: a user's ~0.7 * train_ts slots give
    labels from one encoder pass instead of one pass per slot.
    """
    from workloads.dlrmv3.generator import KIND_EVAL, KIND_TRAIN

    out = []
    eval_slots = data.slots_of(KIND_EVAL)
    train_slots = data.slots_of(KIND_TRAIN)
    owner = data.slot_user[train_slots]
    bounds = np.searchsorted(owner, np.arange(data.user_ids.size + 1))
    for u in range(data.user_ids.size):
        a, b = data.user_start[u], data.slot_start[eval_slots[u]]
        slots = train_slots[bounds[u]:bounds[u + 1]]
        cid, clab, cvis, cts = [], [], [], []
        for s in slots:
            ca, cb = data.cand_offsets[s], data.cand_offsets[s + 1]
            cid.append(data.cand_ids[ca:cb])
            clab.append(data.cand_ratings[ca:cb] >= 3.5)
            cvis.append(np.full(cb - ca, 1 + data.slot_start[s] - a))
            cts.append(np.full(cb - ca, data.slot_t[s]))
        out.append({"user": int(data.user_ids[u]), "uih_ids": data.stream_ids[a:b],
                    "uih_ratings": data.stream_ratings[a:b], "uih_ts": data.stream_ts[a:b],
                    "cand_ids": np.concatenate(cid), "labels": np.concatenate(clab).astype(np.float32),
                    "cand_vis": np.concatenate(cvis), "cand_ts": np.concatenate(cts)})
    return out


def train(library: Any, *, config: str = "tiny", steps: int = 150, batch: int = 8, lr: float = 3e-3,
          seed: int = 0, log_every: int = 25) -> Any:
    """Train a ranker sized to ``library``'s dataset; returns the ``HSTURanker`` (eval mode)."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    from reference_suts.dlrmv3_hstu.model import HSTURanker, make_request
    from reference_suts.dlrmv3_hstu.sut import _model_config

    data = library.data
    cfg = _model_config({"config": config, "seed": seed}, data.params)
    model = HSTURanker(cfg)
    dense = model.dense
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    seqs = user_sequences(data)
    rng = np.random.default_rng(seed)
    t0 = time.time()
    model.train()
    for step in range(steps):
        pick = rng.choice(len(seqs), size=min(batch, len(seqs)), replace=False)
        uih, cand, vis, labels = [], [], [], []
        for k in pick:
            sq = seqs[int(k)]
            r = make_request({**sq, "ts": 0}, cfg)
            uih.append(dense.uih_tokens(r, model.item_emb(r.uih_ids)))
            cv = torch.as_tensor(sq["cand_vis"])
            cand.append(dense.cand_tokens_at(r.cand_ids, model.item_emb(r.cand_ids), cv,
                                             torch.as_tensor(sq["cand_ts"])))
            vis.append(cv)
            labels.append(torch.as_tensor(sq["labels"]))
        ul = torch.tensor([x.shape[0] for x in uih])
        cl = torch.tensor([x.shape[0] for x in cand])
        logits = dense.forward_padded(pad_sequence(uih, batch_first=True), ul,
                                      pad_sequence(cand, batch_first=True), cl,
                                      pad_sequence(vis, batch_first=True))
        valid = torch.arange(logits.shape[1])[None, :] < cl[:, None]
        y = pad_sequence(labels, batch_first=True)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[valid], y[valid])
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
        reqs += [(p.numpy(), s["labels"], np.ones_like(s["labels"])) for s, p in zip(samples, preds, strict=True)]
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
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch", type=int, default=8)
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
