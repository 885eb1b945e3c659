"""What a web process reads of a model version, before and after the split by side.

    .venv/bin/python benchmarks/serving_files.py [--items 20000] [--users 10000]
                                                 [--events 100000] [--no-write]

A throwaway database with the tenants benchmark's large tenant (benchmarks/serving.py `load`:
synthetic catalogue and events, ALS 64 factors, trained and published by the real pipeline).
Serving's bundle is loaded with every storage `open` recorded: the files it opens and their
sizes, which object storage downloads whole (S3File). "Before" is the same version as
publication wrote it before the split: the whole model in one file (`model.save`) and both id
maps in one, in place of the item-side files; the other files are the same.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import (  # noqa: E402
    bench_database,
    command_line,
    machine_line,
    write_section,
)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--no-write", action="store_true")
    return parser.parse_args()


def opened_by_serving(version) -> tuple[dict[str, int], float]:
    """{file name: bytes} of every file serving's bundle load opens, and the load's seconds."""
    from django.core.files.storage import default_storage

    from mfplatform.serving.bundle import serving_bundle
    from mfplatform.serving.cache import ByteLRU

    opened: list[str] = []
    real_open = default_storage.open

    def recording_open(name, mode="rb"):
        opened.append(name)
        return real_open(name, mode)

    default_storage.open = recording_open  # the lazy storage forwards it to the backend
    try:
        started = time.perf_counter()
        serving_bundle(version, cache=ByteLRU(1 << 40))
        seconds = time.perf_counter() - started
    finally:
        del default_storage.open
    return {name.rsplit("/", 1)[1]: default_storage.size(name) for name in opened}, seconds


def before_the_split(version, after: dict[str, int]) -> dict[str, int]:
    """The same files as published before the split: model.npz and ids.npz in place of the
    item-side model and item ids, their sizes as publication wrote them then."""
    from mfplatform.registry import artifacts

    model = artifacts.read_model(version)
    whole, ids = io.BytesIO(), io.BytesIO()
    model.save(whole)
    np.savez(ids, item_ids=artifacts.read_item_ids(version),
             user_ids=artifacts.read_user_ids(version))
    replaced = {artifacts.MODEL_ITEMS: (artifacts.WHOLE_MODEL, len(whole.getvalue())),
                artifacts.ITEM_IDS: (artifacts.BOTH_IDS, len(ids.getvalue()))}
    return dict(replaced.get(name, (name, size)) for name, size in after.items())


def report(args, version, before: dict[str, int], after: dict[str, int],
           user_side: dict[str, int], seconds: float) -> str:
    def mb(size: int) -> str:
        return f"{size / 1e6:.2f} MB"

    rows = "\n".join(f"| {name} | {mb(size)} |" for name, size in after.items())
    old_rows = "\n".join(f"| {name} | {mb(size)} |" for name, size in before.items()
                         if name not in after)
    return f"""## Serving: what a web process reads of a model version

`{command_line()}` — {machine_line()}

The tenants benchmark's large tenant: {args.items:,} items, {args.users:,} users,
{args.events:,} events, ALS 64 factors trained by the pipeline ({version.n_item_vectors:,} item
and {version.n_user_vectors:,} user vectors; version {version.status}: its files are the same
whether the gate passes it or not). Every file serving's bundle load opens, recorded
at the storage API, with its size (object storage downloads each whole); before the split the
version's model and id maps were one file each with both sides, in place of the item-side
files (sizes of the same version written that way).

| file serving opens (after the split) | size |
|---|---|
{rows}
| **total after** | **{mb(sum(after.values()))}** |

| in place of it before the split | size |
|---|---|
{old_rows}
| **total before** | **{mb(sum(before.values()))}** |

Serving reads {sum(after.values()) / sum(before.values()):.0%} of what it read before; the
user side ({", ".join(f"{n} {mb(s)}" for n, s in user_side.items())}) is read only by the
worker's offline steps (precomputed lists). The bundle load took {seconds:.2f} s on the local
filesystem. The user side grows with users (about 4 bytes x factors + 8 a user: a tenant with
10M users would put ~2.6 GB into every web process's download before, none now).
"""


def main() -> None:
    args = parse_args()
    with bench_database("mfbench_files"):
        import django

        django.setup()
        from django.core.files.storage import default_storage

        from benchmarks import serving
        from mfplatform.registry import artifacts
        from tenants.context import tenant_context

        tenant, version, _key, _data = serving.load(argparse.Namespace(
            items=args.items, users=args.users, events=args.events), require_active=False)
        with tenant_context(tenant):
            after, seconds = opened_by_serving(version)
            before = before_the_split(version, after)
            user_side = {name: default_storage.size(artifacts.artifact_name(version, name))
                         for name in (artifacts.MODEL_USERS, artifacts.USER_IDS)}
        assert not set(user_side) & set(after), "serving opened a user-side file"
        markdown = report(args, version, before, after, user_side, seconds)
    print(markdown)
    if not args.no_write:
        write_section("serving_files", markdown)


if __name__ == "__main__":
    main()
