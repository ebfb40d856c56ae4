"""One driver per sweep folder, and the local Ray it starts: loopback only, gone with it.

**The driver record.** ``<sweep dir>/driver.json`` names the process running the sweep
(pid, start time, host). A second ``ajepa-sweep`` of the same sweep on the same host is
refused while that process lives. When it is dead but the record is still there, the
previous driver was killed (SIGKILL, OOM, a lost login node): the runs it left RUNNING
in MLflow -- the parent and the trials it was running -- are closed ``KILLED`` with
``ajepa.stop_reason`` by the next run, whatever that run then does (a resume reopens them).

**The local Ray.** Ray started by ajepa (no ``--address``) gets the node IP 127.0.0.1, so
every server it starts -- GCS, raylet, object manager, the agents, the workers -- listens on
loopback only (by default Ray 2.60 picks the host's routable IP and the C++ servers bind
every interface). ``ray.init`` maps an explicit ``_node_ip_address="127.0.0.1"`` back to the
routable IP, so the switch used is Ray's own for single-machine clusters
(``ray._private.ray_constants.ENABLE_RAY_CLUSTER``, the ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``
setting), set in the driver only. A cluster that other machines join is started with
``ray start --head --node-ip-address ...`` and joined with ``--address``.

GCS and raylet die with the driver (Ray's ``PR_SET_PDEATHSIG``), but the raylet's agents
(``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) are re-parented to pid 1 and can stay.
So a watchdog process (``python -m ajepa.sweep.local_ray``; no Ray, no torch) follows the driver:
it keeps a list of the driver's descendants (pid + start time) in
``<sweep dir>/ray_local.json`` and, once the driver is gone, terminates whatever of that
list is still alive. If the watchdog itself was killed too, the next run of the sweep
reads the same file and ends the leftovers before starting its own Ray. Only processes
whose pid *and* start time match the list are touched.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DRIVER_FILE = "driver.json"
PROCS_FILE = "ray_local.json"
POLL_S = 0.5          # how often the watchdog checks the driver
SNAPSHOT_S = 1.0      # how often it lists the driver's descendants
GRACE_S = 3.0         # SIGTERM, then SIGKILL after this long


def _atomic_write(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _create_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def alive(pid: int, create_time: float | None) -> bool:
    """The process ``pid`` exists and is the one started at ``create_time`` (not a reused pid)."""
    now = _create_time(int(pid))
    return now is not None and (create_time is None or abs(now - float(create_time)) < 0.01)


# --------------------------------------------------------------------------- the driver record


@dataclass
class PreviousDriver:
    pid: int
    host: str
    started: float | None


def check_driver(sweep_dir: Path) -> PreviousDriver | None:
    """Refuse while another live process drives this sweep; return the dead previous driver, if any.

    ``None``: no record, or the record is this very process (an earlier run in it ended).
    """
    from ajepa.sweep.errors import SpecError

    record = _read(sweep_dir / DRIVER_FILE)
    if not record or "pid" not in record:
        return None
    pid, host = int(record["pid"]), str(record.get("host", ""))
    if pid == os.getpid() and host == socket.gethostname():
        return None
    if host == socket.gethostname() and alive(pid, record.get("create_time")):
        raise SpecError(
            f"{sweep_dir}: this sweep is already running (ajepa-sweep pid {pid} on this host, "
            f"{DRIVER_FILE}). Wait for it, stop it (Ctrl-C resumes later), or give this sweep another name."
        )
    if host != socket.gethostname():
        log.warning("%s was last driven from host %s (pid %s); assuming that driver is gone",
                    sweep_dir, host, pid)
    return PreviousDriver(pid, host, record.get("started"))


def claim_driver(sweep_dir: Path) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(sweep_dir / DRIVER_FILE, {"pid": os.getpid(), "create_time": _create_time(os.getpid()),
                                            "host": socket.gethostname(), "started": time.time()})


def release_driver(sweep_dir: Path) -> None:
    record = _read(sweep_dir / DRIVER_FILE)
    if record and int(record.get("pid", -1)) == os.getpid():
        (sweep_dir / DRIVER_FILE).unlink(missing_ok=True)


def close_dead_driver_runs(state: dict | None, previous: PreviousDriver) -> int:
    """Close ``KILLED`` what a killed driver left RUNNING: its parent run and their children."""
    if not state or not state.get("parent_run_id"):
        return 0
    from ajepa.contracts import TAG_STOP
    from ajepa.sweep import tracking

    reason = (f"the sweep driver (pid {previous.pid} on {previous.host or '?'}) died without closing this run; "
              "re-run the sweep to resume it")
    n = 0
    try:
        client = tracking.client_for(state["tracking_uri"])
        parent = state["parent_run_id"]
        runs = tracking.child_runs(client, state["experiment_id"], parent) + [client.get_run(parent)]
        for run in runs:
            if run.info.status == "RUNNING":
                tracking.set_tags(client, run.info.run_id, {TAG_STOP: reason})
                client.set_terminated(run.info.run_id, "KILLED")
                n += 1
    except Exception as err:  # an unreachable or changed store must not block the next run
        log.warning("could not close the runs a killed sweep driver left RUNNING: %s", err)
    if n:
        log.warning("closed %d MLflow run(s) left RUNNING by a killed sweep driver (pid %s)", n, previous.pid)
    return n


# --------------------------------------------------------------------------- local Ray


@dataclass
class LocalRay:
    """What :func:`start` started; :func:`stop` ends it."""

    sweep_dir: Path
    watchdog: subprocess.Popen | None


def terminate(procs: list[list]) -> int:
    """SIGTERM the listed ``[pid, create_time, name]`` still alive, SIGKILL them after GRACE_S."""
    import psutil

    live = []
    for pid, created, _name in procs:
        if int(pid) != os.getpid() and alive(pid, created):
            try:
                proc = psutil.Process(int(pid))
                proc.send_signal(signal.SIGTERM)
                live.append(proc)
            except psutil.Error:
                pass
    _, rest = psutil.wait_procs(live, timeout=GRACE_S)
    for proc in rest:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(rest, timeout=GRACE_S)
    return len(live)


def clean_leftovers(sweep_dir: Path) -> int:
    """End the Ray processes of an earlier local Ray of this sweep whose driver is dead."""
    record = _read(sweep_dir / PROCS_FILE)
    if not record or record.get("host") != socket.gethostname():
        return 0
    driver = int(record.get("driver", -1))
    if driver != os.getpid() and alive(driver, record.get("driver_create_time")):
        return 0  # still in use (check_driver refuses a second live driver before this)
    n = terminate(record.get("procs", []))
    if n:
        log.warning("ended %d Ray process(es) left by a killed sweep driver (pid %s, %s)",
                    n, driver, record.get("session_dir"))
    (sweep_dir / PROCS_FILE).unlink(missing_ok=True)
    return n


def start(sweep_dir: Path, num_cpus: float | None = None, num_gpus: float | None = None) -> LocalRay | None:
    """Start a local Ray on loopback, watched; ``None`` when Ray is already initialised (not ours)."""
    import ray
    from ray._private import ray_constants

    if ray.is_initialized():
        return None
    clean_leftovers(sweep_dir)
    ray_constants.ENABLE_RAY_CLUSTER = False   # node IP 127.0.0.1: every server binds loopback (module docstring)
    ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False)
    session = ray._private.worker._global_node.get_session_dir_path()
    return LocalRay(sweep_dir, _spawn_watchdog(sweep_dir, session))


def stop(handle: LocalRay | None) -> None:
    """Shut down a Ray that :func:`start` started, and its watchdog."""
    if handle is None:
        return
    import ray

    ray.shutdown()
    if handle.watchdog is not None and handle.watchdog.poll() is None:
        handle.watchdog.terminate()
        try:
            handle.watchdog.wait(timeout=10)
        except subprocess.TimeoutExpired:
            handle.watchdog.kill()
    (handle.sweep_dir / PROCS_FILE).unlink(missing_ok=True)


def _spawn_watchdog(sweep_dir: Path, session_dir: str) -> subprocess.Popen | None:
    me = os.getpid()
    record = {"driver": me, "driver_create_time": _create_time(me), "host": socket.gethostname(),
              "session_dir": session_dir, "procs": _descendants(me)}
    _atomic_write(sweep_dir / PROCS_FILE, record)   # the first list before the watchdog runs
    try:
        # its own session: a Ctrl-C or SIGKILL of the driver's process group does not reach it
        return subprocess.Popen([sys.executable, "-m", __name__, str(me), str(sweep_dir / PROCS_FILE)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, close_fds=True)
    except OSError as err:  # the next run still cleans up from the file
        log.warning("could not start the Ray watchdog: %s", err)
        return None


def _descendants(pid: int) -> list[list]:
    import psutil

    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    out = []
    for child in children:
        try:
            out.append([child.pid, child.create_time(), child.name()])
        except psutil.Error:
            pass
    return out


def watch(driver: int, record_path: Path) -> None:
    """The watchdog's loop: keep the driver's descendants listed; end them once the driver is gone."""
    record = _read(record_path) or {}
    created = record.get("driver_create_time")
    procs = {(p[0], p[1]): p for p in record.get("procs", [])}
    stop_now = []
    signal.signal(signal.SIGTERM, lambda *_: stop_now.append(1))  # the driver stopped Ray itself
    last_snapshot = 0.0
    while not stop_now and alive(driver, created):
        if time.monotonic() - last_snapshot >= SNAPSHOT_S:
            last_snapshot = time.monotonic()
            current = {(p[0], p[1]): p for p in _descendants(driver)}
            if set(current) - set(procs):
                # keep the ones that ended too: a pid with its start time is never someone else's
                procs.update(current)
                record["procs"] = list(procs.values())
                try:
                    _atomic_write(record_path, record)
                except OSError:
                    pass
        time.sleep(POLL_S)
    if stop_now:
        return
    terminate(list(procs.values()))
    record_path.unlink(missing_ok=True)


if __name__ == "__main__":  # the watchdog: python -m ajepa.sweep.local_ray DRIVER_PID RECORD_FILE
    watch(int(sys.argv[1]), Path(sys.argv[2]))
