"""``raftkvctl`` against a real cluster: etcdctl's commands, flags and output formats.

Most commands run in-process through click's ``CliRunner`` (fast); the console script itself runs
as a subprocess for exit codes, stdin, Ctrl-C on ``watch``/``lock`` and running a command under a
lock. Output is checked in simple, json and table forms.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from raftkv.cli import cli, hoist_global_options, parse_compare, parse_duration, parse_op
from raftkv.client import SyncClient
from tests.cluster.harness import free_ports, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

RAFTKVCTL = str(Path(sys.executable).with_name("raftkvctl"))


Ctl = Callable[..., Result]


@pytest.fixture
def ctl(endpoints: list[str]) -> Ctl:
    """``ctl(*args, input=None, ok=True)``: raftkvctl in-process; ``ok`` asserts exit status 0."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, ok: bool = True) -> Result:
        result = runner.invoke(cli, list(args), input=input, env={"RAFTKV_ENDPOINTS": ",".join(endpoints)})
        if ok:
            assert result.exit_code == 0, (args, result.output, result.exception)
        return result

    return invoke


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- pure --------------------------------------------------------------------------------------


def test_global_flags_are_accepted_after_the_subcommand() -> None:
    assert hoist_global_options(["member", "list", "-w", "table"]) == ["-w", "table", "member", "list"]
    assert hoist_global_options(["get", "k", "--endpoints=a:1", "-wjson"]) == [
        "--endpoints=a:1",
        "-wjson",
        "get",
        "k",
    ]
    assert hoist_global_options(["lock", "n", "--", "cmd", "-w", "x"]) == [
        "lock",
        "n",
        "--",
        "cmd",
        "-w",
        "x",
    ]


def test_durations_and_txn_syntax() -> None:
    assert parse_duration("5s") == 5 and parse_duration("500ms") == 0.5 and parse_duration("2") == 2
    expected = {"result": "GREATER", "target": "MOD", "key": b64("key1"), "mod_revision": "0"}
    assert parse_compare('mod("key1") > "0"').to_json() == expected
    assert parse_compare('val("k") = "a b"').to_json()["value"] == b64("a b")
    assert parse_compare('version("k") != "2"').to_json()["result"] == "NOT_EQUAL"
    assert parse_op('put k "two words"').to_json() == {
        "request_put": {"key": b64("k"), "value": b64("two words")}
    }
    assert parse_op("get k --prefix").to_json()["request_range"]["range_end"] == b64("l")
    assert parse_op("del a c").to_json() == {"request_delete_range": {"key": b64("a"), "range_end": b64("c")}}


# --- KV ------------------------------------------------------------------------------------------


def test_put_get_del_simple_output(ctl: Ctl, prefix: str) -> None:
    assert ctl("put", prefix + "a", "1").stdout == "OK\n"
    assert ctl("put", prefix + "b", "2").stdout == "OK\n"
    assert ctl("put", prefix + "b", "3", "--prev-kv").stdout == f"OK\n{prefix}b\n2\n"
    assert ctl("get", prefix + "a").stdout == f"{prefix}a\n1\n"
    assert ctl("get", prefix, "--prefix").stdout == f"{prefix}a\n1\n{prefix}b\n3\n"
    assert ctl("get", prefix, "--prefix", "--print-value-only").stdout == "1\n3\n"
    assert ctl("get", prefix, "--prefix", "--keys-only").stdout == f"{prefix}a\n\n{prefix}b\n\n"
    assert ctl("get", prefix, "--prefix", "--limit", "1").stdout == f"{prefix}a\n1\n"
    assert ctl("get", prefix, "--prefix", "--count-only").stdout == "2\n"
    assert ctl("get", prefix, "--prefix", "--order", "DESCEND").stdout == f"{prefix}b\n3\n{prefix}a\n1\n"
    assert ctl("get", prefix + "a", prefix + "b").stdout == f"{prefix}a\n1\n"
    assert ctl("get", prefix + "b", "--from-key", "--limit", "1").stdout == f"{prefix}b\n3\n"
    assert ctl("put", prefix + "b", "--ignore-value").stdout == "OK\n"
    assert ctl("get", prefix + "b", "--print-value-only").stdout == "3\n"
    assert ctl("del", prefix, "--prefix", "--prev-kv").stdout == f"2\n{prefix}a\n1\n{prefix}b\n3\n"
    assert ctl("get", prefix, "--prefix").stdout == ""


def test_json_output_mirrors_the_gateway_json_with_numbers(ctl: Ctl, prefix: str) -> None:
    put = json.loads(ctl("-w", "json", "put", prefix + "k", "v").stdout)
    revision = put["header"]["revision"]
    assert isinstance(revision, int) and isinstance(put["header"]["cluster_id"], int)
    got = json.loads(ctl("get", prefix + "k", "-w", "json").stdout)
    kv = {"key": b64(prefix + "k"), "create_revision": revision, "mod_revision": revision, "version": 1}
    assert got["kvs"] == [{**kv, "value": b64("v")}]
    assert got["count"] == 1
    assert "kvs" not in json.loads(ctl("get", prefix + "missing", "-w", "json").stdout)
    deleted = json.loads(ctl("-w", "json", "del", prefix + "k").stdout)
    assert deleted["deleted"] == 1


