"""Platform metrics read at scrape time: training runs, model age and the broker's queues.

They come from Postgres and the broker when /metrics is asked, not from per-process counters,
so every web process reports the same numbers and nothing is added to a request's work.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.db.models import Count
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from mfplatform.registry.models import ModelStatus, ModelVersion
from mfplatform.training.models import RunStatus, TrainingRun
from tenants.context import rls_bypass

log = logging.getLogger(__name__)


class PlatformCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        with rls_bypass():  # an operator's view: every tenant
            yield from _runs()
            yield _model_age()
        yield from _queue_depth()


def _runs() -> Iterator[GaugeMetricFamily]:
    by_status = GaugeMetricFamily("mf_training_runs", "Training runs by status",
                                  labels=["tenant", "status"])
    for row in (TrainingRun.objects.values("tenant__slug", "status")
                .annotate(n=Count("id")).order_by()):
        by_status.add_metric([row["tenant__slug"], row["status"]], row["n"])
    yield by_status
    duration = GaugeMetricFamily("mf_training_last_run_duration_seconds",
                                 "Duration of each plan's latest finished run",
                                 labels=["tenant", "plan", "status"])
    latest = (TrainingRun.objects.filter(finished_at__isnull=False, started_at__isnull=False)
              .order_by("plan_id", "-finished_at").distinct("plan_id")
              .values("tenant__slug", "plan__name", "status", "started_at", "finished_at"))
    for row in latest:
        duration.add_metric([row["tenant__slug"], row["plan__name"], row["status"]],
                            (row["finished_at"] - row["started_at"]).total_seconds())
    yield duration
    active = GaugeMetricFamily("mf_training_runs_in_progress",
                               "Runs queued or running, per tenant", labels=["tenant"])
    for row in (TrainingRun.objects.exclude(status__in=[RunStatus.SUCCEEDED, RunStatus.FAILED])
                .values("tenant__slug").annotate(n=Count("id")).order_by()):
        active.add_metric([row["tenant__slug"]], row["n"])
    yield active


def _model_age() -> GaugeMetricFamily:
    age = GaugeMetricFamily("mf_model_age_seconds",
                            "Age of each serving plan's active model version (since trained)",
                            labels=["tenant", "plan", "version"])
    now = timezone.now()
    for row in (ModelVersion.objects.filter(status=ModelStatus.ACTIVE)
                .values("tenant__slug", "plan__name", "version", "created_at")):
        age.add_metric([row["tenant__slug"], row["plan__name"], str(row["version"])],
                       (now - row["created_at"]).total_seconds())
    return age


def _queue_depth() -> Iterator[GaugeMetricFamily]:
    from mfplatform.celery import app
    from mfplatform.training.queues import WORKER_QUEUES

    depth = GaugeMetricFamily("mf_broker_queue_depth", "Tasks waiting in each broker queue",
                              labels=["queue"])
    try:
        with app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1)
            channel = connection.default_channel
            # The training queues by tenant size too: Celery declares a queue only once used.
            names = set(app.amqp.queues.keys()).union(*WORKER_QUEUES.values())
            for name in sorted(names):
                try:
                    waiting = channel.queue_declare(queue=name, passive=True).message_count
                except Exception:  # a queue nobody declared yet holds nothing
                    waiting = 0
                depth.add_metric([name], waiting)
    except Exception as exc:  # the broker being down is /healthz's business, not a scrape error
        log.warning("queue depth unavailable: %s", exc)
        return
    yield depth

