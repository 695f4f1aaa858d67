"""The ``dockdns`` command: ``serve`` runs the daemon; ``check`` and ``registry`` explain what it
would answer, from the same config, without one."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from discovery.registry.model import Snapshot
from resolver.config import settings as config_module
from resolver.config.settings import Config, ConfigError
from resolver.daemon import loop, workers
from resolver.daemon.lifecycle import Daemon, StartupError
from resolver.ops.logs import configure

EXIT_CONFIG = 2
EXIT_STARTUP = 1
# `check`: the name has no records in the answer (as `host` exits for a name it cannot find).
EXIT_NO_ANSWER = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dockdns",
        description="Embedded DNS and service discovery for containers.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the DNS server")
    config_module.add_arguments(serve)
    check = commands.add_parser(
        "check", help="explain the answer to one question, without a running daemon")
    check.add_argument("name", help="the name to ask for")
    check.add_argument("type", nargs="?", default="A", help="record type (default A)")
    check.add_argument("--from", dest="from_ip", metavar="IP", default=None,
                       help="ask as this client address would (a container's IP: its view)")
    config_module.add_arguments(check)
    show = commands.add_parser("config", help="print the settings serve would run with, and "
                               "where each came from")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    config_module.add_arguments(show)
    registry = commands.add_parser("registry", help="list every name the registry holds")
    registry.add_argument("--json", action="store_true", help="machine-readable output")
    config_module.add_arguments(registry)
    return parser


def _fail(message: str, code: int) -> int:
    print(f"dockdns: {message}", file=sys.stderr)
    return code


async def _serve(config: Config, flags: Mapping[str, Any], worker: int = 0) -> int:
    daemon = Daemon(config, reread=lambda: config_module.build(flags), worker=worker)
    try:
        await daemon.serve()
    except StartupError as err:
        return _fail(str(err), max(err.exit_code, EXIT_STARTUP))
    except ConfigError as err:  # found once the registry is read (a static record's conflict)
        return _fail(str(err), EXIT_CONFIG)
    return 0


def _check(config: Config, args: argparse.Namespace) -> int:
    from resolver.ops import explain  # only these commands need dnslib's printing

    client = args.from_ip or "127.0.0.1"
    try:
        ipaddress.ip_address(client)
    except ValueError:
        return _fail(f"--from {client!r} is not an IP address", EXIT_CONFIG)
    snapshot = _loaded(config)
    try:
        result = explain.explain(config, snapshot, args.name, args.type, client)
    except explain.ExplainError as err:
        return _fail(str(err), EXIT_CONFIG)
    print("\n".join(result.lines(show_client=args.from_ip is not None)))
    return 0 if result.answers else EXIT_NO_ANSWER


def _registry(config: Config, args: argparse.Namespace) -> int:
    from resolver.ops import explain

    print(explain.registry_text(_loaded(config), args.json, config.host_names))
    return 0


def _loaded(config: Config) -> Snapshot:
    """The registry for `check`/`registry`; each engine that could not be read is one line on
    stderr, and the command goes on with the other sources."""
    from resolver.ops import explain

    snapshot, problems = explain.build_registry(config)
    for problem in problems:
        print(f"dockdns: {problem}; its names are left out", file=sys.stderr)
    return snapshot


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    flags = vars(args)
    try:
        config = config_module.build(flags)
    except ConfigError as err:
        return _fail(str(err), EXIT_CONFIG)
    if args.command == "serve":
        configure(config.log_level, config.log_format == "json")
        if config.workers > 1:
            return workers.run(config.workers, config.listen,
                               lambda index: loop.run(_serve(config, flags, index)))
        return loop.run(_serve(config, flags))
    # The explaining commands print their result on stdout; only problems go to the log.
    configure("warning", config.log_format == "json")
    if args.command == "check":
        return _check(config, args)
    if args.command == "registry":
        return _registry(config, args)
    if args.command == "config":
        print(config_module.describe(config, args.json))
        return 0
    return _fail(f"unknown command {args.command}", EXIT_CONFIG)


if __name__ == "__main__":
    sys.exit(main())
