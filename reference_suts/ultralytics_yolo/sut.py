"""Ultralytics YOLO reference SUT (the MLPerf ``yolo_loadgen.py`` inference path, made async).

Per image it does what the MLPerf reference does: ``YOLO(weights).predict(image, conf=0.001)``,
then every box ``(x1, y1, x2, y2)``, confidence and class goes into the 7-float payload
``[qsl_idx, y1/H, x1/W, y2/H, x2/W, score, COCO_80_TO_91[class]]`` where ``(H, W)`` is
``Results.orig_shape``. Differences from the reference, all about running it as a service:

* images arrive already decoded (BGR arrays from the sample library), not as file paths, so no
  JPEG decoding happens in the timed region;
* a query with several samples (Offline batches, MultiStream's 8) is predicted in batches of
  ``max_batch`` images; ultralytics letterboxes a batch of differently shaped images to a square
  ``imgsz x imgsz`` (a lone image gets a minimal rectangle), so batched boxes may differ slightly
  from per-image ones, while a lone image's payload is byte-identical to the reference's;
* the model runs on one dedicated worker thread, so the asyncio event loop never blocks and
  batches run one at a time in arrival order. One thread (not ``asyncio.to_thread``'s pool)
  also keeps torch's per-thread OpenMP thread count stable.

Offline behaviour: ultralytics is imported with ``YOLO_OFFLINE=1`` (no connectivity probes),
``YOLO_VERBOSE=False``, a config dir under ``$RAYBENCH_CACHE`` and settings ``sync=False``;
``weights`` must be a local file or a model YAML (random init) - a hub name such as
``yolo11l.pt`` that is not on disk is refused instead of downloaded.

Threads: ultralytics sets ``OMP_NUM_THREADS=1`` on import and its device selection calls
``torch.set_num_threads(min(8, cpus - 1))`` on the first predict; on CPU that halves throughput on
a 2-core machine. We set ``torch.set_num_threads(num_threads)`` on the worker thread after the
warm-up predict (default: the actor's Ray ``num_cpus`` inside Ray, else every core the process
may run on; see :func:`default_num_threads`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from raybench.core.cache import cache_root
from raybench.core.protocols import Query, Response, SUTContext
from raybench.core.spec import parse_params
from reference_suts.ultralytics_yolo.params import UltralyticsYoloParams
from workloads.yolo11.payload import encode_detections

__all__ = ["UltralyticsYoloSUT", "default_num_threads", "resolve_weights"]

log = logging.getLogger(__name__)

_MODEL_FILE_SUFFIXES = (".yaml", ".yml")


def resolve_weights(weights: str) -> str:
    """Check that ``weights`` can be loaded without a download and return the name to pass to YOLO.

    Accepted: an existing local file (``.pt``, ``.onnx``, an exported model folder, ...) or a model
    YAML (``yolo11n.yaml``: a local file, or one bundled with ultralytics, which builds a randomly
    initialised model).

    Raises:
        FileNotFoundError: anything else (hub names are never downloaded).
    """
    path = Path(os.path.expanduser(weights))
    if path.exists():
        return str(path)
    if path.suffix.lower() in _MODEL_FILE_SUFFIXES:
        return weights
    raise FileNotFoundError(
        f"ultralytics_yolo: weights not found: {weights} (give a local .pt path or a model YAML such as "
        "yolo11n.yaml; hub downloads are disabled)"
    )


def default_num_threads() -> int:
    """Torch threads when ``num_threads`` is unset: the CPUs this process may use.

    Inside a Ray actor that is the actor's ``num_cpus`` (floored, at least 1, at most the cores
    of the node; 1 for ``num_cpus=0``), the share Ray reserved for it, so N replicas on one node do not each start
    one thread per core; Ray's own ``OMP_NUM_THREADS`` cannot be relied on because a driver that
    imported ultralytics first (which sets ``OMP_NUM_THREADS=1``) passes its value to the workers.
    Outside Ray: the process's CPU affinity.
    """
    cores = len(os.sched_getaffinity(0))
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return cores
    try:
        ctx = ray.get_runtime_context()
        if ctx.worker.mode != ray.WORKER_MODE:
            return cores
        assigned = ctx.get_assigned_resources().get("CPU")
    except Exception:  # noqa: BLE001 - an older/odd Ray: fall back to the affinity
        return cores
    # No CPU in the assignment (num_cpus=0): one thread, as Ray's own OMP_NUM_THREADS rule.
    return max(1, min(cores, int(assigned or 1)))


def _prepare_ultralytics_env() -> None:
    """Environment that keeps ultralytics offline and quiet; must run before its first import."""
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_VERBOSE"] = "False"
    config_dir = cache_root() / "ultralytics"
    config_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))


def _image_of(sample: Any) -> np.ndarray:
    """The BGR array of a sample (a ``CocoSample``, a dict with ``"image"`` or an array)."""
    if isinstance(sample, np.ndarray):
        return sample
    if isinstance(sample, Mapping):
        return sample["image"]
    return sample.image


class UltralyticsYoloSUT:
    """YOLO11 through ``ultralytics.YOLO.predict``; one model per SUT instance.

    Params (see :class:`~reference_suts.ultralytics_yolo.params.UltralyticsYoloParams`): ``weights``,
    ``imgsz``, ``conf``, ``iou``, ``max_det``, ``device``, ``half``, ``num_threads``, ``max_batch``
    (Offline batch size), ``max_inflight``, ``warmup_iters``.

    Example:
        >>> sut = UltralyticsYoloSUT({"weights": "/models/yolo11l.pt", "device": "cuda:0", "half": True})
        >>> await sut.start(ctx)
        >>> responses = await sut.issue(query)   # one Response per sample, payload = 28 bytes per box
        >>> await sut.stop()
    """

    name = "ultralytics_yolo"

    def __init__(self, params: Mapping[str, Any]) -> None:
        p = parse_params(UltralyticsYoloParams, params, "sut.params")
        self.weights = p.weights
        self.imgsz = p.imgsz
        self.conf = p.conf
        self.iou = p.iou
        self.max_det = p.max_det
        self.device: str | None = p.device or None
        self.half = p.half
        self.num_threads = p.num_threads or default_num_threads()
        self.max_batch = p.max_batch
        self.max_inflight = p.max_inflight
        self.warmup_iters = p.warmup_iters
        self._model: Any = None
        self._executor: ThreadPoolExecutor | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self, ctx: SUTContext) -> None:
        """Load the model on the worker thread and warm it up (not timed by the harness)."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ultralytics-yolo")
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load)

    async def stop(self) -> None:
        """Release the model and the worker thread."""
        if self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._unload)
            self._executor.shutdown(wait=True)
            self._executor = None

    async def issue(self, query: Query) -> Sequence[Response]:
        """Predict every sample of the query; one :class:`Response` per sample, in order.

        A failure of the model call is reported as an error response for every sample of the
        query (the harness counts them) rather than raised.
        """
        if self._executor is None:
            raise RuntimeError("ultralytics_yolo: issue() before start()")
        indices = [int(i) for i in query.indices]
        images = [_image_of(s) for s in query.samples]
        try:
            payloads = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._infer, indices, images
            )
        except Exception as exc:  # noqa: BLE001 - reported per sample, the run goes on
            reason = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("ultralytics_yolo: query %s failed: %s", query.id, reason)
            return [Response(error=reason) for _ in indices]
        return [Response(data=data) for data in payloads]

    # -- worker-thread side ------------------------------------------------------------------------

    def _load(self) -> None:
        weights = resolve_weights(self.weights)
        _prepare_ultralytics_env()
        import torch
        from ultralytics import YOLO, settings

        settings.update({"sync": False})
        if self.device is None:
            self.device = "cuda:0" if torch.cuda.is_available() else "cpu"
        self._model = YOLO(weights, task="detect")
        warm = np.zeros((self.imgsz, self.imgsz, 3), dtype=np.uint8)
        for _ in range(self.warmup_iters):
            self._predict([warm])
        # After the first predict: ultralytics' select_device() has reset the thread count by then.
        torch.set_num_threads(self.num_threads)
        if self.max_batch > 1:
            # The first full batch is ~30 % slower than later ones (buffers, oneDNN primitives for
            # the new batch size); pay it here rather than in the first timed Offline batch.
            self._predict([warm] * self.max_batch)

    def _unload(self) -> None:
        self._model = None
        if self.device and self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def _predict(self, images: list[np.ndarray]) -> list[Any]:
        return self._model.predict(
            images,
            imgsz=self.imgsz,
            conf=self.conf,
            iou=self.iou,
            max_det=self.max_det,
            device=self.device,
            half=self.half,
            verbose=False,
        )

    def _infer(self, indices: list[int], images: list[np.ndarray]) -> list[bytes]:
        """Predict in chunks of ``max_batch`` and encode each image's boxes as the MLPerf payload."""
        payloads: list[bytes] = []
        for start in range(0, len(images), self.max_batch):
            results = self._predict(images[start : start + self.max_batch])
            for idx, res in zip(indices[start : start + self.max_batch], results, strict=True):
                h, w = res.orig_shape
                boxes = res.boxes
                payloads.append(
                    encode_detections(
                        idx,
                        boxes.xyxy.cpu().numpy(),
                        boxes.conf.cpu().numpy(),
                        boxes.cls.cpu().numpy().astype(np.int64),
                        int(h),
                        int(w),
                    )
                )
        return payloads
