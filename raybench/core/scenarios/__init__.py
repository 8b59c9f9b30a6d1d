"""The scenarios, one module each, and the union a run config's ``scenario`` field validates to.

Adding a scenario: write ``raybench/core/scenarios/<name>.py`` with a :class:`Scenario` subclass
(its ``name`` Literal, TestSettings fields, effective settings, phase builder, issuing loop and
verdict rules) and add the class to :data:`SCENARIOS` below.

Example:
    >>> from pydantic import TypeAdapter
    >>> TypeAdapter(ScenarioConfig).validate_python({"name": "Server", "target_qps": 50}).settings_overrides()
    {'server_target_qps': 50.0}
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from raybench.core.scenarios.base import Effective, Scenario, Throughput, Verdict
from raybench.core.scenarios.concurrency import Concurrency
from raybench.core.scenarios.multi_stream import MultiStream
from raybench.core.scenarios.offline import Offline
from raybench.core.scenarios.server import Server
from raybench.core.scenarios.single_stream import SingleStream

__all__ = [
    "SCENARIOS",
    "SCENARIO_NAMES",
    "Concurrency",
    "Effective",
    "MultiStream",
    "Offline",
    "Scenario",
    "ScenarioConfig",
    "Server",
    "SingleStream",
    "Throughput",
    "Verdict",
    "canonical_name",
    "get_scenario",
]

#: Every scenario class, by its MLPerf name.
SCENARIOS: dict[str, type[Scenario]] = {
    cls.model_fields["name"].default: cls for cls in (SingleStream, MultiStream, Server, Offline, Concurrency)
}
SCENARIO_NAMES: tuple[str, ...] = tuple(SCENARIOS)

#: The ``scenario`` field of a run config: one of the scenario models, chosen by ``name``.
ScenarioConfig = Annotated[
    SingleStream | MultiStream | Server | Offline | Concurrency,
    Field(discriminator="name"),
]


def canonical_name(name: str) -> str:
    """The MLPerf spelling of a scenario name given in any case (``server`` -> ``Server``).

    Raises:
        ValueError: not a scenario name.
    """
    for known in SCENARIO_NAMES:
        if name.lower() == known.lower():
            return known
    raise ValueError(f"must be one of {', '.join(SCENARIO_NAMES)}, got {name!r}")


def get_scenario(name: str) -> Scenario:
    """The scenario ``name`` with every field left to the settings."""
    return SCENARIOS[canonical_name(name)]()
