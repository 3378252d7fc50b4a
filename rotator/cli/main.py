"""``rotator``'s command line: parse, delegate, map errors to exit codes. No logic lives here.

Exit codes: 0 success; 1 a target needs an operator, or an attempt failed (or rotator failed
unexpectedly); 2 bad usage or configuration. A user's mistake never prints a traceback. Each
verb's module is imported only when that verb runs (start-up time is a budget).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from rotator.cli.exits import EXIT_NEEDS_OPERATOR, EXIT_USAGE, UsageError
from rotator.cli.interrupt import Interrupted
from rotator.cli.parser import LOG_LEVEL_ENV, LOG_LEVELS, build_parser
from rotator.cli.process import started

if TYPE_CHECKING:
    from rotator.cli.context import Context


def _emulate_intercom(args: argparse.Namespace) -> int:
    from rotator.emulator.cli import serve

    return serve(
        host=args.host, port=args.port, tokens=args.token, faults=args.faults, state=args.state
    )


def _demo(args: argparse.Namespace) -> int:
    from rotator.demo import DemoSetupError, run_demo

    try:
        return run_demo(
            rotations=args.rotations, schedule=args.schedule, grace=args.grace, port=args.port
        )
    except DemoSetupError as e:  # a port taken, no `bao`: the user's to fix, exit 2
        raise UsageError(e.message) from e


def _verb(args: argparse.Namespace) -> int:
    """The verbs that read the configuration, interruptible (``rotator.cli.interrupt``)."""
    from rotator.cli.context import context
    from rotator.cli.interrupt import interruptible

    ctx = context(getattr(args, "config", None))
    with interruptible(ctx.stop, hangup=args.verb != "run"):
        return _dispatch(ctx, args)


def _dispatch(ctx: Context, args: argparse.Namespace) -> int:
    """Each verb's module is imported when its verb runs."""
    verb = args.verb
    if verb == "check-config":
        from rotator.cli.check import check_config

        return check_config(ctx)
    if verb == "status":
        from rotator.cli.status import status

        return status(ctx, args.target, as_json=args.json, history=args.history)
    if verb == "plan":
        from rotator.cli.plan import plan

        return plan(ctx, args.target, as_json=args.json)
    if verb == "adopt":
        from rotator.cli.adopt import adopt

        return adopt(ctx, args.target, secret_id=args.secret_id, force=args.force)
    if verb == "doctor":
        from rotator.cli.doctor import doctor

        return doctor(ctx, args.target, as_json=args.json)
    from rotator.cli import rotate

    if verb == "reconcile":
        return rotate.reconcile(ctx)
    if verb == "rotate-now":
        return rotate.rotate_now(
            ctx, args.target, emergency=args.emergency, yes=args.yes, actor=args.actor
        )
    if verb == "confirm":
        return rotate.confirm(
            ctx,
            args.target,
            secret_id=args.secret_id,
            consumers=args.consumers or [],
            actor=args.actor,
        )
    if verb in {"pause", "resume", "abort"}:
        return _hold(ctx, args)
    return rotate.run(ctx)


def _hold(ctx: Context, args: argparse.Namespace) -> int:
    """``pause``, ``resume`` and ``abort``: an operator's hold on a target, its release, and a
    back-out of the rotation under way."""
    from rotator.cli import rotate

    if args.verb == "pause":
        return rotate.pause(ctx, args.target, reason=args.reason, actor=args.actor)
    if args.verb == "abort":
        return rotate.abort(ctx, args.target, reason=args.reason, actor=args.actor)
    return rotate.resume(ctx, args.target, actor=args.actor)


def _completion(args: argparse.Namespace) -> int:
    from rotator.cli.completion import completion

    return completion(args.shell)


def _config_schema(_: argparse.Namespace) -> int:
    from rotator.cli.schema import print_schema

    return print_schema()


_VERBS: dict[str, Callable[[argparse.Namespace], int]] = {
    "emulate-intercom": _emulate_intercom,
    "demo": _demo,
    "completion": _completion,
    "config-schema": _config_schema,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    level = getattr(args, "log_level", None) or os.environ.get(LOG_LEVEL_ENV, "").strip() or "info"
    if level.lower() not in LOG_LEVELS:
        # Refused like `--log-level trace`, not quietly read as info.
        choices = ", ".join(repr(name) for name in LOG_LEVELS)
        parser.error(f"${LOG_LEVEL_ENV}: invalid choice: {level!r} (choose from {choices})")
    from rotator.logs import configure_logging

    configure_logging(getattr(args, "log_format", "auto"), level)
    handler = _VERBS.get(args.verb)
    if handler is None:
        handler = _verb
    else:
        started()  # these verbs make their own parts (rotator.cli.process)
    try:
        return handler(args)
    except Interrupted as e:
        return _interrupted(e)
    except KeyboardInterrupt:  # before the verb's own handlers were in place
        return 130
    except Exception as e:  # noqa: BLE001 - the one place every failure becomes an exit code
        return _report(e)


def _interrupted(interrupted: Interrupted) -> int:
    from rotator.logs import get_logger

    outcome = interrupted.outcome or "stopped before acting on any target"
    get_logger().warning("command.interrupted", signal=interrupted.signal_name, outcome=outcome)
    print(f"rotator: interrupted ({interrupted.signal_name}): {outcome}", file=sys.stderr)
    return interrupted.exit_code


def _report(error: Exception) -> int:
    from rotator.config import ConfigError, UnknownTargetError
    from rotator.errors import RotatorError, SetupError
    from rotator.redaction import redact_text

    if isinstance(error, ConfigError):
        print(f"rotator: {error}", file=sys.stderr)
        return EXIT_USAGE
    usage = isinstance(error, UnknownTargetError | UsageError | SetupError)
    if isinstance(error, RotatorError):
        print(redact_text(f"rotator: error: {error}"), file=sys.stderr)
        return EXIT_USAGE if usage else EXIT_NEEDS_OPERATOR
    # A bug, not a user mistake: say so, with a redacted traceback in the log.
    from rotator.logs import get_logger

    get_logger().exception("rotator.crashed", error_type=type(error).__name__)
    print(
        f"rotator: internal error ({type(error).__name__}); please report it with the log above",
        file=sys.stderr,
    )
    return EXIT_NEEDS_OPERATOR
