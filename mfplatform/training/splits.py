"""The evaluation protocol's split of a run's events, and the same split again inside the
training period for tuning: every matrix in the dataset version's id space, the training part
prepared exactly like the full data (weights, window, decay, caps)."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import scipy.sparse as sp

from mfengine.data import PreparedData
from mfengine.evaluation import temporal_split_mask
from mfengine.splits import earlier_band_mask
from mfplatform.training.dataset import EventArrays, prepare


def held_out_mask(config: dict, events: EventArrays, cutoff: datetime) -> np.ndarray:
    """True for events held out for testing: each user's last `split.test_fraction` of events
    (temporal), or the last `split.test_days` before `cutoff` (global)."""
    split = config["split"]
    if split["kind"] == "global":
        return events.timestamps >= int(cutoff.timestamp()) - int(split["test_days"] * 86400)
    return temporal_split_mask(events.user_ids, events.timestamps, split["test_fraction"],
                               events.item_ids)


def training_period(config: dict, events: EventArrays, cutoff: datetime
                    ) -> tuple[EventArrays, datetime]:
    """The events before the test period, and where that period ends (the cutoff of a split
    inside it: `test_days` earlier for a global split)."""
    is_test = held_out_mask(config, events, cutoff)
    if config["split"]["kind"] == "global":
        cutoff = cutoff - timedelta(days=config["split"]["test_days"])
    return events.take(~is_test), cutoff


def earlier_band(config: dict, events: EventArrays, cutoff: datetime) -> np.ndarray:
    """The events just before the split's held-out ones: the `test_days` before them
    (global), or each user's previous `test_fraction` (temporal). Tuning's second carve-out
    (`mfengine.tuning.second_carve_out`) holds these out and fits on everything else."""
    split = config["split"]
    if split["kind"] == "global":
        days = int(split["test_days"] * 86400)
        end = int(cutoff.timestamp()) - days
        return (events.timestamps >= end - days) & (events.timestamps < end)
    return earlier_band_mask(events.user_ids, events.timestamps,
                             held_out_mask(config, events, cutoff), split["test_fraction"],
                             events.item_ids)


def split_events(config: dict, events: EventArrays, prepared: PreparedData, cutoff: datetime,
                 held_out: np.ndarray | None = None) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(train, test) in the dataset's id space: train prepared exactly like the full data from
    the non-test events; test = binary held-out positives not seen in train, for at most
    `evaluation.max_users` users (a seeded sample keeps evaluation cost bounded). The test
    events are the split's own (`held_out_mask`) unless `held_out` names others."""
    # By type code: a type name per event is a str array of 0.5 GB at 10M events.
    positive = events.of_types(set(config["events"]) - events.negative_types)
    is_test = held_out_mask(config, events, cutoff) if held_out is None else held_out
    # The evaluation model sees only the training part, prepared exactly like the full data.
    train_part = prepare(events.take(~is_test), config, cutoff,
                         catalogue_item_ids=prepared.item_ids)
    rows = prepared.user_rows(train_part.user_ids)
    coo = train_part.matrix.tocoo()
    train = sp.csr_matrix((coo.data, (rows[coo.row], coo.col)), shape=prepared.shape,
                          dtype=np.float32)
    test_events = is_test & positive
    threshold = config["split"]["positive_threshold"]
    if threshold is not None:
        test_events &= np.nan_to_num(events.values, nan=threshold) >= threshold
    test_rows = prepared.user_rows(events.user_ids[test_events])
    test_cols = prepared.item_columns(events.item_ids[test_events])
    known = (test_rows >= 0) & (test_cols >= 0)
    test = sp.csr_matrix((np.ones(int(known.sum()), np.float32),
                          (test_rows[known], test_cols[known])), shape=prepared.shape)
    test.sum_duplicates()
    test.data[:] = 1.0
    test = test - test.multiply(train > 0)  # what was seen in training is not a test positive
    test.eliminate_zeros()
    test_users = np.flatnonzero(np.diff(test.indptr) > 0)
    limit = config["evaluation"]["max_users"]
    if limit and len(test_users) > limit:
        keep = np.zeros(test.shape[0], dtype=bool)
        keep[np.random.default_rng(0).choice(test_users, limit, replace=False)] = True
        test = sp.csr_matrix(sp.diags(keep.astype(np.float32)) @ test)
        test.eliminate_zeros()
    return train.tocsr(), test.tocsr()
