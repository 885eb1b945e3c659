# The same tenant with an active model that the serving tests use.
from tests.serving.conftest import served  # noqa: F401
