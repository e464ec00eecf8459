"""Scale-out: Keras Tuner's chief and workers, one MLflow server, mirrored trials.

One search can run on several processes or machines, with no scheduler of its own:

- Keras Tuner's distributed mode runs the oracle in a *chief* process, which hands out
  trials over gRPC; *workers* ask it for trials until the search is over. The mode is
  set by Keras Tuner's variables ``KERASTUNER_TUNER_ID`` (``chief``, or a worker's own
  id), ``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT``. `read_cluster` reads
  them, here and nowhere else; `set_cluster_environment` sets them from the ``--role``,
  ``--worker-id`` and ``--oracle-address`` options of ``scripts/tune.py``.
- The chief creates the experiment and the search's parent run, as a single process
  does, and writes the run's id to ``mlflow_search.json`` in the tuner folder before it
  starts the oracle. A worker waits, bounded, until the oracle answers
  (`wait_for_chief`), reads that id or takes ``--parent-run-id``, checks that its
  settings are the chief's (`join_search`) and nests its trials under that run. Active
  runs are per process, so the id travels explicitly.
- The tuner folder is shared: workers write their trials' checkpoints there, and after
  the last trial the chief alone picks and registers the champion from what the oracle
  and MLflow hold (`contrastive.search`). A worker never does.
- ``--strategy mirrored`` trains each trial with `tf.distribute.MirroredStrategy` over
  the visible GPUs, or over the logical CPU devices where there is no GPU
  (`make_strategy`).

This module imports neither TensorFlow nor gRPC until a function needs them, so the
command line stays fast.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import signal
import socket
import time
from pathlib import Path
from typing import Any, MutableMapping

from contrastive.config import STRATEGIES, ConfigError, SearchConfig

__all__ = [
    "CHIEF_ID",
    "ROLES",
    "Cluster",
    "ClusterError",
    "WorkerResult",
    "check_oracle_port",
    "check_store",
    "cluster_environment",
    "join_search",
    "make_strategy",
    "parse_oracle_address",
    "read_cluster",
    "set_cluster_environment",
    "stop_on_sigterm",
    "wait_for_chief",
    "worker_result",
]

logger = logging.getLogger(__name__)

CHIEF_ID = "chief"
ROLES = ("chief", "worker")

_TUNER_ID = "KERASTUNER_TUNER_ID"
_ORACLE_IP = "KERASTUNER_ORACLE_IP"
_ORACLE_PORT = "KERASTUNER_ORACLE_PORT"
_VARIABLES = (_TUNER_ID, _ORACLE_IP, _ORACLE_PORT)

# Keras Tuner saves a tuner's state as ``<tuner id>.json`` in the project folder,
# beside the oracle's ``oracle.json`` and the search's ``mlflow_search.json``: a worker
# with one of these ids would overwrite them.
_RESERVED_IDS = ("oracle", "mlflow_search")
_WORKER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

# Settings that must be equal on the chief and every worker. Paths are left out (a
# dataset may sit elsewhere on another machine): the digests say whether the data and
# the search space are the same.
_PATH_PARAMS = ("dataset", "search_space", "unlabeled_dir", "test_path")
_SAME_TAGS = ("dataset_digest", "search_space_digest")

# How often a waiting worker looks again for the chief's files.
_POLL_S = 0.5

# The strategies made in this process, by name (see `make_strategy`).
_STRATEGIES: dict[str, Any] = {}


class ClusterError(ConfigError):
    """A chief or worker that cannot take part in the search; the message says why."""


@dataclasses.dataclass(frozen=True)
class Cluster:
    """This process's part in a search, as Keras Tuner's variables set it.

    Args:
        role: ``"single"`` (no distributed mode), ``"chief"`` or ``"worker"``. Defaults
            to ``"single"``.
        tuner_id: ``KERASTUNER_TUNER_ID``; None for a single process. Defaults to None.
        oracle_host: The chief's address (for the chief: the interface it listens on).
            Defaults to None.
        oracle_port: The oracle's port. Defaults to None.
    """

    role: str = "single"
    tuner_id: str | None = None
    oracle_host: str | None = None
    oracle_port: int | None = None

    @property
    def is_chief(self) -> bool:
        return self.role == "chief"

    @property
    def is_worker(self) -> bool:
        return self.role == "worker"

    @property
    def oracle_address(self) -> str | None:
        """``HOST:PORT`` of the oracle, or None for a single process."""
        if self.oracle_host is None:
            return None
        return f"{self.oracle_host}:{self.oracle_port}"

    def check(self, config: SearchConfig) -> None:
        """Refuses the settings that this role cannot use, before anything runs.

        Args:
            config: The search's settings.

        Raises:
            ClusterError: For ``parent_run_id`` outside a worker, and for ``overwrite``
                on a worker (it would delete the chief's shared tuner folder).
        """
        if config.parent_run_id is not None and not self.is_worker:
            who = "the chief" if self.is_chief else "a single process"
            raise ClusterError(
                f"--parent-run-id is for workers; {who} creates the search run itself. "
                f"Drop --parent-run-id, or start this process with --role worker."
            )
        if config.overwrite and self.is_worker:
            raise ClusterError(
                f"Worker {self.tuner_id!r} was given --overwrite, which would delete "
                f"the chief's tuner folder. Pass --overwrite to the chief only."
            )


def parse_oracle_address(text: str) -> tuple[str, int]:
    """Splits ``HOST:PORT`` (``[v6 address]:PORT`` for IPv6) into host and port.

    Raises:
        ClusterError: When ``text`` is not of that form or the port is not in 1-65535.
    """
    host, _, port = str(text).strip().rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ClusterError(
            f"The oracle address must be HOST:PORT with a port in 1-65535, e.g. "
            f"127.0.0.1:8000 or [::1]:8000; received {text!r}."
        )
    return host, int(port)


def read_cluster(environ: MutableMapping[str, str] | None = None) -> Cluster:
    """Reads Keras Tuner's distributed-mode variables: the one place that does.

    Args:
        environ: The variables; None means ``os.environ``. Defaults to None.

    Returns:
        A single-process `Cluster` when none is set, else the chief's or a worker's.

    Raises:
        ClusterError: When only some are set (Keras Tuner would then run a search of its
            own, silently), the port is not a number in 1-65535, or a worker's id is
            one that Keras Tuner would take for the chief or that would overwrite the
            search's files.
    """
    environ = os.environ if environ is None else environ
    tuner_id = environ.get(_TUNER_ID, "").strip() or None
    host = environ.get(_ORACLE_IP, "").strip() or None
    port_text = environ.get(_ORACLE_PORT, "").strip() or None
    if tuner_id is None and host is None and port_text is None:
        return Cluster()

    values = (tuner_id, host, port_text)
    missing = [name for name, value in zip(_VARIABLES, values) if not value]
    if missing:
        raise ClusterError(
            f"Keras Tuner's distributed mode needs all of {', '.join(_VARIABLES)}; "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set. Set "
            f"them all (or pass --role, --worker-id and --oracle-address), or unset "
            f"them all for a single-process search."
        )
    _, port = parse_oracle_address(f"{host}:{port_text}")

    if tuner_id == CHIEF_ID:
        return Cluster("chief", tuner_id, host, port)
    _check_worker_id(tuner_id)
    return Cluster("worker", tuner_id, host, port)


def _check_worker_id(worker_id: str) -> None:
    # Keras Tuner treats any id that contains "chief" as the chief.
    if CHIEF_ID in worker_id or worker_id in _RESERVED_IDS or not _WORKER_ID.fullmatch(
        worker_id
    ):
        raise ClusterError(
            f"Unusable worker id {worker_id!r}: use letters, digits, '.', '_' or '-' "
            f"(at most 64, starting with a letter or digit), not containing "
            f"{CHIEF_ID!r} and other than {', '.join(map(repr, _RESERVED_IDS))}; e.g. "
            f"'worker0'."
        )


def cluster_environment(
    role: str, worker_id: str | None = None, oracle_address: str | None = None
) -> dict[str, str]:
    """Keras Tuner's variables for ``--role``, ``--worker-id`` and ``--oracle-address``.

    Args:
        role: ``"chief"`` or ``"worker"``.
        worker_id: The worker's own id, unique in the search (workers only). Restarting
            a worker with the same id makes it rerun its unfinished trial. Defaults to
            None.
        oracle_address: ``HOST:PORT``. For the chief, the interface and port its oracle
            listens on (``0.0.0.0:PORT`` for every interface); for a worker, where the
            chief is reached. Defaults to None.

    Returns:
        ``KERASTUNER_TUNER_ID``, ``KERASTUNER_ORACLE_IP`` and
        ``KERASTUNER_ORACLE_PORT``.

    Raises:
        ClusterError: For an unknown role, a missing or misplaced option, a bad address
            or a bad worker id.
    """
    if role not in ROLES:
        raise ClusterError(f"Unknown role {role!r}; allowed: {', '.join(ROLES)}.")
    if oracle_address is None:
        raise ClusterError(
            f"--role {role} needs --oracle-address HOST:PORT (the chief's oracle)."
        )
    host, port = parse_oracle_address(oracle_address)
    if role == "chief":
        if worker_id is not None:
            raise ClusterError(
                f"--worker-id is for workers; the chief's id is always {CHIEF_ID!r}. "
                f"Drop --worker-id, or use --role worker."
            )
        tuner_id = CHIEF_ID
    else:
        if not worker_id:
            raise ClusterError(
                "--role worker needs --worker-id, unique in the search (e.g. worker0)."
            )
        _check_worker_id(worker_id)
        tuner_id = worker_id
    return {_TUNER_ID: tuner_id, _ORACLE_IP: host, _ORACLE_PORT: str(port)}


def set_cluster_environment(
    role: str | None,
    worker_id: str | None = None,
    oracle_address: str | None = None,
    environ: MutableMapping[str, str] | None = None,
) -> Cluster:
    """Sets Keras Tuner's variables from the command-line options; returns the cluster.

    With no ``role`` the variables are left as they are (they may have been set by
    hand). Options never silently override a different value already set.

    Args:
        role: ``"chief"``, ``"worker"`` or None.
        worker_id: See `cluster_environment`. Defaults to None.
        oracle_address: See `cluster_environment`. Defaults to None.
        environ: Where to set them; None means ``os.environ``. Defaults to None.

    Returns:
        The `Cluster` that the variables now describe.

    Raises:
        ClusterError: For options without ``--role``, options that contradict
            variables already set, or anything `cluster_environment` refuses.
    """
    environ = os.environ if environ is None else environ
    if role is None:
        if worker_id is not None or oracle_address is not None:
            raise ClusterError(
                "--worker-id and --oracle-address need --role chief or --role worker."
            )
        return read_cluster(environ)

    wanted = cluster_environment(role, worker_id, oracle_address)
    clashes = [
        f"{name}={environ[name]!r} (the options say {value!r})"
        for name, value in wanted.items()
        if environ.get(name, "").strip() not in ("", value)
    ]
    if clashes:
        raise ClusterError(
            f"The options contradict variables already set: {'; '.join(clashes)}. "
            f"Unset the variables, or drop the options."
        )
    environ.update(wanted)
    return read_cluster(environ)


def check_oracle_port(cluster: Cluster) -> None:
    """On the chief: refuses a port that is already taken, before any run is created.

    Keras Tuner would find out only when the search starts, after the search run and the
    experiment are made.

    Args:
        cluster: This process's `Cluster`; only the chief's port is checked.

    Raises:
        ClusterError: When the chief cannot listen on its oracle address.
    """
    if not cluster.is_chief:
        return

    host = cluster.oracle_host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, cluster.oracle_port))
        except OSError as error:
            raise ClusterError(
                f"The chief cannot listen on {cluster.oracle_address} ({error}). Pick "
                f"another port, or an address of this machine (0.0.0.0 for all), in "
                f"--oracle-address."
            ) from None


def check_store(cluster: Cluster, tracking_uri: str) -> None:
    """Warns when several processes would share a store that is not a server.

    A chief and its workers each write to the store; a SQLite file or a local folder
    reached by several processes gives "database is locked" errors, and its artifacts
    are out of reach of other machines. `mlflow server` in front of the database is
    the shared store (see the README).

    Args:
        cluster: This process's `Cluster`; a single process is never warned.
        tracking_uri: The resolved tracking URI.
    """
    if cluster.role == "single":
        return
    scheme = tracking_uri.partition(":")[0].lower()
    server = scheme in ("http", "https", "databricks")
    database = "sql" in scheme and not scheme.startswith("sqlite")
    if not (server or database):
        logger.warning(
            "%s %s writes to %s directly: several processes on one SQLite file or "
            "folder can fail with 'database is locked'. Start `mlflow server` and pass "
            "its http://HOST:PORT as --tracking-uri to the chief and every worker",
            cluster.role.capitalize(), cluster.tuner_id, tracking_uri,
        )


def wait_for_chief(
    cluster: Cluster, tracking_uri: str, experiment: str, timeout: float
) -> None:
    """On a worker: waits until the chief's oracle answers and its experiment exists.

    The chief creates the experiment and the search run before it starts its oracle, so
    once the oracle answers they are there: a worker never creates either.

    Args:
        cluster: A worker's `Cluster`.
        tracking_uri: The tracking URI the worker was given.
        experiment: The experiment's name.
        timeout: Seconds to wait for the oracle.

    Raises:
        ClusterError: When no oracle answers within ``timeout``, or the experiment is
            not in the store (the worker was given another store or experiment).
    """
    import grpc
    from mlflow.tracking import MlflowClient

    logger.info(
        "Worker %s: waiting up to %.0f s for the chief's oracle at %s",
        cluster.tuner_id, timeout, cluster.oracle_address,
    )
    channel = grpc.insecure_channel(cluster.oracle_address)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        raise ClusterError(
            f"Worker {cluster.tuner_id!r}: no chief answered at "
            f"{cluster.oracle_address} within {timeout:g} s. Start the chief first "
            f"(--role chief with the same --oracle-address), check the address and "
            f"firewall, or raise --chief-timeout."
        ) from None
    finally:
        channel.close()

    if MlflowClient(tracking_uri).get_experiment_by_name(experiment) is None:
        raise ClusterError(
            f"Worker {cluster.tuner_id!r}: the chief is up, but experiment "
            f"{experiment!r} is not in the store {tracking_uri}. Give the worker the "
            f"chief's --tracking-uri and --experiment."
        )


def join_search(
    tracker,
    config: SearchConfig,
    cluster: Cluster,
    state_file: Path,
    run_tags: dict[str, str],
    timeout: float | None = None,
) -> str:
    """On a worker: the chief's search run, checked; its trials will nest under it.

    The run's id is ``config.parent_run_id`` when given, else read from the chief's
    state file in the shared tuner folder (waiting, bounded, for a shared file system
    to show it). A given id must be the one in the state file: the worker then refuses
    to join any other search.

    Args:
        tracker: The worker's `contrastive.tracking.Tracker`.
        config: The worker's settings.
        cluster: The worker's `Cluster`.
        state_file: ``<tuner_dir>/<experiment>/mlflow_search.json``.
        run_tags: The worker's search tags (dataset and search-space digests).
        timeout: Seconds to wait for the chief's files; None means
            ``config.chief_timeout``. Defaults to None.

    Returns:
        The search run's id.

    Raises:
        ClusterError: When the tuner folder is not the chief's, the run is not a
            running search of this experiment, or the worker's settings differ from
            the chief's.
    """
    timeout = config.chief_timeout if timeout is None else timeout
    folder = state_file.parent
    oracle_file = folder / "oracle.json"
    deadline = time.monotonic() + timeout
    while not (state_file.is_file() and oracle_file.is_file()):
        if time.monotonic() >= deadline:
            raise ClusterError(
                f"Worker {cluster.tuner_id!r}: the chief is up, but its files "
                f"({state_file.name}, {oracle_file.name}) are not in {folder} after "
                f"{timeout:g} s. The chief and every worker need the same tuner "
                f"folder (--tuner-dir on a shared file system, e.g. NFS): the chief "
                f"reads the workers' checkpoints from it."
            )
        time.sleep(_POLL_S)

    recorded = json.loads(state_file.read_text()).get("parent_run_id")
    run_id = config.parent_run_id or recorded
    if config.parent_run_id and recorded and config.parent_run_id != recorded:
        raise ClusterError(
            f"Worker {cluster.tuner_id!r} was given --parent-run-id "
            f"{config.parent_run_id}, but the chief's search in {folder} is run "
            f"{recorded}. Pass the chief's run id, or the tuner folder of that search."
        )
    if not run_id or not tracker.run_exists(run_id):
        raise ClusterError(
            f"Worker {cluster.tuner_id!r}: search run {run_id!r} is not in experiment "
            f"{config.experiment!r} of {tracker.tracking_uri}. Give the worker the "
            f"chief's --tracking-uri and --experiment."
        )

    run = tracker.client.get_run(run_id)
    if run.info.status != "RUNNING":
        raise ClusterError(
            f"Worker {cluster.tuner_id!r}: search run {run_id} is {run.info.status}; "
            f"that search is over. Start a chief for a new search first."
        )
    differences = _differences(run, config, run_tags)
    if differences:
        raise ClusterError(
            f"Worker {cluster.tuner_id!r} cannot join search run {run_id}: its "
            f"settings differ from the chief's ({'; '.join(differences)}). Start every "
            f"worker with the chief's options."
        )
    logger.info("Worker %s joins search run %s", cluster.tuner_id, run_id)
    return run_id


def _differences(run, config: SearchConfig, run_tags: dict[str, str]) -> list[str]:
    """``name 'chief' -> 'worker'`` for each setting that differs."""
    mine = {
        name: str(value)
        for name, value in config.fixed_params().items()
        if name not in _PATH_PARAMS
    }
    theirs = run.data.params
    names = sorted(
        name for name in set(mine) | set(theirs)
        if name not in _PATH_PARAMS and name != "max_trials"
    )
    found = [
        f"{name} {theirs.get(name, '(unset)')!r} -> {mine.get(name, '(unset)')!r}"
        for name in names
        if theirs.get(name) != mine.get(name)
    ]
    for name in _SAME_TAGS:
        chief, worker = run.data.tags.get(name, "?"), run_tags.get(name, "?")
        if chief != worker:
            found.append(f"{name} {chief[:12]!r} -> {worker[:12]!r}")
    return found


@dataclasses.dataclass(frozen=True)
class WorkerResult:
    """What a worker did: the trials it ran, in whose search.

    Args:
        tracking_uri: The MLflow store.
        experiment: The experiment's name.
        parent_run_id: The chief's search run.
        tuner_id: The worker's id.
        trial_ids: Keras Tuner's ids of the trials run under this worker id.
    """

    tracking_uri: str
    experiment: str
    parent_run_id: str
    tuner_id: str
    trial_ids: list


def worker_result(tracker, cluster: Cluster, parent_run_id: str) -> WorkerResult:
    """The `WorkerResult` of a worker whose search has ended, read from MLflow.

    Args:
        tracker: The worker's `contrastive.tracking.Tracker`.
        cluster: The worker's `Cluster`.
        parent_run_id: The search run it joined.

    Returns:
        The trials nested under ``parent_run_id`` whose tag ``tuner_id`` is this
        worker's, including those of an earlier process with the same id.
    """
    trial_ids = sorted({
        run.data.tags["trial_id"]
        for run in tracker.child_runs(parent_run_id)
        if "trial_id" in run.data.tags
        and run.data.tags.get("tuner_id") == cluster.tuner_id
    })
    logger.info(
        "Worker %s is done: it ran trials %s; the chief picks the champion",
        cluster.tuner_id, ", ".join(trial_ids) or "(none)",
    )
    return WorkerResult(
        tracking_uri=tracker.tracking_uri,
        experiment=tracker.experiment_name,
        parent_run_id=parent_run_id,
        tuner_id=cluster.tuner_id,
        trial_ids=trial_ids,
    )


def make_strategy(name: str) -> Any:
    """The `tf.distribute.Strategy` that trains each trial, or None.

    ``mirrored`` replicates the model on every visible GPU, or, where there is none, on
    every logical CPU device (one unless they were configured, as the tests do). The
    global batch is split between the replicas, so each replica's contrastive losses
    see only its own share of the batch (fewer negatives per anchor).

    A process gets one `MirroredStrategy`, made on the first call and returned by the
    later ones: a second one over the same devices makes TensorFlow's collective ops
    fail ("Shape mismatch in the collective instance"), while one strategy trains any
    number of models.

    Args:
        name: ``"none"`` or ``"mirrored"``.

    Returns:
        None for ``"none"``, else a `tf.distribute.MirroredStrategy`.

    Raises:
        ConfigError: For an unknown name.
    """
    if name not in STRATEGIES:
        raise ConfigError(
            f"Unknown strategy {name!r}; allowed: {', '.join(STRATEGIES)}."
        )
    if name == "none":
        return None
    if name in _STRATEGIES:
        return _STRATEGIES[name]

    import tensorflow as tf

    devices = [device.name for device in tf.config.list_logical_devices("GPU")]
    if not devices:
        devices = [device.name for device in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices)
    logger.info(
        "MirroredStrategy: %d replicas on %s", strategy.num_replicas_in_sync,
        ", ".join(devices),
    )
    if strategy.num_replicas_in_sync == 1:
        logger.warning("--strategy mirrored found one device only: no speed-up")
    _STRATEGIES[name] = strategy
    return strategy


def stop_on_sigterm() -> None:
    """Turns SIGTERM into Ctrl-C: a stopped process closes its runs as KILLED.

    Schedulers and ``kill`` stop processes with SIGTERM, which would end Python without
    running any cleanup; as a `KeyboardInterrupt` it unwinds like Ctrl-C.
    """

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)

