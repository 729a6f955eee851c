"""A bounded Jepsen-style campaign: short scenarios that together apply every nemesis at least
once against real 3- and 5-node clusters, with every workload, and must report no anomaly.

Each scenario prints its seed and report directory on failure; failing runs keep the history,
the nemesis timeline, node logs and data directories under ``test-reports/jepsen/``. An opt-in
test (``JEPSEN_HYPOTHESIS=1``) draws its fault schedule from Hypothesis, so a failure there is
shrunk to a smaller schedule; it is off by default because it does not fit the 8-minute budget.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from tests.jepsen.campaign import Config, run_campaign
from tests.jepsen.nemesis import KINDS, Fault, Schedule, schedule_strategy

pytestmark = [pytest.mark.jepsen, pytest.mark.timeout(300)]


def _schedule(parts: list[tuple[str, float, float]]) -> Schedule:
    return Schedule([Fault(kind, gap, dur, 1000 + 37 * i) for i, (kind, gap, dur) in enumerate(parts)])


SCENARIOS: dict[str, tuple[Config, Schedule]] = {
    "partitions-pauses": (
        Config(seconds=45, nodes=3, seed=11, workload="all"),
        _schedule([
            ("partition-leader", 1.0, 3.0), ("partition-half", 1.0, 3.0), ("partition-oneway", 1.0, 3.0),
            ("partition-bridge", 1.0, 3.0), ("pause", 1.0, 2.0), ("pause-isolate", 1.0, 2.0),
        ]),
    ),
    "crashes-disk": (
        Config(seconds=50, nodes=3, seed=12, workload="register,bank,watch", snapshot_count=100),
        _schedule([
            ("kill", 1.0, 1.0), ("kill-leader", 1.0, 1.0), ("kill-all", 1.0, 0.3), ("torn-tail", 1.0, 0.5),
            ("torn-tail", 1.0, 0.5),
        ]),
    ),
    "enospc-clock": (
        Config(seconds=45, nodes=3, seed=13, workload="register,lease"),
        _schedule([("enospc", 1.0, 3.0), ("clock", 1.0, 3.0), ("clock", 1.0, 3.0)]),
    ),
    "five-nodes-bridge": (
        Config(seconds=30, nodes=5, seed=14, workload="register,watch", rate=80),
        _schedule([("partition-bridge", 1.0, 3.0), ("partition-half", 1.0, 3.0), ("kill-leader", 1.0, 1.0)]),
    ),
}


def _check(report: dict[str, object], cfg: Config) -> None:
    assert report["anomalies"] == 0 and report["acked_lost"] == 0, (
        f"seed {cfg.seed}: anomalies {report.get('anomaly_kinds')}, acked_lost {report['acked_lost']};"
        f" artifacts in {report['report_dir']}"
    )


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario(name: str, report_root: Path) -> None:
    base, schedule = SCENARIOS[name]
    cfg = Config(**{**base.__dict__, "schedule": schedule, "report_dir": report_root / name, "name": name,
                    "heal_s": 5.0})
    report = run_campaign(cfg)
    print(f"scenario {name}: seed {cfg.seed}, report {report['report_dir']}")
    _check(report, cfg)
    applied = report["faults"]
    assert isinstance(applied, dict)
    missing = {f.kind for f in schedule.faults} - set(applied)
    assert not missing, f"seed {cfg.seed}: faults never applied {missing}; timeline in {report['report_dir']}"


def test_scenarios_cover_every_nemesis() -> None:
    covered = {f.kind for _, sched in SCENARIOS.values() for f in sched.faults}
    assert covered == set(KINDS)


@pytest.mark.skipif(
    os.environ.get("JEPSEN_HYPOTHESIS") != "1",
    reason="opt-in (JEPSEN_HYPOTHESIS=1): shrinking a failing generated schedule runs many campaigns",
)
@settings(max_examples=1, derandomize=True, deadline=None, database=None,
          phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
@given(schedule=schedule_strategy(("partition-half", "partition-oneway", "pause", "kill"), max_faults=3))
def test_generated_schedule(schedule: Schedule) -> None:
    from tests.jepsen.conftest import REPORT_ROOT

    cfg = Config(seconds=25, nodes=3, seed=15, workload="register,watch", schedule=schedule, heal_s=5.0,
                 report_dir=REPORT_ROOT / "pytest-generated", name="generated")
    _check(run_campaign(cfg), cfg)
