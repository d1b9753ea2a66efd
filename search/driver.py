"""``driver.json``: which process drives a search now. ``itt search`` and ``itt resume`` write it when they
start and remove it when they stop; a driver killed (SIGKILL, a reboot) leaves it behind. ``itt resume``
refuses while the recorded driver lives (two drivers corrupt an experiment); ``itt report`` says whether
the search it reads is still running or was interrupted."""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import suppress
from pathlib import Path

DRIVER_FILE = "driver.json"  # host and pid of the driver running the search now (removed when it stops)


def _text() -> str:
    return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()})


def record(st) -> None:
    st.write_text(_text(), DRIVER_FILE)


def claim(st) -> dict | None:
    """Record this process as the search's driver, unless a live driver on this host is recorded: then that
    one, and nothing is written. In a local folder the record appears whole or not at all (a hard link, which
    fails where the file exists), so of two drivers started together only one gets the search; a dead
    driver's record is taken over."""
    d = live(st)
    if d is not None and d["here"]:
        return d
    if not st.remote and not st.exists(DRIVER_FILE):
        path = Path(st.path(DRIVER_FILE))
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(_text())
            os.link(tmp, path)
            return None
        except FileExistsError:  # another driver recorded itself since
            d = live(st)
            if d is not None and d["here"]:
                return d
        except OSError:  # (a filesystem without hard links, or one that cannot be written: recorded as below)
            pass
        finally:
            with suppress(OSError):
                tmp.unlink()
    record(st)
    return None


def remove(st) -> None:
    try:
        st.delete(DRIVER_FILE)
    except Exception:
        pass


def live(st) -> dict | None:
    """The recorded driver while it may still run, else None. ``here``: it runs on this host, where its
    process was found (on another host nothing tells, so it may run)."""
    text = st.read_text(DRIVER_FILE)
    if not text:
        return None
    try:
        d = json.loads(text)
        here = d.get("host") == socket.gethostname()
        if here:
            os.kill(int(d["pid"]), 0)
    except (ProcessLookupError, ValueError, TypeError, KeyError, AttributeError, json.JSONDecodeError):
        return None  # it died (SIGKILL, reboot), or the file is not one this module wrote
    except PermissionError:
        pass  # another user's process with that pid: alive
    if here and _reused(int(d["pid"]), d.get("started")):
        return None  # the driver died and its pid went to a newer process (a reboot; a restarted container)
    return {**d, "here": here}


def _reused(pid: int, started) -> bool:
    """Did process ``pid`` start after the driver recorded itself (``started``)? Then it is another process with
    the dead driver's pid: after a reboot, or in a restarted container, whose first processes get the same pids
    (a resume there was refused as the driver itself)."""
    import psutil  # (accelerate's dependency)

    try:
        return psutil.Process(pid).create_time() > float(started) + 1.0
    except (psutil.Error, TypeError, ValueError):
        return False  # (no such process now, or no time recorded: as before)
