"""Speed-up of the DLRMv3 KV-cache optimisations on the tiny / small presets (CPU).

Serves the first ``--per-ts`` requests of every inference timestamp in streaming order with
a random-init model sized to the preset, three ways:

* baseline — one masked forward over UIH + candidates per request;
* M-FALCON — UIH encoded once, candidates in microbatches against its K/V;
* M-FALCON + cross-request UIH cache — a user's UIH K/V is reused at its next timestamp.

To exercise the cross-request cache, requests are taken for a fixed set of users (those of
the first timestamp), so users recur across timestamps as in a full run. Prints requests/s
and speed-ups, and checks the three give the same scores (max abs difference).

Usage: ``python benchmarks/dlrmv3_kv_cache.py --preset small --users 32``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="tiny", choices=["tiny", "small"])
    ap.add_argument("--users", type=int, default=32, help="users followed over the timestamps")
    ap.add_argument("--timestamps", type=int, default=4, help="inference timestamps to serve")
    ap.add_argument("--microbatch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    from reference_suts.dlrmv3_hstu.engine import InferenceEngine, UIHCache
    from reference_suts.dlrmv3_hstu.model import HSTURanker, make_request
    from reference_suts.dlrmv3_hstu.sharding import ShardedEmbedding
    from reference_suts.dlrmv3_hstu.sut import _model_config
    from workloads.dlrmv3.dataset import load_library

    torch.set_num_threads(args.threads)
    lib = load_library({"preset": args.preset})
    cfg = _model_config({"config": args.preset}, lib.data.params)
    model = HSTURanker(cfg).eval()
    emb = ShardedEmbedding.from_table(model.item_emb.weight.detach(), 4)
    users = sorted({lib.get(i)["user"] for i in range(int(lib.ts_offsets[0]), int(lib.ts_offsets[1]))})
    users = set(users[:args.users])
    idx = [i for i in range(int(lib.ts_offsets[args.timestamps])) if lib.get(i)["user"] in users]
    reqs = [make_request(lib.get(i), cfg) for i in idx]
    n_uih = sum(r.uih_ids.shape[0] for r in reqs) / len(reqs)
    n_cand = sum(r.cand_ids.shape[0] for r in reqs) / len(reqs)
    print(f"{args.preset}: {len(reqs)} requests of {len(users)} users over {args.timestamps} "
          f"timestamps, mean UIH {n_uih:.0f}, candidates {n_cand:.0f}, d={cfg.embedding_dim}")
    engines = {
        "baseline": InferenceEngine(model.dense, emb.lookup_many),
        "mfalcon": InferenceEngine(model.dense, emb.lookup_many, microbatch=args.microbatch),
        "mfalcon+uih_cache": InferenceEngine(model.dense, emb.lookup_many, microbatch=args.microbatch,
                                             uih_cache=UIHCache()),
    }
    times, preds = {}, {}
    for name, eng in engines.items():
        eng.predict(reqs[:1])                                   # warm-up
        if eng.cache is not None:
            eng.cache.clear()
            eng.cache.stats = dict.fromkeys(eng.cache.stats, 0)
        t0 = time.perf_counter()
        preds[name] = [eng.predict([r])[0] for r in reqs]
        times[name] = time.perf_counter() - t0
    out = {}
    for name, t in times.items():
        diff = max(float((a - b).abs().max()) for a, b in zip(preds["baseline"], preds[name], strict=True))
        out[name] = times["baseline"] / t
        print(f"{name:>18}: {len(reqs) / t:8.1f} req/s  speed-up x{out[name]:.2f}  "
              f"max|diff| {diff:.1e}")
    cache_gain = times["mfalcon"] / times["mfalcon+uih_cache"]
    out["uih_cache_over_mfalcon"] = cache_gain
    stats = engines["mfalcon+uih_cache"].cache.stats
    print(f"cross-request cache over M-FALCON alone: x{cache_gain:.2f} "
          f"(hits {stats['hits']}, misses {stats['misses']}, reused tokens {stats['reused_tokens']}, "
          f"new tokens {stats['new_tokens']})")
    return out


if __name__ == "__main__":
    main()
