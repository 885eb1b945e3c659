"""Data preparation: weights, decay from the cutoff, window, caps, negatives, hashing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mfengine.data import PrepareConfig, prepare_interactions

DAY = 86400
CUTOFF = 1_000 * DAY


def _cell(prepared, user, item):
    r = prepared.user_rows([user])[0]
    c = prepared.item_columns([item])[0]
    assert r >= 0 and c >= 0
    return float(prepared.matrix[r, c])


def test_event_type_weights_and_unknown_types_ignored():
    weights = {"click": 1.0, "add_to_cart": 3.0, "purchase": 5.0}
    p = prepare_interactions(
        ["a", "a", "a", "b", "b"],
        [10, 10, 11, 10, 12],
        [CUTOFF - DAY] * 5,
        cutoff=CUTOFF,
        event_types=["click", "purchase", "add_to_cart", "click", "scroll"],
        config=PrepareConfig(event_weights=weights),
    )
    assert _cell(p, "a", 10) == 6.0  # click + purchase add up
    assert _cell(p, "a", 11) == 3.0
    assert _cell(p, "b", 10) == 1.0
    assert p.item_columns([12])[0] == -1  # only event was of an unweighted type
    assert p.counts["dropped_unknown_type"] == 1
    assert p.counts["events_kept"] == 4
    assert p.matrix.dtype == np.float32


def test_decay_is_measured_from_the_cutoff_not_now():
    cfg = PrepareConfig(event_weights={"click": 1.0}, half_life_days=10)
    p = prepare_interactions(
        ["u", "u"], ["old", "new"], [CUTOFF - 20 * DAY, CUTOFF - 1],
        cutoff=CUTOFF, event_types=["click", "click"], config=cfg,
    )
    assert _cell(p, "u", "old") == pytest.approx(0.25, rel=1e-6)
    assert _cell(p, "u", "new") == pytest.approx(1.0, rel=1e-5)
    # Same events, same cutoff, prepared "later": identical matrix (no wall clock).
    again = prepare_interactions(
        ["u", "u"], ["old", "new"], [CUTOFF - 20 * DAY, CUTOFF - 1],
        cutoff=CUTOFF, event_types=["click", "click"], config=cfg,
    )
    assert again.content_hash == p.content_hash


def test_events_at_or_after_cutoff_and_outside_window_are_dropped():
    ts = [CUTOFF - 100 * DAY, CUTOFF - 10 * DAY, CUTOFF, CUTOFF + DAY]
    p = prepare_interactions(
        [1, 1, 1, 1], [1, 2, 3, 4], ts, cutoff=CUTOFF,
        config=PrepareConfig(window_days=90),
    )
    assert p.item_ids.tolist() == [2]
    assert p.counts["dropped_after_cutoff"] == 2
    assert p.counts["dropped_outside_window"] == 1


def test_negative_events_become_suppression_never_positives():
    p = prepare_interactions(
        ["u", "u", "u", "v"], ["x", "y", "y", "x"], [CUTOFF - DAY] * 4, cutoff=CUTOFF,
        event_types=["hide", "click", "dislike", "dislike"],
        config=PrepareConfig(event_weights={"click": 1.0}),
    )
    assert sorted(p.suppression_pairs()) == [("u", "x"), ("u", "y"), ("v", "x")]
    # the click on y is removed too: the user disliked it
    assert p.matrix.nnz == 0
    assert p.counts["negative_events"] == 3
    assert p.counts["dropped_suppressed_pair"] == 1

    keep = prepare_interactions(
        ["u", "u"], ["y", "y"], [CUTOFF - DAY] * 2, cutoff=CUTOFF,
        event_types=["click", "dislike"],
        config=PrepareConfig(event_weights={"click": 1.0}, negatives_remove_positives=False),
    )
    assert _cell(keep, "u", "y") == 1.0
    assert keep.suppression_pairs() == [("u", "y")]


def test_caps_keep_the_most_recent_events():
    n = 10
    p = prepare_interactions(
        ["bot"] * n + ["h"], list(range(n)) + [0], [CUTOFF - (n - i) * DAY for i in range(n)] + [1],
        cutoff=CUTOFF, config=PrepareConfig(max_events_per_user=3),
    )
    bot = p.matrix[p.user_rows(["bot"])[0]]
    assert sorted(p.item_ids[bot.indices].tolist()) == [7, 8, 9]
    assert p.counts["dropped_user_cap"] == 7

    q = prepare_interactions(
        list(range(6)), [5] * 6, [CUTOFF - (6 - i) * DAY for i in range(6)], cutoff=CUTOFF,
        config=PrepareConfig(max_events_per_item=2),
    )
    assert q.user_ids.tolist() == [4, 5]
    assert q.counts["dropped_item_cap"] == 4


def test_max_strength_and_log1p():
    cfg = PrepareConfig(event_weights={"purchase": 5.0}, max_strength=8.0, log1p=True)
    p = prepare_interactions(
        ["u", "u"], ["i", "i"], [CUTOFF - 5, CUTOFF - 4], cutoff=CUTOFF,
        event_types=["purchase", "purchase"], config=cfg,
    )
    assert _cell(p, "u", "i") == pytest.approx(math.log1p(8.0), rel=1e-6)


def test_values_multiply_weights_when_asked():
    p = prepare_interactions(
        [1, 2], [1, 1], [5, 6], cutoff=10, event_types=["rating", "rating"], values=[4.0, 2.5],
        config=PrepareConfig(event_weights={"rating": 1.0}, use_values=True),
    )
    assert p.matrix.toarray().ravel().tolist() == [4.0, 2.5]


def test_mappings_are_sorted_and_both_ways():
    p = prepare_interactions(["c", "a", "b"], [30, 10, 20], [1, 2, 3], cutoff=10)
    assert p.user_ids.tolist() == ["a", "b", "c"]
    assert p.item_ids.tolist() == [10, 20, 30]
    assert p.user_to_row == {"a": 0, "b": 1, "c": 2}
    assert p.item_to_column[30] == 2
    assert p.user_rows(["b", "zz"]).tolist() == [1, -1]
    assert p.matrix.toarray().tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]


def test_catalogue_gives_columns_to_items_without_events():
    p = prepare_interactions(
        ["u", "u"], ["a", "ghost"], [1, 2], cutoff=10, catalogue_item_ids=["a", "b", "c"],
    )
    assert p.item_ids.tolist() == ["a", "b", "c"]
    assert p.counts["dropped_unknown_item"] == 1
    assert p.shape == (1, 3)


def test_hash_is_stable_and_sensitive():
    rng = np.random.default_rng(0)
    n = 5000
    users = rng.integers(0, 300, n)
    items = rng.integers(0, 200, n)
    ts = rng.integers(0, CUTOFF, n)
    types = rng.choice(["click", "purchase", "hide"], n)
    cfg = PrepareConfig(half_life_days=30)
    a = prepare_interactions(users, items, ts, cutoff=CUTOFF, event_types=types, config=cfg)
    perm = rng.permutation(n)  # order of events must not matter
    b = prepare_interactions(
        users[perm], items[perm], ts[perm], cutoff=CUTOFF, event_types=types[perm], config=cfg
    )
    assert a.content_hash == b.content_hash
    types2 = types.copy()
    types2[np.flatnonzero(types == "click")[0]] = "purchase"
    c = prepare_interactions(users, items, ts, cutoff=CUTOFF, event_types=types2, config=cfg)
    assert c.content_hash != a.content_hash
    d = prepare_interactions(users + 1, items, ts, cutoff=CUTOFF, event_types=types, config=cfg)
    assert d.content_hash != a.content_hash  # same matrix, different ids


def test_counts_add_up():
    rng = np.random.default_rng(1)
    n = 3000
    p = prepare_interactions(
        rng.integers(0, 50, n), rng.integers(0, 80, n), rng.integers(0, 2 * CUTOFF, n),
        cutoff=CUTOFF, event_types=rng.choice(["click", "hide", "scroll", "purchase"], n),
        config=PrepareConfig(window_days=500, max_events_per_user=20, max_events_per_item=30),
    )
    c = p.counts
    dropped = sum(v for k, v in c.items() if k.startswith("dropped_"))
    assert c["events_in"] == dropped + c["negative_events"] + c["events_kept"]
    assert c["nnz"] == p.matrix.nnz


def _mixed_events(n: int = 5000, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    names = np.array(["click", "purchase", "hide", "view", "unweighted"])
    values = rng.uniform(-1, 5, n)
    values[::17] = np.nan
    return {"users": rng.integers(0, 300, n) * 7, "items": rng.integers(0, 200, n) * 11,
            "timestamps": CUTOFF - rng.integers(-5 * DAY, 60 * DAY, n),
            "codes": rng.integers(0, len(names), n).astype(np.int16), "names": names,
            "values": values}


@pytest.mark.parametrize("config", [
    PrepareConfig(),
    PrepareConfig(use_values=True, half_life_days=7.3, log1p=True, window_days=30),
    PrepareConfig(max_events_per_user=5, max_events_per_item=40, max_strength=3.0),
    PrepareConfig(negatives_remove_positives=False, use_values=True),
])
def test_type_codes_with_a_name_table_are_the_names_per_event(config):
    config = PrepareConfig(**{**config.to_dict(), "event_weights": {
        "click": 1.0, "purchase": 5.0, "view": 0.5}, "negative_event_types": ["hide"]})
    e = _mixed_events()
    catalogue = np.unique(e["items"])[::2]
    by_name = prepare_interactions(e["users"], e["items"], e["timestamps"], cutoff=CUTOFF,
                                   event_types=e["names"][e["codes"]], values=e["values"],
                                   config=config, catalogue_item_ids=catalogue)
    by_code = prepare_interactions(e["users"], e["items"], e["timestamps"], cutoff=CUTOFF,
                                   event_types=e["codes"], event_type_names=e["names"],
                                   values=e["values"], config=config,
                                   catalogue_item_ids=catalogue)
    assert by_name.counts["negative_events"] > 0 and by_name.counts["dropped_unknown_type"] > 0
    assert by_code.content_hash == by_name.content_hash
    assert by_code.counts == by_name.counts
    for name in ("data", "indices", "indptr"):
        np.testing.assert_array_equal(getattr(by_code.matrix, name),
                                      getattr(by_name.matrix, name))
    np.testing.assert_array_equal(by_code.suppression_user_ids, by_name.suppression_user_ids)
    with pytest.raises(ValueError, match="codes"):
        prepare_interactions(e["users"], e["items"], e["timestamps"], cutoff=CUTOFF,
                             event_types=e["codes"], event_type_names=e["names"][:2])


def test_no_values_are_values_of_one():
    e = _mixed_events(seed=1)
    ones = prepare_interactions(e["users"], e["items"], e["timestamps"], cutoff=CUTOFF,
                                values=np.ones(len(e["users"])),
                                config=PrepareConfig(use_values=True))
    none = prepare_interactions(e["users"], e["items"], e["timestamps"], cutoff=CUTOFF,
                                config=PrepareConfig(use_values=True))
    assert none.content_hash == ones.content_hash and none.counts == ones.counts


def test_the_hash_is_sha256_of_the_whole_arrays(monkeypatch):
    """Hashed a block at a time, the digest is the one of the arrays' bytes at once (the
    format stored dataset versions were hashed with); ids are coded in blocks too."""
    import hashlib

    import mfengine.data

    monkeypatch.setattr(mfengine.data, "_BLOCK", 999)  # many blocks, a short last one
    e = _mixed_events(n=20_000, seed=2)
    p = prepare_interactions(e["users"], e["items"], e["timestamps"], cutoff=CUTOFF)
    h = hashlib.sha256()
    m = p.matrix
    for array, dtype in ((np.array(m.shape), np.int64), (m.data, np.float32),
                         (m.indices, np.int64), (m.indptr, np.int64)):
        h.update(array.astype(dtype).tobytes())
    for ids in (p.user_ids, p.item_ids, p.suppression_user_ids, p.suppression_item_ids):
        h.update(b"int:" + ids.astype(np.int64).tobytes() + b"|")
    assert p.content_hash == h.hexdigest()
