"""``raftkvctl``: etcdctl's commands and flags for raftkv (click for parsing, rich for tables).

Owns: the command line (get, put, del, txn, watch, compaction, lease …, member list, endpoint
status|health, lock, elect), the global flags (``--endpoints`` / ``RAFTKV_ENDPOINTS``,
``--dial-timeout``, ``--command-timeout``, ``-w/--write-out simple|json|table``), etcdctl's txn
syntax, and the three output formats: ``simple`` prints what etcdctl prints; ``json`` prints the
response as etcdctl does (the gateway JSON with base64 keys and values, 64-bit integers as
numbers); ``table`` draws rich tables.

Must not: talk HTTP itself (everything goes through ``raftkv.client``), or print a traceback: a
failure is one line ``Error: ...`` on stderr and exit status 1 (2 for usage errors).

Invariants: exit status 0 means the command did what it says; ``watch``, ``lock`` (without a
command), ``elect`` and ``lease keep-alive`` run until Ctrl-C and then exit 0, releasing what they
hold.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from raftkv import errors
from raftkv.api.models import DeleteRangeResponse, PutResponse, RangeResponse, TxnResponse
from raftkv.client import (
    Client,
    Cmp,
    Compare,
    Event,
    EventType,
    KeyValue,
    LeaseTimeToLiveResponse,
    MemberListResponse,
    Op,
    SortOrder,
    SortTarget,
    StatusResponse,
    normalize_endpoint,
)
from raftkv.recipes import Election, Lock, Session

DEFAULT_ENDPOINT = "127.0.0.1:2379"
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}

# etcdctl's JSON is Go's encoding of the protobuf structs: 64-bit integers are numbers there,
# while the gateway writes them as strings. These are the fields to turn back into numbers.
INT_FIELDS = frozenset(
    {
        "cluster_id",
        "member_id",
        "revision",
        "raft_term",
        "create_revision",
        "mod_revision",
        "version",
        "lease",
        "count",
        "deleted",
        "ID",
        "TTL",
        "grantedTTL",
        "dbSize",
        "leader",
        "raftIndex",
        "raftTerm",
        "raftAppliedIndex",
        "dbSizeInUse",
        "compact_revision",
        "watch_id",
    }
)


# ---------------------------------------------------------------------------------------------
# Settings, running, output


def parse_duration(text: str) -> float:
    """etcdctl's durations (``5s``, ``500ms``, ``1m``) or plain seconds, in seconds."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h)?\s*", text)
    if not match:
        raise click.BadParameter(f"invalid duration {text!r} (e.g. 5s, 500ms)")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2) or "s"]
    return float(match.group(1)) * scale


@dataclass
class Settings:
    endpoints: list[str]
    dial_timeout: float
    command_timeout: float
    write_out: str

    def client(self, endpoints: Sequence[str] | None = None) -> Client:
        return Client(
            list(endpoints or self.endpoints), timeout=self.command_timeout, dial_timeout=self.dial_timeout
        )


def fail(message: str) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


def run(settings: Settings, work: Callable[[Client], Awaitable[None]]) -> None:
    """Run ``work`` with a client; map errors to one line, Ctrl-C to a clean exit 0."""

    async def main() -> None:
        async with settings.client() as client:
            await work(client)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass  # the long-running commands end on Ctrl-C; their ``async with`` blocks released things
    except errors.RaftkvError as exc:
        fail(exc.message)
    except (TimeoutError, OSError) as exc:
        fail(str(exc) or type(exc).__name__)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(etcdctl_json(data), separators=(",", ":")))


def etcdctl_json(data: Any, name: str = "") -> Any:
    """Gateway JSON → etcdctl's JSON: the 64-bit integer fields become numbers."""
    if isinstance(data, dict):
        return {k: etcdctl_json(v, k) for k, v in data.items()}
    if isinstance(data, list):
        return [etcdctl_json(v, name) for v in data]
    if name in INT_FIELDS and isinstance(data, str) and re.fullmatch(r"-?[0-9]+", data):
        return int(data)
    return data


