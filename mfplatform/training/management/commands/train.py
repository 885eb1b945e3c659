import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from mfplatform.training.models import RunStatus, TrainingPlan, TrainingRun
from mfplatform.training.services import RunInProgress, queue_run
from tenants.context import tenant_context
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Queue a training run of a tenant's plan (by id or name); --wait follows it."

    def add_arguments(self, parser):
        parser.add_argument("tenant", help="tenant slug")
        parser.add_argument("plan", help="plan id or name")
        parser.add_argument("--wait", action="store_true", help="wait and show progress")
        parser.add_argument("--timeout", type=float, default=3600)

    def handle(self, tenant, plan, wait, timeout, **options):
        tenant_obj = Tenant.objects.filter(slug=tenant).first()
        if tenant_obj is None:
            raise CommandError(f"no tenant {tenant!r}")
        with tenant_context(tenant_obj):
            plans = TrainingPlan.objects.filter(tenant=tenant_obj)
            plan_obj = (plans.filter(pk=int(plan)).first() if plan.isdigit() else None) or \
                plans.filter(name=plan).first()
            if plan_obj is None:
                raise CommandError(f"tenant {tenant} has no plan {plan!r}")
            try:
                run = queue_run(tenant_obj, plan_obj, trigger="command")
            except RunInProgress as busy:
                raise CommandError(f"plan {plan_obj.name} already has run {busy.run.pk} "
                                   f"({busy.run.status})") from None
            self.stdout.write(f"queued run {run.pk} of plan {plan_obj.name}")
            if wait:
                run = self._follow(run, timeout)
                if run.status != RunStatus.SUCCEEDED:
                    raise CommandError(f"run {run.pk} {run.status}: {run.error}")
                version = getattr(run, "model_version", None)
                self.stdout.write(f"run {run.pk} succeeded: model version "
                                  f"{version.pk if version else '?'} "
                                  f"({version.status if version else '?'})")

    def _follow(self, run: TrainingRun, timeout: float) -> TrainingRun:
        deadline = time.monotonic() + timeout
        with tqdm(desc="queued", unit="it", total=None, disable=None) as bar:
            while True:
                run.refresh_from_db()
                bar.set_description(run.status)
                progress = run.progress or {}
                if progress.get("iterations"):
                    bar.total = progress["iterations"]
                    bar.n = progress.get("iteration", 0)
                    if progress.get("loss") is not None:
                        bar.set_postfix(loss=f"{progress['loss']:.4g}")
                bar.refresh()
                if not run.is_active:
                    return TrainingRun.objects.select_related("model_version").get(pk=run.pk)
                if time.monotonic() > deadline:
                    raise CommandError(f"run {run.pk} still {run.status} after {timeout} s")
                time.sleep(0.5)
