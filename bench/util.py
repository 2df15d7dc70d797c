"""What every scenario needs from the machine: ports, child processes, memory, CPU, load.

Every process the harness starts is registered with `REGISTRY`; `REGISTRY.stop_all()`
runs from a `finally` in `bench.__main__` and again from `atexit`, so nothing is
left running even when a scenario fails. `REGISTRY.started` keeps the pid of
every server the run started (ours and the peers' masters), so the JSON can
say which processes were used and a test can check none outlived the run.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

BENCH_ROOT = Path("/var/tmp/mailplat-bench")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now (never below 1024)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port > 1024:
            return port


def wait_port(
    port: int, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until something accepts on 127.0.0.1:port (and the process is alive)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def wait_banner(port: int, timeout: float = 30.0) -> float:
    """Connect, read the first line, close; returns seconds to the banner."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout) as s:
        s.settimeout(timeout)
        data = b""
        while b"\n" not in data:
            chunk = s.recv(512)
            if not chunk:
                raise ConnectionError("closed before a banner")
            data += chunk
    return time.monotonic() - start


def raise_nofile(target: int = 8192) -> None:
    """Raise the soft open-files limit (children inherit it) for the idle-sessions scenario."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(max(soft, target), hard) if hard != resource.RLIM_INFINITY else max(soft, target)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def proc_status_kb(pid: int, field: str = "VmRSS") -> int:
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM), 0 when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def pss_kb(pid: int) -> int:
    """Proportional set size of a process (shared pages divided among sharers), kB."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on; the command name may hold spaces and ')'."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def children_of(pid: int) -> list[int]:
    """Direct children of a process, from /proc."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        # fields[1] is field 4 of stat(5), the ppid.
        if fields is not None and int(fields[1]) == pid:
            out.append(int(entry.name))
    return out


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants, from one pass over /proc."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                parent[int(entry.name)] = int(fields[1])
    kids: dict[int, list[int]] = {}
    for child, ppid in parent.items():
        kids.setdefault(ppid, []).append(child)
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """user+sys CPU of a server: the process, its live descendants and the children it reaped.

    utime, stime, cutime, cstime (stat(5) fields 14-17) of every process in the
    tree: a worker that exits moves its time into its parent's cutime/cstime, so
    the sum only grows while the server runs (Postfix's master reaps its smtpd,
    cleanup and virtual processes; mailplat is one process with threads).
    """
    total = 0
    for p in process_tree(pid):
        fields = _stat_fields(p)
        if fields is not None:
            total += sum(int(x) for x in fields[11:15])
    return total / _TICK


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages (the machine is shared: every scenario records it)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return [-1.0, -1.0, -1.0]


def count_files(directory: Path) -> int:
    """Regular entries in a directory (0 when it does not exist yet)."""
    try:
        with os.scandir(directory) as it:
            return sum(1 for _ in it)
    except FileNotFoundError:
        return 0


def remove_tree(path: Path) -> None:
    """rm -rf: the big site leaves 400,000 directories, which rm removes in half the time
    shutil.rmtree takes; shutil is the fallback when rm is not there."""
    if not path.exists():
        return
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(["rm", "-rf", "--", str(path)], check=False, timeout=1800)
    shutil.rmtree(path, ignore_errors=True)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll until predicate() is true; False on timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class Registry:
    """Everything the harness started: child processes and stop callbacks, stopped once each."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []
        self._stops: list[tuple[str, Callable[[], None]]] = []
        self.started: list[dict[str, object]] = []
        atexit.register(self.stop_all)

    def add_process(self, proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        self._procs.append(proc)
        return proc

    def note_server(self, name: str, pid: int) -> None:
        """Remember a server's pid for the JSON (and the check that nothing outlived the run)."""
        self.started.append({"name": name, "pid": pid})

    def add_stop(self, name: str, stop: Callable[[], None]) -> None:
        self._stops.append((name, stop))

    def stop_process(self, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
        """SIGTERM, wait, then SIGKILL; forget the process."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc in self._procs:
            self._procs.remove(proc)

    def forget(self, name: str) -> None:
        """Drop the stop callbacks registered under name (a peer started by hand stays up)."""
        self._stops = [item for item in self._stops if item[0] != name]

    def run_stop(self, name: str) -> None:
        """Run and forget the stop callback registered under name."""
        for item in list(self._stops):
            if item[0] == name:
                self._stops.remove(item)
                with contextlib.suppress(Exception):
                    item[1]()

    def stop_all(self) -> None:
        for proc in list(reversed(self._procs)):
            with contextlib.suppress(Exception):
                self.stop_process(proc)
        while self._stops:
            _name, stop = self._stops.pop()
            with contextlib.suppress(Exception):
                stop()


REGISTRY = Registry()


def run(
    cmd: list[str], timeout: float = 600.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, capturing text output; raise with its output on failure."""
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and res.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} exited {res.returncode}:\n{res.stdout[-2000:]}{res.stderr[-2000:]}"
        )
    return res
