"""Where a search keeps its files: a local or shared folder, or an object store (s3://, gs://, ...).

Everything the library writes into the experiment directory (``results.csv``, ``dedup/`` records,
each trial's ``trials/<id>/`` outputs) goes through one ``pyarrow.fs`` filesystem, the same one Ray
Tune is given (``RunConfig(storage_filesystem=...)``), so a search on a cluster whose nodes share no
disk still ends up in one place. URIs may carry pyarrow's options as a query, e.g.
``s3://bucket/searches?endpoint_override=minio:9000&scheme=http`` for an S3-compatible store;
credentials come from the usual environment (``AWS_ACCESS_KEY_ID``, ..., or the node's IAM role /
``GOOGLE_APPLICATION_CREDENTIALS``).

Writes are atomic: a local file is written next to its target and renamed; an object-store PUT is
atomic by itself (a reader sees the old object or the new one, never half of one).
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import suppress
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from itt.errors import UserError, not_utf8


def writable_file(path: Path | str, label: str) -> None:
    """Raise one UserError line unless ``path`` can be written later: not a folder, and in a folder that
    can be made and written to (:func:`writable_folder`)."""
    if Path(path).is_dir():
        raise UserError(f"{label}: is a folder; give a file path")
    writable_folder(Path(path).parent, label)


def writable_folder(folder: Path | str, label: str) -> None:
    """Raise one UserError line unless ``folder`` (a local path) can be made and written to: checked
    before the work whose outputs go there, and left as it was (folders made for the check are removed).
    ``label``: how the user named it, e.g. ``--out runs/x``."""
    import tempfile

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{label}: {folder} is a file, not a folder")
    missing = first_missing(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UserError(f"{label}: cannot write to {folder} ({e.strerror or e})") from None
    finally:
        remove_made(folder, missing)


def remove_made(folder: Path, missing: Path | None) -> None:
    """Remove the folders a check made, from ``folder`` up to ``missing`` (see :func:`first_missing`), each
    only while empty: another process may have started to write there meanwhile."""
    if missing is None:
        return
    p = folder
    while True:
        try:
            p.rmdir()
        except OSError:
            return
        if p == missing or p.parent == p:
            return
        p = p.parent


def first_missing(folder: Path) -> Path | None:
    """The outermost folder of ``folder``'s path that does not exist yet (what making it would create), or
    None when it exists."""
    if folder.exists():
        return None
    missing = folder
    while not missing.parent.exists() and missing.parent != missing:
        missing = missing.parent
    return missing


def echo(*args) -> None:
    """The default ``log`` of the search's Tune callbacks. Tune pickles its callbacks with the
    experiment; a reference to this function pickles by name, whereas ``print`` itself fails to
    pickle once Ray Train has swapped ``builtins.print`` in the process."""
    print(*args, flush=True)


_ABANDONED: list = []  # threads still blocked in a store's call after _within gave up on them


def abandoned_requests() -> bool:
    """Whether a request to an object store is still blocked in this process: its client's exit handler
    (pyarrow's S3 finalizer) would wait for it, minutes, after the error line was printed."""
    return any(t.is_alive() for t in _ABANDONED)


def _within(fn, seconds: float):
    """``fn()`` in a daemon thread, its exception re-raised; TimeoutError(seconds) if it has not ended by
    then (the thread is left to the process's exit: a blocked object-store call cannot be cancelled)."""
    import threading

    out: dict = {}

    def run():
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 (handed to the caller)
            out["error"] = e

    t = threading.Thread(target=run, daemon=True, name="itt-storage-check")
    t.start()
    t.join(seconds)
    if t.is_alive():
        _ABANDONED.append(t)
        raise TimeoutError(f"{seconds:g}")
    if "error" in out:
        raise out["error"]


_REACHED: set[str] = set()  # object stores this process has had an answer from


def _reach(fs, base: str, root: str, label: str) -> None:
    """One request to an object store, once per process and store, within ``ITT_STORAGE_CHECK_S`` seconds
    (default 60): without network or credentials a GCS client retries for 15 minutes before it gives up,
    so the first ``exists()`` of a search or a report would hang that long. A store that does not answer
    is one error line."""
    if root in _REACHED:
        return
    seconds = float(os.environ.get("ITT_STORAGE_CHECK_S", 60))
    try:
        _within(lambda: fs.get_file_info(base), seconds)
    except TimeoutError:
        raise UserError(f"{label} {root}: cannot reach the store (no answer in {seconds:g} s: network? credentials?)") from None
    except Exception as e:  # unreachable endpoint, no credentials, ... (as Storage.exists says it)
        raise UserError(f"{label} {root}: cannot reach the store ({str(e).splitlines()[0][:300]})") from None
    _REACHED.add(root)


def _write_whole(p: Path, data: bytes) -> None:
    """Write a local file through a temporary file and a rename: the whole file or, where the write fails
    (an OSError), the file as it was and no temporary file left."""
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, p)
    except OSError:
        with suppress(OSError):
            tmp.unlink()
        raise


