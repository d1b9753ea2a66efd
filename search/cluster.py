"""Connecting the search driver to a running Ray cluster (``--address``), token authentication included.

A Ray cluster may require token authentication (``RAY_AUTH_MODE=token``; ``ray start`` in Ray 2.60 turns it on
with that variable or an existing ``~/.ray/auth_token``, Ray 2.61 by default). A driver that joins one
needs the mode set and the head's token; without them ``ray.init(address=...)`` retries for ~20 s
with ``InvalidAuthToken`` lines and ends in a traceback, and towards an address where nothing listens
it was still retrying after 2 minutes (bench/cluster_connect.py). :func:`check` is a pre-flight run
before anything is written: a TCP connect to the GCS and HTTP/2's preface (a GCS speaks gRPC), then one
GCS request without a token (does the cluster require one?) and, if it does, one with the token found
the way Ray looks for it (``RAY_AUTH_TOKEN``, else the file ``RAY_AUTH_TOKEN_PATH``, else
``~/.ray/auth_token``). Each wrong case is one :class:`UserError` line naming what is missing and what
to set, in a few seconds. :func:`connect` then runs ``ray.init``. The token itself is never printed.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from itt.errors import UserError, first_line

MODE_ENV, TOKEN_ENV, TOKEN_PATH_ENV = "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"
DEFAULT_TOKEN = "~/.ray/auth_token"
TIMEOUT_S = 5.0  # per step (TCP connect, each GCS request): a live GCS answers in milliseconds
HOW_TO_GET = "`ray get-auth-token` on the head prints it"


class Auth:
    """How the driver authenticates to the cluster."""

    NONE = "none"    # the cluster takes requests without a token
    TOKEN = "token"  # RAY_AUTH_MODE=token with the token from ``Target.token_source``


class _Answer:
    OK, DENIED, NO_ANSWER = "ok", "denied", "no answer"


@dataclass(frozen=True)
class Target:
    """A checked cluster: the GCS address (None: start a local Ray), the auth mode and where the token
    came from (a variable or file name, never the token)."""

    address: str | None
    auth: str = Auth.NONE
    token_source: str | None = None
    running_here: bool = False  # no address given: the cluster `ray start` runs on this machine, joined


def check(address: str | None) -> Target:
    """Pre-flight check of ``--address`` (or ``RAY_ADDRESS``); raises UserError with one line when the
    driver could not connect. Sets ``RAY_AUTH_MODE=token`` in this process when the cluster needs it."""
    import ray

    if address is not None and not address.strip():  # (`--address "$HEAD"` with HEAD unset: not "start a local Ray")
        raise UserError(f"--address {address!r}: empty; give HOST:PORT, auto, or local (a private Ray), or leave "
                        "--address out")
    if ray.is_initialized():  # connected already (a test's or a notebook's Ray): nothing to check
        return Target(None)
    where = "--address" if address else "RAY_ADDRESS"
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address == "local":
        return Target("local")  # ray.init(address="local"): a private Ray, even beside a `ray start` cluster
    if address is None:
        _checked[None] = _running_here()  # (connect() pops it)
        return _checked[None]
    if address.startswith(("http://", "https://")):
        raise UserError(f"{where} {address}: that is the Ray dashboard (for `ray job submit`); give the cluster's "
                        f"GCS address instead, HOST:PORT (port 6379 unless `ray start --head --port` set another) "
                        f"or `auto` on a cluster node")
    gcs = _resolve(address, where)
    _reachable(gcs, where)
    if address.startswith("ray://"):  # Ray Client (ray[client]): its own protocol; reachability only
        return Target(address)
    target = _authenticate(gcs, where, address)
    _on_a_node(gcs, where, address)
    _checked[address] = target
    return target


def _running_here() -> Target:
    """No address: ``ray.init`` joins a cluster ``ray start`` runs on this machine, as Ray does, so it is
    checked (token authentication included) and the console says so; none, or one that no longer
    answers (its address file outlived it): a private local Ray."""
    from ray._private.services import canonicalize_bootstrap_address

    try:
        gcs = canonicalize_bootstrap_address(None)
    except (ConnectionError, ValueError):
        gcs = None
    if gcs is None:
        return Target(None)
    where = "the Ray cluster running on this machine (`ray start`; --address local starts a private Ray)"
    try:
        _reachable(gcs, where)
    except UserError:
        return Target("local")
    try:
        target = _authenticate(gcs, where, gcs)
    except UserError as e:
        raise UserError(f"no --address given, so Ray joins the cluster `ray start` runs on this machine, and {e} "
                        f"(or pass --address local for a private Ray)") from None
    return Target(gcs, target.auth, target.token_source, running_here=True)


_checked: dict[str | None, Target] = {}  # check() -> connect() in one run: the second check is skipped


def connect(address: str | None, **init_kwargs) -> Target:
    """:func:`check`, then ``ray.init`` on the checked address (a local Ray when there is none)."""
    import ray

    target = _checked.pop(address, None) or check(address)  # run_search checked it a moment ago
    if ray.is_initialized():
        return target
    try:
        ray.init(address=target.address, **init_kwargs)
    except (ConnectionError, RuntimeError, ray.exceptions.RayError) as e:  # after a clean check: rare (versions)
        if target.address is None:
            raise
        raise UserError(f"could not join the Ray cluster at {target.address}: {_join_error(e)}") from None
    return target


def _join_error(e: BaseException) -> str:
    """Ray's reason in one line. Its version mismatch names the versions on the lines after the first
    ("Version mismatch: The cluster was started with:"): they are the line here."""
    found = re.findall(r"Ray: (\S+)\s+Python: (\S+)", str(e))
    if not str(e).startswith("Version mismatch") or len(found) != 2:
        return first_line(e)
    (ray_there, py_there), (ray_here, py_here) = found
    return (f"the cluster runs Ray {ray_there} on Python {py_there}, this process Ray {ray_here} on Python {py_here} "
            f"(Ray requires both to match): run itt in the Python environment the cluster's `ray start` ran in, or "
            f"install Ray {ray_there} on Python {py_there} here")


# ------------------------------------------------------------------ the steps
def _resolve(address: str, where: str) -> str:
    """``auto``, ``ray://host:port`` or ``host:port`` -> ``host:port``."""
    if address == "auto":
        from ray._private.services import canonicalize_bootstrap_address_or_die

        try:
            return canonicalize_bootstrap_address_or_die("auto")
        except (ConnectionError, ValueError) as e:
            raise UserError(f"{where} auto: {first_line(e)} (start one with `ray start --head`, or give "
                            f"HOST:PORT)") from None
    hostport = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()):  # ('²'.isdigit(): int() refuses it)
        raise UserError(f"{where} {address}: expected HOST:PORT (e.g. 10.0.0.5:6379) or auto")
    if not 0 < int(port) < 65536:  # (the OS would take port % 65536: 6379 + 65536 reached the cluster at 6379)
        raise UserError(f"{where} {address}: port {port} is out of range (1 to 65535)")
    return f"{host}:{port}"


