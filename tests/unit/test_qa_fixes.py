"""Regression tests for what a new user saw going wrong (one test per fix)."""

from __future__ import annotations

import pytest

from raybench.config import ConfigError, load_run_config


def test_unknown_arrival_kind_names_the_kinds_not_the_scenarios() -> None:
    with pytest.raises(ConfigError) as exc:
        load_run_config(None, ["workload=synthetic", "scenario=Server", "scenario.arrival.kind=foo"])
    assert str(exc.value) == "config: scenario.arrival.kind: must be one of poisson, constant, gamma, ramp, trace"


def test_bad_arrival_field_is_named_as_the_user_writes_it() -> None:
    with pytest.raises(ConfigError) as exc:
        load_run_config(None, ["workload=synthetic", "scenario=Server", "scenario.arrival.kind=gamma",
                               "scenario.arrival.burstiness=-1"])
    assert str(exc.value) == "config: scenario.arrival.burstiness: Input should be greater than 0"
