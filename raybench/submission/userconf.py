"""A user.conf that reproduces a run's settings, for runs made without one.

A submission's scenario directory must hold the user.conf its runs used. A run made with
``--user-conf FILE`` brings that file; a run made from ``--set settings.*`` overrides (or a
workload's demo settings) has none, so one is written: every LoadGen conf key whose value in the
run (``result.json`` ``settings``) differs from what the bundled or given mlperf.conf alone
gives, as ``*.<Scenario>.<key> = <value>`` in the conf file's units (ms, percent). Keys LoadGen
reads only from mlperf.conf (seeds, ``accuracy_log_probability``, ``test05*``) and ``mode`` are
never written.
"""

from __future__ import annotations

from typing import Any

from raybench.core.conf import _RULES, MLPERF_CONF_ONLY_KEYS, resolve_settings

__all__ = ["reconstruct_user_conf"]


def _conf_value(value: Any, kind: str, mult: float) -> str:
    if kind in ("eq1", "ne0"):
        return "1" if value else "0"
    v = float(value) / mult
    return str(int(round(v))) if abs(v - round(v)) < 1e-9 * max(1.0, abs(v)) else repr(v)


def reconstruct_user_conf(config: dict[str, Any], result: dict[str, Any]) -> str:
    """The user.conf text for a run (``config.yaml`` and ``result.json`` as dicts).

    Raises:
        ValueError: the run's workload is unknown or its mlperf.conf cannot be read.
    """
    from raybench.registry import get_workload

    scenario = str(result["scenario"])
    workload = str(result["workload"])
    model = config.get("model") or get_workload(workload).mlperf_model
    base, _ = resolve_settings(model=model, scenario=scenario, mode=None, mlperf_conf=config.get("mlperf_conf"),
                               user_conf=None, overrides=None, round=config.get("round"))
    run = result.get("settings") or {}
    lines = [f"# user.conf reconstructed by raybench from the run's resolved settings ({workload}, {scenario}):",
             "# every key whose value differs from mlperf.conf's."]
    for key, fixed, fld, kind, mult, _gate in _RULES:
        if key == "mode" or key in MLPERF_CONF_ONLY_KEYS or fixed not in (None, scenario) or fld not in run:
            continue
        if run[fld] != getattr(base, fld):
            lines.append(f"*.{scenario}.{key} = {_conf_value(run[fld], kind, mult)}")
    return "\n".join(lines) + "\n"