def text(data: bytes) -> str:
    return data.decode(errors="replace")


def print_kv(kv: KeyValue, *, value_only: bool = False) -> None:
    # etcdctl's printKV: the key line (unless --print-value-only), then the value line.
    if not value_only:
        click.echo(text(kv.key))
    click.echo(text(kv.value))


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    table = Table(*headers, show_lines=False)
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    Console(width=200).print(table)


def kv_table(kvs: Sequence[KeyValue]) -> None:
    print_table(
        ("KEY", "VALUE", "CREATE REV", "MOD REV", "VERSION", "LEASE"),
        (
            (text(kv.key), text(kv.value), kv.create_revision, kv.mod_revision, kv.version, f"{kv.lease:x}")
            for kv in kvs
        ),
    )


def show_range(
    settings: Settings, resp: RangeResponse, *, value_only: bool = False, count_only: bool = False
) -> None:
    if settings.write_out == "json":
        echo_json(resp.render())
    elif count_only:
        click.echo(resp.count)
    elif settings.write_out == "table":
        kv_table(resp.kvs)
    else:
        for kv in resp.kvs:
            print_kv(kv, value_only=value_only)


def show_put(settings: Settings, resp: PutResponse) -> None:
    if settings.write_out == "json":
        echo_json(resp.render())
        return
    click.echo("OK")
    if resp.prev_kv is not None:
        print_kv(resp.prev_kv)


def show_delete(settings: Settings, resp: DeleteRangeResponse) -> None:
    if settings.write_out == "json":
        echo_json(resp.render())
        return
    click.echo(resp.deleted)
    for kv in resp.prev_kvs:
        print_kv(kv)


def show_txn(settings: Settings, resp: TxnResponse) -> None:
    if settings.write_out == "json":
        echo_json(resp.render())
        return
    click.echo("SUCCESS" if resp.succeeded else "FAILURE")
    for op in resp.responses:
        click.echo("")
        inner = op.response
        if isinstance(inner, RangeResponse):
            show_range(settings, inner)
        elif isinstance(inner, PutResponse):
            show_put(settings, inner)
        elif isinstance(inner, DeleteRangeResponse):
            show_delete(settings, inner)
        else:
            show_txn(settings, inner)


def show_event(settings: Settings, event: Event) -> None:
    if settings.write_out == "json":
        echo_json(event.render())
        return
    click.echo(EventType(event.type).name)
    if event.prev_kv is not None:
        print_kv(event.prev_kv)
    if event.kv is not None:
        print_kv(event.kv)


def parse_lease_id(value: str) -> int:
    """etcdctl takes lease ids in hexadecimal."""
    try:
        return int(value, 16)
    except ValueError:
        raise click.BadParameter(f"bad lease ID {value!r}, expecting hexadecimal") from None


# ---------------------------------------------------------------------------------------------
# The command group


GLOBAL_VALUE_OPTIONS = frozenset({"--endpoints", "--dial-timeout", "--command-timeout", "-w", "--write-out"})


