"""Settings for the test suite: production settings (DEBUG off) with a key of their own and a
filesystem broker folder of their own, so that a `make run` worker never takes test tasks.
Set in the environment so that the worker and server processes the tests start inherit them."""

import os
from pathlib import Path

os.environ.setdefault("SECRET_KEY", "test-suite-secret-key-not-for-production")
# One broker folder per test session: two sessions at once never take each other's tasks.
os.environ.setdefault("CELERY_BROKER_DIR", str(Path(__file__).resolve().parent.parent / "var"
                                               / f"test-broker-{os.getpid()}"))
# Precomputation after each promotion would keep the worker busy past a test's end (and its
# database flush); the tests that need it call it directly.
os.environ.setdefault("SERVING_PRECOMPUTE", "0")
# Impressions are written by the test that wants them (flush_impressions), in its own thread
# and transaction; tests/experiments starts the writer thread where it tests it.
os.environ.setdefault("IMPRESSION_BACKGROUND_FLUSH", "0")
os.environ.setdefault("MEDIA_ROOT",
                      str(Path(__file__).resolve().parent.parent / "var" / "test-media"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mfplatform.test_settings")

from mfplatform.settings import *  # noqa: E402,F403
