"""Strategy registry: built-ins plus third-party plugins (entry-point group
``mfengine.strategies``), discovered lazily on first use and cached.

A plugin entry point names a :class:`~mfengine.base.MatrixFactorization` subclass, e.g. in the
plugin's pyproject.toml::

    [project.entry-points."mfengine.strategies"]
    puresvd = "mfengine_example_plugin:PureSVD"

A plugin that fails to load, is not a strategy class, or reuses a taken name gives a warning
and is skipped; the built-ins always work.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import warnings
from typing import Any

from mfengine.als import ALS
from mfengine.base import MatrixFactorization, set_strategy_resolver
from mfengine.bpr import BPR
from mfengine.sgd import SGD

ENTRY_POINT_GROUP = "mfengine.strategies"

BUILTIN_STRATEGIES: dict[str, type[MatrixFactorization]] = {"als": ALS, "sgd": SGD, "bpr": BPR}


class PluginWarning(UserWarning):
    """A third-party strategy could not be registered."""


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


@functools.cache
def _plugin_strategies() -> dict[str, type[MatrixFactorization]]:
    found: dict[str, type[MatrixFactorization]] = {}
    for entry_point in _entry_points():
        name = entry_point.name
        if name in BUILTIN_STRATEGIES:
            warnings.warn(
                f"mfengine plugin {entry_point.value!r} reuses the built-in strategy name "
                f"{name!r}; ignored",
                PluginWarning,
                stacklevel=3,
            )
            continue
        if name in found:
            warnings.warn(
                f"two mfengine plugins register the strategy name {name!r}; "
                f"keeping the first, ignoring {entry_point.value!r}",
                PluginWarning,
                stacklevel=3,
            )
            continue
        try:
            strategy = entry_point.load()
        except Exception as error:  # any import-time failure of third-party code
            warnings.warn(
                f"mfengine plugin {name!r} ({entry_point.value}) failed to load: {error!r}",
                PluginWarning,
                stacklevel=3,
            )
            continue
        if not (inspect.isclass(strategy) and issubclass(strategy, MatrixFactorization)):
            warnings.warn(
                f"mfengine plugin {name!r} ({entry_point.value}) is not a MatrixFactorization "
                "subclass; ignored",
                PluginWarning,
                stacklevel=3,
            )
            continue
        found[name] = strategy
    return found


def refresh() -> None:
    """Forget discovered plugins (after installing one at run time, and in tests)."""
    _plugin_strategies.cache_clear()


def strategies() -> dict[str, type[MatrixFactorization]]:
    """All strategies by name: built-ins first, then plugins."""
    return {**BUILTIN_STRATEGIES, **_plugin_strategies()}


def available() -> list[str]:
    """Names accepted by :func:`create`, sorted."""
    return sorted(strategies())


def get_strategy(name: str) -> type[MatrixFactorization]:
    """The strategy class registered under ``name``; ValueError listing the names if none."""
    if name in BUILTIN_STRATEGIES:
        return BUILTIN_STRATEGIES[name]
    registry = strategies()
    if name not in registry:
        raise ValueError(f"unknown strategy {name!r}; available: {sorted(registry)}")
    return registry[name]


def create(name: str, **hyperparameters: Any) -> MatrixFactorization:
    """A new, unfitted strategy by name; unknown hyperparameters raise TypeError naming them."""
    strategy = get_strategy(name)
    accepted = set(strategy._param_names())
    unknown = sorted(set(hyperparameters) - accepted)
    if unknown:
        raise TypeError(
            f"unknown hyperparameter(s) {', '.join(map(repr, unknown))} for strategy {name!r}; "
            f"accepted: {sorted(accepted)}"
        )
    return strategy(**hyperparameters)


set_strategy_resolver(get_strategy)