def hoist_global_options(args: list[str]) -> list[str]:
    """Move the global flags in front of the subcommand: etcdctl (cobra's persistent flags) accepts
    them anywhere, e.g. ``member list -w table``; click only before the subcommand. Nothing after
    ``--`` moves (``lock NAME -- cmd -w x``)."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        name = arg.split("=", 1)[0]
        takes_next = name in GLOBAL_VALUE_OPTIONS and "=" not in arg and i + 1 < len(args)
        if takes_next:
            front.extend(args[i : i + 2])
            i += 2
            continue
        glued = arg.startswith("-w") and not arg.startswith("--")  # -wjson
        (front if name in GLOBAL_VALUE_OPTIONS or glued else rest).append(arg)
        i += 1
    return front + rest


class EtcdctlGroup(click.Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(args))


@click.group(cls=EtcdctlGroup, context_settings=CONTEXT)
@click.option(
    "--endpoints",
    envvar="RAFTKV_ENDPOINTS",
    default=DEFAULT_ENDPOINT,
    show_default=True,
    help="comma-separated gRPC-gateway endpoints (host:port or URLs); env RAFTKV_ENDPOINTS",
)
@click.option("--dial-timeout", default="2s", show_default=True, help="dial timeout per connection attempt")
@click.option(
    "--command-timeout", default="5s", show_default=True, help="timeout of one request, retries included"
)
@click.option(
    "-w",
    "--write-out",
    type=click.Choice(["simple", "json", "table"]),
    default="simple",
    show_default=True,
    help="output format",
)
@click.pass_context
def cli(ctx: click.Context, endpoints: str, dial_timeout: str, command_timeout: str, write_out: str) -> None:
    """raftkvctl: a command line client for raftkv (etcdctl's commands and flags).

    Example: raftkvctl --endpoints 127.0.0.1:2379,127.0.0.1:22379 put foo bar
    """
    ctx.obj = Settings(
        endpoints=[e for e in endpoints.split(",") if e.strip()],
        dial_timeout=parse_duration(dial_timeout),
        command_timeout=parse_duration(command_timeout),
        write_out=write_out,
    )


pass_settings = click.make_pass_decorator(Settings)


# ---------------------------------------------------------------------------------------------
# KV


SORT_TARGETS = {
    "CREATE": SortTarget.CREATE,
    "KEY": SortTarget.KEY,
    "MODIFY": SortTarget.MOD,
    "VALUE": SortTarget.VALUE,
    "VERSION": SortTarget.VERSION,
}


@cli.command("get", context_settings=CONTEXT)
@click.argument("key")
@click.argument("range_end", required=False)
@click.option("--prefix", is_flag=True, help="get keys with matching prefix")
@click.option("--from-key", is_flag=True, help="get keys that are greater than or equal to KEY")
@click.option("--limit", default=0, help="maximum number of results")
@click.option("--rev", default=0, help="specify the kv revision")
@click.option("--keys-only", is_flag=True, help="get only the keys")
@click.option("--count-only", is_flag=True, help="get only the count")
@click.option(
    "--print-value-only", is_flag=True, help="only write values when using the simple output format"
)
@click.option("--sort-by", type=click.Choice(list(SORT_TARGETS), case_sensitive=False), help="sort target")
@click.option("--order", type=click.Choice(["ASCEND", "DESCEND"], case_sensitive=False), help="sort order")
@click.option(
    "--consistency",
    type=click.Choice(["l", "s"]),
    default="l",
    show_default=True,
    help="linearizable (l) or serializable (s)",
)
@pass_settings
def get_cmd(
    settings: Settings,
    key: str,
    range_end: str | None,
    prefix: bool,
    from_key: bool,
    limit: int,
    rev: int,
    keys_only: bool,
    count_only: bool,
    print_value_only: bool,
    sort_by: str | None,
    order: str | None,
    consistency: str,
) -> None:
    """Get the key or a range of keys.

    Example: raftkvctl get --prefix config/ --sort-by=MODIFY --order=DESCEND
    """
    # etcdctl: an order without a target sorts by key; a target without an order ascends.
    sort_target = SORT_TARGETS[sort_by.upper()] if sort_by else (SortTarget.KEY if order else None)
    sort_order = SortOrder[order.upper()] if order else (SortOrder.ASCEND if sort_by else None)

    async def work(client: Client) -> None:
        resp = await client.get(
            key,
            range_end,
            prefix=prefix,
            from_key=from_key,
            limit=limit,
            revision=rev,
            sort_order=sort_order,
            sort_target=sort_target,
            serializable=consistency == "s",
            keys_only=keys_only,
            count_only=count_only,
        )
        show_range(settings, resp, value_only=print_value_only, count_only=count_only)

    run(settings, work)


@cli.command("put", context_settings=CONTEXT)
@click.argument("key")
@click.argument("value", required=False)
@click.option("--lease", default="0", help="lease ID (in hexadecimal) to attach to the key")
@click.option("--prev-kv", is_flag=True, help="return the previous key-value pair before modification")
@click.option("--ignore-value", is_flag=True, help="update the key using its current value")
@click.option("--ignore-lease", is_flag=True, help="update the key using its current lease")
@pass_settings
def put_cmd(
    settings: Settings,
    key: str,
    value: str | None,
    lease: str,
    prev_kv: bool,
    ignore_value: bool,
    ignore_lease: bool,
) -> None:
    """Put the given key into the store; VALUE is read from stdin when absent.

    Example: raftkvctl put foo bar --lease=694d5765fc71500b
    """
    data = b"" if ignore_value else (value.encode() if value is not None else sys.stdin.buffer.read())
    lease_id = parse_lease_id(lease)

    async def work(client: Client) -> None:
        resp = await client.put(
            key, data, lease=lease_id, prev_kv=prev_kv, ignore_value=ignore_value, ignore_lease=ignore_lease
        )
        show_put(settings, resp)

    run(settings, work)


@cli.command("del", context_settings=CONTEXT)
@click.argument("key")
@click.argument("range_end", required=False)
@click.option("--prefix", is_flag=True, help="delete keys with matching prefix")
@click.option("--prev-kv", is_flag=True, help="return deleted key-value pairs")
@click.option("--from-key", is_flag=True, help="delete keys that are greater than or equal to KEY")
@pass_settings
def del_cmd(
    settings: Settings, key: str, range_end: str | None, prefix: bool, prev_kv: bool, from_key: bool
) -> None:
    """Remove the key or a range of keys; prints the number deleted.

    Example: raftkvctl del --prefix config/
    """

    async def work(client: Client) -> None:
        show_delete(
            settings, await client.delete(key, range_end, prefix=prefix, from_key=from_key, prev_kv=prev_kv)
        )

    run(settings, work)


# --- txn: etcdctl's syntax ---------------------------------------------------------------------

COMPARE_LINE = re.compile(
    r'^\s*(mod|create|version|val|value|lease)\s*\(\s*"((?:[^"\\]|\\.)*)"\s*\)\s*(=|==|!=|<|>)\s*(.+?)\s*$'
)
COMPARE_TARGETS = {
    "mod": Compare.mod_revision,
    "create": Compare.create_revision,
    "version": Compare.version,
    "val": Compare.value,
    "value": Compare.value,
    "lease": Compare.lease,
}


def _unquote(token: str) -> str:
    token = token.strip()
    return json.loads(token) if token.startswith('"') else token


def parse_compare(line: str) -> Cmp:
    """``mod("k") > "0"``, ``val("k") = "v"``, ``create("k") = "0"``, ``version("k") != "1"``,
    ``lease("k") = "694d5765fc71500b"`` (etcdctl's forms)."""
    match = COMPARE_LINE.match(line)
    if not match:
        raise click.UsageError(f"malformed comparison: {line!r}")
    target, key, op, operand_text = match.groups()
    key = json.loads(f'"{key}"')
    raw = _unquote(operand_text)
    if target in ("val", "value"):
        operand: str | int = raw
    elif target == "lease":
        operand = parse_lease_id(raw)
    else:
        try:
            operand = int(raw)
        except ValueError:
            raise click.UsageError(f"malformed comparison: {line!r}: expected a number") from None
    side = COMPARE_TARGETS[target](key)
    if op in ("=", "=="):
        return side == operand
    if op == "!=":
        return side != operand
    return side < operand if op == "<" else side > operand


def parse_op(line: str) -> Op:
    """``put KEY VALUE [--lease=ID] [--prev-kv]``, ``get KEY [RANGE_END] [--prefix] [--from-key]
    [--limit=N] [--rev=N] [--keys-only] [--count-only]``, ``del KEY [RANGE_END] [--prefix]
    [--from-key] [--prev-kv]``."""
    words = shlex.split(line)
    if not words:
        raise click.UsageError("empty request")
    name, rest = words[0], words[1:]
    args = [w for w in rest if not w.startswith("--")]
    opts: dict[str, str] = {}
    for word in rest:
        if word.startswith("--"):
            flag, _, val = word[2:].partition("=")
            opts[flag.replace("-", "_")] = val
    if not args:
        raise click.UsageError(f"malformed request {line!r}: missing key")
    if name == "put":
        if len(args) != 2:
            raise click.UsageError(f"malformed put {line!r}: expected put KEY VALUE")
        return Op.put(
            args[0], args[1], lease=parse_lease_id(opts.get("lease", "0")), prev_kv="prev_kv" in opts
        )
    range_end = args[1] if len(args) > 1 else None
    if name == "get":
        return Op.get(
            args[0],
            range_end,
            prefix="prefix" in opts,
            from_key="from_key" in opts,
            limit=int(opts.get("limit", "0") or 0),
            revision=int(opts.get("rev", "0") or 0),
            keys_only="keys_only" in opts,
            count_only="count_only" in opts,
        )
    if name in ("del", "delete"):
        return Op.delete(
            args[0],
            range_end,
            prefix="prefix" in opts,
            from_key="from_key" in opts,
            prev_kv="prev_kv" in opts,
        )
    raise click.UsageError(f"unknown request {name!r} (expected get, put or del)")


def read_section(prompt: str | None, lines: Iterable[str]) -> list[str]:
    if prompt:
        click.echo(prompt, err=True)
    out = []
    for line in lines:
        if not line.strip():
            break
        out.append(line.rstrip("\n"))
    return out


@cli.command("txn", context_settings=CONTEXT)
@click.option("-i", "--interactive", is_flag=True, help="input transaction in interactive mode")
@pass_settings
def txn_cmd(settings: Settings, interactive: bool) -> None:
    """Txn processes all the requests in one transaction, read from stdin.

    Three sections separated by blank lines: compares, success requests, failure requests.

    \b
    Example:
      printf 'mod("k1") > "0"\\n\\nput k1 "overwrote"\\n\\nput k1 "created"\\n' | raftkvctl txn
    """
    lines = iter(sys.stdin.readline, "")
    compares = [parse_compare(line) for line in read_section("compares:" if interactive else None, lines)]
    prompt = "success requests (get, put, del):" if interactive else None
    success = [parse_op(line) for line in read_section(prompt, lines)]
    prompt = "failure requests (get, put, del):" if interactive else None
    failure = [parse_op(line) for line in read_section(prompt, lines)]

    async def work(client: Client) -> None:
        show_txn(settings, await client.txn().if_(*compares).then(*success).else_(*failure).commit())

    run(settings, work)


@cli.command("compaction", context_settings=CONTEXT)
@click.argument("revision", type=int)
@click.option("--physical", is_flag=True, help="wait for the compaction to be physically applied")
@pass_settings
def compaction_cmd(settings: Settings, revision: int, physical: bool) -> None:
    """Discard all revisions older than REVISION.

    Example: raftkvctl compaction 1234
    """

    async def work(client: Client) -> None:
        header = await client.compact(revision, physical=physical)
        if settings.write_out == "json":
            echo_json({"header": header.render() if header else {}})
        else:
            click.echo(f"compacted revision {revision}")

    run(settings, work)


@cli.command("watch", context_settings=CONTEXT)
@click.argument("key")
@click.argument("range_end", required=False)
@click.option("--prefix", is_flag=True, help="watch on a prefix")
@click.option("--rev", default=0, help="revision to start watching from")
@click.option("--prev-kv", is_flag=True, help="get the previous key-value pair before the event happens")
@pass_settings
def watch_cmd(
    settings: Settings, key: str, range_end: str | None, prefix: bool, rev: int, prev_kv: bool
) -> None:
    """Watch events on KEY (or a range or prefix) until Ctrl-C.

    Example: raftkvctl watch --prefix config/ --rev 1
    """

    async def work(client: Client) -> None:
        async with client.watch(key, range_end, prefix=prefix, start_revision=rev, prev_kv=prev_kv) as watch:
            async for event in watch:
                show_event(settings, event)
                sys.stdout.flush()

    run(settings, work)


# ---------------------------------------------------------------------------------------------
# Leases


@cli.group("lease", context_settings=CONTEXT)
def lease_group() -> None:
    """Lease related commands.

    Example: raftkvctl lease grant 60
    """


@lease_group.command("grant", context_settings=CONTEXT)
@click.argument("ttl", type=int)
@pass_settings
def lease_grant(settings: Settings, ttl: int) -> None:
    """Create a lease of TTL seconds.

    Example: raftkvctl lease grant 60
    """

    async def work(client: Client) -> None:
        lease = await client.grant(ttl)
        if settings.write_out == "json":
            echo_json({"ID": str(lease.id), "TTL": str(lease.ttl)})
        else:
            click.echo(f"lease {lease.id:016x} granted with TTL({lease.ttl}s)")

    run(settings, work)


@lease_group.command("revoke", context_settings=CONTEXT)
@click.argument("lease_id")
@pass_settings
def lease_revoke(settings: Settings, lease_id: str) -> None:
    """Revoke a lease (deleting its keys).

    Example: raftkvctl lease revoke 694d5765fc71500b
    """
    ident = parse_lease_id(lease_id)

    async def work(client: Client) -> None:
        header = await client.revoke(ident)
        if settings.write_out == "json":
            echo_json({"header": header.render() if header else {}})
        else:
            click.echo(f"lease {ident:016x} revoked")

    run(settings, work)


def show_time_to_live(settings: Settings, resp: LeaseTimeToLiveResponse, ident: int, keys: bool) -> None:
    if settings.write_out == "json":
        echo_json(resp.render())
    elif resp.TTL == -1:
        click.echo(f"lease {ident:016x} already expired")
    else:
        line = f"lease {ident:016x} granted with TTL({resp.grantedTTL}s), remaining({resp.TTL}s)"
        if keys:
            line += f", attached keys([{' '.join(text(k) for k in resp.keys)}])"
        click.echo(line)


@lease_group.command("timetolive", context_settings=CONTEXT)
@click.argument("lease_id")
@click.option("--keys", is_flag=True, help="get keys attached to this lease")
@pass_settings
def lease_timetolive(settings: Settings, lease_id: str, keys: bool) -> None:
    """Get lease information.

    Example: raftkvctl lease timetolive 694d5765fc71500b --keys
    """
    ident = parse_lease_id(lease_id)

    async def work(client: Client) -> None:
        show_time_to_live(settings, await client.time_to_live(ident, keys=keys), ident, keys)

    run(settings, work)


@lease_group.command("list", context_settings=CONTEXT)
@pass_settings
def lease_list(settings: Settings) -> None:
    """List all active leases.

    Example: raftkvctl lease list
    """

    async def work(client: Client) -> None:
        ids = await client.leases()
        if settings.write_out == "json":
            echo_json({"leases": [{"ID": str(i)} for i in ids]})
        elif settings.write_out == "table":
            print_table(("ID",), ((f"{i:016x}",) for i in ids))
        else:
            click.echo(f"found {len(ids)} leases")
            for ident in ids:
                click.echo(f"{ident:016x}")

    run(settings, work)


@lease_group.command("keep-alive", context_settings=CONTEXT)
@click.argument("lease_id")
@click.option("--once", is_flag=True, help="resets the keep-alive time to its original value once")
@pass_settings
def lease_keep_alive(settings: Settings, lease_id: str, once: bool) -> None:
    """Keep a lease alive (until Ctrl-C, or once with --once).

    Example: raftkvctl lease keep-alive 694d5765fc71500b
    """
    ident = parse_lease_id(lease_id)

    async def work(client: Client) -> None:
        while True:
            ttl = await client.keepalive_once(ident)
            if ttl <= 0:
                fail(f"lease {ident:016x} expired or revoked.")
            if settings.write_out == "json":
                echo_json({"ID": str(ident), "TTL": str(ttl)})
            else:
                click.echo(f"lease {ident:016x} keepalived with TTL({ttl})")
            sys.stdout.flush()
            if once:
                return
            await asyncio.sleep(max(ttl / 3, 0.5))

    run(settings, work)


# ---------------------------------------------------------------------------------------------
# Cluster and endpoints


@cli.group("member", context_settings=CONTEXT)
def member_group() -> None:
    """Membership related commands.

    Example: raftkvctl member list -w table
    """


def show_members(settings: Settings, resp: MemberListResponse) -> None:
    if settings.write_out == "json":
        echo_json(resp.render())
        return
    rows = [
        (
            f"{m.ID:x}",
            "started" if m.name else "unstarted",
            m.name,
            ",".join(m.peerURLs),
            ",".join(m.clientURLs),
            str(m.isLearner).lower(),
        )
        for m in resp.members
    ]
    if settings.write_out == "table":
        print_table(("ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"), rows)
    else:
        for row in rows:
            click.echo(", ".join(row))


@member_group.command("list", context_settings=CONTEXT)
@pass_settings
def member_list(settings: Settings) -> None:
    """List all members in the cluster.

    Example: raftkvctl member list
    """

    async def work(client: Client) -> None:
        show_members(settings, await client.member_list())

    run(settings, work)


@cli.group("endpoint", context_settings=CONTEXT)
def endpoint_group() -> None:
    """Endpoint related commands.

    Example: raftkvctl endpoint status --cluster -w table
    """


async def target_endpoints(settings: Settings, client: Client, cluster: bool) -> list[str]:
    """The given endpoints, or with ``--cluster`` every member's client URLs."""
    if not cluster:
        return [normalize_endpoint(e) for e in settings.endpoints]
    members = await client.member_list()
    urls = [normalize_endpoint(url) for m in members.members for url in m.clientURLs]
    return list(dict.fromkeys(urls))


def humanize_bytes(size: int) -> str:
    # etcdctl uses go-humanize (SI units): "25 kB".
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}"
        value /= 1000
    return f"{size} B"


@endpoint_group.command("status", context_settings=CONTEXT)
@click.option("--cluster", is_flag=True, help="use all endpoints from the cluster member list")
@pass_settings
def endpoint_status(settings: Settings, cluster: bool) -> None:
    """Print the status of each endpoint.

    Example: raftkvctl endpoint status --cluster
    """

    async def work(client: Client) -> None:
        statuses: list[tuple[str, StatusResponse]] = []
        failures: list[str] = []
        for endpoint in await target_endpoints(settings, client, cluster):
            try:
                async with settings.client([endpoint]) as one:
                    statuses.append((endpoint, await one.status()))
            except errors.RaftkvError as exc:
                failures.append(f"failed to get the status of endpoint {endpoint} ({exc.message})")
        show_statuses(settings, statuses)
        for failure in failures:
            click.echo(failure, err=True)
        if failures:
            sys.exit(1)

    run(settings, work)


def show_statuses(settings: Settings, statuses: list[tuple[str, StatusResponse]]) -> None:
    if settings.write_out == "json":
        echo_json([{"Endpoint": ep, "Status": status.render()} for ep, status in statuses])
        return
    rows = []
    for endpoint, s in statuses:
        member = s.header.member_id if s.header else 0
        rows.append(
            (
                endpoint.removeprefix("http://"),
                f"{member:x}",
                s.version,
                humanize_bytes(s.dbSize),
                str(member == s.leader).lower(),
                str(s.isLearner).lower(),
                str(s.raftTerm),
                str(s.raftIndex),
                str(s.raftAppliedIndex),
                ", ".join(s.errors),
            )
        )
    if settings.write_out == "table":
        headers = (
            "ENDPOINT",
            "ID",
            "VERSION",
            "DB SIZE",
            "IS LEADER",
            "IS LEARNER",
            "RAFT TERM",
            "RAFT INDEX",
            "RAFT APPLIED INDEX",
            "ERRORS",
        )
        print_table(headers, rows)
    else:
        for row in rows:
            click.echo(", ".join(row))


@endpoint_group.command("health", context_settings=CONTEXT)
@click.option("--cluster", is_flag=True, help="use all endpoints from the cluster member list")
@pass_settings
def endpoint_health(settings: Settings, cluster: bool) -> None:
    """Check the health of each endpoint (a linearizable read through it).

    Example: raftkvctl endpoint health --endpoints 127.0.0.1:2379,127.0.0.1:22379
    """

    async def work(client: Client) -> None:
        results: list[dict[str, Any]] = []
        for endpoint in await target_endpoints(settings, client, cluster):
            start = time.monotonic()
            error = ""
            try:
                async with settings.client([endpoint]) as one:
                    await one.get("health")
            except errors.RaftkvError as exc:
                error = exc.message
            took = f"{(time.monotonic() - start) * 1000:.6f}ms"
            results.append(
                {
                    "endpoint": endpoint.removeprefix("http://"),
                    "health": not error,
                    "took": took,
                    "error": error,
                }
            )
        if settings.write_out == "json":
            echo_json(results)
        elif settings.write_out == "table":
            rows = ((r["endpoint"], str(r["health"]).lower(), r["took"], r["error"]) for r in results)
            print_table(("ENDPOINT", "HEALTH", "TOOK", "ERROR"), rows)
        else:
            for r in results:
                if r["health"]:
                    click.echo(
                        f"{r['endpoint']} is healthy: successfully committed proposal: took = {r['took']}"
                    )
                else:
                    click.echo(
                        f"{r['endpoint']} is unhealthy: failed to commit proposal: {r['error']}", err=True
                    )
        if not all(r["health"] for r in results):
            fail("unhealthy cluster")

    run(settings, work)


# ---------------------------------------------------------------------------------------------
# Concurrency: lock and elect


@cli.command("lock", context_settings={**CONTEXT, "ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--ttl", default=10, show_default=True, help="timeout for the session lease, in seconds")
@pass_settings
def lock_cmd(settings: Settings, name: str, command: tuple[str, ...], ttl: int) -> None:
    """Acquire the named lock; run COMMAND while holding it, or hold it until Ctrl-C.

    Prints the lock's key. COMMAND gets RAFTKV_LOCK_KEY / ETCD_LOCK_KEY and RAFTKV_LOCK_REV /
    ETCD_LOCK_REV (the fencing token) in its environment; raftkvctl exits with its status.

    Example: raftkvctl lock mylock -- ./backup.sh
    """
    status = 0

    async def work(client: Client) -> None:
        nonlocal status
        async with Session(client, ttl=ttl) as session, Lock(session, name) as lock:
            key = lock.key.decode(errors="replace")
            if not command:
                click.echo(key)
                sys.stdout.flush()
                await asyncio.Event().wait()  # hold until Ctrl-C
            env = dict(
                os.environ,
                RAFTKV_LOCK_KEY=key,
                ETCD_LOCK_KEY=key,
                RAFTKV_LOCK_REV=str(lock.revision),
                ETCD_LOCK_REV=str(lock.revision),
            )
            proc = await asyncio.create_subprocess_exec(*command, env=env)
            status = await proc.wait()

    run(settings, work)
    sys.exit(status)


@cli.command("elect", context_settings=CONTEXT)
@click.argument("name")
@click.argument("proposal", required=False)
@click.option("-l", "--listen", is_flag=True, help="observe the election")
@click.option("--ttl", default=10, show_default=True, help="timeout for the session lease, in seconds")
@pass_settings
def elect_cmd(settings: Settings, name: str, proposal: str | None, listen: bool, ttl: int) -> None:
    """Campaign in election NAME with PROPOSAL (holding leadership until Ctrl-C), or observe it
    with --listen. Prints the leader's key and value.

    Example: raftkvctl elect myelection host-a
    """
    if not listen and proposal is None:
        raise click.UsageError("no proposal argument but -l not set")

    async def work(client: Client) -> None:
        async with Session(client, ttl=ttl) as session:
            election = Election(session, name)
            if listen:
                async for leader in election.observe():
                    print_kv(leader)
                    sys.stdout.flush()
                return
            assert proposal is not None
            await election.campaign(proposal)
            try:
                current = await election.leader()
                if current is not None:
                    print_kv(current)
                sys.stdout.flush()
                await asyncio.Event().wait()  # lead until Ctrl-C
            finally:
                await asyncio.shield(election.resign())

    run(settings, work)


def main() -> None:
    cli.main(prog_name="raftkvctl")


if __name__ == "__main__":
    main()
