"""Fair training between tenants: runs go to a Celery queue by the tenant's size class, and
each queue has a worker process of its own, so a small tenant's run never waits behind a
large tenant's (issue #15).

The class is decided when the task is sent (Celery calls `route_by_tenant_size`, set as
CELERY_TASK_ROUTES), from the tenant's event count against TRAINING_LARGE_TENANT_EVENTS. The
same holds for the work that follows a run (precomputing a promoted version's lists).
Everything else (pings, scheduled triggers, housekeeping) stays on Celery's default queue,
which the small-tenant worker also consumes.
"""

from __future__ import annotations

from django.conf import settings

from mfplatform.catalog.models import Event
from tenants.context import tenant_context

SMALL_QUEUE = "training_small"
LARGE_QUEUE = "training_large"
DEFAULT_QUEUE = "celery"
# What each worker process consumes (`manage.py serve`, docker compose, README).
WORKER_QUEUES = {"small": [SMALL_QUEUE, DEFAULT_QUEUE], "large": [LARGE_QUEUE]}
# Tasks whose first argument is the tenant id and whose cost grows with the tenant.
_SIZED_TASKS = frozenset({"training.run", "serving.precompute"})


def is_large_tenant(tenant_id: int) -> bool:
    """Whether the tenant has at least TRAINING_LARGE_TENANT_EVENTS events. Counts at most
    that many rows, so a huge tenant costs no more than the threshold."""
    threshold = int(settings.TRAINING_LARGE_TENANT_EVENTS)
    with tenant_context(tenant_id):
        return Event.objects.filter(tenant_id=tenant_id)[:threshold].count() >= threshold


def training_queue(tenant_id: int) -> str:
    return LARGE_QUEUE if is_large_tenant(tenant_id) else SMALL_QUEUE


def route_by_tenant_size(name, args, kwargs, options, task=None, **_):
    """Celery router: a sized task goes to its tenant's size-class queue; others are left to
    Celery's defaults (None)."""
    if name not in _SIZED_TASKS or "queue" in options:
        return None
    tenant_id = args[0] if args else kwargs.get("tenant_id")
    if tenant_id is None:
        return None
    return {"queue": training_queue(int(tenant_id))}
