"""The demo tenant that `make run` seeds: data, a trained and promoted model, a key."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection
from tqdm import tqdm

from mfplatform.catalog.events import ingest_events
from mfplatform.catalog.ingest import upsert_items
from mfplatform.catalog.models import Event
from mfplatform.registry.models import ModelStatus, ModelVersion
from mfplatform.registry.runs import execute_run
from mfplatform.registry.services import promote
from mfplatform.training.models import TrainingPlan, TrainingRun
from mfplatform.training.services import create_plan, queue_run
from tenants.context import tenant_context
from tenants.models import SCOPES, Membership, Role, Tenant
from tenants.services import add_member, create_api_key

DEMO_SLUG = "demo"
DEMO_ADMIN = "admin@demo.example"
STATE_FILE = "demo.json"  # under VAR_DIR: the demo key is shown once, so it is kept here
BATCH = 5000


@dataclass
class Demo:
    tenant: Tenant
    api_key: str
    admin: str
    password: str
    version: ModelVersion
    sample_user: str
    sample_item: str


def _state_path() -> Path:
    return Path(settings.VAR_DIR) / STATE_FILE


def ensure_demo(password: str, data_dir: Path | None = None, users: int = 2000,
                items: int = 400, events: int = 60_000, echo=print) -> Demo:
    tenant, _created = Tenant.objects.get_or_create(slug=DEMO_SLUG,
                                                    defaults={"name": "Demo shop"})
    with tenant_context(tenant):
        if not Membership.objects.filter(tenant=tenant, user__username=DEMO_ADMIN).exists():
            add_member(tenant, DEMO_ADMIN, Role.OWNER, password=password)
        api_key = _api_key(tenant)
        if not Event.objects.filter(tenant=tenant).exists():
            if data_dir is not None:
                _load_movielens(tenant, data_dir, echo)
            else:
                _load_synthetic(tenant, users, items, events, echo)
        plan = TrainingPlan.objects.filter(tenant=tenant, name="default").first()
        if plan is None:
            events_config = ({"rating": 1} if data_dir is not None else
                             {"click": 1, "add_to_cart": 3, "purchase": 5, "watch_complete": 4})
            plan = create_plan(tenant, "default", {
                "events": events_config,
                "window": {"days": None if data_dir is not None else 90},
                "transform": {"use_values": data_dir is not None},
                "training": {"strategy": "als", "factors": 32, "iterations": 10,
                             "regularization": 5.0}})
        version = ModelVersion.objects.filter(plan=plan, status=ModelStatus.ACTIVE).first()
        if version is None:
            version = _train(tenant, plan, echo)
            if version.status == ModelStatus.CANDIDATE:
                promote(version, actor="seed_demo", reason="demo seed")
                version.refresh_from_db()
        sample = (Event.objects.filter(tenant=tenant).select_related("user", "item")
                  .order_by("-timestamp").first())
    return Demo(tenant, api_key, DEMO_ADMIN, password, version, sample.user.external_id,
                sample.item.external_id)


def _api_key(tenant: Tenant) -> str:
    path = _state_path()
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("tenant_id") == tenant.pk:
            return saved["api_key"]
    _key, raw = create_api_key(tenant, list(SCOPES), name="demo")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"tenant_id": tenant.pk, "api_key": raw}))
    path.chmod(0o600)
    return raw


def _load_synthetic(tenant, users, items, events, echo) -> None:
    from mfengine.synthetic import generate

    data = generate(n_users=users, n_items=items, n_interactions=events, seed=7,
                    start=int(time.time()) - 61 * 86400, days=60)
    upsert_items(tenant, [{"external_id": f"sku-{i}", "title": str(data.item_titles[i]),
                           "category": str(data.item_categories[i]),
                           "tags": list(data.item_tags[i])} for i in range(data.n_items)])
    rows = [{"user": f"customer-{u}", "item": f"sku-{i}", "type": t, "timestamp": int(ts)}
            for u, i, t, ts in zip(data.user_ids.tolist(), data.item_ids.tolist(),
                                   data.event_types.tolist(), data.timestamps.tolist(),
                                   strict=True)]
    # disable=None: a bar on a terminal only, never hundreds of lines in a log.
    batches = range(0, len(rows), BATCH)
    for start in tqdm(batches, desc="demo events", unit="batch", disable=None):
        result = ingest_events(tenant, rows[start:start + BATCH])
        if result.rejected:
            raise RuntimeError(f"demo data rejected: {result.rejected[:3]}")


def _load_movielens(tenant, folder: Path, echo) -> None:
    from django.core.management import call_command

    call_command("import_items", tenant.slug, str(folder / "movies.csv"), "--map",
                 "item=movieId,title=title,category=genres,tags=genres")
    call_command("import_events", tenant.slug, str(folder / "ratings.csv"), "--map",
                 "user=userId,item=movieId,value=rating,timestamp=timestamp", "--type",
                 "rating", "--partial")


def _train(tenant, plan, echo) -> ModelVersion:
    """Runs the training in this process (the worker may not be up yet) with a progress bar."""
    run = queue_run(tenant, plan, trigger="command")
    outcome: dict = {}

    def work():
        try:
            with tenant_context(tenant):
                outcome["version"] = execute_run(TrainingRun.objects.get(pk=run.pk))
        except Exception as exc:  # shown below; the run records it too
            outcome["error"] = exc
        finally:
            # The thread's own connection: nothing reuses it once the thread ends, and an
            # open one would keep its database from being dropped (the tests' teardown).
            connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    with tqdm(desc="training", unit="it", disable=None) as bar:
        while thread.is_alive():
            run.refresh_from_db()
            progress = run.progress or {}
            bar.set_description(run.status)
            if progress.get("iterations"):
                bar.total = progress["iterations"]
                bar.n = progress.get("iteration", 0)
                bar.refresh()
            time.sleep(0.3)
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["version"]
