"""Generated prompts of exact token lengths: synthetic, shared-prefix, and trace-replay prompts.

Every prompt is an int32 array of the tokenizer's safe ids (see :mod:`workloads.llm.tokenizer`),
so its length is exact whether it is sent as ids or as text; with ``text`` the prompt's text is
kept too and checked to re-encode to exactly those ids. Arrays, not lists, keep a full-size trace
(tens of thousands of prompts of thousands of tokens) at 4 bytes a token. Lengths are drawn with numpy's PCG64 seeded
by ``(seed, stream)`` (:func:`raybench.core.plan.rng`):

* ``fixed``: ``round(mean)``;
* ``uniform``: integers in ``[min, max]``, both included;
* ``normal``: ``round(N(mean, std))``;
* ``lognormal``: ``round(X)`` with ``X`` log-normal of mean ``mean`` and standard deviation
  ``std`` (``sigma² = ln(1 + std²/mean²)``, ``mu = ln(mean) - sigma²/2``);

then clipped to ``[min, max]`` (``max`` unset: no upper clip).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from raybench.core.plan import rng
from workloads.llm.tokenizer import Tokenizer

__all__ = ["draw_lengths", "shared_prefix_records", "synthetic_records", "trace_records"]

# PCG64 stream tags, one per use, so changing one knob does not reshuffle the others.
_INPUT, _OUTPUT, _TOKENS, _PREFIX, _SUFFIX_HEAD, _BLOCK, _FILL = 1, 2, 3, 4, 5, 6, 7


def draw_lengths(spec: Mapping[str, Any], n: int, seed: int, stream: int) -> np.ndarray:
    """``n`` lengths from a ``{dist, mean, std, min, max}`` spec (see the module docstring).

    Raises:
        ValueError: a uniform spec without ``max``, or ``min > max``.
    """
    dist, mean, std = spec.get("dist", "fixed"), float(spec.get("mean", 128)), float(spec.get("std", 0.0))
    lo, hi = int(spec.get("min", 1)), spec.get("max")
    if hi is not None and lo > int(hi):
        raise ValueError(f"length: min {lo} > max {hi}")
    g = rng(seed, stream)
    if dist == "fixed":
        x = np.full(n, float(round(mean)))
    elif dist == "uniform":
        if hi is None:
            raise ValueError("length: a uniform distribution needs max")
        return g.integers(lo, int(hi) + 1, size=n).astype(np.int64)
    elif dist == "normal":
        x = np.rint(g.normal(mean, std, size=n))
    elif dist == "lognormal":
        sigma2 = math.log1p((std / mean) ** 2)
        x = np.rint(g.lognormal(math.log(mean) - sigma2 / 2, math.sqrt(sigma2), size=n))
    else:
        raise ValueError(f"length.dist: expected fixed, uniform, normal or lognormal, got {dist!r}")
    return np.clip(x, lo, int(hi) if hi is not None else None).astype(np.int64)


def _tokens(tok: Tokenizer, g: np.random.Generator, n: int) -> np.ndarray:
    safe = np.asarray(tok.safe_ids, dtype=np.int32)
    return safe[g.integers(0, safe.shape[0], size=n)]


def _record(tok: Tokenizer, ids: np.ndarray, max_tokens: int, text: bool, **extra: Any) -> dict[str, Any]:
    """A sample; with ``text`` also its prompt text, which must re-encode to exactly ``ids``.

    Raises:
        ValueError: the tokenizer does not give the ids back (the length would not be exact).
    """
    rec: dict[str, Any] = {"tok_input": ids, "output": "", "max_tokens": int(max_tokens), **extra}
    if text:
        rec["input"] = tok.decode(ids.tolist())
        if tok.name != "bytes" and tok.encode(rec["input"]) != ids.tolist():
            raise ValueError(f"workload.params.tokenizer: {tok.name!r} does not re-encode a generated prompt to "
                             "the same tokens; use prompt: tokens")
    return rec


def synthetic_records(tok: Tokenizer, p: Mapping[str, Any], text: bool = False) -> list[dict[str, Any]]:
    """``num_prompts`` prompts with input/output lengths from ``input_len`` / ``output_len``."""
    n, seed = int(p["num_prompts"]), int(p["seed"])
    ins = draw_lengths(p["input_len"], n, seed, _INPUT)
    outs = draw_lengths(p["output_len"], n, seed, _OUTPUT)
    g = rng(seed, _TOKENS)
    return [_record(tok, _tokens(tok, g, int(i)), int(o), text) for i, o in zip(ins, outs, strict=True)]


def shared_prefix_records(tok: Tokenizer, p: Mapping[str, Any], text: bool = False) -> list[dict[str, Any]]:
    """``num_groups`` groups of ``prompts_per_group`` prompts; the prompts of a group share exactly
    ``prefix_len`` leading tokens, prompts of different groups share none.

    Exactness: the groups' first prefix tokens are distinct (drawn without replacement), and so are
    the first suffix tokens within a group. Prompt order is group-major (group 0's prompts first).

    Raises:
        ValueError: more groups (or prompts per group) than the tokenizer has safe tokens.
    """
    k, m, plen, seed = int(p["num_groups"]), int(p["prompts_per_group"]), int(p["prefix_len"]), int(p["seed"])
    safe = tok.safe_ids
    for name, v in (("num_groups", k), ("prompts_per_group", m)):
        if v > len(safe):
            raise ValueError(f"workload.params.shared_prefix.{name}: at most {len(safe)} with this tokenizer")
    suffix = draw_lengths({**p["suffix_len"], "min": max(1, int(p["suffix_len"].get("min", 1)))}, k * m, seed, _INPUT)
    outs = draw_lengths(p["output_len"], k * m, seed, _OUTPUT)
    gp, gs = rng(seed, _PREFIX), rng(seed, _TOKENS)
    heads = gp.permutation(len(safe))[:k]
    out = []
    for grp in range(k):
        prefix = np.concatenate([[safe[int(heads[grp])]], _tokens(tok, gp, plen - 1)]) if plen else np.zeros(0)
        suffix_heads = rng(seed, _SUFFIX_HEAD, grp).permutation(len(safe))[:m]
        for j in range(m):
            i = grp * m + j
            body = np.concatenate([[safe[int(suffix_heads[j])]], _tokens(tok, gs, int(suffix[i]) - 1)])
            ids = np.concatenate([prefix, body]).astype(np.int32)
            out.append(_record(tok, ids, int(outs[i]), text, group=grp))
    return out


def trace_records(tok: Tokenizer, rows: Sequence[Mapping[str, Any]], block_size: int, seed: int,
                  text: bool = False) -> list[dict[str, Any]]:
    """Prompts for trace rows ``{input_length, output_length, hash_ids}``.

    Hash id ``h`` stands for one block of ``block_size`` tokens, the same wherever it appears
    (drawn from ``(seed, h)``); a prompt is its blocks in order, cut to ``input_length``, and
    padded past the last block with tokens of its own (from ``(seed, row)``). Equal hash ids
    therefore give equal token blocks, as the KV-cache hits of the recorded workload.
    """
    blocks: dict[int, np.ndarray] = {}
    out = []
    for r, row in enumerate(rows):
        n = int(row["input_length"])
        parts: list[np.ndarray] = []
        have = 0
        for h in row.get("hash_ids") or []:
            if have >= n:
                break
            b = blocks.get(int(h))
            if b is None:
                b = blocks[int(h)] = _tokens(tok, rng(seed, _BLOCK, int(h)), block_size)
            parts.append(b)
            have += block_size
        if have < n:
            parts.append(_tokens(tok, rng(seed, _FILL, r), n - have))
        ids = np.concatenate(parts)[:n] if parts else np.zeros(0, np.int32)
        out.append(_record(tok, ids.astype(np.int32), int(row["output_length"]), text))
    return out
