"""`ancho cluster start --spark-workers W`: a Spark standalone master and workers from
pyspark's own jars, on loopback, that a Spark job runs on; stopped with the cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ancho.cluster.supervisor import Cluster, Layout, alive, processes_under

from .conftest import free_port

_JOB = """
import sys
from pyspark.sql import SparkSession
spark = (SparkSession.builder.master(sys.argv[1]).appName("ancho-cluster-test")
         .config("spark.driver.host", "127.0.0.1").config("spark.ui.enabled", "false")
         .config("spark.cores.max", "2").getOrCreate())
rdd = spark.sparkContext.parallelize(range(1000), 4)
print(rdd.map(lambda x: x * x).sum(), spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size())
spark.stop()
"""


def test_a_spark_standalone_cluster_runs_a_job_and_stops(tmp_path: Path) -> None:
    layout = Layout(zk_port=free_port(), master_port=free_port(), agent_port=free_port(),
                    containerizers="process", spark_port=free_port(),
                    spark_webui_port=free_port())  # fmt: skip
    cluster = Cluster(tmp_path / "cluster", layout)
    try:
        status = cluster.start(agents=1, masters=1, cpus=1, mem_mb=512, spark_workers=2)
        spark = status["spark"]
        assert spark["master"] == f"spark://127.0.0.31:{layout.spark_port}"
        assert [w["address"].split(":")[0] for w in spark["workers"]] == [
            "127.0.0.32", "127.0.0.33"
        ]  # fmt: skip
        assert all(w["pid"] for w in spark["workers"])
        job = subprocess.run([sys.executable, "-c", _JOB, spark["master"]],
                             capture_output=True, text=True, timeout=300)  # fmt: skip
        assert job.returncode == 0, job.stderr[-3000:]
        total, executors = job.stdout.split()
        assert int(total) == sum(x * x for x in range(1000))
        assert int(executors) == 3  # the driver and one executor on each worker
        pids = [w["pid"] for w in spark["workers"]]
    finally:
        cluster.stop()
    assert not [p for p in pids if alive(p)]
    assert processes_under(tmp_path / "cluster") == []
