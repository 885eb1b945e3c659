import pytest

from mfplatform.registry.models import ModelStatus
from mfplatform.registry.runs import execute_run
from mfplatform.training.services import queue_run
from tests.factories import TEST_PLAN, load_synthetic, make_plan, synthetic


@pytest.fixture
def served(tenant_a):
    """Tenant A with a synthetic catalogue and an active MF model (trained in-process)."""
    with tenant_a.scope():
        data = synthetic()
        load_synthetic(tenant_a.tenant, data)
        plan = make_plan(tenant_a.tenant, "main", **TEST_PLAN)
        version = execute_run(queue_run(tenant_a.tenant, plan))
    assert version.status == ModelStatus.ACTIVE, version.decision
    tenant_a.data = data
    tenant_a.plan = plan
    tenant_a.version = version
    return tenant_a
