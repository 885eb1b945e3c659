"""Cold start quality: new items placed by their content, users without events placed by
their segment (issue 18).

Run from the repository root:  .venv/bin/python benchmarks/cold.py
Writes the "cold_start" section of benchmarks/RESULTS.md.

Cold items (ml-latest-small, and a synthetic shop): the per-user temporal split (last 20% of
each user's events are test; MovieLens test positives are ratings >= 4); 10% of the items,
drawn at random, are held out: every training event on them is removed, so the model never
sees them. ALS (mfengine defaults) is fitted on the rest; the held-out items then get vectors
from `mfengine.cold.ContentToFactors` (fitted on the trained items' vectors), from their
category's mean vector, or at random (the vector of a random trained item). The content-only
baseline is `ContentRecommender` (TF-IDF of the same tokens, the user's train history as the
profile). Measured: recall@20 of the held-out items each user liked in the test period, for
users who liked at least one; ranked among the held-out items only, and in the whole
catalogue (held-out items competing with the trained ones, as in serving's candidate search);
and, for the same users, recall@20 of all their test items in the whole catalogue: what a
placement costs the items they wanted besides the new ones.

Cold users (synthetic: MovieLens has no user attribute): 10% of the users, drawn at random,
lose all their events from training; each gets the mean vector of the trained users of
their segment (the planted taste cluster, standing for an onboarding answer), the mean of
all user vectors, or popularity. Measured: recall@20 of all their events' items.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    command_line,
    machine_line,
    movielens_dir,
    pin_threads,
    write_section,
)

THREADS = 2
pin_threads(THREADS)

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import mfengine  # noqa: E402
from benchmarks.shapes import movielens_temporal  # noqa: E402
from mfengine.baselines import ContentRecommender, item_tokens  # noqa: E402
from mfengine.cold import ContentToFactors, SegmentVectors  # noqa: E402
from mfengine.datasets import load_movielens  # noqa: E402
from mfengine.splits import temporal_split  # noqa: E402
from mfengine.synthetic import generate  # noqa: E402

K = 20
HOLD_OUT = 0.10
SEEDS = (0, 1, 2)
MAPPED = "content mapping (mf_cold: norm at the trained items' 90th percentile)"
MAPPED_QUIET = "content mapping, the regression's own norm (norm_quantile=None)"
MAPPED_LONG = "content mapping, norm at the 99th percentile (norm_quantile=0.99)"
CATEGORY = "category mean (at the same norm)"
METHODS = (MAPPED, MAPPED_LONG, MAPPED_QUIET, CATEGORY, "random placement",
           "content-only baseline (TF-IDF)")


def _recall(scores: np.ndarray, relevant: list[np.ndarray]) -> float:
    """Mean recall@K over users (rows of `scores`, already -inf where not rankable)."""
    top = np.argpartition(-scores, K, axis=1)[:, :K] if scores.shape[1] > K else (
        np.tile(np.arange(scores.shape[1]), (scores.shape[0], 1)))
    values = [len(np.intersect1d(t, r)) / min(len(r), K)
              for t, r in zip(top, relevant, strict=True)]
    return float(np.mean(values)) if values else float("nan")


def cold_items(train: sp.csr_matrix, test: sp.csr_matrix, tokens: list[list[str]],
               seed: int) -> tuple[dict[str, tuple[float, float, float]], int, int]:
    """{method: (recall among held-out items, recall in the whole catalogue, recall of all the
    users' test items in the whole catalogue)}, users, items. The last says what placing the
    new items costs the rest: a long vector lifts them above items the users wanted too."""
    rng = np.random.default_rng(seed)
    n_items = train.shape[1]
    held = np.sort(rng.choice(n_items, int(HOLD_OUT * n_items), replace=False))
    is_held = np.zeros(n_items, dtype=bool)
    is_held[held] = True
    keep = sp.diags((~is_held).astype(np.float32))
    warm_train = sp.csr_matrix(train @ keep)
    warm_train.eliminate_zeros()
    cold_test = sp.csr_matrix(test @ sp.diags(is_held.astype(np.float32)))
    cold_test.eliminate_zeros()
    users = np.flatnonzero(np.diff(cold_test.indptr) > 0)
    users = users[np.diff(warm_train.indptr)[users] > 0]  # the model knows them
    relevant = [cold_test.indices[cold_test.indptr[u]:cold_test.indptr[u + 1]] for u in users]
    every = [test.indices[test.indptr[u]:test.indptr[u + 1]] for u in users]

    model = mfengine.create("als", random_state=seed).fit(warm_train)
    vectors = model.item_vectors().copy()
    trained = np.flatnonzero(~is_held & (np.diff(warm_train.tocsc().indptr) > 0))
    mapping = ContentToFactors().fit([tokens[i] for i in trained], vectors[trained])
    quiet = ContentToFactors(norm_quantile=None).fit([tokens[i] for i in trained],
                                                     vectors[trained])
    long = ContentToFactors(norm_quantile=0.99).fit([tokens[i] for i in trained],
                                                    vectors[trained])
    placed = {
        MAPPED: mapping.transform([tokens[i] for i in held])[0],
        MAPPED_LONG: long.transform([tokens[i] for i in held])[0],
        MAPPED_QUIET: quiet.transform([tokens[i] for i in held])[0],
        CATEGORY: mapping.transform([[t for t in tokens[i] if t.startswith("category=")]
                                     for i in held])[0],
        "random placement": vectors[rng.choice(trained, held.size)],
    }
    user_vectors = model.user_vectors()[users]
    seen = warm_train[users].toarray() > 0
    results = {}
    for method, cold_vectors in placed.items():
        all_vectors = vectors.copy()
        all_vectors[held] = cold_vectors
        scores = user_vectors @ all_vectors.T
        results[method] = _both(scores, seen, held, relevant, every)
    content = ContentRecommender().fit(warm_train, tokens)
    profile = sp.csr_matrix(warm_train[users]) @ content.item_vectors_
    scores = np.asarray((profile @ content.item_vectors_.T).todense())
    results["content-only baseline (TF-IDF)"] = _both(scores, seen, held, relevant, every)
    return results, len(users), len(held)


def _both(scores: np.ndarray, seen: np.ndarray, held: np.ndarray, relevant: list[np.ndarray],
          every: list[np.ndarray]) -> tuple[float, float, float]:
    scores = np.where(seen, -np.inf, scores.astype(np.float64))
    among = scores[:, held]
    position = {int(item): i for i, item in enumerate(held)}
    local = [np.array([position[int(r)] for r in rel]) for rel in relevant]
    return _recall(among, local), _recall(scores, relevant), _recall(scores, every)


def movielens_data() -> tuple[sp.csr_matrix, sp.csr_matrix, list[list[str]]]:
    ml = load_movielens(movielens_dir())
    split = movielens_temporal(ml)
    train, test, items = split.train, split.test, ml.encode()[3]
    genres = dict(zip(ml.movie_ids.tolist(), ml.genres, strict=True))
    titles = dict(zip(ml.movie_ids.tolist(), ml.titles, strict=True))

    def decade(title: str) -> dict:
        year = re.search(r"\((\d{4})\)\s*$", title)
        return {"decade": int(year.group(1)) // 10 * 10} if year else {}

    # As the README imports MovieLens: the genres as category and as tags; the decade of
    # release (from the title) as an attribute.
    tokens = item_tokens(len(items),
                         categories=["|".join(genres.get(int(m), [])) for m in items],
                         tags=[genres.get(int(m), []) for m in items],
                         attributes=[decade(titles.get(int(m), "")) for m in items])
    return sp.csr_matrix(train), sp.csr_matrix(test), tokens


def synthetic_items(seed: int = 0):
    data = generate(n_users=4000, n_items=2000, n_interactions=160_000, n_clusters=12,
                    seed=seed)
    train, test = temporal_split(data.user_ids, data.item_ids, data.timestamps,
                                 shape=(data.n_users, data.n_items))
    tokens = item_tokens(data.n_items, categories=list(data.item_categories),
                         tags=data.item_tags)
    return sp.csr_matrix(train), sp.csr_matrix(test), tokens


def cold_users(seed: int) -> tuple[dict[str, float], int]:
    data = generate(n_users=4000, n_items=2000, n_interactions=160_000, n_clusters=12,
                    seed=seed)
    matrix = data.to_csr()
    matrix.data[:] = 1.0
    rng = np.random.default_rng(seed)
    cold = np.sort(rng.choice(data.n_users, int(HOLD_OUT * data.n_users), replace=False))
    is_cold = np.zeros(data.n_users, dtype=bool)
    is_cold[cold] = True
    train = sp.csr_matrix(sp.diags((~is_cold).astype(np.float32)) @ matrix)
    train.eliminate_zeros()
    model = mfengine.create("als", random_state=seed).fit(train)
    segments = [None if c else f"taste-{data.user_clusters[u]}"
                for u, c in enumerate(is_cold)]
    means = SegmentVectors().fit(segments, model.user_factors_)
    relevant = [matrix.indices[matrix.indptr[u]:matrix.indptr[u + 1]] for u in cold]
    warm = model.user_factors_[~is_cold]
    candidates = {
        "segment vector (mf_segment)": np.stack([
            means.vector(f"taste-{data.user_clusters[u]}") for u in cold]),
        "mean of all user vectors": np.tile(warm.mean(axis=0), (cold.size, 1)),
    }
    results = {name: _recall(vectors @ model.item_vectors().T, relevant)
               for name, vectors in candidates.items()}
    popularity = np.asarray(train.sum(axis=0)).ravel().astype(np.float64)
    results["popularity"] = _recall(np.tile(popularity, (cold.size, 1)), relevant)
    return results, int(cold.size)


def _summary(runs: list[dict], index: int | None = None) -> dict[str, str]:
    out = {}
    for method in runs[0]:
        values = np.array([r[method] if index is None else r[method][index] for r in runs])
        out[method] = f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"
    return out


def main() -> None:
    started = time.perf_counter()
    load_before = os.getloadavg()
    tables, verdicts = [], []
    for label, (train, test, tokens) in (("ml-latest-small", movielens_data()),
                                         ("synthetic shop", synthetic_items())):
        runs, counts = [], []
        for seed in SEEDS:
            result, n_users, n_held = cold_items(train, test, tokens, seed)
            runs.append(result)
            counts.append((n_users, n_held))
        among, whole, overall = _summary(runs, 0), _summary(runs, 1), _summary(runs, 2)
        for scope, index in (("among held-out items", 0), ("in the whole catalogue", 1)):
            mapped = np.array([r[MAPPED][index] for r in runs])
            content = np.array([r["content-only baseline (TF-IDF)"][index] for r in runs])
            noise = max(mapped.std(ddof=1), content.std(ddof=1))
            word = ("level with" if abs(mapped.mean() - content.mean()) <= noise else
                    "beats" if mapped.mean() > content.mean() else "loses to")
            verdicts.append(f"{label}, {scope}: mapping {mapped.mean():.4f} vs content-only "
                            f"{content.mean():.4f}, {word} it")
        rows = "\n".join(f"| {m} | {among[m]} | {whole[m]} | {overall[m]} |" for m in METHODS)
        users = ", ".join(str(u) for u, _ in counts)
        tables.append(
            f"**Cold items, {label}** ({train.shape[0]:,} users x {train.shape[1]:,} items; "
            f"{counts[0][1]:,} items held out; users evaluated per seed: {users})\n\n"
            f"| placement of the held-out items | recall@{K} among held-out items | "
            f"recall@{K} in the whole catalogue | recall@{K} of all their test items, whole "
            f"catalogue |\n|---|---|---|---|\n{rows}")
    user_runs, n_cold = [], 0
    for seed in SEEDS:
        result, n_cold = cold_users(seed)
        user_runs.append(result)
    users = _summary(user_runs)
    tables.append(
        f"**Cold users, synthetic shop** (4,000 users x 2,000 items, 12 taste segments; "
        f"{n_cold} users without events per seed)\n\n"
        f"| vector of a user without events | recall@{K} of their items |\n|---|---|\n"
        + "\n".join(f"| {m} | {v} |" for m, v in users.items()))
    load_after = os.getloadavg()
    markdown = (
        "## Cold start (new items, users without events)\n\n"
        f"Command: `{command_line()}` (total {time.perf_counter() - started:.0f} s)  \n"
        f"Machine: {machine_line()}; load average {load_before[0]:.1f} at the start, "
        f"{load_after[0]:.1f} at the end (other sessions' work shares the 2 cores; these "
        "are quality numbers, not timings)  \n"
        f"Protocol in `benchmarks/cold.py`'s docstring: 10% of the items (or users) held "
        f"out of training, ALS at mfengine's defaults, mean ± standard deviation over "
        f"seeds {', '.join(map(str, SEEDS))} (the held-out draw and the model's seed).\n\n"
        + "\n\n".join(tables)
        + "\n\nGoal (issue 18): content-mapped vectors beat the content-only baseline on "
        f"recall@{K} of test-period items (\"level\": within one standard deviation over the "
        "seeds). " + "; ".join(verdicts) + ". "
        "Where MovieLens loses in the whole catalogue: the held-out movies users liked in "
        "the test period are mostly popular ones, whose learned vectors would be long, and "
        "genres plus decade cannot tell a blockbuster from an obscure film; a longer placed "
        "vector (99th percentile) lifts every new item alike, and the last column shows what "
        "that costs the users' other test items. Segment vectors place users without "
        "events far better than popularity where the segment says something about taste "
        "(the synthetic segments are the planted taste clusters, the best case)."
    )
    write_section("cold_start", markdown)
    print(markdown)


if __name__ == "__main__":
    main()
