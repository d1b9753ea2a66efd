"""Live progress of a search (search/progress.py): the chain's progress events, the throttle at the
source, the renderer, and the plain lines a simulated search prints while it runs."""

from __future__ import annotations

import io
import re
import time

import pytest

from search.progress import Running, Throttle, plain_line, running_trials, table
from tests.test_search import TOY3, _search_config, _table
from search.space import OrderSpace


# ------------------------------------------------------------------ the throttle (in the trial process)
def test_throttle_sends_at_most_once_per_interval_and_the_latest_event():
    sent: list[tuple[float, dict]] = []
    th = Throttle(lambda ev: sent.append((time.monotonic(), ev)), interval=0.05)
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < 0.5:  # a chain calling back on every step, as fast as it can
        n += 1
        th({"step": n, "total": 10**9})
    time.sleep(0.15)
    th.close()
    assert n > 1000  # the hot path is cheap: thousands of events in half a second
    assert 3 <= len(sent) <= 0.65 / 0.05 + 1, len(sent)  # one send per interval, no more
    gaps = [b[0] - a[0] for a, b in zip(sent, sent[1:])]
    assert min(gaps) >= 0.04, gaps
    assert sent[-1][1]["step"] == n  # the last event is delivered after the chain goes quiet
    idle = len(sent)
    time.sleep(0.15)
    assert len(sent) == idle  # nothing new: nothing sent (and the thread is gone after close)


def test_throttle_reads_a_tensor_loss_only_when_it_sends():
    torch = pytest.importorskip("torch")
    got = []
    th = Throttle(got.append, interval=0.02)
    th({"step": 1, "total": 2, "loss": torch.tensor(0.25)})
    time.sleep(0.1)
    th.close()
    assert got == [{"step": 1, "total": 2, "loss": 0.25}] and isinstance(got[0]["loss"], float)


# ------------------------------------------------------------------ the chain's events (itt/, no Ray)
def test_chain_reports_its_phases_steps_and_loss(write_config):
    from itt.chain import run_chain
    from itt.config import load_config

    cfg = load_config(str(write_config({"order": ["toy_topic"], "seeds": [0, 1], "probe": {"enabled": True, "steps": 2},
                                        "eval": {"perturbation": {"enabled": False}}})))
    events: list[dict] = []
    run_chain(cfg, progress=events.append, log=lambda *a: None)
    phases = [(e["phase"], e["seed_index"]) for e in events if "step" not in e]  # phase starts
    assert phases == [("stage", 0), ("probe", 0), ("stage", 1), ("probe", 1), ("target", 0), ("eval", 0),
                      ("target", 1), ("eval", 1)], phases
    steps = [e for e in events if e["phase"] == "stage" and e["seed_index"] == 0 and "loss" in e]
    assert [e["step"] for e in steps] == [1, 2, 3, 4] and all(e["total"] == 4 for e in steps)
    assert all(e["stage"] == 1 and e["stages"] == 2 and e["task"] == "toy_topic" and e["seeds"] == 2 for e in steps)
    assert float(steps[-1]["loss"]) > 0
    target = [e for e in events if e["phase"] == "target"]
    assert {(e["stage"], e["stages"], e["task"]) for e in target} == {(2, 2, "toy_xnli")}
    assert max(e["step"] for e in [e for e in events if e["phase"] == "probe" and "step" in e]) == 2


