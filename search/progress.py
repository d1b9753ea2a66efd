"""Live progress of a search: what every running trial is doing, on the driver's console.

How progress travels (a side channel, not ``tune.report``: an intermediate report would be a
result to ASHA and to the searcher, and both would act on it):

* in the trial process (a Tune function trial, or rank 0 of a Ray Train worker group), the chain
  calls its injected ``progress(event)`` callback (itt/chain.py: phase, stage i of k, step of total,
  loss) as often as it likes; a :class:`Throttle` keeps only the latest event and a background
  thread sends it at most once per ``interval`` (0.5 s), so a trial never sends more than two
  updates a second, whatever the chain does, and the training thread never waits on Ray;
* the updates go to one small Ray actor per search (:class:`ProgressHub`, no CPU reserved, named
  after the experiment so any process on the cluster finds it). An actor works on every node and
  with an object-store experiment, where files polled by the driver would cost a write per update;
* the driver polls the hub (one call per refresh) and draws :class:`LiveProgress`: a rich table
  redrawn in place on a TTY, plain timestamped lines otherwise (CI, ``ray job logs``). Finished
  trials leave one line each (``ResultsWriter`` in search/runner.py prints it).

``itt run`` shows its one chain the same way without Ray (:class:`ChainView`): the chain's events,
throttled, drive a rich progress bar of the current phase (steps, loss, steps/s, time left) on a
TTY, and a line every ``heartbeat`` seconds while a phase lasts longer otherwise.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

NAMESPACE = "itt"
INTERVAL = 0.5  # seconds between two updates of one trial (at most 2 per second)
HEARTBEAT = 30.0  # plain mode: a running trial's line is repeated after this long without a change


class Phase:
    """What a chain is doing, as its progress events name it."""

    STAGE = "stage"  # training intermediate task i of the order
    PROBE = "probe"  # ASHA's probe after stage i: a short target fine-tune + zero-shot dev eval
    TARGET = "target"  # the target fine-tune
    ALSO = "also"  # the fine-tune of an eval.also task beside the target (on a copy of the encoder)
    EVAL = "eval"  # zero-shot evaluation in every language


# ------------------------------------------------------------------ in the trial process
class Throttle:
    """``progress(event)`` for a chain: keeps the latest event; a daemon thread passes it to ``send``
    at most once per ``interval`` seconds (and only when it changed). ``close()`` stops the thread."""

    def __init__(self, send: Callable[[dict], None], interval: float = INTERVAL):
        self._send, self.interval = send, interval
        self._latest: dict | None = None
        self._seq = self._sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="itt-progress", daemon=True)
        self._thread.start()

    def __call__(self, event: dict) -> None:
        self._latest = event  # (before the count: the sender never sees a new count with an old event)
        self._seq += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            seq, event = self._seq, self._latest
            if event is None or seq == self._sent:
                continue
            self._sent = seq
            try:
                self._send(plain_event(event))
            except Exception:  # progress is a view: it never stops a trial
                pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def plain_event(event: dict) -> dict:
    """Numbers as plain floats (a chain passes its loss as a 0-d tensor: read only when sent)."""
    out = {}
    for k, v in event.items():
        if v is None or isinstance(v, (str, bool, int, float)):
            out[k] = v
        else:
            try:
                out[k] = float(v)
            except (TypeError, ValueError):
                out[k] = str(v)
    return out


def hub_name(experiment: str) -> str:
    """The hub actor's name for an experiment directory (its display path or URI)."""
    return "itt-progress-" + hashlib.sha1(experiment.encode()).hexdigest()[:16]


@contextmanager
def trial_progress(experiment: str, trial_id: str, *, enabled: bool = True):
    """In a trial: yields the chain's ``progress`` callback (None when disabled or when no hub runs,
    e.g. a trial started by hand), throttled, sending to the search's hub."""
    if not enabled:
        yield None
        return
    import ray

    try:
        hub = ray.get_actor(hub_name(experiment), namespace=NAMESPACE)
    except Exception:
        yield None
        return
    throttle = Throttle(lambda ev: hub.update.remote(trial_id, ev))
    try:
        yield throttle
    finally:
        throttle.close()


# ------------------------------------------------------------------ the hub (a Ray actor)
class ProgressHub:
    """The latest event of every trial, with the time it arrived (driver-independent clock)."""

    def __init__(self):
        self.events: dict[str, dict] = {}
        self.updates = 0

    def update(self, trial_id: str, event: dict) -> None:
        self.events[trial_id] = {**event, "_at": time.time()}
        self.updates += 1

    def snapshot(self) -> dict[str, dict]:
        return self.events

    def drop(self, trial_ids: list[str]) -> None:
        for t in trial_ids:
            self.events.pop(t, None)

    def count(self) -> int:
        return self.updates


