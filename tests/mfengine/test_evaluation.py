"""Metrics against hand-computed cases and an independent per-user implementation; splits
never leak test events into training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from mfengine.evaluation import (
    beyond_accuracy_metrics,
    evaluate_model,
    evaluate_recommendations,
    gini,
    global_time_split,
    item_popularity,
    long_tail_mask,
    lorenz_curve,
    ranking_metrics,
    rating_metrics,
    temporal_split,
    temporal_split_mask,
)


def reference_metrics(recommended, test_rows, k):
    """Straightforward per-user loops, written from BENCHMARK.md's definitions."""
    sums = {"recall": 0.0, "ndcg": 0.0, "hit_rate": 0.0, "map": 0.0}
    n = 0
    for rec, relevant in zip(recommended, test_rows, strict=True):
        relevant = set(relevant)
        if not relevant:
            continue
        n += 1
        seen = set()
        hits = []
        for item in list(rec)[:k]:
            hit = item >= 0 and item in relevant and item not in seen
            seen.add(item)
            hits.append(1 if hit else 0)
        denom = min(k, len(relevant))
        sums["recall"] += sum(hits) / denom
        dcg = sum(h / math.log2(r + 1) for r, h in enumerate(hits, start=1))
        idcg = sum(1 / math.log2(r + 1) for r in range(1, denom + 1))
        sums["ndcg"] += dcg / idcg
        sums["hit_rate"] += 1.0 if sum(hits) else 0.0
        ap, found = 0.0, 0
        for r, h in enumerate(hits, start=1):
            if h:
                found += 1
                ap += found / r
        sums["map"] += ap / denom
    return {key: value / n for key, value in sums.items()}, n


def _csr(rows, n_items):
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(len(rows), n_items))


def test_hand_computed_tiny_case():
    # user 0: test {1, 3}; recs [1, 2, 3] -> hits at ranks 1 and 3
    # user 1: test {0}; recs [2, -1, -1] -> no hit
    # user 2: no test positives -> not evaluated
    test = _csr([[1, 3], [0], []], 4)
    rec = np.array([[1, 2, 3], [2, -1, -1], [0, 1, 2]])
    m = ranking_metrics(rec, test, 3)
    assert m["n_users"] == 2
    assert m["recall"] == pytest.approx((2 / 2 + 0) / 2)
    dcg = 1 + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3)
    assert m["ndcg"] == pytest.approx((dcg / idcg) / 2)
    assert m["hit_rate"] == pytest.approx(0.5)
    assert m["map"] == pytest.approx(((1 / 1 + 2 / 3) / 2) / 2)


def test_recall_denominator_is_min_k_and_test_size():
    # 5 test items, K=2, both recommended items hit -> recall 1 (not 2/5)
    test = _csr([[0, 1, 2, 3, 4]], 6)
    m = ranking_metrics(np.array([[3, 4, 5]]), test, 2)
    assert m["recall"] == pytest.approx(1.0)
    assert m["ndcg"] == pytest.approx(1.0)
    assert m["map"] == pytest.approx(1.0)


def test_k_larger_than_columns_raises():
    with pytest.raises(ValueError):
        ranking_metrics(np.array([[0, 1]]), _csr([[0]], 3), 3)


