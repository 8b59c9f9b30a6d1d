"""The MLPerf compliance tests: their audit.config values, what they need and where they apply.

The values are those of ``compliance/TESTxx/**/audit.config`` in mlcommons/inference (LoadGen
6.0.17 era); which test applies to which benchmark follows the submission checker's v6.0 table
(``tools/submission/submission_checker/constants.py``: ``models_TEST01`` ... ``models_TEST09``).

Workloads that are not an MLPerf benchmark (``mlperf_model`` unset: ``synthetic``, ``chat``) may
run every test whose data they produce: TEST01, TEST04 and TEST07 always; TEST06 and TEST09 when
the run reports token counts (``use_token_latencies``); TEST08 never (it reads DLRMv3 payloads).

TEST06 runs in every scenario: outside Offline its first-token check reads each logged sample's
``token_data``, which a streaming SUT reports with ``Query.first_token(data)`` (a SUT that
reports no first token fails that check, as under LoadGen).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "COMPLIANCE_SEED", "TESTS", "ComplianceRefused", "ComplianceTest", "audit_config_text", "checker_model",
    "refusal",
]

#: The ``accuracy_log_rng_seed`` every official audit.config uses.
COMPLIANCE_SEED = 720381539243781796


class ComplianceRefused(ValueError):
    """A compliance test that does not apply to this run (one line: the reason)."""


@dataclass(frozen=True)
class ComplianceTest:
    """One compliance test.

    Attributes:
        name: ``TEST01`` ...
        purpose: one line, for ``--help`` and the docs.
        reference_performance: compares against the submission's performance run.
        reference_accuracy: compares against the submission's accuracy log.
        checker_models: the checker's benchmarks this test is required for.
    """

    name: str
    purpose: str
    reference_performance: bool
    reference_accuracy: bool
    checker_models: tuple[str, ...]


_LLAMA = ("llama2-70b-99", "llama2-70b-99.9", "llama2-70b-interactive-99", "llama2-70b-interactive-99.9",
          "llama3.1-405b", "llama3.1-8b", "llama3.1-8b-interactive", "llama3.1-405b-interactive", "mixtral-8x7b",
          "deepseek-r1")
TESTS: dict[str, ComplianceTest] = {t.name: t for t in (
    ComplianceTest("TEST01", "performance-mode answers equal accuracy-mode answers; performance within 10%",
                   True, True, ("resnet", "retinanet", "bert-99", "bert-99.9", "dlrm-v2-99", "dlrm-v2-99.9",
                                "3d-unet-99", "3d-unet-99.9", "stable-diffusion-xl", "rgat", "pointpainting",
                                "whisper", "yolo-99", "yolo-95")),
    ComplianceTest("TEST04", "no caching: the same sample issued repeatedly is not faster", True, False,
                   ("resnet", "stable-diffusion-xl", "pointpainting", "wan-2.2-t2v-a14b")),
    ComplianceTest("TEST06", "LLM output consistency: first token, at most one trailing EOS, token_count",
                   False, False, _LLAMA),
    ComplianceTest("TEST07", "accuracy of every sample logged in performance mode meets a threshold", False, False,
                   ("gpt-oss-120b",)),
    ComplianceTest("TEST08", "DLRMv3: performance-mode NE per (ts_idx, query_idx) equals accuracy-mode NE",
                   False, True, ("dlrm-v3",)),
    ComplianceTest("TEST09", "mean output length in performance mode within bounds", False, False,
                   ("gpt-oss-120b",)),
)}


def checker_model(mlperf_model: str | None) -> str | None:
    """The submission checker's name of an mlperf.conf model (``llama3_1-8b`` -> ``llama3.1-8b``).

    ``yolo`` is checked as ``yolo-99`` (the checker lists ``yolo-99`` and ``yolo-95``, both TEST01).
    """
    if mlperf_model is None:
        return None
    name = mlperf_model.replace("llama3_1", "llama3.1")
    return "yolo-99" if name == "yolo" else name


def refusal(test: str, mlperf_model: str | None, scenario: str, *, token_counts: bool,
            fixed_issue_order: bool) -> str | None:
    """Why ``test`` does not apply to this run, or ``None`` when it does."""
    spec = TESTS.get(test)
    if spec is None:
        return f"unknown compliance test {test!r} (known: {', '.join(TESTS)})"
    model = checker_model(mlperf_model)
    if model is not None and model not in spec.checker_models:
        needed = [t.name for t in TESTS.values() if model in t.checker_models]
        return (f"{test} does not apply to {model}: the submission checker requires "
                f"{', '.join(needed) if needed else 'no compliance test'} for it")
    if model is None and test == "TEST08":
        return "TEST08 reads DLRMv3 payloads ([ts_idx, query_idx, predictions...]); only dlrm-v3 runs it"
    if test in ("TEST06", "TEST09") and not token_counts:
        return f"{test} checks output tokens: the run must report token counts (settings.use_token_latencies=1)"
    if test == "TEST01" and fixed_issue_order:
        return ("TEST01 matches samples by qsl_idx, which this library's fixed issue order does not identify "
                "(use TEST08)")
    return None


def audit_config_text(test: str, mlperf_model: str | None, *, total_count: int = 0) -> str:
    """The audit.config a run of ``test`` uses (the official values for the benchmark).

    ``total_count`` is the library size: TEST07/TEST09 log every sample of a non-gpt-oss workload.
    """
    model = checker_model(mlperf_model)
    head = [f"# raybench compliance {test} (values of mlcommons/inference compliance/{test})",
            "# mode: 0 = submission, 1 = accuracy, 2 = performance, 3 = find peak performance"]
    if test == "TEST01":
        body = ["*.*.mode = 2", f"*.*.accuracy_log_rng_seed = {COMPLIANCE_SEED}", "*.*.accuracy_log_sampling_target = 64"]
    elif test == "TEST04":
        body = [f"*.{sc}.{k} = {v}" for sc in ("MultiStream", "Offline", "SingleStream", "Server")
                for k, v in (("mode", 2), ("performance_issue_unique", 0), ("performance_issue_same", 1),
                             ("performance_issue_same_index", 3))]
    elif test == "TEST06":
        body = ["*.*.mode = 2", f"*.*.accuracy_log_rng_seed = {COMPLIANCE_SEED}", "*.*.accuracy_log_sampling_target = 100",
                "*.*.min_query_count = 100", "*.*.min_duration = 0", "*.*.sample_concatenate_permutation = 0"]
    elif test in ("TEST07", "TEST09"):
        count = 4395 if model == "gpt-oss-120b" else max(1, total_count)
        body = ["*.*.mode = 2", f"*.*.accuracy_log_rng_seed = {COMPLIANCE_SEED}",
                f"*.*.accuracy_log_sampling_target = {max(10000, count)}", f"*.*.min_query_count = {count}",
                "*.*.min_duration = 0", "*.*.sample_concatenate_permutation = 0"]
        if model == "gpt-oss-120b":
            body += (["*.*.test07_accuracy_threshold = 60.698"] if test == "TEST07" else
                     ["*.*.test09_min_output_tokens = 1150.38", "*.*.test09_max_output_tokens = 1406.02"])
    elif test == "TEST08":
        # The dlrm-v3 audit.config is not in the snapshot we read; these are TEST01's keys with the
        # sampling target of public TEST08 runs (about 4096 logged samples).
        body = ["*.*.mode = 2", f"*.*.accuracy_log_rng_seed = {COMPLIANCE_SEED}",
                "*.*.accuracy_log_sampling_target = 4096"]
    else:
        raise ComplianceRefused(f"unknown compliance test {test!r} (known: {', '.join(TESTS)})")
    return "\n".join(head + body) + "\n"
