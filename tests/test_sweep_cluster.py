"""A sweep survives its driver being killed and a Ray node dying (issue 11).

- A driver killed with SIGKILL mid-sweep leaves no process of its local Ray behind (they
  listened on loopback only), and the next run closes the MLflow runs it left RUNNING.
- The next run also ends leftovers named in ``ray_local.json`` when the watchdog could not,
  and refuses to drive a sweep that a live process drives.
- On a two-node Ray cluster on this host (``ray.cluster_utils.Cluster``) with a real MLflow
  tracking server, removing the worker node mid-trial makes Tune retry that trial on the
  head node, where the trainer resumes from its checkpoint on the shared storage; the sweep
  finishes with exactly one MLflow run per trial, none RUNNING.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

pytest.importorskip("ray")
pytest.importorskip("mlflow")
psutil = pytest.importorskip("psutil")

import ray  # noqa: E402
import ray.cloudpickle  # noqa: E402
from test_sweep_run import tiny_overrides, trial_runs, write_spec  # noqa: E402

from ajepa.sweep import local_ray  # noqa: E402
from ajepa.sweep.errors import SpecError  # noqa: E402
from ajepa.sweep.runner import RunOptions, run_sweep  # noqa: E402
from ajepa.sweep.spec import load_sweep  # noqa: E402
from ajepa.train.callbacks import Callback  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def data_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("data-cache")


@pytest.fixture(autouse=True)
def no_ray_in_this_process():
    """These tests start their own Ray (or none); leave none behind for the next module."""
    if ray.is_initialized():
        ray.shutdown()
    yield
    if ray.is_initialized():
        ray.shutdown()


def wait_for(predicate, timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def live(procs: list[tuple[int, float, str]]) -> list[tuple[int, float, str]]:
    return [p for p in procs if local_ray.alive(p[0], p[1])]


def listening(pid: int) -> list[str]:
    try:
        return [c.laddr.ip for c in psutil.Process(pid).net_connections("inet") if c.status == psutil.CONN_LISTEN]
    except psutil.Error:
        return []


def logged_steps(trial_dir: Path) -> int:
    path = trial_dir / "metrics.jsonl"
    return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.is_file() else 0


# --------------------------------------------------------------------------- a killed driver


@pytest.mark.slow
def test_sigkilled_driver_leaves_no_ray_process_and_next_run_closes_its_runs(tmp_path, data_cache):
    spec = write_spec(tmp_path, "killed", control=False, max_concurrent_trials=2,
                      overrides=tiny_overrides(data_cache, **{"optim.steps": 2000, "checkpoint_every": 5}),
                      axes=[{"name": "loss", "key": "loss.kind", "values": ["l2", "l1"]}], seeds=[0])
    sweep = load_sweep(spec)
    log = open(tmp_path / "driver.log", "w")
    driver = subprocess.Popen([sys.executable, "-m", "ajepa.cli.sweep", str(spec), "--num-cpus", "2", "--quiet"],
                              stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        wait_for(lambda: all(logged_steps(sweep.trial_dir(t.key)) >= 2 for t in sweep.trials) or driver.poll(),
                 120, "both trials to log steps")
        assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
        procs = [(p.pid, p.create_time(), p.name()) for p in psutil.Process(driver.pid).children(recursive=True)]
        names = {name for _, _, name in procs}
        assert {"gcs_server", "raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= names, names
        exposed = {(name, ip) for pid, _, name in procs for ip in listening(pid) if ip not in LOOPBACK}
        assert not exposed, f"Ray processes listen on non-loopback addresses: {exposed}"
        assert any(listening(pid) for pid, _, _ in procs)  # the check sees the servers at all
    finally:
        driver.kill()
        driver.wait()
    # gone with the driver (the watchdog), without any further run
    wait_for(lambda: not live(procs), 30, f"the killed driver's Ray processes to end: {live(procs)}")

    from mlflow.tracking import MlflowClient

    state = json.loads((sweep.sweep_dir / "sweep.json").read_text())
    client = MlflowClient(sweep.tracking_uri)
    runs = trial_runs(sweep, state["parent_run_id"]) + [client.get_run(state["parent_run_id"])]
    assert [r.info.status for r in runs] == ["RUNNING"] * 3  # what the kill left

    # the next run is refused (the spec changed), but first closes what the dead driver left open
    changed = yaml.safe_load(spec.read_text())
    changed["overrides"]["optim.steps"] = 1999
    spec.write_text(yaml.safe_dump(changed, sort_keys=False))
    with pytest.raises(SpecError, match="different spec"):
        run_sweep(load_sweep(spec), RunOptions(verbose=0))
    runs = trial_runs(sweep, state["parent_run_id"]) + [client.get_run(state["parent_run_id"])]
    assert [r.info.status for r in runs] == ["KILLED"] * 3
    assert all(f"pid {driver.pid}" in r.data.tags["ajepa.stop_reason"] for r in runs)


# --------------------------------------------------------------------------- the records, without Ray


def test_next_run_ends_leftovers_of_a_dead_driver_and_only_those(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = subprocess.Popen(["sleep", "120"])
    bystander = subprocess.Popen(["sleep", "120"])   # listed with another start time: a reused pid
    try:
        record = {"driver": dead.pid, "driver_create_time": None, "host": socket.gethostname(),
                  "session_dir": "/tmp/ray/session_x",
                  "procs": [[leftover.pid, psutil.Process(leftover.pid).create_time(), "ray::DashboardAgent"],
                            [bystander.pid, psutil.Process(bystander.pid).create_time() - 100, "raylet"]]}
        (tmp_path / local_ray.PROCS_FILE).write_text(json.dumps(record))
        assert local_ray.clean_leftovers(tmp_path) == 1
        leftover.wait(timeout=10)  # ended (psutil may have reaped it already: no return code to check)
        assert not local_ray.alive(leftover.pid, record["procs"][0][1])
        assert bystander.poll() is None
        assert not (tmp_path / local_ray.PROCS_FILE).exists()
    finally:
        for proc in (leftover, bystander):
            proc.kill()
            proc.wait()


def test_a_live_driver_is_refused_a_dead_one_taken_over(tmp_path):
    other = subprocess.Popen(["sleep", "120"])
    try:
        (tmp_path / local_ray.DRIVER_FILE).write_text(json.dumps(
            {"pid": other.pid, "create_time": psutil.Process(other.pid).create_time(), "host": socket.gethostname()}))
        with pytest.raises(SpecError, match=f"already running .*pid {other.pid}"):
            local_ray.check_driver(tmp_path)
    finally:
        other.kill()
        other.wait()
    previous = local_ray.check_driver(tmp_path)
    assert previous is not None and previous.pid == other.pid
    local_ray.claim_driver(tmp_path)
    assert local_ray.check_driver(tmp_path) is None    # this process: an earlier run in it ended
    local_ray.release_driver(tmp_path)
    assert not (tmp_path / local_ray.DRIVER_FILE).exists()


# --------------------------------------------------------------------------- a node dies


STALL_AT = 12   # the trial on the worker node stops here (its step-10 checkpoint is written) until the node is removed


class StallOnNode(Callback):
    """Records where and from which step each attempt of a trial starts; on ``node`` it stalls
    at STALL_AT (and says so in ``<key>.stalled``) so the test can remove that node mid-trial."""

    def __init__(self, folder: Path, node: str, key: str):
        self.folder, self.node, self.key = folder, node, key

    def on_start(self, trainer):
        here = ray.get_runtime_context().get_node_id()
        with open(self.folder / f"{self.key}.starts", "a") as fh:
            fh.write(json.dumps({"step": trainer.step, "node": here}) + "\n")

    def on_log(self, step, metrics):
        if step == STALL_AT and ray.get_runtime_context().get_node_id() == self.node:
            (self.folder / f"{self.key}.stalled").touch()
            while True:  # until the node (and this process) is gone
                time.sleep(0.2)


class StallFactory:
    def __init__(self, folder: Path, node: str):
        self.folder, self.node = folder, node

    def __call__(self, trial):
        return StallOnNode(self.folder, self.node, trial.key)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """A real MLflow tracking server on 127.0.0.1 with its own artifact store."""
    port = free_port()
    log = open(tmp_path / "mlflow-server.log", "w")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        # no background job runner (its ~8 consumer processes): a tracking store is all a sweep needs
        env={**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    uri = f"http://127.0.0.1:{port}"

    def healthy():
        try:
            return urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200
        except OSError:
            return server.poll() is not None  # exited: fail below instead of waiting
    try:
        wait_for(healthy, 60, "the MLflow server")
        assert server.poll() is None, (tmp_path / "mlflow-server.log").read_text()[-2000:]
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.mark.slow
def test_two_node_sweep_survives_losing_the_worker_node(tmp_path, data_cache, mlflow_server, monkeypatch):
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    # both nodes on 127.0.0.1, as ajepa's local Ray (ajepa.sweep.local_ray): with only
    # node_ip_address, the GCS would bind loopback but be advertised at the routable IP
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)

    # fast node-death detection: the GCS declares a silent raylet dead after ~1.5 s, not ~30 s
    fast = {"health_check_period_ms": 500, "health_check_failure_threshold": 3, "health_check_timeout_ms": 500}
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False, "_system_config": fast})
    try:
        worker = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        ray.init(address=cluster.address, log_to_driver=False)
        head_id = ray.get_runtime_context().get_node_id()
        assert {n["NodeID"] for n in ray.nodes() if n["Alive"]} == {head_id, worker.node_id}
        spec = write_spec(tmp_path, "cluster", control=False, max_concurrent_trials=2, max_failures=2,
                          overrides=tiny_overrides(data_cache, **{"optim.steps": 30, "checkpoint_every": 5}),
                          axes=[{"name": "loss", "key": "loss.kind", "values": ["l2", "l1"]}], seeds=[0])
        sweep = load_sweep(spec, tracking_uri=mlflow_server)
        folder = tmp_path / "marks"
        folder.mkdir()

        def remove_worker_when_stalled():
            wait_for(lambda: list(folder.glob("*.stalled")), 90, "a trial to stall on the worker node")
            cluster.remove_node(worker)
        killer = threading.Thread(target=remove_worker_when_stalled, daemon=True)
        killer.start()
        outcome = run_sweep(sweep, RunOptions(verbose=0, callbacks=(StallFactory(folder, worker.node_id),)))
        killer.join(timeout=5)
        assert not killer.is_alive()
        assert [n["NodeID"] for n in ray.nodes() if n["Alive"]] == [head_id]

        assert outcome.exit_code == 0, outcome.failures
        assert outcome.counts["finished"] == 2
        [stalled] = [p.name.removesuffix(".stalled") for p in folder.glob("*.stalled")]
        starts = [json.loads(line) for line in (folder / f"{stalled}.starts").read_text().splitlines()]
        # first attempt on the worker from step 0; the retry on the head resumes from the step-10 checkpoint
        assert [s["node"] for s in starts] == [worker.node_id, head_id]
        assert starts[0]["step"] == 0 and starts[1]["step"] == 10
        rows = [json.loads(line) for line in (sweep.trial_dir(stalled) / "metrics.jsonl").read_text().splitlines()]
        assert rows[-1]["step"] == 30

        runs = trial_runs(sweep, outcome.parent_run_id)   # through the server
        assert sorted(r.data.tags["ajepa.trial_id"] for r in runs) == sorted(t.key for t in sweep.trials)
        assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"]
        by_key = {r.data.tags["ajepa.trial_id"]: r for r in runs}
        assert by_key[stalled].data.tags["ajepa.attempts"] == "2"
        from mlflow.tracking import MlflowClient

        client = MlflowClient(mlflow_server)
        assert client.get_run(outcome.parent_run_id).info.status == "FINISHED"
        losses = sorted(m.step for m in client.get_metric_history(by_key[stalled].info.run_id, "train/loss"))
        assert losses == list(range(1, 31))   # steps 11-12 of the lost attempt are not logged twice
        assert {a.path for a in client.list_artifacts(by_key[stalled].info.run_id)} >= {"config.yaml"}
    finally:
        ray.shutdown()
        cluster.shutdown()
