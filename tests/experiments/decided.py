"""An experiment whose model variant clearly beats the popularity control, in the database."""

import uuid
from datetime import timedelta

from django.utils import timezone

from mfplatform.catalog.models import EndUser, Event, EventType, Item
from mfplatform.experiments.impressions import BUFFER, ImpressionRow, flush_impressions
from mfplatform.experiments.models import Experiment
from mfplatform.experiments.services import VariantInput, create_experiment, start_experiment
from tests.factories import make_model_version, make_plan


def decided_experiment(tenant, responses: int = 60):
    """Each variant showed `responses` users one item; the model's were clicked 2 times in 3,
    the control's never."""
    items = Item.objects.bulk_create([Item(tenant=tenant, external_id=f"i{n}")
                                      for n in range(5)])
    users = EndUser.objects.bulk_create([EndUser(tenant=tenant, external_id=f"u{n}")
                                         for n in range(2 * responses)])
    click, _ = EventType.objects.get_or_create(tenant=tenant, name="click")
    version = make_model_version(make_plan(tenant))
    experiment = create_experiment(tenant, "model-vs-popularity", [
        VariantInput("control", "popularity", 0.5, is_control=True),
        VariantInput("model", "version", 0.5, model_version=version.pk)], min_samples=50)
    start_experiment(tenant, experiment)
    shown_at = timezone.now() - timedelta(hours=2)
    Experiment.objects.filter(pk=experiment.pk).update(started_at=shown_at)
    experiment.refresh_from_db()
    events = []
    for n, user in enumerate(users):
        variant = "model" if n % 2 else "control"
        rec_id = uuid.uuid4()
        BUFFER.add(ImpressionRow(tenant.pk, rec_id, "recommendations", user.external_id,
                                 user.pk, [items[n % 5].pk], ["mf"], version.pk,
                                 experiment.pk, variant, 5.0, False,
                                 created_at=shown_at + timedelta(minutes=1)))
        if variant == "model" and n % 3:
            events.append(Event(tenant=tenant, user=user, item=items[n % 5], event_type=click,
                                timestamp=shown_at + timedelta(minutes=2),
                                recommendation_id=rec_id))
    flush_impressions()
    Event.objects.bulk_create(events)
    return experiment, version
