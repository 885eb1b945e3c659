"""Spark MLlib ALS as an mfengine strategy (``spark_als``), for tenants too large for one
worker. Installed with the ``spark`` extra (``pip install '.[spark]'``: pyspark and pyarrow)
and registered under the entry-point group ``mfengine.strategies``; without pyspark the
plugin registry skips it with a warning and every other strategy works.

Like mfengine, this package imports no Django: the platform passes what it configures
(:func:`configure`), and reads the factors back as numpy arrays.
"""

from mfengine_spark.als import SparkALS
from mfengine_spark.parquet import write_interactions
from mfengine_spark.session import configure, spark_session, stop_session

__all__ = ["SparkALS", "configure", "spark_session", "stop_session", "write_interactions"]