def local_path(root: str, label: str = "--storage") -> str:
    """A local folder as given: a path, or a file:// URI read as pyarrow reads it (file:///runs%20x is the folder
    "/runs x"; a host other than none is one error line)."""
    if not root.startswith("file://"):
        return root
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(root)[1]
    except Exception as e:  # (file://host/path)
        raise UserError(f"{label} {root}: {str(e).splitlines()[0]}; a local folder is file:///path") from None


def is_uri(storage: str) -> bool:
    return "://" in storage and not storage.startswith("file://")


@dataclass(frozen=True)
class Storage:
    """``root`` is the storage as the user gave it (a path or a URI); ``name`` the experiment."""

    root: str
    name: str
    label: str = field(default="--storage", compare=False)  # what error lines call it (a flag or config key)

    # ------------------------------------------------------------------ the filesystem
    @cached_property
    def _fs_and_base(self):
        if not is_uri(self.root):
            return None, str(Path(local_path(self.root, self.label)).resolve())
        import pyarrow.fs as pafs

        try:
            fs, base = pafs.FileSystem.from_uri(self.root)
        except Exception as e:  # unknown scheme, bad query option, missing credentials helper, ...
            raise UserError(f"{self.label} {self.root}: {str(e).splitlines()[0]}") from None
        _reach(fs, base, self.root, self.label)
        return fs, base.rstrip("/")

    @property
    def fs(self):
        """The pyarrow filesystem (None for a local folder: plain file I/O)."""
        return self._fs_and_base[0]

    @property
    def base(self) -> str:
        """The storage root as a path on ``fs`` (for Ray: ``storage_path`` with the scheme stripped)."""
        return self._fs_and_base[1]

    @property
    def remote(self) -> bool:
        return self.fs is not None

    def path(self, *rel: str) -> str:
        return "/".join([self.base, self.name, *rel])

    @property
    def display(self) -> str:
        """The experiment directory as a user would write it."""
        if not self.remote:
            return self.path()
        scheme = self.root.split("://", 1)[0]
        return f"{scheme}://{self.path()}"

    @property
    def arg(self) -> str:
        """The experiment directory as the commands a search prints take it (``itt resume``, ``itt report``):
        ``display`` with the store's options (``?endpoint_override=...&scheme=http`` of an S3-compatible
        store), without which the command reached AWS instead. (pyarrow takes no credentials in the query:
        those are in the URI's user part, which neither shows.)"""
        query = self.root.partition("?")[2] if self.remote else ""
        return f"{self.display}?{query}" if query else self.display

    # ------------------------------------------------------------------ file operations
    def exists(self, *rel: str) -> bool:
        if not self.remote:
            return os.path.exists(self.path(*rel))
        import pyarrow.fs as pafs

        try:
            return self.fs.get_file_info(self.path(*rel)).type != pafs.FileType.NotFound
        except OSError as e:  # unreachable endpoint, no credentials, no such bucket, ...
            raise UserError(f"{self.label} {self.root}: cannot reach the store ({str(e).splitlines()[0][:300]})") from None

    def read_text(self, *rel: str) -> str | None:
        """The file's text, or None when it does not exist."""
        data = self.read_bytes(*rel)
        if data is None:
            return None
        try:
            return data.decode()
        except UnicodeDecodeError as e:  # (edited in another encoding, or damaged)
            raise UserError(f"{self.display}/{'/'.join(rel)}: {not_utf8(e)}: edited or damaged? restore or remove it") from None

    def read_json(self, *rel: str, default=None):
        """The file's JSON (``default`` when it does not exist); a UserError naming it when it is not JSON
        (cut short by a kill, or edited by hand)."""
        text = self.read_text(*rel)
        if not text:
            return default
        try:
            return json.loads(text)
        except ValueError as e:
            raise UserError(f"{self.display}/{'/'.join(rel)}: not valid JSON ({str(e).splitlines()[0]}): cut short "
                            "or edited? restore or remove it") from None

    def read_yaml(self, *rel: str) -> dict | None:
        """The file's YAML mapping (None when it does not exist); a UserError naming it when it is not one."""
        from itt.config import parse_yaml

        text = self.read_text(*rel)
        return None if text is None else parse_yaml(text, f"{self.display}/{'/'.join(rel)}")

    def read_bytes(self, *rel: str) -> bytes | None:
        """The file's bytes, or None when it does not exist."""
        try:
            if not self.remote:
                p = self.path(*rel)
                return Path(p).read_bytes() if os.path.isfile(p) else None
            with self.fs.open_input_stream(self.path(*rel)) as f:
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as e:  # pyarrow raises OSError for a missing object on some stores
            if "not found" in str(e).lower() or "does not exist" in str(e).lower():
                return None
            # (a file this user may not read: one line naming it, not a traceback)
            why = e.strerror or str(e).splitlines()[0][:300]
            raise UserError(f"{self.display}/{'/'.join(rel)}: cannot read it ({why})") from None

    def write_text(self, text: str, *rel: str) -> None:
        self.write_bytes(text.encode(), *rel)

    def write_bytes(self, data: bytes, *rel: str) -> None:
        """Write a file whole (locally through a temporary file and a rename: never half-written)."""
        if not self.remote:
            p = Path(self.path(*rel))
            try:
                _write_whole(p, data)
            except OSError as e:  # a full disk, a folder made read-only
                raise UserError(f"{p}: cannot write ({e.strerror or e}); it was left as it was") from None
            return
        target = self.path(*rel)
        self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        with self.fs.open_output_stream(target) as f:
            f.write(data)

    def upload_dir(self, local: str | Path, *rel: str, sent: dict | None = None) -> dict:
        """Copy a local folder (a trial's outputs) into the experiment directory; a no-op locally
        when the folder already is that directory. On an object store, returns what was sent
        (relative path -> size and mtime); given the result of an earlier call as ``sent``, files
        unchanged since are skipped (a trial uploads its checkpoint once, before its final report,
        and only what came after it)."""
        local = Path(local).resolve()
        if not self.remote:
            dest = Path(self.path(*rel))
            if local != dest.resolve():
                shutil.copytree(local, dest, dirs_exist_ok=True)
            return {}
        files = {p.relative_to(local).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
                 for p in sorted(local.rglob("*")) if p.is_file()}
        todo = [f for f, sig in files.items() if (sent or {}).get(f) != sig]
        target = self.path(*rel)
        for f in todo:
            dest = f"{target}/{f}"
            self.fs.create_dir(dest.rsplit("/", 1)[0], recursive=True)
            with open(local / f, "rb") as src, self.fs.open_output_stream(dest) as out:
                shutil.copyfileobj(src, out)
        return files

    def delete(self, *rel: str) -> None:
        """Remove a file or a folder (recursively) of the experiment; a missing one is no error."""
        target = self.path(*rel)
        if not self.remote:
            import shutil

            if os.path.isdir(target):
                shutil.rmtree(target, ignore_errors=True)
            elif os.path.exists(target):
                os.remove(target)
            return
        import pyarrow.fs as pafs

        info = self.fs.get_file_info(target)
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(target)
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(target)

    def listdir(self, *rel: str) -> list[str]:
        """Names in a folder of the experiment ([] when it does not exist)."""
        if not self.remote:
            p = self.path(*rel)
            return sorted(os.listdir(p)) if os.path.isdir(p) else []
        import pyarrow.fs as pafs

        infos = self.fs.get_file_info(pafs.FileSelector(self.path(*rel), allow_not_found=True))
        return sorted(i.base_name for i in infos)

    def du(self, *rel: str) -> dict[str, int]:
        """Bytes used under the experiment directory (or ``rel`` in it), per top-level entry."""
        import pyarrow.fs as pafs

        fs = self.fs or pafs.LocalFileSystem()
        root = self.path(*rel)
        try:
            infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
        except OSError:
            return {}
        sizes: dict[str, int] = {}
        for info in infos:
            if info.type == pafs.FileType.File:
                top = info.path[len(root):].lstrip("/").split("/", 1)[0]
                sizes[top] = sizes.get(top, 0) + (info.size or 0)
        return sizes

    def check_writable(self) -> None:
        """Fail early (before Ray starts) when the store cannot be reached or written (the probe file
        goes to the storage root, so a failed start leaves no experiment directory behind; a local root
        the check had to make is removed again, so a check that passes leaves nothing either)."""
        probe = Storage(self.root, f".itt-write-check-{os.getpid()}", self.label)
        made = None if self.remote else first_missing(Path(self.base))
        try:
            if self.remote:
                probe.write_text("ok", "x")
            else:
                _write_whole(Path(probe.path("x")), b"ok")
            if self.remote:
                self.fs.delete_dir(probe.path())
            else:
                shutil.rmtree(probe.path())
        except UserError:
            raise
        except Exception as e:
            raise UserError(f"{self.label} {self.root}: cannot write there ({str(e).splitlines()[0][:200]})") from None
        finally:
            remove_made(Path(self.base), made)
