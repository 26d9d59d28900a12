"""The `pgarchitect` command line: one entry point, subcommands per docs/architecture.md.

User errors (bad config, a DSN that does not answer, missing privileges) print one line on
stderr and exit 2; no traceback. Ctrl-C and SIGTERM stop cleanly with exit code 130 / 143.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, NoReturn

from pgarchitect.config import (
    LOG_LEVELS,
    VALIDATION_MODES,
    Settings,
    describe,
    load_settings,
    target_from_dsn,
)
from pgarchitect.dsn import has_password, mask_dsn
from pgarchitect.errors import UserError
from pgarchitect.log import setup_logging

Handler = Callable[[argparse.Namespace, Settings], int]


class _Terminated(Exception):
    """SIGTERM arrived: unwind so every context manager (servers, pools) closes."""


class _Parser(argparse.ArgumentParser):
    """argparse whose error line masks passwords: it echoes the arguments it did not take."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {mask_dsn(message)}\n")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML configuration file")
    parser.add_argument("--check-config", action="store_true",
                        help="validate the configuration, print it (secrets masked) and exit")
    parser.add_argument("--log-level", choices=LOG_LEVELS, help="log verbosity (default: info)")


def recommendation_id(text: str) -> str:
    """A recommendation id as typed: ASCII digits only (`²` is a digit to str.isdigit)."""
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise argparse.ArgumentTypeError(f"expected a recommendation id (a number), got "
                                         f"{text[:30]!r}")
    return text


# The flags that take a DSN; a password in one is visible to every user of the machine.
_DSN_FLAGS = (("dsn", "--dsn"), ("target", "--target"), ("store", "--store"))


def password_flags(args: argparse.Namespace) -> list[str]:
    """The DSN flags of `args` that carry a password."""
    out = []
    for dest, flag in _DSN_FLAGS:
        value = getattr(args, dest, None)
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and has_password(v) for v in values):
            out.append(flag)
    return out


