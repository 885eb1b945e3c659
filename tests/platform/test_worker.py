import os
import uuid

import pytest

from mfplatform.ops.models import WorkerPing
from mfplatform.ops.tasks import ping
from tests.conftest import Worker, wait_for


@pytest.mark.django_db(transaction=True)
def test_task_round_trip_through_real_worker_filesystem_broker(celery_worker_process):
    token = uuid.uuid4().hex
    ping.delay(token)
    found = wait_for(lambda: WorkerPing.objects.filter(token=token).first(),
                     worker=celery_worker_process)
    assert found.hostname


def _redis_url() -> str | None:
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception:
        return None
    return url


@pytest.mark.django_db(transaction=True)
def test_task_round_trip_through_real_worker_redis_broker():
    url = _redis_url()
    if url is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but Redis does not answer: .ci/run must start redis-server")
        pytest.skip("no Redis here; CI runs this test against Redis")
    from mfplatform.celery import app

    worker = Worker(broker_url=url)
    token = uuid.uuid4().hex
    try:
        with app.connection_for_write(url) as conn:
            ping.apply_async((token,), connection=conn)
        found = wait_for(lambda: WorkerPing.objects.filter(token=token).first(), worker=worker)
    finally:
        worker.stop()
    assert found.token == token
