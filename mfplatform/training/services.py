"""Plans and runs: what the API, the admin, the command and the scheduler all call."""

from __future__ import annotations

import json
from datetime import datetime

from celery import current_app
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from mfplatform.training.models import (
    ACTIVE_RUN_STATUSES,
    PlanRevision,
    TrainingPlan,
    TrainingRun,
)
from mfplatform.training.plans import validate_plan_config
from tenants.models import Tenant

# The Celery task that executes a queued run (mfplatform.registry.tasks.train_plan).
RUN_TASK = "training.run"


class RunInProgress(Exception):
    def __init__(self, run: TrainingRun):
        super().__init__(f"run {run.pk} of this plan is {run.status}")
        self.run = run


@transaction.atomic
def create_plan(tenant: Tenant, name: str, config: dict, is_serving: bool | None = None
                ) -> TrainingPlan:
    config = validate_plan_config(config)
    if is_serving is None:  # the tenant's first plan serves by default
        is_serving = not TrainingPlan.objects.filter(tenant=tenant).exists()
    elif is_serving:
        _stop_serving_others(tenant)
    plan = TrainingPlan.objects.create(tenant=tenant, name=name, config=config,
                                       is_serving=is_serving)
    PlanRevision.objects.create(tenant=tenant, plan=plan, revision=1, config=config)
    sync_schedule(plan)
    return plan


@transaction.atomic
def update_plan(plan: TrainingPlan, config: dict | None = None, **fields) -> TrainingPlan:
    """Changing the configuration creates a new revision; other fields do not."""
    if fields.get("is_serving"):
        _stop_serving_others(plan.tenant, plan)
    for name, value in fields.items():
        setattr(plan, name, value)
    if config is not None:
        config = validate_plan_config(config)
        if config != plan.config:
            plan.revision += 1
            plan.config = config
            PlanRevision.objects.create(tenant=plan.tenant, plan=plan, revision=plan.revision,
                                        config=config)
    plan.save()
    sync_schedule(plan)
    return plan


def _stop_serving_others(tenant: Tenant, plan: TrainingPlan | None = None) -> None:
    """One serving plan per tenant (a partial unique index): the one being set takes over."""
    others = TrainingPlan.objects.filter(tenant=tenant, is_serving=True)
    if plan is not None:
        others = others.exclude(pk=plan.pk)
    others.update(is_serving=False)


def current_revision(plan: TrainingPlan) -> PlanRevision:
    return PlanRevision.objects.get(plan=plan, revision=plan.revision)


def queue_run(tenant: Tenant, plan: TrainingPlan, trigger: str = "api",
              cutoff: datetime | None = None) -> TrainingRun:
    """Create a queued run and send it to the worker once committed. Raises RunInProgress
    with the existing run when the plan already has one queued or running (the database's
    partial unique index decides, so two simultaneous requests cannot both win)."""
    try:
        with transaction.atomic():
            run = TrainingRun.objects.create(
                tenant=tenant, plan=plan, plan_revision=current_revision(plan), trigger=trigger,
                cutoff=cutoff or timezone.now())
    except IntegrityError:
        running = TrainingRun.objects.filter(plan=plan, status__in=ACTIVE_RUN_STATUSES).first()
        if running is None:
            raise
        raise RunInProgress(running) from None
    # By name: the task is the registry's (a run ends in a publication, one layer up).
    task = current_app.signature(RUN_TASK, args=(tenant.pk, run.pk))
    transaction.on_commit(task.delay)
    return run


def schedule_task_name(plan: TrainingPlan) -> str:
    return f"train plan {plan.pk} of tenant {plan.tenant_id}"


def sync_schedule(plan: TrainingPlan) -> PeriodicTask | None:
    """Keep the plan's cron in django-celery-beat's tables (editable in the admin too)."""
    cron = plan.config.get("schedule")
    name = schedule_task_name(plan)
    if not cron or not plan.is_active:
        PeriodicTask.objects.filter(name=name).delete()
        return None
    minute, hour, day_of_month, month_of_year, day_of_week = cron.split()
    schedule, _ = CrontabSchedule.objects.get_or_create(
        minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year,
        day_of_week=day_of_week, timezone="UTC")
    task, _ = PeriodicTask.objects.update_or_create(
        name=name, defaults={"crontab": schedule, "task": "training.scheduled_run",
                             "args": json.dumps([plan.tenant_id, plan.pk]), "enabled": True})
    return task