def test_table_output(ctl: Ctl, prefix: str) -> None:
    ctl("put", prefix + "k", "tv")
    out = ctl("-w", "table", "get", prefix + "k").stdout
    assert "KEY" in out and f"{prefix}k" in out and "tv" in out
    members = ctl("member", "list", "-w", "table").stdout
    assert "IS LEARNER" in members and members.count("started") == 3


def test_txn_from_stdin(ctl: Ctl, prefix: str) -> None:
    k = prefix + "k"
    ctl("put", k, "v1")
    script = f'val("{k}") = "v1"\n\nput {k} "v 2"\nget {k}\n\nget {k}\n'
    assert ctl("txn", input=script).stdout == f"SUCCESS\n\nOK\n\n{k}\nv 2\n"
    out = ctl("txn", input=f'mod("{k}") < "2"\n\nput {k} x\n\nget {k}\n').stdout
    assert out == f"FAILURE\n\n{k}\nv 2\n"
    as_json = json.loads(ctl("-w", "json", "txn", input=f'create("{k}") > "0"\n\ndel {k}\n\n').stdout)
    assert as_json["succeeded"] is True and as_json["responses"][0]["response_delete_range"]["deleted"] == 1
    interactive = ctl("txn", "-i", input=f'version("{k}") = "0"\n\nput {k} new\n\n\n')
    assert interactive.stdout == "SUCCESS\n\nOK\n" and "compares:" in interactive.stderr


def test_errors_are_one_line_and_exit_non_zero(ctl: Ctl, prefix: str) -> None:
    result = ctl("get", prefix + "k", "--rev", "99999999", ok=False)
    assert result.exit_code == 1
    assert result.stderr == "Error: etcdserver: mvcc: required revision is a future revision\n"
    bad_lease = ctl("put", prefix + "k", "v", "--lease", "abc123", ok=False)
    assert bad_lease.exit_code == 1 and bad_lease.stderr.startswith(
        "Error: etcdserver: requested lease not found"
    )
    assert ctl("txn", input='bogus("k") = "1"\n\n\n', ok=False).exit_code == 2


def test_compaction_and_status_commands(ctl: Ctl, prefix: str) -> None:
    put = json.loads(ctl("-w", "json", "put", prefix + "k", "v").stdout)
    revision = put["header"]["revision"]
    assert ctl("compaction", str(revision)).stdout == f"compacted revision {revision}\n"
    status = ctl("endpoint", "status").stdout.strip().splitlines()
    assert len(status) == 3 and sum(", true, false, " in line for line in status) == 1  # one leader
    statuses = [s["Status"] for s in json.loads(ctl("endpoint", "status", "-w", "json").stdout)]
    assert len({s["leader"] for s in statuses}) == 1
    assert sum(s["leader"] == s["header"]["member_id"] for s in statuses) == 1
    assert "is healthy: successfully committed proposal" in ctl("endpoint", "health").stdout
    members = ctl("member", "list").stdout.strip().splitlines()
    assert len(members) == 3 and all(", started, " in m for m in members)


def test_endpoint_health_reports_a_dead_endpoint(ctl: Ctl, endpoints: list[str]) -> None:
    (port,) = free_ports(1)
    result = ctl(
        "--endpoints",
        f"{endpoints[0]},127.0.0.1:{port}",
        "--command-timeout",
        "1s",
        "endpoint",
        "health",
        ok=False,
    )
    assert result.exit_code == 1
    assert "is healthy" in result.stdout and f"127.0.0.1:{port} is unhealthy" in result.stderr
    assert result.stderr.endswith("Error: unhealthy cluster\n")


def test_lease_commands(ctl: Ctl, prefix: str) -> None:
    granted = ctl("lease", "grant", "60").stdout
    assert granted.endswith(" granted with TTL(60s)\n")
    lease = granted.split()[1]
    ctl("put", prefix + "k", "v", "--lease", lease)
    ttl = ctl("lease", "timetolive", lease, "--keys").stdout
    assert (
        ttl.startswith(f"lease {lease} granted with TTL(60s), remaining(")
        and f"attached keys([{prefix}k])" in ttl
    )
    assert lease in ctl("lease", "list").stdout.splitlines()
    assert ctl("lease", "keep-alive", "--once", lease).stdout == f"lease {lease} keepalived with TTL(60)\n"
    assert ctl("lease", "revoke", lease).stdout == f"lease {lease} revoked\n"
    assert ctl("lease", "timetolive", lease).stdout == f"lease {lease} already expired\n"
    assert ctl("get", prefix + "k").stdout == ""


# --- the console script ---------------------------------------------------------------------------


def run_ctl(endpoints: list[str], *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, RAFTKV_ENDPOINTS=",".join(endpoints))
    return subprocess.run(
        [RAFTKVCTL, *args], input=input, capture_output=True, text=True, env=env, timeout=60
    )