# ------------------------------------------------------------------ the renderer (pure)
def test_renderer_names_each_running_trial_its_stage_steps_loss_and_elapsed():
    now = 1000.0
    rows = {"t1": {"status": "running", "order": "a>b", "_started": now - 75},
            "t2": {"status": "running", "order": "", "_started": now - 5},
            "t3": {"status": "completed", "order": "b", "_started": now - 50},
            "t4": {"status": "running", "order": "c", "_started": now - 3}}
    events = {"t1": {"phase": "stage", "stage": 2, "stages": 3, "task": "b", "step": 40, "total": 120, "loss": 0.69314,
                     "seed_index": 1, "seeds": 3, "_at": now - 1},
              "t2": {"phase": "eval", "stage": 1, "stages": 1, "task": "x", "_at": now - 1},
              "t3": {"phase": "target", "stage": 2, "stages": 2, "_at": now - 1},
              "t4": {"phase": "probe", "stage": 1, "stages": 2, "_at": now - 60}}  # an earlier attempt's event
    running = running_trials(rows, events, now)
    assert [r.trial_id for r in running] == ["t1", "t2", "t4"]  # finished trials are not shown
    t1, t2, t4 = running
    assert t1.phase() == "stage 2/3 b, seed 2/3" and t1.steps() == "40/120" and t1.loss() == "0.6931"
    assert t2.phase() == "eval x" and t2.order == "F" and t2.steps() == "-"
    assert t4.phase() == "starting"  # the stale event of a retried trial is not shown as current
    line = plain_line(t1, now)
    assert re.fullmatch(r"\d\d:\d\d:\d\d running t1 a>b \| stage 2/3 b, seed 2/3 \| step 40/120 \| loss 0\.6931 \| 1m15s",
                        line), line
    assert Running("x", "a", 3, {"phase": "target", "task": "xnli", "step": 3, "total": 9}).phase() == "target fine-tune xnli"
    # the time the phase has left, from two refreshes' events (their arrival times): 20 steps in 10 s, 60 to go
    rates: dict = {}
    running_trials(rows, {**events, "t1": {**events["t1"], "_at": now - 11}}, now - 10, rates)
    t1 = running_trials(rows, {**events, "t1": {**events["t1"], "step": 60, "_at": now - 1}}, now, rates)[0]
    assert t1.left == "~30s left" and plain_line(t1, now).endswith("| loss 0.6931 | ~30s left | 1m15s")
    running[0] = t1
    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=140, color_system=None).print(table(running, "2 running, 0 pending; best 0.7 (a)"))
    out = buf.getvalue()
    for needle in ("trial", "order", "doing", "steps", "loss", "phase left", "elapsed", "a>b", "stage 2/3 b, seed 2/3",
                   "60/120", "0.6931", "~30s", "1m15s", "eval", "best 0.7 (a)"):
        assert needle in out, (needle, out)


# ------------------------------------------------------------------ a simulated search, non-TTY
def test_simulated_search_prints_the_running_trials_stages(tmp_path, ray_local):
    """Plain lines while trials run name their order and stage i of k; each finished trial leaves one
    line with its order, outcome and score."""
    from search.runner import run_search

    space = OrderSpace(candidates=TOY3[:2], lengths=[2])  # two orders, run side by side
    table_path = _table(tmp_path, space)
    p = _search_config(tmp_path, {"candidates": TOY3[:2], "length": 2, "searcher": "exhaustive",
                                  "simulate": {"table": str(table_path), "seconds_per_stage": 2.0},
                                  "scheduler": {"type": "none"}, "resources": {"max_concurrent": 2},
                                  "tracking": {"enabled": False}})
    lines: list[str] = []  # (Tune pickles its callbacks, and with them this log: plain values only)
    exp = run_search(str(p), name="live", storage=str(tmp_path / "runs"), log=lines.append, progress="plain")
    import csv

    rows = {r["trial_id"]: r for r in csv.DictReader(open(exp / "results.csv"))}
    running = [ln for ln in lines if " running " in ln and "|" in ln]
    stages = {(m.group(1), m.group(2), m.group(3)) for ln in running
              if (m := re.search(r" running (\S+) (\S+) \| stage (\d)/3 ", ln))}
    # every trial was seen in both of its stages, with its own order
    for tid, r in rows.items():
        assert (tid, r["order"], "1") in stages and (tid, r["order"], "2") in stages, (tid, running)
    # the stage a line names is the task at that position of the trial's order
    for ln in running:
        m = re.search(r" (\S+) \| stage (\d)/3 (\S+)", ln)
        assert m.group(1).split(">")[int(m.group(2)) - 1] == m.group(3).rstrip(","), ln
    done = [ln for ln in lines if re.match(r"\[\s*\d+s\] trial ", ln)]
    assert len(done) == len(rows)
    for tid, r in rows.items():
        ln = next(x for x in done if f" trial {tid} " in x)
        assert f"{r['order']}: completed, score {float(r['score']):.4f} | trials: " in ln, ln


