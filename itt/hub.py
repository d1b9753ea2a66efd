"""The 🤗 Hub from this machine: reached, or not tried at all.

Without a network, ``from_pretrained`` and ``load_dataset`` retry each request with backoff (5 tries,
1-8 s apart) and log every try: a model took 46 s and 23 lines to fail, a dataset 26 s and 12 lines,
and a model already in the 🤗 cache waited as long before it was used. Here the Hub's address is tried
once (a TCP connection, 3 s at most; again after 10 minutes); where nothing answers, the load runs in
🤗's offline mode (what ``HF_HUB_OFFLINE=1`` does), so a cached model or dataset loads at once and a
missing one fails at once, with a line that says why. Behind a proxy (``HTTPS_PROXY`` and the like)
the address is not tried: the proxy may reach what this machine cannot.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from urllib.parse import urlparse

PROXIES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")
TIMEOUT_S = 3.0
RECHECK_S = 600.0


def endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


_last: tuple[float, bool] | None = None  # (when, the answer): asked again after RECHECK_S


def reachable() -> bool:
    """Whether the Hub's host accepts a connection (asked at most every RECHECK_S in a process: a trial
    process Ray reuses sees a network that came back). True behind a proxy."""
    global _last
    if any(os.environ.get(k) or os.environ.get(k.lower()) for k in PROXIES):
        return True
    if _last is not None and time.monotonic() - _last[0] < RECHECK_S:
        return _last[1]
    url = urlparse(endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=TIMEOUT_S).close()
        ok = True
    except OSError:
        ok = False
    _last = (time.monotonic(), ok)
    return ok


def offline_by_choice() -> bool:
    """``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE``) set by the user."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


@contextlib.contextmanager
def offline_unless_reachable():
    """Run the body in 🤗's offline mode where the Hub cannot be reached (huggingface_hub and transformers
    read ``constants.HF_HUB_OFFLINE`` at each call, datasets its own copy). Yields whether it did."""
    import datasets
    from huggingface_hub import constants

    if offline_by_choice() or reachable():
        yield False
        return
    before = constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
    try:
        yield True
    finally:
        constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE = before


def not_cached(what: str, cache: str | None = None, instead: str = "give a local path") -> str:
    """The reason a load failed in the offline mode this module turned on (``cache``: default the Hub's)."""
    if cache is None:
        from huggingface_hub import constants

        cache = constants.HF_HUB_CACHE
    return (f"the 🤗 Hub ({endpoint()}) cannot be reached from here and {what} is not in the 🤗 cache "
            f"({cache}): download it where there is a network and copy the cache here, or {instead}")


def is_local(name_or_path: str) -> bool:
    return os.path.isdir(os.path.expanduser(name_or_path))


def looks_like_a_path(name_or_path: str) -> bool:
    """A folder's path rather than a Hub ID (``org/name``, or ``name``): absolute, ./ ../ ~, or deeper."""
    return name_or_path.startswith(("/", "./", "../", "~", "\\")) or name_or_path.count("/") > 1
