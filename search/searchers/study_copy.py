"""``StudyCopy``: the searcher's Optuna study, copied into a file or database for ``optuna-dashboard``.

The searcher's own study stays in memory and is saved with Ray's searcher state, so ``itt resume``
restores exactly what the searcher knew at Ray's last snapshot. A database as the study's *primary*
storage would outlive a killed driver and then hold trials the restored searcher never saw (trials
RUNNING forever, results told twice). So the database is a copy: the trials Tune ran are added as
they finish (in one batch every few seconds at most; the repeats the searcher answers itself are
left out), and a resumed search rebuilds the copy from the restored study, so the dashboard always
shows what the searcher knows. By default the copy is an Optuna journal file in the experiment
(``JournalStorage``: appends, ~0.5 ms a trial without the fsync Optuna does per trial; sqlite through
Optuna's ORM costs ~30 ms a trial, which a simulated search of thousands of trials notices); a
database URL puts it in that database.

    optuna-dashboard runs/<name>/optuna.journal
"""

from __future__ import annotations

import json
import os
import time

EVERY_S = 2.0  # at most one batch of writes per this many seconds (a sqlite commit per trial adds up)


class StudyCopy:
    def __init__(self, url: str, study_name: str, log=print):
        self.url, self.study_name, self.log = url, study_name, log
        self.copied: set[int] = set()  # trial numbers of the searcher's study already in the copy
        # the copy mirrors this search: a study of the same name in the database is replaced, and a
        # restored search (whose snapshot may be older than the copy) rebuilds it
        self.rebuild = True
        self.failed = False
        self._target = None
        self._last = 0.0

    def __getstate__(self):
        return {**self.__dict__, "_target": None, "log": None}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.log, self.rebuild, self.copied, self._last = print, True, set(), 0.0

    def sync(self, study, numbers: set[int], *, force: bool = False, order_of=None) -> None:
        """Add the study's newly finished trials among ``numbers`` to the copy (throttled unless
        ``force``); ``order_of(params)`` names each trial's order (user attribute ``order``: the
        dashboard shows it beside the Lehmer digits)."""
        if self.failed or study is None or (not force and time.monotonic() - self._last < EVERY_S):
            return
        self._last = time.monotonic()
        try:
            target = self._open(study)
            new = [t for t in study.get_trials(deepcopy=False)
                   if t.number in numbers and t.number not in self.copied and t.state.is_finished()]
            if new and order_of is not None:
                new = [_with_order(t, order_of(t.params)) for t in new]
            if new:
                target.add_trials(new)
                self.copied.update(t.number for t in new)
        except Exception as e:  # the copy is for looking at; the search goes on without it
            from search.tracking import redact  # (a database URL's password stays off the console)

            self.failed = True
            (self.log or print)(redact(f"warning: the Optuna study copy at {self.url} failed ({type(e).__name__}: "
                                       f"{str(e).splitlines()[0] if str(e) else ''}); the search goes on without it"))

    def _open(self, study):
        import optuna

        if self._target is None:
            if "://" in self.url:  # a database
                kwargs = {"connect_args": {"timeout": 30}} if self.url.startswith("sqlite") else {}
                storage = optuna.storages.RDBStorage(self.url, engine_kwargs=kwargs)
                if self.rebuild:
                    try:
                        optuna.delete_study(study_name=self.study_name, storage=storage)
                    except KeyError:
                        pass
            else:  # a journal file of this experiment's own
                if self.rebuild and os.path.exists(self.url):
                    os.remove(self.url)
                storage = optuna.storages.JournalStorage(_journal_backend(self.url))
            self.rebuild = False
            optuna.logging.set_verbosity(optuna.logging.WARNING)  # (no "A new study created" line in a resume)
            self._target = optuna.create_study(storage=storage, study_name=self.study_name,
                                               directions=study.directions, load_if_exists=True)
        return self._target


def _journal_backend(path: str):
    """Optuna's journal file backend, without its ``fsync`` after every append (one per trial copied:
    2 ms each, 2.1 s of a 1,000-trial simulated search's driver). The file is a copy the searcher's
    study rebuilds on resume, so a write a crash loses costs nothing; the lock is kept."""
    from optuna.storages.journal import JournalFileBackend

    class CopyBackend(JournalFileBackend):
        def append_logs(self, logs):
            from optuna.storages.journal._file import get_lock_file

            with get_lock_file(self._lock), open(self._file_path, "ab") as f:
                f.write(("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode("utf-8"))

    return CopyBackend(path)


def _with_order(trial, order: str):
    import copy

    out = copy.copy(trial)
    out.user_attrs = {**trial.user_attrs, "order": order or "F (no intermediate task)"}
    return out
