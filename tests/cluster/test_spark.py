"""`ancho cluster start --spark-workers W`: a Spark standalone master and workers from
pyspark's own jars, on loopback, that a Spark job runs on; stopped with the cluster.
Ancho's own Spark job (the recomputed summary) runs there and agrees with ``local[*]``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from e2e import MODELS, ancho, write_spec

from ancho.cluster.ports import cluster_port
from ancho.cluster.supervisor import Cluster, Layout, alive, processes_under

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
    layout = Layout(zk_port=cluster_port(), master_port=cluster_port(), agent_port=cluster_port(),
                    containerizers="process", spark_port=cluster_port(),
                    spark_webui_port=cluster_port())  # fmt: skip
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
        _recompute_on_the_cluster_as_locally(tmp_path, spark["master"])
    finally:
        cluster.stop()
    assert not [p for p in pids if alive(p)]
    assert processes_under(tmp_path / "cluster") == []


def _recompute_on_the_cluster_as_locally(tmp_path: Path, master: str) -> None:
    spec = {"model": {"source": str(MODELS / "skewed"), "entrypoint": "model:simulate"},
            "sequences": 20_000, "seed": 8}  # fmt: skip
    run = ancho("run", str(write_spec(tmp_path, spec)), "--json", cwd=tmp_path)
    assert run.code == 0, run.stderr
    rid = run.json()["run"]
    docs = {}
    for where in ("local[*]", master):
        again = ancho("summary", rid, "--recompute", "--format", "json", cwd=tmp_path,
                      env={"ANCHO_SPARK_MASTER": where}, timeout=600)  # fmt: skip
        assert again.code == 0, again.stderr
        docs[where] = again.json()["outputs"]
    here, there = docs["local[*]"], docs[master]
    for name, stats in here.items():
        assert there[name]["quantiles"] == stats["quantiles"]  # exact below 100,000
        for stat, value in stats.items():
            if stat != "quantiles":
                assert there[name][stat] == pytest.approx(value, rel=1e-12), (name, stat)
    # ...and both are the merged summary, to rounding.
    merged = run.json()["outputs"]
    assert all(merged[n]["mean"] == pytest.approx(here[n]["mean"], rel=1e-12) for n in here)
