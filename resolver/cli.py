"""The ``dockdns`` command: ``serve`` runs the daemon."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from resolver import config as config_module
from resolver import loop, workers
from resolver.config import Config, ConfigError
from resolver.daemon import Daemon, StartupError
from resolver.logs import configure

EXIT_CONFIG = 2
EXIT_STARTUP = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dockdns",
        description="Embedded DNS and service discovery for containers.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the DNS server")
    config_module.add_arguments(serve)
    return parser


def _fail(message: str, code: int) -> int:
    print(f"dockdns: {message}", file=sys.stderr)
    return code


async def _serve(config: Config, worker: int = 0) -> int:
    daemon = Daemon(config, worker)
    try:
        await daemon.serve()
    except StartupError as err:
        return _fail(str(err), EXIT_STARTUP)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = config_module.build(vars(args))
    except ConfigError as err:
        return _fail(str(err), EXIT_CONFIG)
    configure(config.log_level)
    if args.command == "serve":
        if config.workers > 1:
            return workers.run(config.workers, config.listen,
                               lambda index: loop.run(_serve(config, index)))
        return loop.run(_serve(config))
    return _fail(f"unknown command {args.command}", EXIT_CONFIG)


if __name__ == "__main__":
    sys.exit(main())