def _reachable(gcs: str, where: str) -> None:
    """Something listens at ``gcs`` and speaks HTTP/2 (gRPC), as a Ray GCS does; a web server there (the
    dashboard's port, MLflow's) is told apart at once, before Ray's client would wait for it."""
    host, _, port = gcs.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=TIMEOUT_S) as sock:
            grpc = _speaks_http2(sock)
    except socket.gaierror:
        raise UserError(f"{where} {gcs}: unknown host '{host}'") from None
    except ConnectionRefusedError:
        why = "connection refused"
    except TimeoutError:
        why = f"no answer within {TIMEOUT_S:g} s"
    except OSError as e:
        why = e.strerror or str(e)
    else:
        if grpc:
            return
        raise UserError(f"{where} {gcs}: something listens there but it is not a Ray cluster (it does not speak "
                        f"gRPC: a web server, e.g. the dashboard?); give the port `ray start --head` printed "
                        f"(6379 by default)")
    raise UserError(f"{where} {gcs}: no Ray cluster listens there ({why}); start the head with "
                    f"`ray start --head --port {port}`, or check the address `ray start --head` printed") from None


_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + empty SETTINGS


def _speaks_http2(sock: socket.socket) -> bool:
    """Send HTTP/2's client preface; an HTTP/2 server answers with a SETTINGS frame (type 4)."""
    try:
        sock.sendall(_HTTP2_PREFACE)
        head = b""
        while len(head) < 9:
            chunk = sock.recv(9 - len(head))
            if not chunk:
                break
            head += chunk
    except OSError:
        return False
    return len(head) == 9 and head[3] == 4