def _warn_password_flags(args: argparse.Namespace) -> None:
    flags = password_flags(args)
    if flags:
        print(f"pgarchitect: warning: the password given with {' and '.join(flags)} is visible "
              "to other users of this machine (ps, /proc); use dsn_file in the config file, a "
              "passfile (~/.pgpass) or the environment (PGPASSWORD, PGARCHITECT_STORE_DSN, "
              "PGARCHITECT_DSN) instead (docs/security.md)", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = _Parser(
        prog="pgarchitect",
        description="PostgreSQL performance observatory and database architect.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("exporter", help="run the Prometheus exporter")
    _common(p)
    p.add_argument("--dsn", action="append", default=[], metavar="[NAME=]DSN",
                   help="a target to monitor (repeatable; replaces the config's targets)")
    p.add_argument("--listen", metavar="HOST:PORT", help="default 127.0.0.1:9188")
    p.add_argument("--min-refresh-interval", metavar="DURATION",
                   help="reuse a scrape's result for this long (0: read on every scrape)")

    p = sub.add_parser("analyzer", help="run the analyzer service (snapshots, audits, admin API)")
    _common(p)
    p.add_argument("--listen", metavar="HOST:PORT", help="default 127.0.0.1:9189")

    p = sub.add_parser("migrate", help="apply the store migrations")
    _common(p)
    p.add_argument("--store", metavar="DSN", help="store database DSN")

    p = sub.add_parser("snapshot", help="take one snapshot of a target's statistics now")
    _common(p)
    p.add_argument("--target", metavar="[NAME=]DSN", help="target DSN")
    p.add_argument("--store", metavar="DSN", help="store database DSN")

    p = sub.add_parser("audit", help="run one full audit now and print the report")
    _common(p)
    p.add_argument("--target", metavar="[NAME=]DSN", help="target DSN")
    p.add_argument("--store", metavar="DSN", help="store database DSN")
    p.add_argument("--json", action="store_true", help="print the JSON report (docs/report.md)")
    p.add_argument("--no-validate", action="store_true",
                   help="skip what-if validation of recommendations (same as --validation off)")
    p.add_argument("--validation", metavar="MODE", choices=VALIDATION_MODES,
                   help="how index recommendations are validated: "
                        f"{' | '.join(VALIDATION_MODES)} (default: from config, auto)")
    p.add_argument("--baseline", metavar="FROM..TO",
                   help="baseline window: snapshot ids or ISO times (default: from config)")
    p.add_argument("--current", metavar="FROM..TO",
                   help="current window: snapshot ids or ISO times; TO defaults to the new one")
    p.add_argument("--html", metavar="FILE", help="also write the audit's page (docs/report.md)")

    p = sub.add_parser("report", help="write a stored audit's page (self-contained HTML)")
    _common(p)
    p.add_argument("audit_id", metavar="AUDIT_ID", help="audit id")
    p.add_argument("--store", metavar="DSN", help="store database DSN")
    p.add_argument("--html", metavar="FILE", help="write the page to this file")
    p.add_argument("--link", action="store_true",
                   help="print a short-lived signed link to the page on the admin API")
    p.add_argument("--expires", metavar="DURATION", default="15m",
                   help="how long the --link is valid (default 15m, at most 24h)")

    p = sub.add_parser("recommendations", help="list recommendations, or set-status ID STATUS")
    _common(p)
    p.add_argument("--store", metavar="DSN", help="store database DSN")
    p.add_argument("--target", dest="target_name", metavar="NAME", help="only this target's")
    p.add_argument("--status", help="only those with this status")
    p.add_argument("--json", action="store_true", help="print JSON (with evidence and history)")
    rsub = p.add_subparsers(dest="action", metavar="ACTION")
    q = rsub.add_parser("set-status", help="record a person's decision on a recommendation",
                        argument_default=argparse.SUPPRESS)
    q.add_argument("id", type=recommendation_id, help="recommendation id")
    q.add_argument("status", help="accepted, rejected, applied or reverted")
    q.add_argument("--note", default=None, help="why (kept in the history)")
    q.add_argument("--store", metavar="DSN", help="store database DSN")
    q.add_argument("--config", metavar="FILE", help="YAML configuration file")

    p = sub.add_parser("propose", help="write a migration and PR text for a recommendation")
    _common(p)
    p.add_argument("id", type=recommendation_id, help="recommendation id")
    p.add_argument("--store", metavar="DSN", help="store database DSN")
    p.add_argument("--out", metavar="DIR", required=True, help="output directory")
    p.add_argument("--git", metavar="REPO",
                   help="commit the files on a new branch of this git repository (no push)")
    p.add_argument("--force", action="store_true",
                   help="replace files of the same name in --out (never a symbolic link)")

    p = sub.add_parser("advise", help="the index each statement needs, checked on a target")
    _common(p)
    p.add_argument("statements", nargs="*", metavar="STATEMENT", help="SQL statements")
    p.add_argument("--file", metavar="F", help="an SQL file of statements (- for stdin)")
    p.add_argument("--log", metavar="F", help="a server log: jsonlog, csvlog or stderr")
    p.add_argument("--dsn", dest="target", metavar="DSN", required=True, help="target DSN")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--fail-on-advice", action="store_true", help="exit 1 when an index is advised")
    p.add_argument("--validation", metavar="MODE", choices=VALIDATION_MODES,
                   help="auto (hypopg where installed) | hypopg | sandbox | transaction | off")

    p = sub.add_parser("ask", help="answer a question in SQL over the store (docs/ask.md)")
    _common(p)
    p.add_argument("question", help="the question, in words")
    p.add_argument("--store", metavar="DSN", help="store database DSN")
    p.add_argument("--target", dest="target_name", metavar="NAME",
                   help="a configured target: its own data and schema too")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    p.add_argument("--learn", metavar="SQL", help="record QUESTION -> SQL as an example")
    p.add_argument("--note", action="store_true", help="record QUESTION as an operator's note")

    p = sub.add_parser("demo", help="embedded end-to-end demo (see README)")
    _common(p)
    p.add_argument("--seconds", type=float, default=8.0,
                   help="traffic per phase: healthy, after the drop, after the fix (default 8)")
    p.add_argument("--no-regression", action="store_true", help="do not plant a regression")
    p.add_argument("--keep-running", action="store_true",
                   help="leave the stack up at the end and print every URL, until Ctrl-C")
    p.add_argument("--verbose", action="store_true", help="log lines on the console too")
    p.add_argument("--no-monitoring", action="store_true",
                   help="do not start Prometheus and Alertmanager even where installed")
    return parser


def flags_to_config(args: argparse.Namespace) -> dict[str, Any]:
    """Command-line flags as a raw config mapping (the highest precedence)."""
    raw: dict[str, Any] = {}
    if getattr(args, "log_level", None):
        raw["log_level"] = args.log_level
    dsns = list(getattr(args, "dsn", None) or [])
    if getattr(args, "target", None):
        dsns = [args.target]
    if dsns:
        raw["targets"] = [target_from_dsn(d, i) for i, d in enumerate(dsns)]
    if getattr(args, "store", None):
        raw["store"] = {"dsn": args.store}
    section = {"exporter": "exporter", "analyzer": "analyzer"}.get(args.command)
    if section and getattr(args, "listen", None):
        raw.setdefault(section, {})["listen"] = args.listen
    if getattr(args, "no_validate", False):
        raw.setdefault("analyzer", {}).setdefault("validation", {})["mode"] = "off"
    elif getattr(args, "validation", None):
        raw.setdefault("analyzer", {}).setdefault("validation", {})["mode"] = args.validation
    if getattr(args, "min_refresh_interval", None) is not None:
        raw.setdefault("exporter", {})["min_refresh_interval"] = args.min_refresh_interval
    return raw


def _not_built(name: str) -> Handler:
    def handler(args: argparse.Namespace, settings: Settings) -> int:
        print(f"pgarchitect: '{name}' is not built yet (see README, Status)", file=sys.stderr)
        return 2

    return handler


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    """Apply pending store migrations."""
    from pgarchitect.migrate import migrate

    applied = migrate(settings.require_store())
    print(f"migrations applied: {', '.join(applied)}" if applied else "store is up to date")
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Run the embedded demo."""
    from pgarchitect.demo.story import DemoOptions, run_demo

    if args.seconds <= 0:
        raise UserError("demo: --seconds must be positive")
    return run_demo(DemoOptions(seconds=args.seconds, plant_regression=not args.no_regression,
                                keep_running=args.keep_running, verbose=args.verbose,
                                monitoring=not args.no_monitoring))


def cmd_exporter(args: argparse.Namespace, settings: Settings) -> int:
    """Run the Prometheus exporter."""
    from exporter.app import run

    return run(settings)


def cmd_snapshot(args: argparse.Namespace, settings: Settings) -> int:
    """Take one snapshot of a target's statistics."""
    from analyzer.commands import cmd_snapshot as run

    return run(args, settings)


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    """Run one audit now."""
    from analyzer.commands import cmd_audit as run

    return run(args, settings)


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    """Write the page of a stored audit, or print a signed link to it."""
    from analyzer.page.command import cmd_report as run

    return run(args, settings)


def cmd_recommendations(args: argparse.Namespace, settings: Settings) -> int:
    """List recommendations or record a decision on one."""
    from analyzer.commands import cmd_recommendations as run

    return run(args, settings)


def cmd_propose(args: argparse.Namespace, settings: Settings) -> int:
    """Write the migration and pull-request text of a recommendation."""
    from analyzer.commands import cmd_propose as run

    return run(args, settings)


def cmd_advise(args: argparse.Namespace, settings: Settings) -> int:
    """Advise the indexes statements need."""
    from analyzer.advise import cmd_advise as run

    return run(args, settings)


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    """Answer a natural-language question in SQL, guarded."""
    from analyzer.ask.cli import cmd_ask as run

    return run(args, settings)


def cmd_analyzer(args: argparse.Namespace, settings: Settings) -> int:
    """Run the analyzer service."""
    from analyzer.service import run

    return run(settings)


def _handlers() -> dict[str, Handler]:
    handlers: dict[str, Handler] = {
        "exporter": cmd_exporter,
        "analyzer": cmd_analyzer,
        "migrate": cmd_migrate,
        "snapshot": cmd_snapshot,
        "audit": cmd_audit,
        "report": cmd_report,
        "recommendations": cmd_recommendations,
        "propose": cmd_propose,
        "advise": cmd_advise,
        "ask": cmd_ask,
        "demo": cmd_demo,
    }
    return handlers


# The optional dependencies each subcommand needs beyond the base install (the exporter's);
# see docs/architecture.md, "Extras".
_EXTRAS = {"analyzer": "analyzer", "migrate": "analyzer", "snapshot": "analyzer",
           "audit": "analyzer", "report": "analyzer", "recommendations": "analyzer",
           "propose": "analyzer", "advise": "analyzer", "ask": "analyzer",
           "demo": "demo"}
_OWN_PACKAGES = ("pgarchitect", "exporter", "analyzer")


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _warn_password_flags(args)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        settings = load_settings(args.config, flags_to_config(args))
        setup_logging(settings.log_level)
        if args.check_config:
            print(describe(settings), end="")
            print("configuration OK", file=sys.stderr)
            return 0
        return _handlers()[args.command](args, settings)
    except UserError as exc:
        print(f"pgarchitect: {mask_dsn(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        extra = _EXTRAS.get(args.command)
        if extra is None or (exc.name or "").partition(".")[0] in _OWN_PACKAGES:
            raise
        print(f"pgarchitect: {args.command} needs the {extra} extra (no module named "
              f"{exc.name!r}): pip install 'pgarchitect[{extra}]'", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pgarchitect: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("pgarchitect: terminated", file=sys.stderr)
        return 143
    finally:
        signal.signal(signal.SIGTERM, previous)
        logging.shutdown()


def run() -> None:
    """`python -m pgarchitect`."""
    sys.exit(main())
