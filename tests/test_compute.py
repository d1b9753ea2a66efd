"""The report's compute section: run times from Ray's trial folders, device-hours from the search's
resources, the stage cache's and ASHA's savings — against hand computations."""

from __future__ import annotations

import json

import pytest

from search import compute as C
from search.tracking import storage_of


def _rows():
    return [
        {"trial_id": "a1", "status": "completed", "order": "x>y", "order_length": "2", "stages_completed": "2",
         "stages_trained": "4", "stages_from_cache": "2", "cache_seconds_saved": "10.5", "node_ip": "10.0.0.1"},
        {"trial_id": "b2", "status": "stopped", "order": "y>x>z", "order_length": "3", "stages_completed": "1",
         "stages_trained": "2", "stages_from_cache": "1", "cache_seconds_saved": "", "node_ip": "10.0.0.2"},
        {"trial_id": "c3", "status": "completed", "order": "", "order_length": "0", "stages_completed": "0",
         "stages_trained": "0", "stages_from_cache": "0", "cache_seconds_saved": "0", "node_ip": "10.0.0.1"},
    ]


def test_trial_times_read_the_last_line_of_rays_result_json(tmp_path):
    for tid, lines in (("a1", [(5.0, 1005.0), (20.0, 1020.0)]), ("b2", [(30.0, 1040.0)])):
        d = tmp_path / f"chain_trial_{tid}_1_k=2_2026-12-03_12-00-00"
        d.mkdir()
        (d / "result.json").write_text("".join(json.dumps({"trial_id": tid, "time_total_s": s, "timestamp": t}) + "\n"
                                               for s, t in lines))
    (tmp_path / "chain_trial_c3_3_k=0_2026-12-03_12-00-01").mkdir()  # a trial that never reported
    b2 = tmp_path / "chain_trial_b2_1_k=2_2026-12-03_12-00-00" / "result.json"
    b2.write_text(b2.read_text() + '{"trial_id": "b2", "time_total_s": 4')  # a driver killed mid-write: cut short
    (tmp_path / "trials").mkdir()
    st = storage_of(str(tmp_path), "experiment")
    times = C.trial_times(st)
    assert times == {"a1": {"seconds": 20.0, "start": 1000.0, "end": 1020.0},
                     "b2": {"seconds": 30.0, "start": 1010.0, "end": 1040.0}}
    # the search's own records come first (started/ended as the driver saw them); Ray's files fill in
    recs = tmp_path / "tracking" / "trials"
    recs.mkdir(parents=True)
    (recs / "a1.json").write_text(json.dumps({"trial_id": "a1", "started": 990.0, "ended": 1025.0}))
    (recs / "c3.json").write_text(json.dumps({"trial_id": "c3", "started": 1000.0}))  # still running: no end
    assert C.trial_times(st) == {"a1": {"seconds": 35.0, "start": 990.0, "end": 1025.0},
                                 "b2": {"seconds": 30.0, "start": 1010.0, "end": 1040.0}}
    # a trial `itt resume` ran again: its earlier run counts too, from when it first started
    from search.tracking import _keep_earlier_run

    rec = {"trial_id": "a1", "started": 900.0, "reports": [{"time": 930.0}, {"time": 950.0}]}  # killed after 950
    _keep_earlier_run(rec)
    assert (rec["earlier_seconds"], rec["first_started"]) == (50.0, 900.0)
    rec.update(started=960.0, ended=965.0)  # errored at 965, then retried
    _keep_earlier_run(rec)
    assert (rec["earlier_seconds"], rec["first_started"]) == (55.0, 900.0)
    rec.update(started=990.0, ended=1025.0)
    (recs / "a1.json").write_text(json.dumps(rec))
    assert C.trial_times(st)["a1"] == {"seconds": 90.0, "start": 900.0, "end": 1025.0}
    never = {"trial_id": "x", "started": 5.0, "reports": []}  # killed before its first report: no end known
    _keep_earlier_run(never)
    assert "earlier_seconds" not in never and never["first_started"] == 5.0


