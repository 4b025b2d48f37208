"""The scenario catalogue: what runs by default, what only when named."""

from __future__ import annotations

import pytest

from openline.bench.scenarios import DEFAULT, SCENARIOS, quick, select


def test_the_default_run_is_the_catalogue_without_the_extras() -> None:
    names = [scenario.name for scenario in select(None)]
    assert names == DEFAULT
    assert "fanout-5k" in names and "idle-10k+deflate" in names
    assert "fanout-5k-300" not in names


def test_an_extra_runs_when_named() -> None:
    (capacity,) = select(["fanout-5k-300"])
    assert (capacity.kind, capacity.connections, capacity.rate) == ("fanout", 5000, 300)
    assert capacity.primary == "deliveries_per_s"
    assert quick(capacity).connections < capacity.connections


def test_an_unknown_scenario_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="'nope'"):
        select(["nope"])
    assert set(DEFAULT) < set(SCENARIOS)
