"""One SparkSession per process, created on first use and stopped when the process exits.

The cluster is ``configure(master_url=...)``'s, else the ``SPARK_MASTER_URL`` environment
variable's, else ``local[2]`` (Spark inside this process's JVM, two threads).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import Any

DEFAULT_MASTER_URL = "local[2]"
# The Spark UI is a web server per session: a worker has no use for it.
DEFAULT_CONF = {"spark.ui.enabled": "false"}
LOCAL_CONF = {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}

_lock = threading.Lock()
_session: Any = None
_master_url: str | None = None
_conf: dict[str, str] = {}


def configure(master_url: str | None = None, **conf: str) -> None:
    """Set the cluster and Spark properties (``spark.driver.memory="1g"`` is given as
    ``**{"spark.driver.memory": "1g"}``) for the session created next. A session already
    running keeps its settings."""
    global _master_url
    with _lock:
        _master_url = master_url
        _conf.update({key: str(value) for key, value in conf.items()})


def master_url() -> str:
    return _master_url or os.environ.get("SPARK_MASTER_URL") or DEFAULT_MASTER_URL


def spark_session():
    """The process's SparkSession (created on first call)."""
    global _session
    with _lock:
        if _session is None:
            from pyspark.sql import SparkSession

            master = master_url()
            builder = SparkSession.builder.master(master).appName("mfengine-spark-als")
            conf = dict(DEFAULT_CONF)
            if master.startswith("local"):  # one JVM: nothing needs to reach it from outside
                conf.update(LOCAL_CONF)
            for key, value in {**conf, **_conf}.items():
                builder = builder.config(key, value)
            _session = builder.getOrCreate()
            _session.sparkContext.setLogLevel("ERROR")
            # py4j logs every connection it closes at INFO, the last ones while the
            # interpreter shuts down, when the handlers' streams may be closed already.
            logging.getLogger("py4j").setLevel(logging.WARNING)
            atexit.register(stop_session)
        return _session


def stop_session() -> None:
    """Stop the process's session (at exit; a later :func:`spark_session` starts a new one)."""
    global _session
    with _lock:
        if _session is not None:
            _session.stop()
            _session = None
