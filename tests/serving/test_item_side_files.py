"""A version's model and id maps are split by side: serving reads the item side only, the
worker's offline steps read both, and a version published before the split (one model file,
one id file) still serves and re-evaluates."""

import numpy as np
import pytest

from mfplatform.catalog.events import ingest_events
from mfplatform.registry import artifacts
from mfplatform.registry.models import ModelVersion
from mfplatform.serving import bundle as bundle_module
from mfplatform.serving.bundle import load_bundle, serving_bundle
from mfplatform.serving.cache import ByteLRU
from tests import artifact_files

pytestmark = pytest.mark.django_db

USER_SIDE = (artifacts.MODEL_USERS, artifacts.USER_IDS)


def _serve(served, path: str) -> dict:
    response = served.client().get(path)
    assert response.status_code == 200, response.content
    return response.json()


def _answers(served) -> list[dict]:
    """A learned user (vector from Postgres), a user folded in from events newer than the
    model, and similar items: everything a web process answers from a model."""
    return [_serve(served, "/api/v1/recommendations?user=user-3&k=10")["items"],
            _serve(served, "/api/v1/recommendations?user=newcomer&k=10")["items"],
            _serve(served, "/api/v1/items/item-1/similar?k=5")["items"]]


def test_a_web_process_serves_without_the_user_side_files(served):
    version = served.version
    assert set(USER_SIDE) | {artifacts.MODEL_ITEMS, artifacts.ITEM_IDS} <= set(
        version.checksums)
    with served.scope():
        ingest_events(served.tenant, [{"user": "newcomer", "item": f"item-{i}",
                                       "type": "purchase"} for i in (1, 2, 3)])
    before = _answers(served)
    for name in USER_SIDE:
        artifact_files.delete_file(version, name)
    bundle_module._CACHE.clear()  # a web process that never loaded the version

    after = _answers(served)
    assert after == before
    assert {i["source"] for body in after[:2] for i in body} == {"mf"}
    with served.scope(), pytest.raises(FileNotFoundError):
        load_bundle(version)  # the files are gone indeed: what needs users cannot load


def test_the_item_side_is_what_serving_holds(served):
    with served.scope():
        full = load_bundle(served.version)
        items = serving_bundle(served.version, cache=ByteLRU(1 << 30))
    np.testing.assert_array_equal(full.item_ids, items.item_ids)
    np.testing.assert_array_equal(full.model.item_vectors(), items.model.item_vectors())
    assert items.model.n_users_ == 0 and full.model.n_users_ == len(full.user_ids) > 100
    items_bytes = len(artifact_files.read_bytes(served.version, artifacts.MODEL_ITEMS))
    users_bytes = len(artifact_files.read_bytes(served.version, artifacts.MODEL_USERS))
    assert users_bytes > full.model.user_factors_.nbytes > 0
    assert items_bytes < full.model.item_factors_.nbytes + 16_384


def _as_published_before_the_split(version: ModelVersion) -> None:
    """Rewrite the version's files as publication wrote them before the split: the whole
    model in model.npz, both id maps in ids.npz, and the checksums of those files."""
    model = artifacts.read_model(version)
    item_ids, user_ids = artifacts.read_item_ids(version), artifacts.read_user_ids(version)
    for name in (*USER_SIDE, artifacts.MODEL_ITEMS, artifacts.ITEM_IDS):
        artifact_files.delete_file(version, name)
    artifacts.store_file(version.artifact, artifacts.WHOLE_MODEL, model.save)
    artifacts.store_file(version.artifact, artifacts.BOTH_IDS, lambda out: np.savez(
        out, item_ids=item_ids, user_ids=user_ids))
    version.checksums = artifacts.checksums(version.artifact)
    version.save(update_fields=["checksums"])


def test_a_version_published_before_the_split_still_serves(served):
    version = served.version
    before = _answers(served)
    with served.scope():
        full = load_bundle(version)
        _as_published_before_the_split(version)
        assert not artifacts.is_split(version) and artifacts.damaged_artifacts(version) is None
        assert {artifacts.WHOLE_MODEL, artifacts.BOTH_IDS} <= set(version.checksums)
        old = load_bundle(version)  # the offline path reads users from the old files
        # what re-evaluation reads of the active version (registry.runs)
        old_items = artifacts.read_item_side_model(version)
    bundle_module._CACHE.clear()
    assert _answers(served) == before
    np.testing.assert_array_equal(old.model.user_factors_, full.model.user_factors_)
    np.testing.assert_array_equal(old.user_ids, full.user_ids)
    np.testing.assert_array_equal(old_items.item_factors_, full.model.item_factors_)
