"""YOLO11 harness overhead on CPU: raybench Offline (Ray actor SUT) vs the bare ``model.predict`` loop.

Both sides run random-init ``yolo11n.yaml`` on the same demo images, with the same ``imgsz``,
batch size, predict arguments (conf 0.001, the reference's) and torch thread count, in one
invocation of this script, alternating ``bare, ray, bare, ray, ...`` so that a change in machine
load hits both. Figures:

* bare: ``samples / (t_end - t_start)`` around ``model.predict(batch)`` calls over ``--samples``
  images (the performance set repeated), reading every box to numpy as the reference does;
* raybench: ``samples_per_second`` of an Offline run (one query of ``--samples`` samples,
  ``min_query_count = samples``) through ``RayExecutor``: one ``LoadGenShard`` actor (0 CPUs)
  sends batches of ``max_batch`` decoded images to one ``SUTReplica`` actor that owns all cores;
  its duration runs from the query's issue to the last completion, so actor start-up and model
  load are excluded, exactly as the bare loop excludes its load and warm-up.

ratio = median(raybench) / median(bare), and best / best: other processes on the machine can only
slow a measurement down, so on a shared machine the best-of-N ratio is the fairer one. Goal >= 0.95.

Usage:
    python benchmarks/yolo_overhead.py [--imgsz 640] [--batch 8] [--samples 128] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def demo_images(count: int) -> list[Any]:
    """The first ``count`` images of the yolo11 performance set (the demo), decoded BGR arrays."""
    from workloads.yolo11.dataset import load_library

    lib = load_library({})
    idx = list(range(min(count, lib.performance_count)))
    lib.load(idx)
    return [lib.get(i).image for i in idx]


def bare_loop(model: Any, images: list[Any], samples: int, imgsz: int, batch: int) -> float:
    """Samples per second of the plain predict loop (the reference's per-call work)."""
    order = [images[i % len(images)] for i in range(samples)]
    t0 = time.perf_counter()
    for start in range(0, samples, batch):
        for res in model.predict(order[start : start + batch], imgsz=imgsz, conf=0.001, iou=0.7, max_det=300,
                                 device="cpu", half=False, verbose=False):
            res.boxes.xyxy.cpu().numpy(), res.boxes.conf.cpu().numpy(), res.boxes.cls.cpu().numpy()
    return samples / (time.perf_counter() - t0)


def raybench_offline(out: str, samples: int, imgsz: int, batch: int, threads: int) -> tuple[float, str]:
    """Samples per second (and validity) of one raybench Offline run on the already-started Ray."""
    from raybench.config import load_run_config
    from raybench.ray.executor import RayExecutor
    from raybench.run import run_benchmark

    cfg = load_run_config(None, [
        "workload=yolo11", "sut=ultralytics_yolo", "scenario=Offline", f"out={out}", "report=false",
        f"sut.params.imgsz={imgsz}", f"sut.params.max_batch={batch}", f"sut.params.num_threads={threads}",
        f"settings.min_query_count={samples}", "settings.min_duration_ms=0", "settings.offline_expected_qps=1",
        "ray.shard_num_cpus=0", f"ray.replica_num_cpus={threads}", "ray.replicas=1", "ray.start_lead_s=0.5",
    ])
    outcome = run_benchmark(cfg, RayExecutor(cfg.ray))
    m = outcome.metrics
    if m.num_errors or m.samples_completed != samples:
        raise RuntimeError(f"raybench run failed: {m.num_errors} errors, {m.samples_completed}/{samples} samples")
    return m.samples_per_second, m.validity


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = ap.parse_args(argv)

    os.environ.setdefault("RAYBENCH_CACHE", str(Path(tempfile.gettempdir()) / "raybench-cache"))
    from reference_suts.ultralytics_yolo.sut import _prepare_ultralytics_env

    _prepare_ultralytics_env()
    import numpy as np
    import ray
    import torch
    from ultralytics import YOLO

    images = demo_images(64)
    model = YOLO("yolo11n.yaml", task="detect")
    model.predict([np.zeros((args.imgsz, args.imgsz, 3), np.uint8)], imgsz=args.imgsz, device="cpu", verbose=False)
    torch.set_num_threads(args.threads)  # after the first predict, as the SUT does (ultralytics resets it)
    bare_loop(model, images, args.batch, args.imgsz, args.batch)  # warm the batch shape

    ray.init(address="local", num_cpus=args.threads, include_dashboard=False, object_store_memory=512 * 2**20,
             log_to_driver=False, configure_logging=False)
    bare: list[float] = []
    rb: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as out:
            for r in range(args.repeats):
                bare.append(bare_loop(model, images, args.samples, args.imgsz, args.batch))
                sps, validity = raybench_offline(out, args.samples, args.imgsz, args.batch, args.threads)
                rb.append(sps)
                print(f"repeat {r}: bare {bare[-1]:.3f} samples/s, raybench {sps:.3f} samples/s ({validity})",
                      flush=True)
    finally:
        ray.shutdown()
    b, q = statistics.median(bare), statistics.median(rb)
    print(f"yolo11n CPU Offline, imgsz {args.imgsz}, batch {args.batch}, {args.threads} threads, "
          f"{args.samples} samples x {args.repeats} repeats")
    print(f"bare model.predict loop : median {b:.3f}, best {max(bare):.3f} samples/s")
    print(f"raybench Ray actor SUT  : median {q:.3f}, best {max(rb):.3f} samples/s")
    print(f"ratio raybench / bare   : median {q / b:.3f}, best {max(rb) / max(bare):.3f}  (goal >= 0.95)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
