"""A version's files are all written and checksummed before its row commits; a damaged file
costs the tenant its personalisation (served from fallbacks, never a 500) and promotion
refuses the version with the reason."""

from pathlib import Path

import pytest

from mfplatform.registry.artifacts import damaged_artifacts
from mfplatform.registry.models import ModelStatus, ModelVersion
from mfplatform.registry.services import RegistryError, promote
from mfplatform.serving import bundle as bundle_module
from tests import artifact_files

pytestmark = pytest.mark.django_db


def _serve(served, query: str) -> dict:
    response = served.client().get(f"/api/v1/recommendations?{query}")
    assert response.status_code == 200, response.content
    return response.json()


def test_every_file_is_checksummed_at_publication(served):
    version = served.version
    assert {"model_items.npz", "model_users.npz", "item_ids.npz", "user_ids.npz",
            "popularity.npz"} <= set(version.checksums)
    assert all(len(checksum) == 64 for checksum in version.checksums.values())
    assert damaged_artifacts(version) is None


@pytest.mark.parametrize("damage", ["truncate model", "empty ids", "flip a byte"])
def test_a_damaged_active_version_serves_fallbacks_and_cannot_be_promoted_again(
        served, damage, caplog):
    version = served.version
    if damage == "truncate model":
        model = artifact_files.read_bytes(version, "model_items.npz")
        artifact_files.replace_bytes(version, "model_items.npz", model[: len(model) // 2])
    elif damage == "empty ids":
        artifact_files.replace_bytes(version, "item_ids.npz", b"")
    else:
        artifact_files.flip_a_byte(version, "model_users.npz")
    bundle_module._CACHE.clear()  # as a web process that had not loaded it yet

    body = _serve(served, "user=user-1&k=10")
    assert len(body["items"]) == 10
    # A web process never reads the user side (user vectors come from Postgres): damage
    # there leaves serving as it was, and only the checksum sees it.
    sources = {i["source"] for i in body["items"]}
    assert sources == {"mf"} if damage == "flip a byte" else "mf" not in sources
    similar = served.client().get("/api/v1/items/item-1/similar?k=5")
    assert similar.status_code == 200 and len(similar.json()["items"]) == 5

    reason = damaged_artifacts(version)
    assert reason is not None and Path(reason.split()[0]).suffix == ".npz"
    with served.scope():  # retired meanwhile (say, by a rollback): it cannot come back
        ModelVersion.objects.filter(pk=version.pk).update(status=ModelStatus.RETIRED)
        with pytest.raises(RegistryError, match="files are damaged"):
            promote(ModelVersion.objects.get(pk=version.pk), actor="test", reason="bring back")
        assert ModelVersion.objects.get(pk=version.pk).status == ModelStatus.RETIRED


def test_a_missing_file_is_named(served):
    artifact_files.delete_file(served.version, "popularity.npz")
    assert damaged_artifacts(served.version) == "popularity.npz is missing"
