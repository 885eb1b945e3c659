"""'A version became active' reaches the layers above the registry as a signal, sent once the
switch has committed; serving listens to it (precomputed lists) without the registry
importing serving."""

import pytest

from mfplatform.registry.models import ModelVersion
from mfplatform.registry.services import promote, rollback
from mfplatform.registry.signals import version_activated
from mfplatform.serving.apps import precompute_on_activation
from tests.factories import make_model_version, make_plan

pytestmark = pytest.mark.django_db


def test_activation_is_signalled_after_commit(tenant_a, django_capture_on_commit_callbacks):
    activated = []

    def receiver(sender, version, **kwargs):
        activated.append((sender, version.pk, version.status))

    version_activated.connect(receiver)
    try:
        with tenant_a.scope():
            plan = make_plan(tenant_a.tenant, "main")
            first = make_model_version(plan)
            second = make_model_version(plan)
            with django_capture_on_commit_callbacks(execute=True) as callbacks:
                promote(first, actor="test", reason="first")
                assert activated == []  # not before the switch commits
            assert len(callbacks) == 1
            with django_capture_on_commit_callbacks(execute=True):
                promote(second, actor="test", reason="second")
            with django_capture_on_commit_callbacks(execute=True):
                rollback(second, actor="test", reason="back")
    finally:
        version_activated.disconnect(receiver)
    assert activated == [(ModelVersion, first.pk, "active"), (ModelVersion, second.pk, "active"),
                         (ModelVersion, first.pk, "active")]


def test_serving_listens_from_its_app_config():
    assert version_activated.disconnect(dispatch_uid="serving.precompute_on_activation")
    version_activated.connect(precompute_on_activation,
                              dispatch_uid="serving.precompute_on_activation")


def test_serving_precomputes_again_when_new_items_are_placed():
    from mfplatform.registry.signals import items_placed
    from mfplatform.serving.apps import precompute_on_placement

    assert items_placed.disconnect(dispatch_uid="serving.precompute_on_placement")
    items_placed.connect(precompute_on_placement, dispatch_uid="serving.precompute_on_placement")
