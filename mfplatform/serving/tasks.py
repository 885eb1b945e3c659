from celery import shared_task

from mfplatform.registry.models import ModelVersion
from mfplatform.serving.precompute import precompute_top_n
from tenants.context import tenant_context


@shared_task(name="serving.precompute", acks_late=True, max_retries=2, time_limit=3600)
def precompute(tenant_id: int, model_version_id: int) -> None:
    with tenant_context(tenant_id):
        version = ModelVersion.objects.filter(pk=model_version_id).first()
        if version is not None:  # gone, or retired meanwhile: precompute_top_n skips it
            precompute_top_n(version)