def _authenticate(gcs: str, where: str, given: str) -> Target:
    """Does the cluster need a token, is one available, does the cluster accept it? On an error
    RAY_AUTH_MODE is left as it was."""
    original = os.environ.get(MODE_ENV)
    try:
        return _decide(gcs, where, given, original)
    except BaseException:
        _set_mode(original)
        raise


def _decide(gcs: str, where: str, given: str, original: str | None) -> Target:
    mode = (original or "").strip().lower()
    source = _token_source()
    answer = _ask(gcs, token=False)
    if answer == _Answer.NO_ANSWER:
        raise UserError(f"{where} {given}: something listens at {gcs} but it is not a Ray GCS (no answer within "
                        f"{TIMEOUT_S:g} s); give the port `ray start --head` printed (6379 by default)")
    if answer == _Answer.OK:  # no authentication on this cluster
        if mode == Auth.TOKEN and source is None:  # Ray itself would refuse to start the driver
            raise UserError(f"{MODE_ENV}=token is set but no Ray token was found ({TOKEN_ENV}, {TOKEN_PATH_ENV} "
                            f"or {DEFAULT_TOKEN}); the cluster at {gcs} needs none: unset {MODE_ENV}")
        _set_mode(original)
        return Target(gcs)
    # the cluster requires a token
    if mode not in ("", Auth.TOKEN):
        raise UserError(f"the Ray cluster at {gcs} requires token authentication but {MODE_ENV}={mode}: "
                        f"set {MODE_ENV}=token and the head's token ({HOW_TO_GET}) in {TOKEN_ENV}, "
                        f"{TOKEN_PATH_ENV} or {DEFAULT_TOKEN}")
    if source is None:
        raise UserError(f"the Ray cluster at {gcs} requires token authentication and no token was found: set "
                        f"{TOKEN_ENV} to the head's token ({HOW_TO_GET}), or {TOKEN_PATH_ENV} to a file "
                        f"holding it, or put it in {DEFAULT_TOKEN}")
    answer = _ask(gcs, token=True)
    if answer == _Answer.NO_ANSWER:
        raise UserError(f"the Ray cluster at {gcs} gave no answer within {TIMEOUT_S:g} s to a request with the token "
                        f"from {source}; check that the head is healthy (`ray status` on the head)")
    if answer != _Answer.OK:
        raise UserError(f"the Ray cluster at {gcs} rejected the token from {source} (not this cluster's "
                        f"token): use the head's token ({HOW_TO_GET})")
    _set_mode(Auth.TOKEN)  # ray.init (and `ray.util` calls after it) send the token from here on
    return Target(gcs, Auth.TOKEN, source)


def _on_a_node(gcs: str, where: str, given: str) -> None:
    """The driver must run on a node of the cluster: ``ray.init`` joins through a raylet of its own machine
    (Ray 2.60's ``get_node_to_connect_for_driver`` looks for raylet processes here). From elsewhere (a
    laptop) it waited a minute and failed with "Failed to connect to Ray cluster" (tests/test_two_hosts.py).
    Here: do this machine's raylets include a live node of that cluster? A GCS that cannot be asked is let
    through (``ray.init`` says what is wrong)."""
    from ray._private.services import find_node_ids
    from ray._raylet import GcsClient
    from ray.core.generated.gcs_pb2 import GcsNodeInfo

    here = set(find_node_ids())
    try:
        with _quiet_stderr():
            alive = GcsClient(address=gcs).get_all_node_info(timeout=TIMEOUT_S,
                                                             state_filter=GcsNodeInfo.GcsNodeState.ALIVE)
    except Exception:
        return
    if here & {n.node_id.hex() for n in alive.values()} or not alive:
        return
    raise UserError(f"{where} {given}: this machine is not a node of that cluster (no raylet of it runs here), and a "
                    f"search's driver runs on one: run `itt search` on the head (ssh, or `ray job submit --address "
                    f"http://HEAD:8265 --working-dir . -- itt search ...`), or join this machine first (`ray start "
                    f"--address {gcs}`)")


