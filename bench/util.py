"""Small helpers shared by the harness: ports, child processes, memory, Maildirs.

Every process the harness starts is registered with `REGISTRY`; `REGISTRY.stop_all()`
runs from a `finally` in `bench.__main__` and again from `atexit`, so nothing is
left running even when a scenario fails.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import resource
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


def children_of(pid: int) -> list[int]:
    """Direct children of a process, from /proc."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 (ppid) comes after the parenthesised command name.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            out.append(int(entry.name))
    return out


def count_files(directory: Path) -> int:
    """Regular entries in a directory (0 when it does not exist yet)."""
    try:
        with os.scandir(directory) as it:
            return sum(1 for _ in it)
    except FileNotFoundError:
        return 0


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
        atexit.register(self.stop_all)

    def add_process(self, proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        self._procs.append(proc)
        return proc

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
