"""Spark reads a run's results from Cassandra through the DataStax connector.

The connector (``spark-cassandra-connector_2.12`` 3.5.1 and its dependencies, fetched
from Maven Central by ``make cassandra`` into ``.cache/spark-jars``, or the folder named
by ``ANCHO_SPARK_JARS``) is passed to Spark with ``spark.jars``. Connection and
credentials are set per read, as the run owner's role: one Spark session serves the
runs of many users, each read seeing only its owner's keyspace.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from .store.cassandra import CassandraStore

REPO_JARS = Path(__file__).resolve().parent.parent / ".cache" / "spark-jars"


def connector_jars() -> list[str]:
    """The connector's jars, or an empty list when they were never fetched."""
    folder = Path(os.environ.get("ANCHO_SPARK_JARS") or REPO_JARS)
    return sorted(str(p) for p in folder.glob("*.jar")) if folder.is_dir() else []


def results_frame(spark: SparkSession, store: CassandraStore, run_id: str) -> DataFrame:
    """The run's stored results: ``sequence``, ``status`` and one column per output.

    Outputs are stored as JSON text; they are parsed in Spark with the types of the run's
    first ok sequence (bool stays boolean; ints and floats are read as double, so a run
    mixing them loses nothing).
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import BooleanType, DoubleType, StructField, StructType

    from .store.cassandra import BUCKET

    run = store.get_run(run_id)
    names = list(run.outputs or [])
    first = next((r for r in store.iter_results(run_id) if r.status == "ok"), None)
    fields = [
        StructField(n, BooleanType() if first and isinstance(first.outputs.get(n), bool)
                    else DoubleType())
        for n in names
    ]  # fmt: skip
    c = store.config
    options = {
        "keyspace": c.keyspace,
        "table": "results",
        "spark.cassandra.connection.host": ",".join(c.hosts),
        "spark.cassandra.connection.port": str(c.port),
    }
    if c.username:
        options["spark.cassandra.auth.username"] = c.username
        options["spark.cassandra.auth.password"] = c.password or ""
    buckets = list(range((run.sequences + BUCKET - 1) // BUCKET))
    raw = (
        spark.read.format("org.apache.spark.sql.cassandra")
        .options(**options)
        .load()
        .where((F.col("run_id") == run_id) & F.col("bucket").isin(buckets))
    )
    parsed = F.from_json("outputs", StructType(fields), {"allowNonNumericNumbers": "true"})
    return raw.select("sequence", "status", parsed.alias("o")).select(
        "sequence", "status", *(F.col("o").getField(n).alias(n) for n in names)
    )
