"""An embedded single-node Mesos-compatible master and agent (like ``mesos-local``).

``EmbeddedCluster`` serves the Mesos v1 scheduler API (``/api/v1/scheduler``), the v1
executor API (``/api/v1/executor``), ``/version`` and the state endpoints
(``/master/state``, the agent's ``/slave(1)/state``) on one loopback HTTP port, and
runs executors as local processes. Unmodified pymesos drives it as it drives Apache
Mesos 1.11, so Ancho's scheduler and executor code are the same on one machine and on
a real cluster::

    with EmbeddedCluster(Path(".ancho/mesos")) as cluster:
        driver = MesosSchedulerDriver(scheduler, framework_info, cluster.address)

Faithful to Mesos 1.11
----------------------
* Wire format: JSON calls and events as in scheduler.proto/executor.proto, RecordIO
  streams in chunked responses (records may span chunks), ``Mesos-Stream-Id``;
  status codes 202 / 400 (malformed, missing or wrong stream id) / 403 (framework
  unknown or not subscribed) / 405 / 406 / 415 (only JSON, no protobuf) in Mesos' order.
* Offers of the whole unallocated agent (cpus, mem, disk scalars; ports ranges; role
  ``*``) to the connected, unsuppressed framework holding the fewest cpus. DECLINE
  filters the declined resources for ``refuse_seconds`` (default ``default_refuse_s``),
  REVIVE clears filters and suppression, SUPPRESS stops offers. Offers are removed
  when their framework disconnects or fails over.
* ACCEPT/LAUNCH: an invalid or foreign offer turns every task into TASK_LOST
  (TASK_DROPPED if PARTITION_AWARE) with REASON_INVALID_OFFERS; task validation
  (ids, duplicate ids, agent id, executor present, resources non-empty and within the
  offers, ExecutorInfo reuse must be identical) gives TASK_ERROR REASON_TASK_INVALID.
  Missing required fields (TaskInfo name/task_id/agent_id) fail the call with 400, as
  Mesos' JSON→protobuf parsing does.
* Status updates: executor updates get agent_id, executor_id, source SOURCE_EXECUTOR
  and a float timestamp; ``data`` passes unchanged. The agent's update manager keeps
  one in-flight update per task, in order, re-sent every ``status_update_retry_s``
  and at once on re-subscription, until acknowledged; the executor then gets
  ACKNOWLEDGED. Master-generated updates (invalid offers/tasks, reconciliation) carry
  no uuid. The master forgets a task when its terminal update is acknowledged.
* Reconciliation: implicit → the latest state of every task the master knows
  (including terminal ones not yet acknowledged, as Mesos); explicit → latest state,
  or for unknown tasks TASK_LOST (classic frameworks) / TASK_UNKNOWN or TASK_GONE
  (PARTITION_AWARE); all with REASON_RECONCILIATION, source SOURCE_MASTER.
* KILL: forwarded to the executor once the task was delivered; a task still queued
  for an executor that has not subscribed is TASK_KILLED by the agent
  (REASON_TASK_KILLED_DURING_LAUNCH); an unknown task is reconciled (TASK_LOST).
* Failover: a dropped scheduler stream disconnects the framework; re-SUBSCRIBE with
  its id within ``failover_timeout`` keeps tasks and executors and re-sends unacked
  updates; a second SUBSCRIBE while connected sends ERROR "Framework failed over" to
  the old stream and closes it; when the timeout elapses the framework is removed, its
  executors shut down, and later SUBSCRIBEs with its id get ERROR "Framework has been
  removed". TEARDOWN removes the framework at once.
* Executors: SUBSCRIBED (executor_info with framework_id, framework_info with id,
  agent_info, container_id), LAUNCH for queued tasks, KILL, ACKNOWLEDGED, MESSAGE,
  SHUTDOWN, HEARTBEAT; re-subscription is accepted (unknown unacknowledged updates are
  taken). Environment as Mesos' agent sets it: MESOS_FRAMEWORK_ID, MESOS_EXECUTOR_ID,
  MESOS_DIRECTORY, MESOS_SANDBOX, MESOS_SLAVE_ID, MESOS_SLAVE_PID,
  MESOS_AGENT_ENDPOINT, MESOS_CHECKPOINT ("1"/"0" from FrameworkInfo.checkpoint —
  exactly Mesos' values, so pymesos, which tests the string for emptiness, treats
  every executor as checkpointing and re-subscribes after a lost connection, as it
  does on real Mesos), MESOS_HTTP_COMMAND_EXECUTOR=0,
  MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD (ExecutorInfo.shutdown_grace_period or
  ``executor_shutdown_grace_s``). MESOS_LOCAL is not set.
* Executor termination: its live tasks become TASK_FAILED (REASON_EXECUTOR_TERMINATED,
  SOURCE_AGENT, with uuid, reliable) — Mesos sends TASK_FAILED for command executors
  and TASK_FAILED/TASK_LOST otherwise; we always choose TASK_FAILED — and the scheduler
  gets FAILURE with the raw wait(2) status as Mesos reports it (exit code << 8, or the
  signal number). A container that fails to launch gives TASK_FAILED
  REASON_CONTAINER_LAUNCH_FAILED and FAILURE status -1.
* Sandboxes: ``work_dir/slaves/<agent>/frameworks/<fw>/executors/<eid>/runs/<cid>``
  with ``stdout``/``stderr`` and a ``latest`` symlink.
* State endpoints (:mod:`.state`), in Mesos 1.11's JSON shape: ``/master/state`` with the
  agent, the frameworks (offers; tasks and completed tasks with their statuses, which
  hold state and timestamp, never ``data`` or ``message``; executors with their
  CommandInfo, environment included, as a master shows it) and completed frameworks;
  the agent's ``/slave(1)/state`` with its frameworks, executors (sandbox directory,
  tasks, queued and completed tasks; no CommandInfo, as Mesos), completed executors
  and completed frameworks. Resources are Mesos' objects (``cpus``/``gpus``/``mem``/
  ``disk`` always, ranges as ``"[31000-32000]"``); what is remembered is bounded by
  Mesos' defaults (1000 completed tasks and 50 completed frameworks at the master; 200
  tasks per executor, 150 executors per framework and 50 frameworks at the agent).

Deliberately simplified
-----------------------
* One agent, never lost: no RESCIND (no offer timeout), no agent failover or recovery,
  no maintenance/inverse offers, no operator API, no authentication, no roles beyond
  ``*``, no reservations/volumes (operations other than LAUNCH are ignored), no
  LAUNCH_GROUP, JSON only (no protobuf).
* ACCEPT adds a filter for unused resources only when ``filters`` is given (Mesos
  applies a 5 s default): a framework launching one task per offer keeps getting the
  rest promptly. Schedulers meant for real Mesos should pass ``filters`` explicitly.
* Filters refuse any resources contained in the declined ones; allocation runs every
  0.1 s and whenever resources are freed, instead of Mesos' 1 s batch.
* Update retries use a fixed interval instead of Mesos' exponential backoff.
* Command tasks (TaskInfo.command without an executor) are rejected with TASK_ERROR:
  there is no mesos-executor binary. The fetcher (CommandInfo.uris) is not supported
  (TASK_FAILED at launch). Executors run as the current user with this process'
  environment plus the variables above, in their own session (process group), without
  resource isolation.
* Only ContainerInfo type MESOS without an image (or none) is supported; DOCKER gives
  TASK_FAILED REASON_CONTAINER_LAUNCH_FAILED. Containerizers are pluggable
  (``containerizers=`` takes objects following ``containerizer.Containerizer``).
* State endpoints: master and agent share one port, so ``/state`` answers as the agent
  (a real master answers it with its own state); ``flags`` lists only the settings the
  embedded cluster has, no capabilities are claimed, build fields are empty; no
  ``jsonp``, ``/state-summary``, ``/frameworks``, ``/slaves`` or ``/tasks``; no
  authorization filtering.
* Shutdown: SHUTDOWN event, SIGTERM to the process group after the grace period,
  SIGKILL 2 s later. ``stop()`` SIGKILLs every executor's process group at once and
  sends no further events. An executor whose cluster process is killed outright is
  not reaped by anyone (no agent recovery).
"""

from __future__ import annotations

from .cluster import EmbeddedCluster as EmbeddedCluster

__all__ = ["EmbeddedCluster"]
