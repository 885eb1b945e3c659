"""Runs that always end: the worker's heartbeat, operators' cancel, and the reaper.

A run is alive while its worker writes `heartbeat_at` (at every stage change and progress
report, `beat`). Every write is conditional on the run still being active, so a worker whose
run was cancelled or reaped learns it at its next report (`RunStopped`) and stops; the
publication takes the run's row lock first (`lock_active_run`), so a stopped run never
publishes. Cancelling or reaping sets a final status at once, which frees the plan (the
partial unique index covers active runs only).

The reaper fails a run, it does not requeue it: the filesystem broker has already deleted
the message, and a run that crashed its worker once (memory, a bad plugin) would crash the
next one too. A new run is one request away.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from mfplatform.training.models import ACTIVE_RUN_STATUSES, RunStatus, TrainingRun
from mfplatform.training.signals import run_failed
from tenants.context import rls_bypass, tenant_context

log = logging.getLogger(__name__)


# First key of the session advisory lock held by a run's one executor (second key: the run).
RUN_CLAIM_LOCK = 0x72756E73  # "runs"


class RunStopped(Exception):
    """The run was cancelled or failed by someone else while this worker ran it."""

    def __init__(self, run_id: int):
        super().__init__(f"run {run_id} is no longer active")
        self.run_id = run_id


class RunNotCancellable(Exception):
    def __init__(self, run: TrainingRun):
        super().__init__(f"run {run.pk} is {run.status}: only a queued or running run can be "
                         f"cancelled")
        self.run = run


def beat(run: TrainingRun, **fields) -> None:
    """Record that the worker is alive (and `fields`, e.g. status or progress), only while
    the run is active; raise RunStopped when it is not."""
    now = timezone.now()
    updated = TrainingRun.objects.filter(pk=run.pk, status__in=ACTIVE_RUN_STATUSES).update(
        heartbeat_at=now, **fields)
    if not updated:
        raise RunStopped(run.pk)
    run.heartbeat_at = now
    for name, value in fields.items():
        setattr(run, name, value)


@contextmanager
def run_claim(run_id: int, wait: bool) -> Iterator[bool]:
    """Whether this process is the run's one executor, for the block: a session advisory
    lock on the run. A broker delivers a message again while its first delivery still runs
    (Redis after its visibility timeout; the filesystem transport to a second worker after a
    restart), and a run trained in process (the demo command) is queued to the worker too:
    two executors of one run would race each other's heartbeats and publication. Without
    `wait` a taken lock gives False at once; with it, the block starts once the other
    executor is done. A process that dies ends its session, and the lock with it."""
    with connection.cursor() as cursor:
        if wait:
            cursor.execute("SELECT pg_advisory_lock(%s, %s), true", [RUN_CLAIM_LOCK, run_id])
        else:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [RUN_CLAIM_LOCK, run_id])
        claimed = bool(cursor.fetchone()[-1])
    try:
        yield claimed
    finally:
        if claimed:
            _release_claim(run_id)


def _release_claim(run_id: int) -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [RUN_CLAIM_LOCK, run_id])
    except DatabaseError:  # the session died (its lock with it) or is in a failed state:
        connection.close()  # closing it is what releases the lock then


def lock_active_run(run: TrainingRun) -> None:
    """Inside the publication's transaction: hold the run's row until it commits, so that a
    cancel or the reaper waits for it (and then withdraws the version), or wins and the
    publication rolls back."""
    still_active = (TrainingRun.objects.select_for_update()
                    .filter(pk=run.pk, status__in=ACTIVE_RUN_STATUSES).exists())
    if not still_active:
        raise RunStopped(run.pk)


def stop_run(run: TrainingRun, status: str, reason: str, only_if: Q | None = None) -> bool:
    """Give an active run (matching `only_if`) its final `status` with `reason`; a version it
    published in the meantime is withdrawn (failed, vectors dropped). False when the run had
    already ended."""
    with transaction.atomic():
        updated = TrainingRun.objects.filter(
            only_if or Q(), pk=run.pk, status__in=ACTIVE_RUN_STATUSES).update(
            status=status, error=reason[:5000], finished_at=timezone.now())
        if not updated:
            return False
        run_failed.send(sender=TrainingRun, run_id=run.pk)
    run.refresh_from_db()
    return True


def cancel_run(run: TrainingRun, reason: str, actor: str) -> TrainingRun:
    """An operator's cancel: final at once; the worker stops at its next report."""
    if not stop_run(run, RunStatus.CANCELLED, f"cancelled by {actor}: {reason}"):
        run.refresh_from_db()
        raise RunNotCancellable(run)
    log.info("run %s cancelled by %s: %s", run.pk, actor, reason)
    return run


def stale_runs(stale_after: timedelta | None = None,
               queued_after: timedelta | None = None) -> list[tuple[int, int]]:
    """(tenant id, run id) of every tenant's active runs whose worker has gone quiet: started
    and silent for `stale_after`, or queued and never taken for `queued_after`."""
    with rls_bypass():  # the reaper looks across tenants; it acts inside each one below
        return list(TrainingRun.objects.filter(_silent(stale_after, queued_after),
                                               status__in=ACTIVE_RUN_STATUSES)
                    .values_list("tenant_id", "pk"))


def _silent(stale_after: timedelta | None, queued_after: timedelta | None) -> Q:
    now = timezone.now()
    stale_after = stale_after or timedelta(seconds=settings.TRAINING_RUN_STALE_SECONDS)
    queued_after = queued_after or timedelta(seconds=settings.TRAINING_RUN_QUEUE_SECONDS)
    return Q(heartbeat_at__lt=now - stale_after) | Q(heartbeat_at__isnull=True,
                                                     queued_at__lt=now - queued_after)


def reap_stale_runs(stale_after: timedelta | None = None,
                    queued_after: timedelta | None = None) -> list[int]:
    """Fail every run whose worker has gone quiet (see `stale_runs`); the ids failed."""
    reaped = []
    for tenant_id, run_id in stale_runs(stale_after, queued_after):
        with tenant_context(tenant_id):
            run = TrainingRun.objects.filter(pk=run_id).first()
            if run is None:
                continue
            last = run.heartbeat_at or run.queued_at
            reason = (f"no heartbeat from the worker since {last:%Y-%m-%d %H:%M:%S} UTC "
                      f"(status was {run.status}): the worker stopped or lost the run")
            # Still silent now: a worker that reported meanwhile keeps its run.
            if stop_run(run, RunStatus.FAILED, reason,
                        only_if=_silent(stale_after, queued_after)):
                log.warning("run %s of tenant %s reaped: %s", run_id, tenant_id, reason)
                reaped.append(run_id)
    return reaped
