"""Quality checks catch broken factors."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mfengine.checks import all_passed, check_factors


def _by_name(checks):
    return {c["name"]: c for c in checks}


def _healthy(seed=0, n_users=200, n_items=100, k=8):
    rng = np.random.default_rng(seed)
    uf = rng.normal(size=(n_users, k)).astype(np.float32)
    itf = rng.normal(size=(n_items, k)).astype(np.float32)
    ui = sp.random(n_users, n_items, density=0.05, format="csr", random_state=seed)
    return uf, itf, ui


def test_healthy_factors_pass():
    uf, itf, ui = _healthy()
    checks = check_factors(uf, itf, ui)
    assert [c["name"] for c in checks] == [
        "dimensions", "finite", "user_norms", "item_norms", "item_coverage", "user_coverage"
    ]
    assert all_passed(checks), [c["reason"] for c in checks if not c["passed"]]
    assert set(_by_name(checks)["item_norms"]["values"]) >= {"p1", "p50", "p99", "max"}


def test_injected_nan_is_caught():
    uf, itf, ui = _healthy()
    itf[7, 3] = np.nan
    c = _by_name(check_factors(uf, itf, ui))["finite"]
    assert not c["passed"]
    assert c["values"]["non_finite_items"] == 1


def test_huge_item_norm_outlier_is_caught():
    uf, itf, ui = _healthy()
    itf[42] *= 1000.0  # a broken vector, far beyond any popular head
    c = _by_name(check_factors(uf, itf, ui))["item_norms"]
    assert not c["passed"]
    assert c["values"]["outlier_ids"] == [42]
    # a looser threshold accepts it
    assert _by_name(check_factors(uf, itf, ui, max_norm_ratio=100_000))["item_norms"]["passed"]


def test_a_long_vector_backed_by_as_much_more_data_is_the_popular_head_not_an_outlier():
    # A power-law catalogue at scale: the head item has far more users than the p99 item and
    # a norm far beyond the p99 norm, but not further out than its data.
    uf, itf, _ = _healthy(n_users=2000, n_items=1000)
    sparse = sp.random(2000, 1000, density=0.002, format="lil", random_state=0)
    ui = sparse.copy()
    ui[:, 42] = 1.0  # every user: 2000 against ~10 at the p99 item
    ui, sparse = ui.tocsr(), sparse.tocsr()
    itf[42] *= 100.0
    checks = check_factors(uf, itf, ui)
    c = _by_name(checks)["item_norms"]
    assert c["passed"], c["reason"]
    assert c["values"]["n_backed_by_data"] == 1 and "popular head" in c["reason"]
    # The same vector on an item with a handful of events is an outlier; without the data
    # the check cannot tell, and flags it.
    assert _by_name(check_factors(uf, itf, sparse))["item_norms"]["values"]["outlier_ids"] == [42]
    assert not _by_name(check_factors(uf, itf))["item_norms"]["passed"]


def test_dimension_mismatch_and_collapsed_factors():
    uf, itf, ui = _healthy()
    assert not check_factors(uf[:-1], itf, ui)[0]["passed"]
    zeros = np.zeros_like(uf)
    checks = _by_name(check_factors(zeros, itf, ui))
    assert not checks["user_norms"]["passed"]
    assert not checks["user_coverage"]["passed"]


def test_item_coverage_fails_when_one_item_dominates():
    uf, itf, ui = _healthy()
    uf = np.abs(uf)
    itf = np.zeros_like(itf) + 1e-3
    itf[:5] = 1.0  # five items are everyone's top
    c = _by_name(check_factors(uf, itf, ui, k=5, min_item_coverage=0.2))["item_coverage"]
    assert not c["passed"]
    assert c["values"]["share_in_top_k"] == 0.05
