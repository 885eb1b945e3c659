"""A bounded schemathesis run over every operation of /api/schema/, against a live server with
a tenant key: no server error, no undocumented content type, and every response body matches
its documented schema."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, make_tenant
from tests.factories import make_plan

pytestmark = pytest.mark.django_db(transaction=True)

# Per operation; about 40 operations. Fixed seed: the same cases on every run.
MAX_EXAMPLES = 8  # ~3.5 min on this 2-core machine
SEED = 20261130


def test_fuzzing_every_operation_finds_no_server_error_or_schema_violation(live_server,
                                                                          tmp_path):
    tenant = make_tenant("fuzz")
    with tenant.scope():
        make_plan(tenant.tenant)
    client = tenant.client()
    assert client.post("/api/v1/items", [{"external_id": "1", "title": "One"}],
                       format="json").status_code == 200
    schemathesis = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [str(schemathesis), "--config-file", str(Path(__file__).with_name("schemathesis.toml")),
         "run", f"{live_server.url}/api/schema/", "--url",
         f"{live_server.url}", "-H", f"Authorization: Bearer {tenant.raw_key}",
         "--checks", "not_a_server_error,content_type_conformance,response_schema_conformance",
         "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
         "--generation-deterministic", "--phases", "examples,coverage,fuzzing",
         "--no-color"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    (tmp_path / "schemathesis.txt").write_text(output)
    assert result.returncode == 0, output[-6000:]
