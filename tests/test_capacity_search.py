"""bench/capacity.py's search for the largest sustained camera count (pure logic, no cameras)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.unit

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def capacity() -> ModuleType:
    sys.path.insert(0, str(BENCH))  # capacity.py imports its sibling helpers (_smaps, _benchutil)
    try:
        spec = importlib.util.spec_from_file_location("bench_capacity", BENCH / "capacity.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while it is executed
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


def run(capacity: ModuleType, true_max: int, estimate: int, cap: int) -> tuple[list[int], int, int | None]:
    search = capacity.Search(first=2, cap=cap, max_probes=cap)
    while (n := search.next()) is not None:
        search.record(n, n <= true_max)
        if search.probes == 1:
            search.estimate = min(estimate, cap)
    return search.tried, search.lo, search.hi


def test_finds_the_exact_boundary_from_any_estimate(capacity: ModuleType) -> None:
    cap = 24
    for true_max in range(cap + 1):
        for estimate in (1, 2, 3, true_max - 3, true_max - 1, true_max, true_max + 1, true_max + 5, 40):
            tried, lo, hi = run(capacity, true_max, max(1, estimate), cap)
            assert tried[0] == 2 and len(set(tried)) == len(tried), tried  # no N run twice
            assert all(1 <= n <= cap for n in tried)
            expected_hi = true_max + 1 if true_max < cap else None
            assert lo == true_max and hi == expected_hi, (true_max, estimate, tried)
            # the verdict's semantics: largest sustained below the smallest not sustained, both run
            assert (true_max == 0 or true_max in tried) and (hi is None or hi in tried)


def test_a_good_estimate_needs_few_runs(capacity: ModuleType) -> None:
    assert run(capacity, 12, 12, 24)[0] == [2, 12, 13]
    assert run(capacity, 12, 13, 24)[0] == [2, 13, 12]
    assert run(capacity, 12, 9, 24)[0] == [2, 9, 10, 12, 16, 14, 13]  # +1, +2, +4, then bisect


def test_estimate_from_a_run(capacity: ModuleType) -> None:
    row = {"n_cams": 2, "summary": {"cpu_pct": 40.0, "sim_pct": 2.0},
           "cpu_by_process": {"detector/cpu": 20.0}, "detector": {"processes": 1, "threads": 2}}
    cpus = capacity.os.cpu_count() or 1
    by_cpu = int(capacity.HEADROOM * cpus * 100 / 21.0)
    by_detector = int(capacity.HEADROOM * min(cpus, 2) * 100 / 10.0)
    assert capacity.estimate_n(row) == max(1, min(by_cpu, by_detector))
    assert capacity.estimate_n({"n_cams": 2, "summary": {}}) is None


def test_bound_with_the_simulators_share(capacity: ModuleType) -> None:
    """The 'at best' bound: decode + needed model runs vs the loop, then with the simulator's CPU on both."""
    cf = {"profile": "typical", "system": "camfleet", "n_cams": 20, "sustained": True,
          "summary": {"det_img_s": 25.0, "sim_pct": 16.0, "cpu_pct_cam": 7.0},
          "cpu_by_process": {"cap1/ingest": 60.0, "detector/cpu": 50.0, "cap1/pipeline": 14.0}}
    loop = {"profile": "typical", "system": "opencv", "n_cams": 10, "sustained": True,
            "summary": {"sim_pct": 8.0}}
    verdict = {"typical": {"camfleet": {"max_sustained": 20},
                           "opencv": {"max_sustained": 10, "cpu_pct_cam": 15.0}}}
    (b,) = capacity.bound_results([cf, loop], verdict)
    ms_img = 10 * 50.0 / 25.0  # 20 ms of detector CPU per image
    floor = 60.0 / 20 + 0.25 * capacity.DET_FPS * ms_img / 10  # 3 % decode + 2.5 % model runs
    assert b["bound"] == pytest.approx(15.0 / floor)
    assert b["bound_with_sim"] == pytest.approx((15.0 + 0.8) / (floor + 0.8))
    assert b["bound_with_sim"] < b["bound"]
    (line,) = capacity.bound_lines([b])
    assert "at best 2.73x" in line and "at best 2.51x" in line


def test_pss_target_is_judged_at_the_largest_n_both_sustained_in_either_profile(capacity: ModuleType) -> None:
    def row(profile: str, system: str, n: int, pss: float, sustained: bool = True) -> dict[str, object]:
        return {"profile": profile, "system": system, "n_cams": n, "sustained": sustained,
                "summary": {"pss_mb": pss}}
    rows = [row("always", "camfleet", 2, 260), row("always", "opencv", 2, 130),
            row("always", "camfleet", 9, 530), row("always", "opencv", 9, 355),
            row("always", "camfleet", 12, 650, sustained=False), row("always", "opencv", 12, 450),
            row("typical", "camfleet", 2, 262), row("typical", "opencv", 2, 129),
            row("typical", "camfleet", 25, 1084), row("typical", "opencv", 11, 424)]
    t = capacity.pss_target(rows)
    assert t["result"] == "PASS" and t["value"] == pytest.approx(530 / 355)
    assert "at 9 cam (always)" in t["figures"]
    # nothing sustained in common: the largest N both ran, said so
    t = capacity.pss_target([row("always", "camfleet", 12, 900, False),
                             row("always", "opencv", 12, 450, False)])
    assert t["result"] == "MISS" and "(not sustained there)" in t["figures"]
    assert capacity.pss_target([row("typical", "camfleet", 25, 1084)])["result"] == "n/a"
