"""The admin console's numbers: one tenant's overview, every tenant's health, a preview of a
user's recommendations. Plain service functions that take the tenant explicitly; the admin
views (ops.console_views) only render what these return.

What the overview can show of serving is what the platform keeps: serving writes no row per
request (only impressions, and only for frequency caps), so request volume, fallback and empty
responses and rule filtering come from this server's Prometheus counters (the same numbers as
GET /metrics, counted since the server started), not from the database.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Max
from django.db.models.functions import TruncDate
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess

from mfplatform.catalog.models import EndUser, Event, Item
from mfplatform.charts import new_figure
from mfplatform.registry.models import ModelStatus, ModelVersion
from mfplatform.serving.models import EligibilityRule
from mfplatform.serving.service import Request, recommend
from mfplatform.training.models import RunStatus, TrainingRun
from tenants.context import rls_bypass, tenant_context
from tenants.models import Tenant

OVERVIEW_DAYS = 30
LAST_RUNS = 10


def duration_seconds(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else (end - start).total_seconds()


def describe_age(since: datetime | None, now: datetime | None = None) -> str:
    """'3 d 4 h', '5 h 12 min', '40 s': how long ago, in the two largest units."""
    if since is None:
        return "-"
    seconds = int(((now or timezone.now()) - since).total_seconds())
    days, rest = divmod(max(seconds, 0), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else f"{seconds} s"


# -- one tenant ---------------------------------------------------------------------------------

def serving_version(tenant: Tenant) -> ModelVersion | None:
    """The version that answers the tenant's recommendations: the serving plan's active one
    (the same choice serving makes)."""
    with tenant_context(tenant):
        return (ModelVersion.objects.filter(tenant=tenant, status=ModelStatus.ACTIVE,
                                            plan__is_serving=True)
                .select_related("plan").order_by("id").first())


def daily_counts(tenant: Tenant, days: int = OVERVIEW_DAYS,
                 now: datetime | None = None) -> list[dict]:
    """Per day of the last `days` (oldest first): events that happened that day, and users
    and items created that day."""
    now = now or timezone.now()
    first_day = (now - timedelta(days=days - 1)).date()
    since = timezone.make_aware(datetime.combine(first_day, datetime.min.time()))
    per_day: dict = {first_day + timedelta(days=i): {"events": 0, "users": 0, "items": 0}
                     for i in range(days)}
    with tenant_context(tenant):
        for model, field, name in ((Event, "timestamp", "events"), (EndUser, "created_at",
                                                                    "users"),
                                   (Item, "created_at", "items")):
            rows = (model.objects.filter(tenant=tenant, **{f"{field}__gte": since,
                                                          f"{field}__lte": now})
                    .annotate(day=TruncDate(field)).values("day").annotate(n=Count("id")))
            for row in rows:
                if row["day"] in per_day:
                    per_day[row["day"]][name] = row["n"]
    return [{"day": day, **counts} for day, counts in sorted(per_day.items())]


def daily_counts_svg(rows: list[dict]) -> str:
    """Events per day (bars) above new users and items per day (lines), as inline SVG."""
    days = [row["day"] for row in rows]
    figure = new_figure(figsize=(8, 3.6))
    events_axes, new_axes = figure.subplots(2, 1, sharex=True)
    events_axes.bar(days, [row["events"] for row in rows], color="#417690")
    events_axes.set_ylabel("events")
    new_axes.plot(days, [row["users"] for row in rows], marker=".", label="new users")
    new_axes.plot(days, [row["items"] for row in rows], marker=".", label="new items")
    new_axes.set_ylabel("new")
    new_axes.legend(fontsize=8, frameon=False, loc="upper left")
    for axes in (events_axes, new_axes):
        axes.grid(alpha=0.3)
        axes.spines[["top", "right"]].set_visible(False)
    figure.autofmt_xdate()
    figure.tight_layout()
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    svg = buffer.getvalue()
    return svg[svg.index("<svg"):]  # without the XML prolog and doctype, to inline it


def _metrics_registry():
    """The registry GET /metrics reads: the sum of gunicorn's workers when it runs them."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def serving_counters(tenant: Tenant) -> dict:
    """{requests, ok, fallback, empty, fallback_percent, empty_percent, filtered: {rule: n}}: the
    tenant's recommendation calls as this server's Prometheus metrics counted them."""
    requests = ok = fallback = empty = 0
    filtered: dict[str, int] = {}
    for family in _metrics_registry().collect():
        for sample in family.samples:
            if sample.labels.get("tenant") != tenant.slug or not sample.name.endswith("_total"):
                continue
            value = int(sample.value)
            if sample.name == "mf_serving_requests_total":
                if sample.labels.get("endpoint") != "recommendations":
                    continue
                requests += value
                ok += value if str(sample.labels.get("status", "")).startswith("2") else 0
            elif sample.name == "mf_serving_fallback_responses_total":
                fallback += value
            elif sample.name == "mf_serving_empty_responses_total":
                empty += value
            elif sample.name == "mf_serving_filtered_total":
                rule = sample.labels.get("rule", "?")
                filtered[rule] = filtered.get(rule, 0) + value
    # Fallbacks and empties are counted per answered user, requests per HTTP call (a batch is
    # one call, a console preview none): the larger is the better count of answers.
    responses = max(ok, fallback, empty)
    return {"requests": requests, "ok": ok, "fallback": fallback, "empty": empty,
            "fallback_percent": 100 * fallback / responses if responses else None,
            "empty_percent": 100 * empty / responses if responses else None,
            "filtered": dict(sorted(filtered.items(), key=lambda kv: -kv[1]))}