# ------------------------------------------------------------------ rendering (pure)
@dataclass
class Running:
    """One running trial as the view shows it."""

    trial_id: str
    order: str
    elapsed: float
    event: dict | None
    left: str = ""  # the current phase's time left, "~4m10s left" (PhaseRate), where known

    def phase(self) -> str:
        """``stage 2/3 mnli``, ``probe after stage 2/3 xnli``, ``target fine-tune xnli``, ``eval xnli``,
        ``starting``."""
        e = self.event
        if not e:
            return "starting"
        ph, i, k, task = e.get("phase"), e.get("stage"), e.get("stages"), e.get("task") or ""
        text = {Phase.STAGE: f"stage {i}/{k} {task}" + (" (from the stage cache)" if e.get("cached") else ""),
                # (the task probed: with probe.also each eval.also task is probed after the target, and their
                # steps are a phase of their own, not the target's counting again from 0)
                Phase.PROBE: f"probe after stage {i}/{k} {task}".rstrip(),
                Phase.TARGET: f"target fine-tune {task}".rstrip(),
                Phase.ALSO: f"fine-tune {task} (eval.also)",
                Phase.EVAL: f"eval {task}".rstrip()}.get(ph, str(ph))  # (the target's, or an eval.also task's)
        if (e.get("seeds") or 1) > 1:
            text += f", seed {e.get('seed_index', 0) + 1}/{e['seeds']}"
        return text

    def steps(self) -> str:
        e = self.event or {}
        if e.get("total"):
            return f"{int(e.get('step') or 0)}/{int(e['total'])}"
        return "-"

    def loss(self) -> str:
        v = (self.event or {}).get("loss")
        return f"{v:.4f}" if isinstance(v, (int, float)) else "-"


def duration(seconds: float) -> str:
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def running_trials(rows: dict[str, dict], events: dict[str, dict], now: float,
                   rates: dict[str, PhaseRate] | None = None) -> list[Running]:
    """The running rows of results.csv (``ResultsWriter.rows``) joined with their latest events; ``rates``
    (kept by the caller between calls, one per trial) times each phase by its events' arrival times."""
    out = []
    for tid, r in list(rows.items()):
        if r.get("status") != "running" or r.get("_restored") == "completed" or not r.get("_started"):
            continue  # (no start: a row read back at `itt resume` whose trial waits, PENDING, or is gone)
        started = r["_started"]
        ev = events.get(tid)
        if ev is not None and ev.get("_at", now) < started - 1:  # from an earlier attempt of the trial
            ev = None
        left = ""
        if rates is not None and ev is not None:
            rate = rates.setdefault(tid, PhaseRate())
            rate.observe(ev, ev.get("_at", now))
            left = rate.fields()["left"]
        out.append(Running(tid, r.get("order") or "F", now - started, ev, left))
    return sorted(out, key=lambda x: x.trial_id)


def ended(events: dict[str, dict], rows: dict[str, dict]) -> list[str]:
    """The trials with an event whose row says they are no longer running (finished, stopped, errored): the
    hub forgets them (a long search's snapshot grew by one trial per trial run)."""
    return [t for t in events if t in rows and rows[t].get("status") != "running"]


def hms(clock: float) -> str:
    """A plain line's timestamp, ``12:03:07``."""
    return time.strftime("%H:%M:%S", time.localtime(clock))


def pick_mode(mode: str, log) -> str:
    """``auto``: ``live`` on a terminal (and no ``log`` given), else ``plain``; other modes as they are."""
    if mode != "auto":
        return mode
    return "live" if log is None and sys.stdout.isatty() else "plain"


def plain_line(r: Running, clock: float) -> str:
    """``12:03:07 running 3f2a_00003 toy_a>toy_b | stage 2/3 toy_b | step 40/120 | loss 0.6931 | 1m12s``"""
    parts = [r.phase()]
    if r.steps() != "-":
        parts.append(f"step {r.steps()}")
    if r.loss() != "-":
        parts.append(f"loss {r.loss()}")
    if r.left:
        parts.append(r.left)
    parts.append(duration(r.elapsed))
    return f"{hms(clock)} running {r.trial_id} {r.order} | " + " | ".join(parts)


def table(running: list[Running], caption: str):
    """The TTY view: one row per running trial, the counts and the best so far underneath."""
    from rich.table import Table

    t = Table(title="running trials", caption=caption, caption_justify="left", expand=False)
    for col, kw in (("trial", {}), ("order", {}), ("doing", {}), ("steps", {"justify": "right"}),
                    ("loss", {"justify": "right"}), ("phase left", {"justify": "right"}),
                    ("elapsed", {"justify": "right"})):
        t.add_column(col, **kw)
    for r in running:
        t.add_row(r.trial_id, r.order, r.phase(), r.steps(), r.loss(), r.left.removesuffix(" left") or "-",
                  duration(r.elapsed))
    return t


