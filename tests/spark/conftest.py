"""One small local SparkSession for every Spark test in the process (started once, stopped
at exit): two threads, no UI, two shuffle partitions, a small driver heap."""

from __future__ import annotations

import pytest

import mfengine_spark

TEST_CONF = {
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.driver.memory": "512m",
    "spark.ui.showConsoleProgress": "false",
}


@pytest.fixture(scope="session", autouse=True)
def spark_session():
    mfengine_spark.configure("local[2]", **TEST_CONF)
    yield mfengine_spark.spark_session()
    # Stopped here, not at exit: py4j logs while closing, and pytest has closed its streams
    # by then.
    mfengine_spark.stop_session()
