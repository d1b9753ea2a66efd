"""A real Ray cluster of separate processes on this machine, started with ``ray start`` (a head and
worker nodes), for tests that connect with ``--address``.

Everything lives in one temporary folder: Ray's ``--temp-dir`` (sessions, sockets, logs) and a HOME
whose ``~/.ray/auth_token`` holds the cluster's token, so the user's ``~/.ray`` is never read or
written. Every port is picked free, so several such clusters (other people's, other tests') coexist.
Each ``ray start`` runs in a new process session; :meth:`LocalRayCluster.stop` ends exactly the
processes of those sessions (never ``ray stop``, which stops every Ray on the machine).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def ray_cli() -> str | None:
    """The ``ray`` command beside this Python (or on PATH), or None."""
    import sys

    here = Path(sys.executable).with_name("ray")
    return str(here) if here.is_file() else shutil.which("ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRayCluster:
    """``ray start --head`` plus ``ray start --address`` worker nodes, token authentication on.

    Nodes get their own loopback IP (127.0.0.1 for the head, 127.0.0.2, ... for workers): Ray Tune
    records the trial's ``node_ip``, so a test can tell on which node a trial ran."""

    def __init__(self, *, token: bool = True, cpus_per_node: int = 1):
        self.dir = Path(tempfile.mkdtemp(prefix="itt-ray-", dir="/tmp"))  # short: Ray's socket paths are limited
        self.home = self.dir / "home"
        self.token_file = self.home / ".ray" / "auth_token"
        self.token = secrets.token_hex(32) if token else None
        if token:
            self.token_file.parent.mkdir(parents=True)
            self.token_file.write_text(self.token)
            self.token_file.chmod(0o600)
        self.cpus = cpus_per_node
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.sessions: list[int] = []  # session ids (= the pid of each `ray start`)
        self.node_ips: list[str] = []

    def env(self, **extra) -> dict:
        """The environment of the cluster's processes: HOME in the temp folder, the auth mode."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(HOME=str(self.home), RAY_AUTH_MODE="token" if self.token else "disabled",
                   RAY_USAGE_STATS_ENABLED="0", **extra)
        return env

    def start_head(self) -> None:
        self._start(["--head", "--port", str(self.port), "--include-dashboard=false",
                     "--dashboard-port", str(free_port())], ip="127.0.0.1")

    def add_worker(self) -> None:
        self._start(["--address", self.address], ip=f"127.0.0.{len(self.node_ips) + 1}")

    def _start(self, args: list[str], ip: str) -> None:
        cmd = [ray_cli(), "start", *args, "--node-ip-address", ip, "--num-cpus", str(self.cpus),
               "--object-store-memory", str(80 * 1024 ** 2), "--dashboard-agent-listen-port", str(free_port()),
               "--temp-dir", str(self.dir / "ray"), "--disable-usage-stats"]
        p = subprocess.Popen(cmd, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
        self.sessions.append(p.pid)
        out, _ = p.communicate(timeout=90)
        if p.returncode != 0:
            raise RuntimeError(f"ray start failed ({p.returncode}):\n{out[-3000:]}")
        self.node_ips.append(ip)

    def pids(self) -> list[int]:
        """Every live process (zombies left out) of the sessions this cluster started."""
        out = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    state = (d / "stat").read_text().rpartition(")")[2].split()[0]
                    if os.getsid(int(d.name)) in self.sessions and state != "Z":
                        out.append(int(d.name))
                except (OSError, IndexError):  # gone meanwhile
                    pass
        return out

    def stop(self, grace_s: float = 2.0, timeout_s: float = 20.0) -> None:
        """SIGTERM to this cluster's processes; after ``grace_s``, SIGKILL to whatever is left (again, for
        processes a dying raylet started meanwhile) until none is; then remove the folder."""
        self._signal(signal.SIGTERM)
        deadline = time.time() + grace_s
        while self.pids() and time.time() < deadline:
            time.sleep(0.2)
        deadline = time.time() + timeout_s
        while self.pids() and time.time() < deadline:
            self._signal(signal.SIGKILL)
            time.sleep(0.3)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _signal(self, sig: int) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