# ------------------------------------------------------------------ the driver's view
class LiveProgress:
    """Around ``tuner.fit()``: starts the hub, polls it and draws what the running trials do.

    ``mode``: ``live`` (rich, redrawn in place), ``plain`` (a timestamped line when a trial changes
    phase, and every ``heartbeat`` seconds while it stays in one), ``off``; ``auto`` picks ``live``
    on a terminal and ``plain`` otherwise. ``writer`` is the search's ``ResultsWriter`` (its rows say
    which trials run, since when, and the counts). ``events=False``: the trials send no progress (simulated
    trials that take no time), so no hub is started and none is polled; the view shows the running rows."""

    def __init__(self, experiment: str, writer, *, mode: str = "auto", log=None, refresh: float = INTERVAL,
                 heartbeat: float = HEARTBEAT, events: bool = True):
        mode = pick_mode(mode, log)
        self.experiment, self.writer, self.mode, self.refresh, self.heartbeat = experiment, writer, mode, refresh, heartbeat
        self.events = events
        self.log = log or (lambda msg: print(msg, flush=True))
        self.hub = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._printed: dict[str, tuple] = {}  # plain mode: trial -> (what it was doing, when printed)
        self._rates: dict[str, PhaseRate] = {}  # trial -> its current phase's rate (the time left)
        self._live = None

    def __enter__(self):
        if self.mode == "off":
            return self
        if not self.events:  # (a hub is an actor process of its own, and a call to it every refresh)
            self._start_view()
            return self
        import ray

        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        try:  # on the driver's node: the hub's clock is the driver's (how long each trial has run)
            here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
            self.hub = ray.remote(num_cpus=0)(ProgressHub).options(
                name=hub_name(self.experiment), namespace=NAMESPACE, get_if_exists=True,
                scheduling_strategy=here).remote()
        except Exception as e:  # progress is a view: the search runs without it
            self.log(f"warning: no live progress ({e})")
            return self
        self._start_view()
        return self

    def _start_view(self) -> None:
        if self.mode == "live":
            from rich.console import Console
            from rich.live import Live

            self._live = Live(table([], ""), console=Console(), refresh_per_second=2, transient=True,
                              redirect_stdout=True, redirect_stderr=False)
            self._live.start()
        self._thread = threading.Thread(target=self._loop, name="itt-progress-view", daemon=True)
        self._thread.start()

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._live is not None:
            self._live.stop()
        if self.hub is not None:
            import ray

            try:
                ray.kill(self.hub)
            except Exception:
                pass
        return False

    def _loop(self) -> None:
        import ray

        while not self._stop.wait(self.refresh):
            try:
                events = ray.get(self.hub.snapshot.remote(), timeout=10) if self.hub is not None else {}
            except Exception:
                continue
            self.draw(events, time.time())
            done = ended(events, self.writer.rows)
            if done:  # (the hub and the snapshot it sends each refresh stay as small as the running trials)
                self.hub.drop.remote(done)
                for t in done:
                    self._printed.pop(t, None)
                    self._rates.pop(t, None)

    def draw(self, events: dict[str, dict], now: float) -> None:
        running = running_trials(self.writer.rows, events, now, self._rates)
        if self.mode == "live" and self._live is not None:
            self._live.update(table(running, self.writer.status_line()))
            return
        for r in running:
            if r.event is None and r.elapsed < self.heartbeat:
                continue  # its first event is on its way
            what = (r.event or {}).get("phase"), (r.event or {}).get("stage"), (r.event or {}).get("seed_index")
            last = self._printed.get(r.trial_id)
            if last is None or last[0] != what or now - last[1] >= self.heartbeat:
                self._printed[r.trial_id] = (what, now)
                self.log(plain_line(r, now))


