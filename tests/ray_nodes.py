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
        self._run(cmd)
        self.node_ips.append(ip)

    def _run(self, cmd: list[str]) -> None:
        """A `ray start` command in a process session of its own (what stop() ends)."""
        p = subprocess.Popen(cmd, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
        self.sessions.append(p.pid)
        out, _ = p.communicate(timeout=90)
        if p.returncode != 0:
            raise RuntimeError(f"ray start failed ({p.returncode}):\n{out[-3000:]}")

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


HEAD_IP, WORKER_IP = "10.77.0.1", "10.77.0.2"  # (each namespace pair has its own link: no clash between clusters)
LAPTOP_IP = "10.78.0.2"  # a third machine, no node of the cluster, routed to it through the head


def two_hosts_unavailable() -> str | None:
    """Why :class:`TwoHostRayCluster` cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "needs root (network and mount namespaces)"
    for tool in ("ip", "unshare", "mount"):
        if not shutil.which(tool):
            return f"needs the `{tool}` command (iproute2 / util-linux)"
    if not ray_cli():
        return "needs the `ray` command"
    name, d = f"itp{os.getpid()}", tempfile.mkdtemp(prefix="itt-probe-", dir="/tmp")
    steps = [["ip", "netns", "add", name], ["ip", "link", "add", f"{name}a", "type", "veth", "peer", "name", f"{name}b"],
             ["ip", "link", "set", f"{name}b", "netns", name],
             ["ip", "netns", "exec", name, "unshare", "-m", "-p", "-f", "--mount-proc", "--propagation", "private",
              "sh", "-c", f"mount -t tmpfs itt-probe {d} && touch {d}/x"]]
    try:
        for step in steps:  # (everything TwoHostRayCluster does, once)
            r = subprocess.run(step, capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                return f"`{' '.join(step[:4])} ...` fails here: {(r.stderr.strip().splitlines() or ['?'])[0]}"
        return None
    finally:
        subprocess.run(["ip", "link", "del", f"{name}a"], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


class TwoHostRayCluster(LocalRayCluster):
    """A head and a worker node as on two machines: each in a network namespace of its own (its own IP; a
    veth pair is the only link between them), the worker also in a mount namespace of its own in which
    ``head_only`` (a folder of the temp folder: the head's Ray folder and HOME, and whatever a test puts
    there) is an empty tmpfs: a folder on the head's own disk, which the worker does not see. ``shared``
    is seen by both, as a shared mount would be. Commands for the head's machine (the search driver) run
    with :meth:`on_head`. Needs root: see :func:`two_hosts_unavailable`."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.head_only, self.shared = self.dir / "head_only", self.dir / "shared"
        self.head_only.mkdir()
        self.shared.mkdir()
        if self.home.exists():  # the head's HOME (and token) on the head's disk only
            shutil.move(str(self.home), str(self.head_only / "home"))
        self.home = self.head_only / "home"
        self.token_file = self.home / ".ray" / "auth_token"
        self.ns = {"head": f"itt{os.getpid()}h", "worker": f"itt{os.getpid()}w"}
        self.port = 6379
        self.address = f"{HEAD_IP}:{self.port}"
        self._link()

    def _link(self) -> None:
        h, w = self.ns["head"], self.ns["worker"]
        for ns in (h, w):  # (left by a run of this pid that died before its stop)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        steps = [["netns", "add", h], ["netns", "add", w],
                 ["link", "add", f"{h}v", "type", "veth", "peer", "name", f"{w}v"],
                 ["link", "set", f"{h}v", "netns", h], ["link", "set", f"{w}v", "netns", w],
                 ["-n", h, "addr", "add", f"{HEAD_IP}/24", "dev", f"{h}v"],
                 ["-n", w, "addr", "add", f"{WORKER_IP}/24", "dev", f"{w}v"],
                 *[["-n", n, "link", "set", dev, "up"] for n in (h, w) for dev in ("lo", f"{n}v")]]
        for step in steps:
            subprocess.run(["ip", *step], check=True, capture_output=True)

    def on_laptop(self, cmd: list[str]) -> list[str]:
        """``cmd`` run on a third machine that is no node of the cluster (a user's laptop): a network namespace
        routed to the cluster through the head, its own disk view (``head_only`` hidden) and its own process
        table (the nodes' raylets are not its processes), the cluster's token in its HOME."""
        import shlex

        ns = self.ns.setdefault("laptop", f"itt{os.getpid()}c")
        if not Path(f"/run/netns/{ns}").exists():
            h, w = self.ns["head"], self.ns["worker"]
            for step in (["netns", "add", ns], ["link", "add", f"{ns}v", "type", "veth", "peer", "name", f"{h}c"],
                         ["link", "set", f"{ns}v", "netns", ns], ["link", "set", f"{h}c", "netns", h],
                         ["-n", ns, "addr", "add", f"{LAPTOP_IP}/24", "dev", f"{ns}v"],
                         ["-n", h, "addr", "add", "10.78.0.1/24", "dev", f"{h}c"],
                         ["-n", ns, "link", "set", "lo", "up"], ["-n", ns, "link", "set", f"{ns}v", "up"],
                         ["-n", h, "link", "set", f"{h}c", "up"], ["-n", ns, "route", "add", "10.77.0.0/24", "via", "10.78.0.1"],
                         ["-n", w, "route", "add", "10.78.0.0/24", "via", HEAD_IP]):
                subprocess.run(["ip", *step], check=True, capture_output=True)
            subprocess.run(["ip", "netns", "exec", h, "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)
        home = shlex.quote(str(self.home))
        script = (f"set -e; T=$(cat {home}/.ray/auth_token 2>/dev/null || true); "
                  f"mount -t tmpfs -o size=64m itt-laptop-disk {shlex.quote(str(self.head_only))}; "
                  f"mkdir -p {home}/.ray; if [ -n \"$T\" ]; then printf %s \"$T\" > {home}/.ray/auth_token; fi; "
                  f"exec {shlex.join(cmd)}")
        return ["ip", "netns", "exec", ns, "unshare", "-m", "-p", "-f", "--mount-proc", "--propagation", "private",
                "sh", "-c", script]

    def on_head(self, cmd: list[str]) -> list[str]:
        """``cmd`` run on the head's machine (its network namespace)."""
        return ["ip", "netns", "exec", self.ns["head"], *cmd]

    def start_head(self) -> None:
        self._run(self.on_head([ray_cli(), "start", "--head", "--port", str(self.port), "--include-dashboard=false",
                                *self._common(HEAD_IP)]))
        self.node_ips.append(HEAD_IP)

    def add_worker(self) -> None:
        """The worker's machine: ``head_only`` hidden under an empty tmpfs; its own HOME (with the cluster's
        token) and Ray folder there."""
        import shlex

        start = shlex.join([ray_cli(), "start", "--address", self.address, *self._common(WORKER_IP)])
        home = shlex.quote(str(self.home))
        script = (f"set -e; T=$(cat {home}/.ray/auth_token 2>/dev/null || true); "
                  f"mount -t tmpfs -o size=1g itt-worker-disk {shlex.quote(str(self.head_only))}; "
                  f"mkdir -p {home}/.ray; if [ -n \"$T\" ]; then printf %s \"$T\" > {home}/.ray/auth_token; "
                  f"chmod 600 {home}/.ray/auth_token; fi; exec {start}")
        self._run(["ip", "netns", "exec", self.ns["worker"], "unshare", "-m", "--propagation", "private",
                   "sh", "-c", script])
        self.node_ips.append(WORKER_IP)

    def _common(self, ip: str) -> list[str]:
        return ["--node-ip-address", ip, "--num-cpus", str(self.cpus), "--object-store-memory", str(80 * 1024 ** 2),
                "--temp-dir", str(self.head_only / "ray"), "--disable-usage-stats"]

    def stop(self, grace_s: float = 2.0, timeout_s: float = 20.0) -> None:
        """As :meth:`LocalRayCluster.stop`, then the namespaces (the link goes with them)."""
        super().stop(grace_s, timeout_s)
        for ns in self.ns.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
