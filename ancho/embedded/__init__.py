"""An embedded Mesos-compatible master and agents: one node in a process (like
``mesos-local``), or many processes (``ancho cluster``).

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

* Scheduler call checks in Mesos' order: 401 (with credentials) before 405 / 400 (no
  Content-Type) / 415 (Content-Type must be exactly ``application/json``, as Mesos
  compares it; protobuf is refused) / 400 (JSON-to-protobuf parsing: ``null`` is an
  unset field, wrong JSON types and missing required fields fail the call) / 400 (call
  validation: framework_id, body presence, ACKNOWLEDGE uuid a UUID of a known version,
  UPDATE_FRAMEWORK id match) / 406 (Accept, on SUBSCRIBE only, libprocess' matching;
  the stream is ``application/json``). An unknown framework gets 400 "Framework cannot
  be found", a known unsubscribed one 403; UPDATE_FRAMEWORK answers 200 and may not
  change user, checkpoint or principal (400); a re-SUBSCRIBE keeps the old user and
  checkpoint silently (MESOS-703), and a different principal gets ERROR.
* ``offer_timeout_s`` (``--offer_timeout``): an offer not used in time gets RESCIND and
  its resources return with no filter; using it afterwards is an invalid offer. Offers
  on an agent that goes are rescinded too.
* ``credentials=`` (``--authenticate_http_frameworks``, basic authenticator,
  ``--credentials`` in Mesos' JSON format, read by ``auth.load_credentials``): calls
  without a valid ``Authorization: Basic`` get 401 ``WWW-Authenticate: Basic
  realm="mesos-master-scheduler"``; FrameworkInfo.principal must match (400) and is
  filled in when absent.
* Executor environment as Mesos' agent and containerizer build it: nothing of the
  agent's own environment; LIBPROCESS_IP (the agent's address), LIBPROCESS_PORT=0, the
  MESOS_* variables and MESOS_SANDBOX, then the CommandInfo's environment (which wins),
  and PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin when neither
  sets one. Durations are printed as Mesos prints them (500ms, 5secs, 1mins).
* Executor registration: an executor that has not subscribed within
  ``executor_registration_timeout_s`` (Mesos' 1 minute) is destroyed at once; its tasks
  get TASK_FAILED REASON_EXECUTOR_REGISTRATION_TIMEOUT "Executor did not register
  within 1mins". HEARTBEAT every ``executor_heartbeat_interval_s`` (30 minutes); an
  executor's HEARTBEAT call is answered 202. Executor UPDATE calls are validated as
  Mesos does (400 "Failed to validate Executor::Call: ..."): uuid a UUID, executor id
  matching the call's, source SOURCE_EXECUTOR, state not TASK_STAGING.
* The fetcher (CommandInfo.uris) before the executor starts: http(s) downloads,
  file:// and absolute paths copied; output_file; executable (chmod 755, no
  extraction); extract (default true) of .tar/.tgz/.tar.gz/.tbz2/.tar.bz2/.txz/.tar.xz/
  .zip and bare .gz; cache keyed by user and URI under work_dir/fetch, emptied at
  start, downloaded once; its log in the sandbox's stderr; a failure is TASK_FAILED
  REASON_CONTAINER_LAUNCH_FAILED naming the URI.
* Many nodes (:mod:`.node`, :mod:`.remote`, ``ancho cluster``): masters elect a leader
  through ZooKeeper as Mesos does (:mod:`.election`); standbys answer with Mesos'
  ``redirect()``: 307 to ``//leader:port/path``, 503 "No leader elected". The master
  keeps its own account of each agent (:mod:`.agents`); agents register and
  re-register (with their executors and live tasks) with each new leader. An agent not
  heard from for ``agent_ping_timeout`` x ``max_agent_ping_timeouts`` is removed:
  its tasks end TASK_LOST (TASK_UNREACHABLE for PARTITION_AWARE frameworks),
  REASON_SLAVE_REMOVED, and frameworks get FAILURE naming the agent (``slaveLost``);
  one that comes back keeps only its PARTITION_AWARE frameworks' tasks. A new leader
  keeps frameworks it learns of from agents, without their failover timeout, as Mesos
  1.11 does (MESOS-4659).

Deliberately simplified
-----------------------
* No maintenance/inverse offers, no operator API, no roles beyond ``*``, no
  reservations/volumes (operations other than LAUNCH are ignored), no LAUNCH_GROUP,
  JSON only (no protobuf); HTTP Basic framework authentication only (no CRAM-MD5, no
  authorization). Master and agents talk JSON over HTTP (``/master/internal``,
  ``/slave(1)/internal``), not libprocess messages: no framework sees those. The
  master's registry is rebuilt from agents' re-registrations rather than replicated;
  an agent restarted on its work directory re-registers under its old id, but does
  not recover the executors it had (they are reported as Mesos reports lost ones).
* ACCEPT adds a filter for unused resources only when ``filters`` is given (Mesos
  applies a 5 s default): a framework launching one task per offer keeps getting the
  rest promptly. Schedulers meant for real Mesos should pass ``filters`` explicitly.
* Filters refuse any resources contained in the declined ones; allocation runs every
  0.1 s and whenever resources are freed, instead of Mesos' 1 s batch.
* Update retries use a fixed interval instead of Mesos' exponential backoff.
* Command tasks (TaskInfo.command without an executor) are rejected with TASK_ERROR:
  there is no mesos-executor binary. Executors run as the current user with only the
  variables above, in their own session (process group), without resource isolation.
  Fetcher: no ftp/hdfs/s3 (no Hadoop client), no --frameworks_home, no cache size
  limit or eviction, no chown/su to the user; a cancelled fetch stops between chunks.
* ContainerInfo type MESOS without an image runs as a process; DOCKER runs with the
  ``DockerContainerizer`` when the cluster is given one (else TASK_FAILED
  REASON_CONTAINER_LAUNCH_FAILED). It follows Mesos 1.11's: the sandbox is 0750 and
  owned by ``CommandInfo.user``/``FrameworkInfo.user`` (an unknown user fails the
  launch); no ``--user``; ``--cpu-shares`` (cpus x 1024, at least 2), a CFS quota only
  with ``cfs_quota=True``, ``--memory`` (at least 32 MB); ``DockerInfo.parameters``
  passed through as ``docker run`` flags (one the SDK cannot express fails the launch
  naming it); missing images are pulled within ``pull_timeout_s``. Not as Mesos:
  container output is copied by following its logs, containers are removed at exit,
  and labels name the framework, executor and container.
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
