"""The ``raftkv`` command: run one node with etcd's flags, or a local development cluster.

Owns: the command line (click), the precedence of settings (flag > ``RAFTKV_*`` environment
variable > ``--config-file`` (YAML or TOML) > default), one-line errors that name the flag, the
optional uvloop speed-up, and ``raftkv dev-cluster``, which runs three nodes on 127.0.0.1
(clients 2379, 22379, 32379; peers 12380, 22380, 32380) and stops them all on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from raftkv.server.config import UNSAFE_SWITCHES, ServerConfig

FLAGS = (
    "name",
    "data_dir",
    "listen_client_urls",
    "advertise_client_urls",
    "listen_peer_urls",
    "initial_advertise_peer_urls",
    "initial_cluster",
    "initial_cluster_state",
    "initial_cluster_token",
    "heartbeat_interval",
    "election_timeout",
    "snapshot_count",
    "max_request_bytes",
    "max_txn_ops",
    "quota_backend_bytes",
)


def flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def load_config_file(path: str) -> dict[str, Any]:
    text = Path(path).read_text()
    if path.endswith(".toml"):
        data = tomllib.loads(text)
    else:
        import yaml  # etcd's config files are YAML; PyYAML is only needed for them

        data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise click.UsageError(f"{path}: expected a mapping of settings")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def unsafe_from_env() -> tuple[str, ...]:
    """Canary switches: honoured only when the test harness set ``RAFTKV_TEST=1``."""
    flags = tuple(s for s in UNSAFE_SWITCHES if os.environ.get(f"RAFTKV_UNSAFE_{s.upper()}") == "1")
    if flags and os.environ.get("RAFTKV_TEST") != "1":
        raise click.UsageError("RAFTKV_UNSAFE_* switches are refused outside the test harness")
    return flags


def build_config(values: dict[str, Any], config_file: str | None) -> ServerConfig:
    settings: dict[str, Any] = load_config_file(config_file) if config_file else {}
    settings.update({k: v for k, v in values.items() if v is not None})
    unsafe = unsafe_from_env()
    if unsafe:
        settings["unsafe"] = unsafe
    try:
        return ServerConfig(**settings)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = flag(str(first["loc"][0])) if first["loc"] else "configuration"
        raise click.UsageError(f"{where}: {first['msg']}") from None


def _options(func: Any) -> Any:
    int_flags = {"heartbeat_interval", "election_timeout", "snapshot_count", "max_request_bytes",
                 "max_txn_ops", "quota_backend_bytes"}
    for field in reversed(FLAGS):
        func = click.option(flag(field), field, type=int if field in int_flags else str, default=None)(func)
    return click.option("--config-file", type=click.Path(exists=True, dir_okay=False))(func)


@click.command(context_settings={"auto_envvar_prefix": "RAFTKV", "help_option_names": ["-h", "--help"]})
@_options
def node(config_file: str | None, **values: Any) -> None:
    """Run one raftkv node (etcd's flags; each also reads RAFTKV_<FLAG>).

    Example: raftkv --name n1 --initial-cluster n1=http://127.0.0.1:2380
    """
    config = build_config(values, config_file)
    logging.basicConfig(
        level=os.environ.get("RAFTKV_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        import uvloop  # type: ignore[import-not-found, unused-ignore]  # optional speed-up

        uvloop.install()
    except ImportError:
        pass
    from raftkv.errors import StorageCorrupt
    from raftkv.server.app import serve

    try:
        status = asyncio.run(serve(config))
    except StorageCorrupt as exc:
        click.echo(f"raftkv: {exc}", err=True)
        sys.exit(2)
    sys.exit(status)


DEV_NODES = (("n1", 2379, 12380), ("n2", 22379, 22380), ("n3", 32379, 32380))


@click.command()
@click.option("--data-dir", default="data", show_default=True, help="parent of the nodes' data directories")
def dev_cluster(data_dir: str) -> None:
    """Run a local 3-node cluster on 127.0.0.1 until Ctrl-C."""
    cluster = ",".join(f"{n}=http://127.0.0.1:{p}" for n, _, p in DEV_NODES)
    procs: list[subprocess.Popen[bytes]] = []
    for name, client, peer in DEV_NODES:
        args = [
            sys.executable, "-m", "raftkv.server.main",
            "--name", name,
            "--data-dir", str(Path(data_dir) / name),
            "--listen-client-urls", f"http://127.0.0.1:{client}",
            "--advertise-client-urls", f"http://127.0.0.1:{client}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", cluster,
        ]
        procs.append(subprocess.Popen(args))
    endpoints = ",".join(f"http://127.0.0.1:{c}" for _, c, _ in DEV_NODES)
    click.echo(f"raftkv dev cluster: 3 nodes, data under {data_dir}/")
    click.echo(f"  endpoints: {endpoints}")
    click.echo("  put: curl -s http://127.0.0.1:2379/v3/kv/put -d '{\"key\":\"Zm9v\",\"value\":\"YmFy\"}'")
    click.echo("  get: curl -s http://127.0.0.1:22379/v3/kv/range -d '{\"key\":\"Zm9v\"}'")
    click.echo("  (keys and values are base64: Zm9v = foo, YmFy = bar)")
    click.echo(f"  raftkvctl: .venv/bin/raftkvctl --endpoints {endpoints} get foo")
    click.echo("  Ctrl-C stops all three nodes.")

    def stop(*_: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.terminate()

    signal.signal(signal.SIGTERM, stop)
    try:
        while all(p.poll() is None for p in procs):
            try:
                procs[0].wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                continue
    except KeyboardInterrupt:
        pass
    finally:
        stop()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "dev-cluster":
        dev_cluster.main(args=sys.argv[2:], prog_name="raftkv dev-cluster")
    else:
        node.main(prog_name="raftkv")


if __name__ == "__main__":
    main()