def last_runs(tenant: Tenant, limit: int = LAST_RUNS) -> list[dict]:
    with tenant_context(tenant):
        runs = list(TrainingRun.objects.filter(tenant=tenant).select_related("plan")
                    .order_by("-queued_at")[:limit])
    return [{"run": run, "duration": duration_seconds(run.started_at, run.finished_at)}
            for run in runs]


def tenant_overview(tenant: Tenant, now: datetime | None = None) -> dict:
    """Everything the tenant admin's start page shows."""
    now = now or timezone.now()
    active = serving_version(tenant)
    days = daily_counts(tenant, now=now)
    with tenant_context(tenant):
        totals = {"items": Item.objects.filter(tenant=tenant).count(),
                  "users": EndUser.objects.filter(tenant=tenant).count(),
                  "events": Event.objects.filter(tenant=tenant).count()}
        rules = EligibilityRule.objects.filter(tenant=tenant)
        rule_counts = {"total": rules.count(), "enabled": rules.filter(enabled=True).count()}
    return {"tenant": tenant, "active": active,
            "active_age": describe_age(active.activated_at if active else None, now),
            "days": days, "chart": daily_counts_svg(days), "totals": totals,
            "days_total": {name: sum(row[name] for row in days)
                           for name in ("events", "users", "items")},
            "runs": last_runs(tenant), "rules": rule_counts,
            "serving": serving_counters(tenant)}


# -- every tenant (operators) -------------------------------------------------------------------

HEALTH_ORDER = {"failing": 0, "warning": 1, "ok": 2}
HEALTH_COLUMNS = ("health", "tenant", "model", "model_age", "last_run", "last_run_at",
                  "failed_7d", "events_24h")


@dataclass
class TenantHealth:
    tenant: Tenant
    model: ModelVersion | None
    last_run: TrainingRun | None
    failed_7d: int
    events_24h: int
    health: str
    problems: list[str]

    def sort_key(self, column: str):
        now = timezone.now()
        far = now - timedelta(days=365 * 100)
        return {
            "health": (HEALTH_ORDER[self.health], -self.failed_7d, self.tenant.slug),
            "tenant": self.tenant.slug,
            "model": self.model.version if self.model else -1,
            "model_age": self.model.activated_at or far if self.model else far,
            "last_run": self.last_run.status if self.last_run else "",
            "last_run_at": self.last_run.queued_at if self.last_run else far,
            "failed_7d": self.failed_7d,
            "events_24h": self.events_24h,
        }[column]


def _judge(model, last_run, failed_7d: int) -> tuple[str, list[str]]:
    problems = []
    if last_run is not None and last_run.status == RunStatus.FAILED:
        problems.append("the last run failed")
    if failed_7d:
        problems.append(f"{failed_7d} failed run{'s' if failed_7d > 1 else ''} in 7 days")
    if model is None:
        problems.append("no active model (serving falls back to popularity)")
    if last_run is not None and last_run.status == RunStatus.FAILED:
        return "failing", problems
    return ("warning" if problems else "ok"), problems


def tenant_health(now: datetime | None = None) -> list[TenantHealth]:
    """Every tenant's health, failing first. Operators only: reads across tenants."""
    now = now or timezone.now()
    with rls_bypass():
        tenants = list(Tenant.objects.order_by("slug"))
        models = {}
        for version in (ModelVersion.objects.filter(status=ModelStatus.ACTIVE,
                                                    plan__is_serving=True)
                        .select_related("plan").order_by("id")):
            models.setdefault(version.tenant_id, version)
        latest_ids = (TrainingRun.objects.values("tenant_id")
                      .annotate(last=Max("id")).values_list("last", flat=True))
        runs = {run.tenant_id: run for run in TrainingRun.objects.filter(id__in=latest_ids)
                .select_related("plan")}
        failed = dict(TrainingRun.objects.filter(status=RunStatus.FAILED,
                                                 queued_at__gte=now - timedelta(days=7))
                      .values("tenant_id").annotate(n=Count("id")).values_list("tenant_id",
                                                                               "n"))
        events = dict(Event.objects.filter(timestamp__gte=now - timedelta(hours=24),
                                           timestamp__lte=now)
                      .values("tenant_id").annotate(n=Count("id"))
                      .values_list("tenant_id", "n"))
    rows = []
    for tenant in tenants:
        model, run, n_failed = models.get(tenant.pk), runs.get(tenant.pk), failed.get(tenant.pk,
                                                                                      0)
        health, problems = _judge(model, run, n_failed)
        rows.append(TenantHealth(tenant, model, run, n_failed, events.get(tenant.pk, 0),
                                 health, problems))
    return sort_health(rows, "health")


def sort_health(rows: list[TenantHealth], column: str,
                descending: bool = False) -> list[TenantHealth]:
    if column not in HEALTH_COLUMNS:
        raise ValueError(f"sort must be one of {', '.join(HEALTH_COLUMNS)}")
    return sorted(rows, key=lambda row: row.sort_key(column), reverse=descending)


# -- preview ------------------------------------------------------------------------------------

def preview(tenant: Tenant, user_external_id: str, k: int = 10,
            category: str | None = None) -> dict:
    """What `user_external_id` would get now, through serving itself, with each item's title
    and the reason it was chosen. Unknown users get what an unknown user gets (and are told)."""
    with tenant_context(tenant):
        known = EndUser.objects.filter(tenant=tenant, external_id=user_external_id).exists()
        answer = recommend(tenant, user_external_id,
                           Request(k=k, category=category or None, explain=True))
        titles = dict(Item.objects.filter(
            tenant=tenant, external_id__in=[entry["item"] for entry in answer["items"]])
            .values_list("external_id", "title"))
    for entry in answer["items"]:
        entry["title"] = titles.get(entry["item"], "")
    answer["known_user"] = known
    return answer
