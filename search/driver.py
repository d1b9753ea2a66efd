"""``driver.json``: which process drives a search now. ``itt search`` and ``itt resume`` write it when they
start and remove it when they stop; a driver killed (SIGKILL, a reboot) leaves it behind. ``itt resume``
refuses while the recorded driver lives (two drivers corrupt an experiment); ``itt report`` says whether
the search it reads is still running or was interrupted."""

from __future__ import annotations

import json
import os
import socket
import time

DRIVER_FILE = "driver.json"  # host and pid of the driver running the search now (removed when it stops)


def record(st) -> None:
    st.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}), DRIVER_FILE)


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
    return {**d, "here": here}
