"""One Jepsen-style campaign: start a cluster, run workloads under a nemesis schedule, heal, read
the committed history, check, and write the report (ISSUE 7).

Owns: ``Config`` (what to run), ``run_campaign`` (the whole run, always stopping every process it
started by PID) and the report: a JSON summary (ops ok/fail/unknown, faults by kind, anomalies by
kind, acknowledged writes lost, checker time), written to ``<report_dir>/report.json``; on failure
the directory also keeps ``history.jsonl``, ``nemesis.json``, ``anomalies.txt``, the node logs and
the data directories; on success the cluster directory is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from raftkv.checker import save_jsonl
from raftkv.client import WATCH_LINE_BYTES
from tests.jepsen import checks
from tests.jepsen.client import Api, b64, header_rev
from tests.jepsen.cluster import JepsenCluster
from tests.jepsen.nemesis import Nemesis, Schedule, kinds_for, random_schedule
from tests.jepsen.workloads import (
    LOCK_COUNTER_PREFIX,
    Bank,
    Ctx,
    Leases,
    Locks,
    Register,
    Watcher,
    prefix_range,
)

WORKLOADS = ("register", "bank", "watch", "lease", "lock")


@dataclass
class Config:
    seconds: float = 30.0
    nodes: int = 3
    seed: int = 0
    nemesis: str = "all"
    workload: str = "all"
    report_dir: Path | None = None
    heal_s: float = 8.0
    heartbeat_ms: int = 50
    election_ms: int = 600
    lazy_disk: bool = True
    unsafe: tuple[str, ...] = ()  # canary switches (RAFTKV_UNSAFE_<NAME>=1)
    snapshot_count: int | None = None
    rate: float = 100.0
    lease_ttl: int = 4
    schedule: Schedule | None = None  # overrides the generated schedule
    checker_budget_s: float = 60.0
    name: str = "campaign"
    extra_env: dict[str, str] = field(default_factory=dict)

    def workloads(self) -> tuple[str, ...]:
        if self.workload == "all":
            return WORKLOADS
        ws = tuple(w.strip() for w in self.workload.split(","))
        for w in ws:
            if w not in WORKLOADS:
                raise ValueError(f"unknown workload {w!r}; choose from {WORKLOADS}")
        return ws


def default_report_dir(name: str) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return Path("test-reports") / "jepsen" / f"{stamp}-{name}-{random.randrange(1 << 16):04x}"


def run_campaign(cfg: Config) -> dict[str, Any]:
    """Run one campaign and return its report (``report["anomalies"] == 0`` when all is well)."""
    report_dir = cfg.report_dir or default_report_dir(cfg.name)
    if (report_dir / "cluster").exists() or (report_dir / "report.json").exists():
        # Never reuse an earlier run's directory: its data dirs would be recovered by new nodes,
        # and its artifacts may be the only record of a failure.
        report_dir = report_dir / time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        n = 0
        while report_dir.exists():
            n += 1
            report_dir = report_dir.with_name(f"{report_dir.name.split('.')[0]}.{n}")
    report_dir.mkdir(parents=True, exist_ok=True)
    env = dict(cfg.extra_env)
    if cfg.lazy_disk:
        env["RAFTKV_TEST_DISK"] = "lazy"
    for flag in cfg.unsafe:
        env[f"RAFTKV_UNSAFE_{flag.upper()}"] = "1"
    extra = ["--snapshot-count", str(cfg.snapshot_count)] if cfg.snapshot_count else []
    cluster = JepsenCluster(
        cfg.nodes, report_dir / "cluster", heartbeat_ms=cfg.heartbeat_ms, election_ms=cfg.election_ms,
        extra_args=extra, env=env,
    )
    report: dict[str, Any] = {"name": cfg.name, "seed": cfg.seed, "nodes": cfg.nodes, "nemesis": cfg.nemesis,
                              "workload": cfg.workload, "unsafe": list(cfg.unsafe),
                              "report_dir": str(report_dir)}
    keep = True
    try:
        cluster.start()
        result = asyncio.run(_campaign(cfg, cluster, report_dir))
        report.update(result)
        keep = report["anomalies"] > 0 or report["acked_lost"] > 0 or os.environ.get("JEPSEN_KEEP") == "1"
    except BaseException as exc:
        report.setdefault("anomalies", 1)
        report.setdefault("acked_lost", 0)
        report["error"] = f"{type(exc).__name__}: {exc}"[:4000]
        raise
    finally:
        cluster.close()
        report["kept_artifacts"] = keep
        (report_dir / "report.json").write_text(json.dumps(report, indent=1, default=str))
        if keep:
            (report_dir / "proxy_events.json").write_text(json.dumps(cluster.proxies.events))
        else:
            shutil.rmtree(report_dir / "cluster", ignore_errors=True)
    return report


async def _campaign(cfg: Config, cluster: JepsenCluster, report_dir: Path) -> dict[str, Any]:
    t0 = time.monotonic_ns()
    ports = [n.client_port for n in cluster.nodes]
    election_s = cfg.election_ms / 1000
    kinds = kinds_for(cfg.nemesis)
    sched_rng = random.Random(cfg.seed ^ 0x5EED)
    schedule = cfg.schedule or random_schedule(kinds, cfg.seconds, sched_rng, election_s)
    wl = cfg.workloads()
    stop = asyncio.Event()
    nem_stop = threading.Event()
    conn = aiohttp.TCPConnector(limit=200, force_close=False)
    # The final full-history watch gets catch-up lines far above aiohttp's 128 KiB line default.
    async with aiohttp.ClientSession(connector=conn, read_bufsize=WATCH_LINE_BYTES // 2) as session:
        api = Api(session, timeout_s=max(3.0, 6 * election_s))
        share = cfg.rate / max(1, len([w for w in wl if w in ("register", "bank")]))

        def ctx(rate: float, salt: int) -> Ctx:
            return Ctx(api, ports, random.Random(cfg.seed * 1000 + salt), stop, t0, rate)

        register = Register(ctx(share, 1), clients=10) if "register" in wl else None
        bank = Bank(ctx(share / 3, 2)) if "bank" in wl else None
        watchers = [Watcher(ctx(0, 10 + i), i) for i in range(cfg.nodes)] if "watch" in wl else []
        leases = Leases(ctx(0, 3), ttl=cfg.lease_ttl) if "lease" in wl else None
        locks = Locks(ctx(0, 4), ttl=cfg.lease_ttl) if "lock" in wl else None
        jobs: list[Any] = []
        if register:
            jobs.append(register.run())
        if bank:
            jobs.append(bank.run())
        jobs += [w.run() for w in watchers]
        if leases:
            jobs.append(leases.run())
        if locks:
            jobs.append(locks.run())
        tasks = [asyncio.create_task(j) for j in jobs]

        nemesis = Nemesis(cluster, lambda: (time.monotonic_ns() - t0) / 1e9, nem_stop)
        nem_thread = asyncio.create_task(asyncio.to_thread(nemesis.run, schedule))
        # The fault phase lasts cfg.seconds; the schedule is cut short there, then everything heals.
        with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(nem_thread), timeout=cfg.seconds)
        nem_stop.set()
        await nem_thread
        # A schedule shorter than the fault phase leaves the rest of it fault-free.
        rest = cfg.seconds - (time.monotonic_ns() - t0) / 1e9
        if rest > 0:
            await asyncio.sleep(rest)
        heal_start = (time.monotonic_ns() - t0) / 1e9
        # Healing phase: the workload keeps running against a healthy cluster (a schedule, not sync).
        await asyncio.sleep(cfg.heal_s)
        stop.set()
        _, pending = await asyncio.wait(tasks, timeout=30)
        for t in pending:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

        final = await _final_state(cluster, api, ports, t0, cfg, leases, locks is not None)
    t_check = time.monotonic()
    anomalies: dict[str, list[str]] = dict(final.pop("anomalies"))
    events = final.pop("events")
    seen_t = final.pop("seen_t")
    reg_report: dict[str, Any] = {}
    history = register.history.build() if register else []
    if register and events is not None:
        reg = checks.check_registers(history, events, seen_t, cfg.checker_budget_s)
        history = reg.pop("resolved_ops")
        anomalies.update(reg.pop("anomalies"))
        reg_report = reg
    if bank:
        anomalies.update(checks.check_bank(bank, final.get("bank_total")))
    if watchers and events is not None:
        anomalies.update(checks.check_watchers(watchers, events))
    if leases:
        anomalies.update(
            checks.check_leases(
                leases.records, cfg.lease_ttl, nemesis.max_clock_rate,
                None if final.get("lease_unkept_present") is None else set(final["lease_unkept_present"]),
            )
        )
    lock_report: dict[str, Any] = {}
    if locks:
        lock_report = checks.check_locks(locks.holds, final.get("lock_counters"), events)
        anomalies.update(lock_report.pop("anomalies"))
        if locks.client_errors:
            anomalies["lock_client_error"] = locks.client_errors
    if nemesis.churn_violations:
        anomalies["term_churn"] = nemesis.churn_violations
    if nemesis.errors:
        anomalies["nemesis_error"] = nemesis.errors
    checker_s = time.monotonic() - t_check

    ops = {"ok": 0, "fail": 0, "unknown": 0}
    for w in (register, bank, leases, locks):
        if w is not None:
            for k, v in w.counts.items():
                ops[k] += v
    n_anom = sum(len(v) for v in anomalies.values())
    out: dict[str, Any] = {
        "schedule": schedule.to_json(),
        "ops": sum(ops.values()),
        **ops,
        "register_ops": len(history),
        "bank_reads": len(bank.reads) if bank else 0,
        "watch_events": [len(w.events) for w in watchers],
        "watch_resumes": sum(w.resumes for w in watchers),
        "leases": len(leases.records) if leases else 0,
        **_lock_counts(locks, lock_report),
        "faults": nemesis.counts,
        "bridge_term_churn": nemesis.term_churn,
        "heal_start_s": round(heal_start, 3),
        **final,
        **reg_report,
        "checker_s": round(checker_s, 3),
        "anomaly_kinds": {k: len(v) for k, v in anomalies.items()},
        "anomalies": n_anom,
        "acked_lost": len(anomalies.get("acked_lost", [])),
    }
    (report_dir / "nemesis.json").write_text(json.dumps(nemesis.timeline, indent=1))
    if leases:
        (report_dir / "leases.json").write_text(json.dumps([asdict(r) for r in leases.records], default=str))
    if locks:
        (report_dir / "locks.json").write_text(json.dumps([asdict(h) for h in locks.holds], default=str))
    if n_anom:
        save_jsonl(history, report_dir / "history.jsonl")
        with (report_dir / "anomalies.txt").open("w") as f:
            for kind, items in anomalies.items():
                f.write(f"== {kind} ({len(items)})\n")
                for item in items[:200]:
                    f.write(item + "\n")
        if watchers:
            (report_dir / "watchers.json").write_text(json.dumps([w.events for w in watchers]))
        if events is not None:
            (report_dir / "final_history.json").write_text(json.dumps(events))
    return out


def _lock_counts(locks: Locks | None, lock_report: dict[str, Any]) -> dict[str, Any]:
    if locks is None:
        return {}
    return {
        "lock_holds": len(locks.holds),
        "lock_increments": locks.increments("ok"),
        "lock_increments_unknown": locks.increments("unknown"),
        "lock_fenced_rejections": locks.increments("lost"),
        "lock_zombies": sum(h.zombie for h in locks.holds),
        "lock_sessions": locks.sessions,
        "lock_sessions_died": locks.sessions_died,
        "lock_acquire_failures": locks.acquire_failures,
        **lock_report,
    }


async def _final_state(
    cluster: JepsenCluster, api: Api, ports: list[int], t0: int, cfg: Config, leases: Leases | None,
    locks: bool = False,
) -> dict[str, Any]:
    """After healing: a write must complete within 10 s; read the current revision, then the whole
    committed history by a full watch from revision 1 on the node that served that read."""
    anomalies: dict[str, list[str]] = {}
    out: dict[str, Any] = {"anomalies": anomalies, "events": None, "seen_t": 0.0}
    start = time.monotonic()
    port = None
    rev = 0
    while time.monotonic() - start < 10.0 and port is None:
        for p in ports:
            res = await api.call(p, "/v3/kv/put", {"key": b64("jepsen/heal"), "value": b64("x")}, 2.0)
            if res.ok:
                port, rev = p, header_rev(res.body)
                break
        else:
            await asyncio.sleep(0.2)
    out["heal_to_first_write_s"] = round(time.monotonic() - start, 3)
    if port is None:
        anomalies["unavailable_after_heal"] = ["no write completed within 10 s of healing"]
        return out
    stop = asyncio.Event()
    reader = Watcher(Ctx(api, ports, random.Random(0), stop, t0, 0), 0)
    if not await reader.catch_up(port, rev, 30.0):
        anomalies["final_history_incomplete"] = [f"full watch reached {reader.last_rev} < {rev}"]
        return out
    out["events"] = [e for e in reader.events if e[0] <= rev]
    out["seen_t"] = (time.monotonic_ns() - t0) / 1e9
    out["final_revision"] = rev
    # Bank total at one revision.
    res = await api.call(port, "/v3/kv/range", {"key": b64("b/"), "range_end": b64("b0")})
    if res.ok:
        from tests.jepsen.client import unb64

        out["bank_total"] = sum(int(unb64(kv.get("value"))) for kv in res.body.get("kvs", []))
    if locks:
        res = await api.call(port, "/v3/kv/range", prefix_range(LOCK_COUNTER_PREFIX))
        if res.ok:
            from tests.jepsen.client import unb64

            out["lock_counters"] = {
                unb64(kv["key"]): int(unb64(kv.get("value"))) for kv in res.body.get("kvs", [])
            }
    # Convergence: every node reaches the final revision (serializable reads) within a deadline.
    converged = False
    end = time.monotonic() + 15
    while time.monotonic() < end and not converged:
        revs = []
        for p in ports:
            r = await api.call(p, "/v3/kv/range", {"key": b64("jepsen/heal"), "serializable": True}, 2.0)
            revs.append(header_rev(r.body) if r.ok else -1)
        converged = min(revs) >= rev
        if not converged:
            await asyncio.sleep(0.2)
    out["converged"] = converged
    if not converged:
        statuses = []
        for p in ports:
            r = await api.call(p, "/v3/maintenance/status", {}, 2.0)
            statuses.append(r.body if r.ok else r.outcome)
        anomalies["not_converged"] = [
            f"node revisions {revs} below {rev} 15 s after healing; status: {json.dumps(statuses)}"
        ]
    if leases:
        # Unkept leases must be gone once their TTL (at the slowest clock), the 0.5 s check
        # interval, an election and commit slack have passed since the last one was granted.
        last = max((r.granted[1] for r in leases.records if not r.kept), default=0.0)
        bound = last + leases.ttl / 0.5 + 0.5 + 2 * cfg.election_ms / 1000 + 2.0
        now = (time.monotonic_ns() - t0) / 1e9
        if bound > now:
            await asyncio.sleep(bound - now)
        body = {"key": b64("l/u/"), "range_end": b64("l/u0"), "keys_only": True}
        res = await api.call(port, "/v3/kv/range", body)
        if res.ok:
            from tests.jepsen.client import unb64

            out["lease_unkept_present"] = sorted(unb64(kv["key"]) for kv in res.body.get("kvs", []))
    return out