def test_view_without_a_hub_when_trials_send_no_progress():
    """Simulated trials that take no time send no progress: no hub actor is started (no Ray call at all),
    and the view still shows the running trials from results.csv's rows."""
    from search.progress import LiveProgress

    class Writer:
        rows = {"t_00001": {"status": "running", "order": "toy_a>toy_b", "_started": time.time() - 60}}

        def status_line(self):
            return "1 running"

    lines: list[str] = []
    with LiveProgress("exp", Writer(), mode="plain", log=lines.append, refresh=0.05, heartbeat=1.0, events=False) as view:
        deadline = time.time() + 10
        while not lines and time.time() < deadline:
            time.sleep(0.05)
        assert view.hub is None
    assert lines and "running t_00001 toy_a>toy_b | starting" in lines[0], lines


# ------------------------------------------------------------------ one chain: itt run's view
def test_phase_rate_counts_steps_per_second_and_the_time_left_from_the_phases_first_event():
    from search.progress import PhaseRate

    st = PhaseRate()
    assert st.observe({"phase": "stage", "stage": 1, "stages": 2, "task": "mnli", "step": 0, "total": 100}, 10.0)
    assert st.rate() is None and st.left() is None  # one event: no rate yet
    assert not st.observe({"phase": "stage", "stage": 1, "stages": 2, "task": "mnli", "step": 40, "total": 100,
                           "loss": 0.75}, 30.0)
    assert st.rate() == pytest.approx(40 / 20) and st.left() == pytest.approx(60 / 2)
    assert st.line(35.0) == "stage 1/2 mnli | step 40/100 (40%) | loss 0.7500 | 2.0 steps/s | ~30s left | 25s"
    # a slow phase reads in seconds per step; a new phase (the next seed) counts from its own first event
    assert st.observe({"phase": "stage", "stage": 1, "stages": 2, "task": "mnli", "seed_index": 1, "seeds": 2,
                       "step": 5, "total": 100}, 100.0)
    st.observe({"phase": "stage", "stage": 1, "stages": 2, "task": "mnli", "seed_index": 1, "seeds": 2,
                "step": 7, "total": 100}, 110.0)
    assert st.what == "stage 1/2 mnli, seed 2/2" and st.rate() == pytest.approx(0.2)
    assert st.fields()["rate"] == "5.0 s/step" and st.fields()["left"] == f"~{(100 - 7) * 5 // 60}m{(100 - 7) * 5 % 60:02d}s left"
    st.observe({"phase": "eval", "stage": 2, "stages": 2, "task": "xnli"}, 200.0)  # no steps: only the phase and its time
    assert st.line(260.0) == "eval xnli | 1m00s"


