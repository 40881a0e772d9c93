"""``ancho cluster``: a development cluster on loopback (ZooKeeper, embedded Mesos
masters and agents, optionally a Cassandra ring and Spark standalone)."""
