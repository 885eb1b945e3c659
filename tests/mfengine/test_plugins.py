"""Third-party strategies: the installed example plugin and broken-plugin handling.

The example plugin lives in tests/plugins/mfengine_example_plugin and is installed into the
environment with ``pip install -e tests/plugins/mfengine_example_plugin`` (make install-dev).
"""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest

import mfengine
from mfengine import plugins
from mfengine.testing import StrategyConformance, planted_split


@pytest.fixture(autouse=True)
def fresh_registry():
    # each test sees a fresh discovery, and leaves none of its fakes behind
    plugins.refresh()
    yield
    plugins.refresh()


class TestPureSVDPlugin(StrategyConformance):
    strategy_name = "puresvd"
    hyperparameters = {"factors": 16, "iterations": 4}
    # PureSVD's fold-in is the exact projection, so it recovers the ranking fully
    fold_in_overlap = 0.99


def test_example_plugin_is_installed_and_found() -> None:
    names = [ep.name for ep in importlib.metadata.entry_points(group=plugins.ENTRY_POINT_GROUP)]
    assert "puresvd" in names
    assert "puresvd" in mfengine.available()
    assert mfengine.get_strategy("puresvd").__module__ == "mfengine_example_plugin"


def _fake_entry_points(*specs: tuple[str, str]) -> list[importlib.metadata.EntryPoint]:
    return [
        importlib.metadata.EntryPoint(name, value, plugins.ENTRY_POINT_GROUP)
        for name, value in specs
    ]


def test_broken_plugin_warns_and_builtins_still_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        plugins,
        "_entry_points",
        lambda: _fake_entry_points(
            ("broken", "mfengine_no_such_module_xyz:Strategy"),
            ("als", "mfengine_example_plugin:PureSVD"),  # steals a built-in name
            ("notastrategy", "json:dumps"),
            ("puresvd", "mfengine_example_plugin:PureSVD"),
        ),
    )
    with pytest.warns(plugins.PluginWarning) as caught:
        names = mfengine.available()
    messages = " ".join(str(w.message) for w in caught)
    assert "broken" in messages and "failed to load" in messages
    assert "reuses the built-in strategy name 'als'" in messages
    assert "notastrategy" in messages
    assert names == ["als", "bpr", "puresvd", "sgd"]
    # the built-in kept its name and works
    assert mfengine.get_strategy("als") is mfengine.als.ALS
    train, _ = planted_split()
    model = mfengine.create("als", factors=4, iterations=1, random_state=0).fit(train)
    assert np.isfinite(model.item_factors_).all()


def test_plugin_raising_at_import_is_contained(monkeypatch: pytest.MonkeyPatch) -> None:
    class ExplodingEntryPoint:
        name = "explodes"
        value = "somewhere:Thing"

        def load(self):
            raise RuntimeError("boom at import")

    monkeypatch.setattr(plugins, "_entry_points", lambda: [ExplodingEntryPoint()])
    with pytest.warns(plugins.PluginWarning, match="boom at import"):
        assert mfengine.available() == ["als", "bpr", "sgd"]
    with pytest.raises(ValueError, match="unknown strategy 'explodes'"):
        mfengine.create("explodes")


def test_discovery_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def entry_points():
        calls.append(1)
        return []

    monkeypatch.setattr(plugins, "_entry_points", entry_points)
    mfengine.available()
    mfengine.available()
    mfengine.create("bpr")
    assert len(calls) == 1
    # creating a built-in never needs the plugin scan
    plugins.refresh()
    mfengine.create("als")
    assert len(calls) == 1