def test_probe_also_each_task_probed_is_a_phase_of_its_own(write_config):
    """probe.also probes each eval.also task after the target's probe: the phases were both 'probe after stage
    1/2', so the second task's steps, from 0 again, counted their rate from the first task's first step (50
    steps in 10 s, 15 s after the first task's step 0, read 3.3 steps/s and ~15s left, not 5.0 and ~10s) on a
    bar whose count went back. Each probe names its task and is a phase of its own."""
    from itt.chain import run_chain
    from itt.config import load_config
    from search.progress import PhaseRate

    cfg = load_config(str(write_config({"order": ["toy_topic"], "seeds": [0], "probe": {"enabled": True, "steps": 3,
                                                                                        "also": True},
                                        "eval": {"also": ["toy_sim"], "perturbation": {"enabled": False}}})))
    events: list[dict] = []
    run_chain(cfg, progress=events.append, log=lambda *a: None)
    probes = [Running("", "", 0.0, e).phase() for e in events if e["phase"] == "probe" and e.get("step")]
    assert sorted(set(probes)) == ["probe after stage 1/2 toy_sim", "probe after stage 1/2 toy_xnli"], probes
    evals = {Running("", "", 0.0, e).phase() for e in events if e["phase"] == "eval"}
    assert evals == {"eval toy_sim", "eval toy_xnli"}, evals  # (each evaluation names its task too)
    st = PhaseRate()
    probe = {"phase": "probe", "stage": 1, "stages": 2}
    assert st.observe({**probe, "task": "toy_xnli", "step": 0, "total": 100}, 0.0)
    st.observe({**probe, "task": "toy_xnli", "step": 100, "total": 100}, 2.0)
    assert st.rate() == pytest.approx(50.0)
    assert st.observe({**probe, "task": "toy_sim", "step": 0, "total": 100}, 5.0)  # (after the target's dev eval)
    st.observe({**probe, "task": "toy_sim", "step": 50, "total": 100}, 15.0)
    assert st.rate() == pytest.approx(50 / 10) and st.left() == pytest.approx(50 / 5)
    assert st.line(15.0) == "probe after stage 1/2 toy_sim | step 50/100 (50%) | 5.0 steps/s | ~10s left | 10s"
    rates: dict = {}  # a search's live view times each trial's phase the same way
    rows = {"t": {"status": "running", "order": "toy_topic", "_started": 100.0}}
    for task, step, at in (("toy_xnli", 0, 100.0), ("toy_xnli", 100, 102.0), ("toy_sim", 0, 105.0), ("toy_sim", 50, 115.0)):
        (r,) = running_trials(rows, {"t": {**probe, "task": task, "step": step, "total": 100, "_at": at}}, at, rates)
    assert r.left == "~10s left" and r.phase() == "probe after stage 1/2 toy_sim"


def test_chain_view_plain_prints_a_line_per_heartbeat_of_a_phase_even_one_without_events():
    from search.progress import ChainView

    lines: list[str] = []
    view = ChainView("plain", log=lines.append, heartbeat=30.0, clock=lambda: 0.0)
    view.update({"phase": "stage", "stage": 1, "stages": 1, "task": "mnli", "step": 0, "total": 90})
    view.tick(29.0)
    assert lines == []  # shorter than a heartbeat: the chain's own line named the stage already
    view.clock = lambda: 30.0
    view.update({"phase": "stage", "stage": 1, "stages": 1, "task": "mnli", "step": 30, "total": 90, "loss": 0.5})
    view.tick(30.0)
    view.tick(45.0)
    assert len(lines) == 1 and lines[0].endswith("stage 1/1 mnli | step 30/90 (33%) | loss 0.5000 | 1.0 steps/s | ~1m00s left | 30s")
    view.clock = lambda: 50.0
    view.update({"phase": "eval", "stage": 1, "stages": 1, "task": "xnli"})  # one event, then a long evaluation
    view.tick(79.0)
    view.tick(80.0)
    view.tick(110.0)
    assert [ln.split(" ", 1)[1] for ln in lines[1:]] == ["eval xnli | 30s", "eval xnli | 1m00s"]