@pytest.mark.parametrize("seed", range(6))
def test_matches_reference_on_random_cases(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items = 60, 40
    rows = [
        list(rng.choice(n_items, size=rng.integers(0, 12), replace=False))
        for _ in range(n_users)
    ]
    test = _csr(rows, n_items)
    rec = rng.integers(-1, n_items, size=(n_users, 25))  # includes -1 padding and duplicates
    for k in (1, 3, 10, 25):
        got = ranking_metrics(rec, test, k)
        want, n = reference_metrics(rec, rows, k)
        assert got["n_users"] == n
        for key, value in want.items():
            assert abs(got[key] - value) < 1e-9, (key, k)


def test_users_argument_selects_test_rows():
    test = _csr([[0], [1], [2]], 3)
    rec = np.array([[2, 0], [1, 0]])  # row 0 is user 2 (hit), row 1 user 0 (miss)
    m = ranking_metrics(rec, test, 1, users=[2, 0])
    assert m["recall"] == pytest.approx(0.5)
    assert m["n_users"] == 2


def test_rating_metrics():
    m = rating_metrics([3.0, 4.0, 5.0], [4.0, 4.0, 3.0])
    assert m["rmse"] == pytest.approx(math.sqrt((1 + 0 + 4) / 3))
    assert m["mae"] == pytest.approx(1.0)


def test_gini_and_lorenz():
    assert gini([1, 1, 1, 1]) == pytest.approx(0.0)
    assert gini([0, 0, 0, 8]) == pytest.approx(0.75)
    curve = lorenz_curve([0, 0, 0, 8], points=5)
    assert curve["item_share"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert curve["recommendation_share"] == pytest.approx([0, 0, 0, 0, 1])


def test_beyond_accuracy_hand_case():
    # 4 users; item popularity shares 1, .5, .25, 0 (item 3 untouched -> floored at .25)
    train = _csr([[0, 1, 2], [0, 1], [0], [0]], 4)
    pop = item_popularity(train)
    assert pop.tolist() == [1.0, 0.5, 0.25, 0.0]
    rec = np.array([[1, 2], [1, 3], [1, -1]])
    m = beyond_accuracy_metrics(rec, pop, 2)
    assert m["coverage"] == pytest.approx(3 / 4)
    assert m["novelty"] == pytest.approx(np.mean([1, 2, 1, 2, 1]))
    # top 1% of 4 items = 1 item (item 0), never recommended
    assert m["top1pct_share"] == 0.0
    assert m["gini"] == pytest.approx(gini([0, 3, 1, 1]))


def test_long_tail_mask_top_20_percent():
    pop = np.array([0.1, 0.9, 0.5, 0.0, 0.2, 0.3, 0.0, 0.0, 0.05, 0.4])
    tail = long_tail_mask(pop, 0.2)
    assert np.flatnonzero(~tail).tolist() == [1, 2]


def test_segments_cold_users_and_long_tail():
    # users 0,1 cold (<= 5 train items); user 2 warm (6 train items)
    train = _csr([[0], [0, 1], [0, 1, 2, 3, 4, 5]], 10)
    test = _csr([[6], [9], [6, 9]], 10)
    rec = np.array([[6, 7], [7, 8], [9, 6]])
    res = evaluate_recommendations(rec, np.arange(3), train, test, ks=(1, 2))
    # K=1: user 2 hits 9 and min(1, 2) = 1 -> recall 1
    assert res["overall"]["1"]["recall"] == pytest.approx((1 + 0 + 1) / 3)
    assert res["cold_users"]["1"]["n_users"] == 2
    assert res["cold_users"]["1"]["recall"] == pytest.approx(0.5)
    # head = top 2 of 10 items by train popularity: items 0 and 1; 6 and 9 are tail
    assert res["long_tail"]["2"]["recall"] == pytest.approx((1 + 0 + 1) / 3)


def _random_events(seed=0, n_users=40, n_items=30, n=800):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n)
    items = rng.integers(0, n_items, n)
    ts = rng.integers(1_000, 1_100, n)  # narrow range: many timestamp ties
    values = rng.integers(1, 6, n).astype(float)
    return users, items, ts, values


def test_temporal_split_sizes_follow_floor_20_percent():
    users, items, ts, _ = _random_events()
    mask = temporal_split_mask(users, ts, 0.2, items)
    for u in np.unique(users):
        n_u = int((users == u).sum())
        assert int(mask[users == u].sum()) == math.floor(0.2 * n_u + 1e-9)
    # 15 events -> 3 test (0.2 * 15 is 3.0000000000000004 in floating point)
    assert temporal_split_mask(np.zeros(15, int), np.arange(15)).sum() == 3


def test_temporal_split_never_leaks():
    users, items, ts, values = _random_events(1)
    mask = temporal_split_mask(users, ts, 0.2, items)
    train, test = temporal_split(users, items, ts, values, positive_threshold=4)
    for u in np.unique(users):
        mine = users == u
        train_ts = ts[mine & ~mask]
        test_ts = ts[mine & mask]
        if len(test_ts):
            assert test_ts.min() >= train_ts.max()
        # the matrices hold exactly these events: train items are train events' items
        assert set(train[u].indices) == set(items[mine & ~mask])
        expected = set(items[mine & mask & (values >= 4)]) - set(items[mine & ~mask])
        assert set(test[u].indices) == expected
    assert train.shape == test.shape
    assert train.multiply(test).nnz == 0


def test_temporal_split_strictly_later_without_ties():
    rng = np.random.default_rng(3)
    users = rng.integers(0, 20, 500)
    items = rng.integers(0, 50, 500)
    ts = rng.permutation(500) * 10  # distinct timestamps
    mask = temporal_split_mask(users, ts, 0.2, items)
    for u in np.unique(users):
        mine = users == u
        if mask[mine].any():
            assert ts[mine & mask].min() > ts[mine & ~mask].max()


def test_global_time_split_never_leaks():
    users, items, ts, values = _random_events(2)
    cutoff = 1_070
    train, test = global_time_split(users, items, ts, values, cutoff=cutoff, shape=(40, 30))
    tr = sp.coo_matrix(train)
    for u, i in zip(tr.row, tr.col, strict=True):
        assert ts[(users == u) & (items == i) & (ts < cutoff)].size > 0
    te = sp.coo_matrix(test)
    for u, i in zip(te.row, te.col, strict=True):
        assert ts[(users == u) & (items == i) & (ts >= cutoff)].size > 0
        assert train[u].nnz > 0
    # every event before the cutoff is in train, and nothing else
    before = {(u, i) for u, i, t in zip(users, items, ts, strict=True) if t < cutoff}
    assert train.nnz == len(before)


def test_global_time_split_drops_users_without_train():
    users = np.array([0, 0, 1])
    items = np.array([0, 1, 2])
    ts = np.array([10, 30, 40])
    train, test = global_time_split(users, items, ts, cutoff=20, shape=(2, 3))
    assert test[0].indices.tolist() == [1]
    assert test[1].nnz == 0  # user 1 has nothing before the cutoff


class _FixedModel:
    """Recommends the lowest-numbered unseen items, through the strategy interface."""

    def __init__(self, n_items):
        self.n_items = n_items
        self.calls = 0

    def recommend(self, user_ids, user_items, n=10, filter_seen=True, items=None, exclude=None):
        self.calls += 1
        ids = np.full((len(user_ids), n), -1)
        for row, u in enumerate(user_ids):
            seen = set(user_items[u].indices) if filter_seen else set()
            cand = [i for i in range(self.n_items) if i not in seen][:n]
            ids[row, : len(cand)] = cand
        return ids, np.zeros(ids.shape, dtype=np.float32)

    def predict(self, user_ids, item_ids):
        return np.full(len(user_ids), 3.0)


def test_evaluate_model_batches_and_matches_ranking_metrics():
    users, items, ts, values = _random_events(4)
    train, test = temporal_split(users, items, ts, values, shape=(40, 30))
    model = _FixedModel(30)
    res = evaluate_model(model, train, test, ks=(5, 10), batch_size=7,
                         test_ratings=test * 4.0, return_recommendations=True)
    assert model.calls == math.ceil(res["n_users"] / 7)
    direct = ranking_metrics(res["recommended"], test, 10, users=res["users"])
    for key in ("recall", "ndcg", "hit_rate", "map"):
        assert res["metrics"]["overall"]["10"][key] == pytest.approx(direct[key], abs=1e-12)
    assert res["rating"]["rmse"] == pytest.approx(1.0)


def _straightforward_segments(rec, users, train, test, ks, cold_threshold=5, head_share=0.2):
    """evaluate_recommendations computed the direct way: every K and segment on its own,
    the long-tail segment through a long-tail-only test matrix (the fast path finds hits
    once for the largest K and derives the rest)."""
    from mfengine.evaluation import (
        RANKING_KEYS,
        beyond_accuracy_metrics,
        item_popularity,
        per_user_ranking_metrics,
    )

    pop = item_popularity(train)
    tail = long_tail_mask(pop, head_share)
    test_u = sp.csr_matrix(test)[users]
    cold = np.diff(sp.csr_matrix(train).indptr)[users] <= cold_threshold
    test_tail = test_u.multiply(tail[None, :].astype(np.float32)).tocsr()
    test_tail.eliminate_zeros()
    out = {"overall": {}, "cold_users": {}, "long_tail": {}}
    for k in ks:
        per_user = per_user_ranking_metrics(rec, test_u, k)
        evaluated = per_user["evaluated"]
        for segment, mask in (("overall", evaluated), ("cold_users", evaluated & cold)):
            n = int(mask.sum())
            metrics = {m: float(per_user[m][mask].mean()) if n else 0.0 for m in RANKING_KEYS}
            metrics["n_users"] = n
            metrics.update(beyond_accuracy_metrics(rec[mask], pop, k))
            out[segment][str(k)] = metrics
        tail_metrics = ranking_metrics(rec, test_tail, k)
        rec_k = rec[evaluated, :k]
        valid = rec_k >= 0
        slots = tail[rec_k[valid]] if valid.any() else np.zeros(0, bool)
        tail_metrics["tail_slot_share"] = float(slots.mean()) if slots.size else 0.0
        tail_metrics["tail_coverage"] = float(
            len(np.unique(rec_k[valid][slots])) / max(int(tail.sum()), 1)
        )
        out["long_tail"][str(k)] = tail_metrics
    return out


@pytest.mark.parametrize("seed", range(8))
def test_evaluate_recommendations_equals_straightforward_per_k(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items = 70, 50
    train = sp.random(n_users, n_items, density=0.1, random_state=seed, format="csr")
    train.data[:] = 1.0
    test = sp.random(n_users, n_items, density=0.08, random_state=seed + 100, format="csr")
    test.data[:] = 1.0
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    if seed % 2:
        users = rng.permutation(n_users)[:40]  # some rows without test positives
    # -1 padding, duplicates, repeated hits; wider than the largest K
    rec = rng.integers(-1, n_items, size=(len(users), 30))
    rec[:, 5] = rec[:, 1]
    ks = (1, 4, 10, 25)
    got = evaluate_recommendations(rec, users, train, test, ks)
    assert got == _straightforward_segments(rec, users, train, test, ks)  # bit-identical


def test_hits_prefix_equals_hits_at_smaller_k():
    from mfengine.evaluation import _hits

    rng = np.random.default_rng(3)
    test = sp.random(50, 20, density=0.2, random_state=3, format="csr")
    rec = rng.integers(-1, 22, size=(50, 15))  # out-of-range ids never hit
    full = _hits(rec, test, 15)
    for k in range(1, 16):
        assert np.array_equal(full[:, :k], _hits(rec, test, k))
    rows = [set(test.indices[test.indptr[u]:test.indptr[u + 1]].tolist()) for u in range(50)]
    for u in range(50):
        seen: set[int] = set()
        for r in range(15):
            item = int(rec[u, r])
            assert full[u, r] == (0 <= item < 20 and item in rows[u] and item not in seen)
            seen.add(item)