# ------------------------------------------------------------------ one chain (itt run)
@dataclass
class PhaseRate:
    """Where one chain is in its current phase, its steps per second and the time that phase has left,
    from its progress events (the rate counts from the first step event seen in the phase)."""

    what: str = ""  # Running.phase()'s text: "stage 1/2 mnli, seed 1/3"
    since: float = 0.0  # when the phase's first event came
    first: tuple[float, int] | None = None  # (time, step) of the phase's first event with a step count
    event: dict = field(default_factory=dict)
    at: float = 0.0

    def observe(self, event: dict, now: float) -> bool:
        """Take an event; True when it starts a new phase."""
        what = Running("", "", 0.0, event).phase()
        new = what != self.what
        if new:
            self.what, self.since, self.first = what, now, None
        if event.get("total") and self.first is None:
            self.first = (now, int(event.get("step") or 0))
        self.event, self.at = event, now
        return new

    def step(self) -> tuple[int, int] | None:
        e = self.event
        return (int(e.get("step") or 0), int(e["total"])) if e.get("total") else None

    def rate(self) -> float | None:
        st = self.step()
        if st is None or self.first is None:
            return None
        steps, secs = st[0] - self.first[1], self.at - self.first[0]
        return steps / secs if steps > 0 and secs > 0 else None

    def left(self) -> float | None:
        st, r = self.step(), self.rate()
        return (st[1] - st[0]) / r if st is not None and r else None

    def fields(self) -> dict[str, str]:
        """The loss, rate and time left as text ("" where not known yet)."""
        loss, r, left = self.event.get("loss"), self.rate(), self.left()
        return {"loss": f"loss {loss:.4f}" if isinstance(loss, (int, float)) else "",
                "rate": (f"{r:.1f} steps/s" if r >= 1 else f"{1 / r:.1f} s/step") if r else "",
                "left": ("<1s left" if left < 1 else f"~{duration(left)} left") if left is not None else ""}

    def line(self, now: float) -> str:
        """``stage 1/2 mnli | step 120/630 (19%) | loss 0.7035 | 8.2 steps/s | ~1m02s left | 15s``"""
        parts = [self.what]
        st = self.step()
        if st is not None:
            parts.append(f"step {st[0]}/{st[1]} ({100 * st[0] / max(st[1], 1):.0f}%)")
        parts += [v for v in self.fields().values() if v]
        parts.append(duration(now - self.since))
        return " | ".join(parts)


class ChainView:
    """``itt run``'s view of its chain. ``progress`` is the chain's callback (None when ``off``): a
    :class:`Throttle` that passes the latest event to :meth:`update` at most twice a second, so the
    training loop never waits on the view. ``live`` (a terminal): a rich bar of the current phase,
    redrawn in place under the chain's own lines (they print above it); ``plain``: a
    timestamped line once a phase has run ``heartbeat`` seconds, and every ``heartbeat`` seconds after
    (the chain's log already names each phase as it starts); ``auto``: live on a terminal."""

    def __init__(self, mode: str = "auto", *, log=None, heartbeat: float = HEARTBEAT, clock=time.time,
                 console=None, interval: float = INTERVAL):
        mode = pick_mode(mode, log)
        self.mode, self.heartbeat, self.clock, self.console, self.interval = mode, heartbeat, clock, console, interval
        self.log = log or (lambda msg: print(msg, flush=True))
        self.state = PhaseRate()
        self.progress: Throttle | None = None
        self._printed = 0.0
        self._bar = self._task = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self):
        if self.mode == "off":
            return self
        if self.mode == "live":
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                                 TextColumn("{task.fields[loss]}"), TextColumn("{task.fields[rate]}"),
                                 TextColumn("{task.fields[left]}"), console=self.console, transient=True,
                                 refresh_per_second=2, redirect_stdout=True, redirect_stderr=True)
            self._bar.start()  # (a warning on stderr prints above the bar too, not through it)
            self._task = self._bar.add_task("starting", total=None, loss="", rate="", left="")
        else:  # (a phase that sends no events, an evaluation, still gets its heartbeat lines)
            self._ticker = threading.Thread(target=self._tick_loop, name="itt-chain-view", daemon=True)
            self._ticker.start()
        self.progress = Throttle(self.update, interval=self.interval)
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.close()
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
        if self._bar is not None:
            self._bar.stop()
        return False

    def update(self, event: dict) -> None:
        """A chain event (from the throttle's thread)."""
        now = self.clock()
        new = self.state.observe(event, now)
        if new:
            self._printed = now
        if self._bar is not None:
            st = self.state.step()
            if new:  # a fresh bar (an update cannot take a phase's step count back to none: an eval has none)
                self._bar.remove_task(self._task)
                self._task = self._bar.add_task(self.state.what, total=st[1] if st else None, **self.state.fields())
            counts = {"total": st[1], "completed": st[0]} if st else {"completed": 0}  # (a phase's first event
            self._bar.update(self._task, **counts, **self.state.fields())  # names it; its steps come after)

    def tick(self, now: float) -> None:
        """Plain mode: a line when the current phase has gone ``heartbeat`` seconds without one."""
        if self.state.what and now - self._printed >= self.heartbeat:
            self._printed = now
            self.log(f"{hms(now)} {self.state.line(now)}")

    def _tick_loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick(self.clock())