def test_itt_run_shows_where_its_chain_is_and_trains_the_same_with_and_without(write_config, tmp_path):
    """The chain's events drive the view: a live bar on a terminal (rich, here into a string), timed lines
    otherwise; the chain's results are the same as without a view."""
    import json

    from rich.console import Console

    from itt.chain import run_chain
    from itt.config import load_config
    from search.progress import ChainView

    cfg = load_config(str(write_config({"order": ["toy_topic"], "seeds": [0], "eval": {"perturbation": {"enabled": False}}})))
    plain: list[str] = []
    with ChainView("plain", log=plain.append, heartbeat=0.0, interval=0.01) as view:
        with_view = run_chain(cfg, progress=view.progress, log=lambda *a: None)
    out, bars = io.StringIO(), []
    with ChainView("live", console=Console(file=out, force_terminal=True, width=140), interval=0.01) as view:
        update = view.update

        def seen(event):  # what the bar holds after each event (its frames are drawn twice a second, a tiny
            update(event)  # chain's phases are shorter)
            task = view._bar.tasks[0]
            bars.append((task.description, task.total, task.completed))

        view.progress._send = seen
        run_chain(cfg, progress=view.progress, log=lambda *a: None)
    without = run_chain(cfg, log=lambda *a: None)
    assert json.dumps(with_view["aggregate"], sort_keys=True) == json.dumps(without["aggregate"], sort_keys=True)
    assert any(re.search(r"stage 1/2 toy_topic \| step \d+/4 \(\d+%\)", ln) for ln in plain), plain
    assert any("target fine-tune toy_xnli | step" in ln for ln in plain), plain
    assert {(d, total) for d, total, _ in bars} >= {("stage 1/2 toy_topic", 4), ("target fine-tune toy_xnli", 4)}, bars
    assert bars[-1][:2] == ("eval toy_xnli", None) and "starting" in out.getvalue()  # (drawn from its start)


def test_chain_view_live_draws_the_phase_its_steps_loss_rate_and_time_left():
    from rich.console import Console

    from search.progress import ChainView

    out = io.StringIO()
    now = [0.0]
    with ChainView("live", console=Console(file=out, force_terminal=True, width=140), clock=lambda: now[0]) as view:
        view.update({"phase": "target", "stage": 2, "stages": 2, "task": "xnli"})  # a phase starts: no steps yet
        view.update({"phase": "target", "stage": 2, "stages": 2, "task": "xnli", "step": 0, "total": 1000})
        now[0] = 50.0
        view.update({"phase": "target", "stage": 2, "stages": 2, "task": "xnli", "step": 100, "total": 1000, "loss": 0.6})
        view._bar.refresh()
        first = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", out.getvalue())
        view.update({"phase": "eval", "stage": 2, "stages": 2, "task": "xnli"})
        view._bar.refresh()
    assert re.search(r"target fine-tune xnli \S+ +100/1000 loss 0.6000 2.0 steps/s ~7m30s left", first), first
    last = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", out.getvalue())[len(first):]
    assert "eval" in last and "/1000" not in last, last  # a phase without steps: no stale count


def test_the_hub_forgets_trials_that_ended(monkeypatch):
    """Each refresh the driver fetched every event the hub had held since the search began (one per trial
    ever run, finished ones too); trials whose row ended are now dropped from the hub after each draw."""
    import ray

    from search.progress import LiveProgress, ProgressHub

    hub = ProgressHub()

    class Remote:  # the actor's methods as `.remote` calls, answered in this process
        def __init__(self, fn):
            self.remote = fn

    class Handle:
        snapshot, drop = Remote(lambda: dict(hub.snapshot())), Remote(hub.drop)

    class Writer:
        rows = {"t1": {"status": "completed", "order": "a", "_started": 1.0},
                "t2": {"status": "running", "order": "b", "_started": time.time()},
                "t3": {"status": "errored", "order": "c", "_started": 1.0}}

        def status_line(self):
            return ""

    for t in ("t1", "t2", "t3", "t4"):  # t4: an event before its row (a trial just started)
        hub.update(t, {"phase": "stage", "stage": 1, "stages": 2, "task": "x"})
    monkeypatch.setattr(ray, "get", lambda ref, timeout=None: ref)
    view = LiveProgress("exp", Writer(), mode="plain", log=lambda msg: None, refresh=0.01)
    view.hub = Handle()
    view._start_view()
    deadline = time.time() + 10
    while len(hub.events) > 2 and time.time() < deadline:
        time.sleep(0.02)
    view._stop.set()
    view._thread.join(timeout=5)
    assert sorted(hub.events) == ["t2", "t4"]