def test_summary_against_a_hand_computation():
    times = {"a1": {"seconds": 20.0, "start": 1000.0, "end": 1020.0}, "b2": {"seconds": 30.0, "start": 1010.0, "end": 1040.0}}
    gpu = {"search": {"resources": {"workers_per_trial": 2, "gpus_per_worker": 0.5}}}
    hw = [{"device": "cuda", "device_name": "NVIDIA H200"}, {"device": "cuda", "device_name": "NVIDIA H200"}]
    c = C.summarize(_rows(), times, gpu, hw, seeds=3)
    assert c["trial_seconds"] == 50.0 and c["span_seconds"] == 40.0 and c["concurrency"] == pytest.approx(1.25)
    assert (c["devices_per_trial"], c["device_kind"]) == (1.0, "GPU") and c["device_hours"] == pytest.approx(50 / 3600)
    assert c["chains"] == 9 and c["timed_trials"] == 2 and c["nodes"] == ["10.0.0.1", "10.0.0.2"]
    assert c["hardware"] == ["NVIDIA H200 (cuda)"]
    assert (c["stages_trained"], c["stages_from_cache"], c["cache_seconds_saved"]) == (6, 3, 10.5)
    # the stopped 3-stage order after stage 1: 2 intermediate stages and the fine-tune skipped, per seed
    assert (c["stopped"], c["stages_skipped"], c["finetunes_skipped"]) == (1, 6, 3)
    cpu = C.summarize(_rows(), times, {"search": {"resources": {"cpus_per_worker": 0.75, "trial_cpus": 0.25}}}, [], 3)
    assert (cpu["devices_per_trial"], cpu["device_kind"]) == (1.0, "CPU core")
    assert C.summarize(_rows(), {}, None, [], 1)["span_seconds"] is None  # no Ray folders: no times, no span
    text = C.text(c)
    assert "0.0139 GPU-hours at 1 GPU(s) per trial" in text and "1.2 trials at a time" in text
    assert "skipping 6 intermediate stage(s) and 3 target fine-tune(s)" in text
    m = C.metrics(c)
    assert m["report_compute_device_hours"] == pytest.approx(50 / 3600)
    assert m["report_compute_span_hours"] == pytest.approx(40 / 3600)
    assert "share_of_exhaustive" not in c and "report_compute_share_of_exhaustive" not in m  # (no space given)


def test_share_of_every_order_once_against_a_hand_computation():
    """The search's stage-trainings and fine-tunes over seeds against every order once with the stage
    cache (the compute axis of bench/search_efficiency.py); a replay trained nothing."""
    from search.plan import Work

    replay = {"trial_id": "d4", "status": "completed", "order": "x>y", "order_length": "2", "stages_completed": "2",
              "stages_trained": "0", "stages_from_cache": "0", "replayed": "true"}
    c = C.summarize(_rows() + [replay], {}, None, [], seeds=3, every=Work(orders=10, stages=9, uncached=15))
    assert c["finetunes"] == 2 * 3 and (c["exhaustive_stages"], c["exhaustive_finetunes"]) == (27, 30)
    assert c["share_of_exhaustive"] == pytest.approx((6 + 6) / (27 + 30))
    assert "would take 27 stage-trainings and 30 fine-tunes over seeds with the stage cache; the search spent 21% " \
           "of that (6 and 6)" in C.text(c)
    assert C.metrics(c)["report_compute_share_of_exhaustive"] == pytest.approx(12 / 57)
    # chains that also fine-tune two eval.also targets: three fine-tunes each, on both sides
    c = C.summarize(_rows() + [replay], {}, None, [], seeds=3, every=Work(orders=10, stages=9, uncached=15), per_chain=3)
    assert c["finetunes"] == 2 * 3 * 3 and (c["exhaustive_stages"], c["exhaustive_finetunes"]) == (27, 90)
    assert c["share_of_exhaustive"] == pytest.approx((6 + 18) / (27 + 90))


def test_the_searchers_own_time_in_the_compute_statement():
    """summary.json's searcher_time (proposals and taking in results) joins the compute statement, as a share
    of the search's wall-clock time; a search without it (older, or `exhaustive`) says nothing of it."""
    t = {"proposals": 8, "seconds": 5.0, "propose_seconds": 4.0, "results_seconds": 1.0, "median_proposal_seconds": 0.3,
         "longest_proposal_seconds": 2.0, "search_seconds": 200.0, "per_proposal": []}
    c = C.summarize(_rows(), {}, None, [], seeds=3, searcher=t)
    assert c["searcher_seconds"] == 5.0 and c["searcher_proposals"] == 8
    assert "The searcher's own time on the driver (its 8 proposals and taking in results): 5.0 s, 2.5% of the " \
           "search's 3.3 min." in C.text(c)
    assert C.metrics(c)["report_compute_searcher_seconds"] == 5.0
    plain = C.summarize(_rows(), {}, None, [], seeds=3)
    assert "searcher_seconds" not in plain and "searcher's own time" not in C.text(plain)
    assert "report_compute_searcher_seconds" not in C.metrics(plain)


def test_fine_tunes_per_chain_read_from_results_json():
    """The report's fine-tunes per chain: the target's (none for a retrieval target, whose stages list holds
    the intermediate stages only) plus one per eval.also task that trains (has a fine_tune block)."""
    from search.report import _finetunes

    also = {"panx": {"fine_tune": {"seconds": 1.0}, "dev": {}}, "tatoeba": {"test": {}}}  # Tatoeba: no fine-tune
    assert _finetunes({"order": ["a"]}, {"stages": [{}], "also": also}) == 1  # retrieval target + PAN-X
    assert _finetunes({"order": ["a"]}, {"stages": [{}, {}], "also": also}) == 2  # a target that trains + PAN-X
    assert _finetunes({"order": []}, {"stages": []}) == 0  # F on a retrieval target: no fine-tune at all
    assert _finetunes({"order": ["a"]}, {}) == 1  # no stages recorded (a simulated trial): the target's
    from search.plan import Work

    c = C.summarize(_rows(), {}, None, [], seeds=1, every=Work(orders=1, stages=0, uncached=0), per_chain=0)
    assert c["share_of_exhaustive"] is None  # nothing to train at all: no share, no division by zero
