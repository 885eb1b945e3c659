"""Readers for public data sets kept outside the repository (MovieLens CSV layout)."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp


@dataclass
class MovieLens:
    """Ratings (one entry per rating, original MovieLens ids) and the movie catalogue."""

    user_ids: np.ndarray  # int64 MovieLens userId per rating
    item_ids: np.ndarray  # int64 MovieLens movieId per rating
    values: np.ndarray  # float32 rating (0.5 .. 5)
    timestamps: np.ndarray  # int64 unix seconds
    movie_ids: np.ndarray  # int64 movieId per movie
    titles: list[str]  # per movie
    genres: list[list[str]]  # per movie; "(no genres listed)" gives []

    def encode(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(user_index, item_index, users, items): dense 0-based indices per rating and the
        original ids of each index (sorted), for building users x items matrices."""
        users, user_index = np.unique(self.user_ids, return_inverse=True)
        items, item_index = np.unique(self.item_ids, return_inverse=True)
        return user_index.astype(np.int64), item_index.astype(np.int64), users, items

    def to_csr(self) -> sp.csr_matrix:
        """Users x items ratings matrix over the encoded indices (see :meth:`encode`)."""
        user_index, item_index, users, items = self.encode()
        return sp.csr_matrix(
            (self.values, (user_index, item_index)), shape=(users.size, items.size),
            dtype=np.float32,
        )


def load_movielens(folder: str | os.PathLike[str]) -> MovieLens:
    """Read ratings.csv and movies.csv of a MovieLens "latest" folder (e.g. ml-latest-small)."""
    folder = Path(folder)
    ratings_path, movies_path = folder / "ratings.csv", folder / "movies.csv"
    for path in (ratings_path, movies_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (expected a MovieLens folder)")
    with open(ratings_path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        if header[:4] != ["userId", "movieId", "rating", "timestamp"]:
            raise ValueError(f"unexpected ratings.csv header: {header}")
        rows = list(reader)
    table = np.array(rows, dtype=object).reshape(-1, 4) if rows else np.empty((0, 4), object)
    with open(movies_path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        if header[:3] != ["movieId", "title", "genres"]:
            raise ValueError(f"unexpected movies.csv header: {header}")
        movies = list(reader)
    return MovieLens(
        user_ids=table[:, 0].astype(np.int64),
        item_ids=table[:, 1].astype(np.int64),
        values=table[:, 2].astype(np.float32),
        timestamps=table[:, 3].astype(np.int64),
        movie_ids=np.array([int(m[0]) for m in movies], dtype=np.int64),
        titles=[m[1] for m in movies],
        genres=[[] if m[2] == "(no genres listed)" else m[2].split("|") for m in movies],
    )
