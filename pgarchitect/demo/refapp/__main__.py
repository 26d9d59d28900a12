"""`python -m pgarchitect.demo.refapp --dsn DSN --listen HOST:PORT [--route-all-orm]`.

The DSN comes from ``--dsn``, else ``PGARCHITECT_DSN``, else the first target of ``--config``.
``PGARCHITECT_ROUTE_ALL_ORM=true`` is the same as ``--route-all-orm``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from aiohttp import web

from pgarchitect.config import load_settings, parse_listen, target_from_dsn
from pgarchitect.demo.refapp.app import RefAppOptions, make_app
from pgarchitect.errors import ConfigError, UserError
from pgarchitect.log import setup_logging

TRUE = ("1", "true", "yes", "on")


def options_from(args: argparse.Namespace) -> RefAppOptions:
    """The app's options from flags, environment and config file (in falling precedence)."""
    flags = {"targets": [target_from_dsn(args.dsn)]} if args.dsn else None
    settings = load_settings(args.config, flags)
    if not settings.targets:
        raise ConfigError("targets", "no database (give --dsn, PGARCHITECT_DSN or a config "
                          "file with targets)")
    route_all_orm = args.route_all_orm or (
        os.environ.get("PGARCHITECT_ROUTE_ALL_ORM", "").lower() in TRUE)
    return RefAppOptions(settings.targets[0].dsn.reveal(), route_all_orm, args.pool_size)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the reference app until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m pgarchitect.demo.refapp",
                                     description="pgarchitect reference app (three ORM paths)")
    parser.add_argument("--dsn", help="database DSN (default: PGARCHITECT_DSN or the config)")
    parser.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT")
    parser.add_argument("--route-all-orm", action="store_true",
                        help="send every request through the SQLAlchemy ORM path")
    parser.add_argument("--pool-size", type=int, default=4, help="connections per path")
    parser.add_argument("--config", metavar="FILE", help="YAML configuration file")
    args = parser.parse_args(argv)
    setup_logging("info")
    try:
        host, port = parse_listen(args.listen, "--listen")
        options = options_from(args)
    except UserError as exc:
        print(f"refapp: {exc}", file=sys.stderr)
        return exc.exit_code
    web.run_app(make_app(options), host=host, port=port, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