def test_console_script_reads_values_from_stdin_and_sets_exit_codes(
    endpoints: list[str], prefix: str
) -> None:
    assert run_ctl(endpoints, "put", prefix + "k", input="from stdin").stdout == "OK\n"
    assert run_ctl(endpoints, "get", prefix + "k", "--print-value-only").stdout == "from stdin\n"
    (port,) = free_ports(1)
    failed = run_ctl([f"127.0.0.1:{port}"], "--command-timeout", "1s", "get", "k")
    assert failed.returncode == 1 and failed.stderr.startswith("Error: ") and failed.stderr.count("\n") == 1
    assert "Example:" in run_ctl(endpoints, "get", "--help").stdout


def test_every_command_has_help_with_an_example() -> None:
    runner = CliRunner()
    groups = {
        "lease": ["grant", "revoke", "timetolive", "list", "keep-alive"],
        "member": ["list"],
        "endpoint": ["status", "health"],
    }
    simple = ["get", "put", "del", "txn", "watch", "compaction", "lock", "elect"]
    commands = [
        [],
        *([c] for c in simple),
        *([g] for g in groups),
        *([g, c] for g in groups for c in groups[g]),
    ]
    for command in commands:
        result = runner.invoke(cli, [*command, "--help"])
        assert result.exit_code == 0 and "Example:" in result.stdout, command


def start_ctl(endpoints: list[str], *args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, RAFTKV_ENDPOINTS=",".join(endpoints), PYTHONUNBUFFERED="1")
    return subprocess.Popen([RAFTKVCTL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def read_until(proc: subprocess.Popen[bytes], ending: str) -> str:
    """The process's stdout so far, once it ends with ``ending`` (bounded wait); it keeps running."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    out = b""
    os.set_blocking(fd, False)

    def has_ending() -> bool:
        nonlocal out
        with contextlib.suppress(BlockingIOError):
            out += os.read(fd, 65536)
        return out.decode().endswith(ending)

    try:
        wait_until(has_ending, 30, f"output ending with {ending!r}")
    finally:
        os.set_blocking(fd, True)
    return out.decode()


def interrupt(proc: subprocess.Popen[bytes]) -> tuple[str, str]:
    """Ctrl-C (SIGINT) to the process by PID; the rest of its output once it exited."""
    try:
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out.decode(), err.decode()


def test_watch_prints_events_until_ctrl_c(endpoints: list[str], prefix: str) -> None:
    with SyncClient(endpoints) as c:
        first = c.put(prefix + "a", "1").header
        assert first is not None
        proc = start_ctl(endpoints, "watch", prefix, "--prefix", "--rev", str(first.revision), "--prev-kv")
        c.put(prefix + "a", "2")
        c.delete(prefix + "a")
        c.put(prefix + "z", "end")
    out = read_until(proc, f"{prefix}z\nend\n")
    rest, err = interrupt(proc)
    assert proc.returncode == 0, err
    assert out + rest == (
        f"PUT\n{prefix}a\n1\n"
        f"PUT\n{prefix}a\n1\n{prefix}a\n2\n"
        f"DELETE\n{prefix}a\n2\n{prefix}a\n\n"
        f"PUT\n{prefix}z\nend\n"
    )


def test_lock_runs_a_command_while_holding_the_lock(endpoints: list[str], prefix: str) -> None:
    script = "import os; print(os.environ['ETCD_LOCK_KEY'], os.environ['ETCD_LOCK_REV']); raise SystemExit(3)"
    result = run_ctl(endpoints, "lock", prefix + "l", "--", sys.executable, "-c", script)
    assert result.returncode == 3, result.stderr
    key, revision = result.stdout.split()
    assert key.startswith(prefix + "l/") and int(revision) > 0
    with SyncClient(endpoints) as c:
        assert c.get(prefix + "l/", prefix=True).kvs == ()  # released after the command


def test_lock_without_a_command_holds_until_ctrl_c(endpoints: list[str], prefix: str) -> None:
    proc = start_ctl(endpoints, "lock", prefix + "l")
    out = read_until(proc, "\n")
    with SyncClient(endpoints) as c:
        assert [kv.key.decode() for kv in c.get(prefix + "l/", prefix=True).kvs] == [out.strip()]
        _, err = interrupt(proc)
        assert proc.returncode == 0, err
        assert c.get(prefix + "l/", prefix=True).kvs == ()


def test_elect_campaigns_and_listen_observes(endpoints: list[str], prefix: str) -> None:
    leader = start_ctl(endpoints, "elect", prefix + "e", "node-a")
    try:
        assert read_until(leader, "node-a\n").startswith(prefix + "e/")
        listener = start_ctl(endpoints, "elect", "-l", prefix + "e")
        try:
            assert read_until(listener, "node-a\n").startswith(prefix + "e/")
        finally:
            _, err = interrupt(listener)
        assert listener.returncode == 0, err
    finally:
        interrupt(leader)
    assert leader.returncode == 0
    with SyncClient(endpoints) as c:
        assert c.get(prefix + "e/", prefix=True).kvs == ()  # resigned on Ctrl-C