def _token_source() -> str | None:
    """Where Ray would read the token from, in Ray's order; a path that cannot be read is an error here
    (Ray aborts the process on it)."""
    if (os.environ.get(TOKEN_ENV) or "").strip():
        return TOKEN_ENV
    path = os.environ.get(TOKEN_PATH_ENV)
    if path:
        p = Path(path).expanduser()
        try:
            if not p.read_text().strip():
                raise UserError(f"{TOKEN_PATH_ENV}={path}: the file is empty (it should hold the head's token)")
        except OSError as e:
            raise UserError(f"{TOKEN_PATH_ENV}={path}: cannot read the token file ({e.strerror or e})") from None
        return f"{TOKEN_PATH_ENV} ({path})"
    p = Path(DEFAULT_TOKEN).expanduser()
    try:
        return DEFAULT_TOKEN if p.is_file() and p.read_text().strip() else None
    except OSError:
        return None


def _ask(gcs: str, *, token: bool) -> str:
    """One GCS request (fetching the cluster id), with or without the token, within TIMEOUT_S."""
    from ray.exceptions import AuthenticationError

    _set_mode(Auth.TOKEN if token else "disabled")
    out: dict = {}

    def call():
        from ray._raylet import GcsClient

        try:
            GcsClient(address=gcs)
            out["answer"] = _Answer.OK
        except AuthenticationError:
            out["answer"] = _Answer.DENIED
        except Exception as e:  # timeouts, a server that is no GCS
            out["answer"], out["error"] = _Answer.NO_ANSWER, e

    with _quiet_stderr():  # Ray's C++ client logs each refused request on stderr
        t = threading.Thread(target=call, daemon=True)  # the C++ client retries for up to 40 s: bounded here
        t.start()
        t.join(TIMEOUT_S)
    return out.get("answer", _Answer.NO_ANSWER)


def _set_mode(mode: str | None) -> None:
    """Set (or unset) RAY_AUTH_MODE for this process and make Ray's C++ config and token cache see it."""
    from ray._raylet import AuthenticationTokenLoader, Config

    if mode is None:
        os.environ.pop(MODE_ENV, None)
    else:
        os.environ[MODE_ENV] = mode
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


@contextlib.contextmanager
def _quiet_stderr():
    """File descriptor 2 to a temporary file while Ray's C++ code runs (its log lines bypass Python)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


NODE_CHECK_S = 30.0  # for every node's answer: a task needs a worker process started there (about a second)


def missing_on_nodes(paths: dict[str, str], timeout_s: float = NODE_CHECK_S) -> tuple[dict[str, list[str]], list[str]]:
    """Which of ``paths`` (label -> a local path) each live node of the connected Ray cluster does not see.

    One zero-CPU task pinned on every node looks (nodes of a cluster are separate machines: a folder on
    the driver's disk is not on theirs unless it is a mount they share). Returns (node IP -> the labels it
    lacks, for nodes lacking any; the IPs of nodes that did not answer within ``timeout_s``)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    look = ray.remote(num_cpus=0, max_retries=0)(_exists)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refs = {look.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
        list(paths.values())): n["NodeManagerAddress"] for n in nodes}
    done, late = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
    missing = {}
    for ref in done:
        try:
            seen = ray.get(ref)
        except Exception:  # (the node died meanwhile: as good as not answering)
            late.append(ref)
            continue
        lacks = [label for label, ok in zip(paths, seen) if not ok]
        if lacks:
            missing[refs[ref]] = lacks
    for ref in late:
        with contextlib.suppress(Exception):  # (already ended, or its node gone)
            ray.cancel(ref, force=True)
    return missing, sorted(refs[r] for r in late)


def _exists(paths: list[str]) -> list[bool]:
    return [os.path.exists(p) for p in paths]
