"""``rotator``'s arguments: every verb, its options and its help, and their checks."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import rotator
from rotator.cli.exits import EXIT_USAGE

#: What ``--log-level`` and ``$ROTATOR_LOG_LEVEL`` accept (the variable in any case).
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_LEVEL_ENV = "ROTATOR_LOG_LEVEL"
#: ``--actor``: who the audit trail names for an operator's command.
_ACTOR = "who acts, for the audit trail (default: your OS user@host)"

_DESCRIPTION = """\
Rotates Intercom identity-verification secrets and keeps them in HashiCorp Vault (or OpenBao).

A rotation creates a new secret at Intercom, stores it in Vault where your services read it,
waits for a rollout confirmation or a grace period, then deletes the old secret. Every step is
persisted in Vault first, so a crash at any moment resumes safely.
"""

_EPILOG = """\
configuration: --config PATH, else $ROTATOR_CONFIG, else ./rotator.toml
exit codes:    0 ok, 1 a target needs an operator, 2 bad usage or configuration
try it:        rotator demo   (a local OpenBao dev server and the Intercom emulator)
"""


class _Parser(argparse.ArgumentParser):
    """argparse, with errors that say where to look for help."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n(see '{self.prog} --help')\n")


def _common_options() -> _Parser:
    # SUPPRESS lets the same options stand before or after the verb without one erasing the other.
    common = _Parser(add_help=False)
    group = common.add_argument_group("global options")
    group.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="configuration file (default: $ROTATOR_CONFIG, then ./rotator.toml)",
    )
    group.add_argument(
        "--log-format",
        choices=["auto", "json", "console"],
        default=argparse.SUPPRESS,
        help="log format on stderr (default: auto = console on a terminal, JSON otherwise)",
    )
    group.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=argparse.SUPPRESS,
        help=f"least severe level logged (default: ${LOG_LEVEL_ENV}, then info)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = _Parser(
        prog="rotator",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"rotator {rotator.__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", title="verbs")

    def verb(name: str, summary: str, description: str | None = None) -> argparse.ArgumentParser:
        return verbs.add_parser(
            name,
            help=summary,
            description=description or summary,
            parents=[common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    verb(
        "run",
        "run the daemon: scheduler, reconcile loop, rollout-confirmation hook, health, metrics",
    )
    verb(
        "reconcile",
        "advance every target as far as it can go now, then exit (for a Kubernetes CronJob)",
        "Advance every target as far as it can go without waiting, then exit.\n"
        "Exit 0 when all is well, 1 when a target is blocked and needs an operator.",
    )
    rotate = verb(
        "rotate-now",
        "start a rotation of TARGET now (joins one already under way)",
    )
    rotate.add_argument("target", metavar="TARGET", help="the target's name in the config")
    rotate.add_argument(
        "--emergency",
        action="store_true",
        help="the current secret leaked: retire it as soon as the new one is stored and read back",
    )
    rotate.add_argument("--yes", action="store_true", help="do not ask to confirm --emergency")
    rotate.add_argument("--actor", metavar="WHO", help=_ACTOR)
    confirm = verb(
        "confirm",
        "confirm that TARGET's consumers have rolled out the new secret",
        "Confirm that TARGET's consumers use the new secret, so the old one can be retired.\n"
        "A target that names its consumers ([[targets.consumers]]) takes one confirmation per\n"
        "consumer: --consumer NAME (repeatable). For a probed consumer that is an operator's\n"
        "override of its probes (the way out of a stalled rollout); 'rotator status' shows\n"
        "who is behind.\n\n"
        "Exit 0 confirmed (and the pass that followed went well), 1 the pass needs an\n"
        "operator, 2 refused or bad usage.",
    )
    confirm.add_argument("target", metavar="TARGET", help="the target's name in the config")
    confirm.add_argument(
        "--secret-id", metavar="ID", help="the Intercom id of the secret being confirmed"
    )
    confirm.add_argument(
        "--consumer",
        metavar="NAME",
        action="append",
        dest="consumers",
        help="a named consumer that uses the new secret (repeat for several)",
    )
    confirm.add_argument("--actor", metavar="WHO", help=_ACTOR)
    pause = verb(
        "pause",
        "pause TARGET: no create, store or delete until 'rotator resume'",
        "Pause TARGET: every process (daemon, CronJob, hook) stops acting on it at its next\n"
        "step, whatever its phase, until 'rotator resume'. A rotation under way keeps both\n"
        "secrets live; rotate-now is refused while paused. Who and why show in status, plan\n"
        "and metrics. Starts no pass.\n\n"
        "Exit 0 paused (or already paused), 2 bad usage.",
    )
    pause.add_argument("target", metavar="TARGET", help="the target's name in the config")
    pause.add_argument("--reason", required=True, help="why: shown wherever the pause is")
    pause.add_argument("--actor", metavar="WHO", help="who pauses (default: your OS user@host)")
    resume = verb(
        "resume",
        "clear TARGET's pause or block; starts no rotation",
        "Clear TARGET's pause ('rotator pause'), and its block once you fixed its cause\n"
        "(shown by 'rotator status'): a rotation that was under way carries on from its\n"
        "step; an idle target waits for its schedule. Unlike rotate-now, it never starts a\n"
        "rotation. Then runs one pass.\n\n"
        "Exit 0 resumed (or neither paused nor blocked), 1 the pass needs an operator again,\n"
        "2 bad usage.",
    )
    resume.add_argument("target", metavar="TARGET", help="the target's name in the config")
    resume.add_argument("--actor", metavar="WHO", help=_ACTOR)
    abort = verb(
        "abort",
        "back out of TARGET's rotation under way; breaks no consumer",
        "Back out of the rotation under way on TARGET, then run one pass:\n"
        "  creating          the secret created for it (never seen by consumers) is deleted;\n"
        "  awaiting_rollout  the previous secret is written back to the consumers' path (from\n"
        "                    its KV history), its rollout is awaited like any rotation's\n"
        "                    (hook, grace, named consumers), then the new one is deleted;\n"
        "  retiring          refused: Intercom may have deleted the old secret already.\n"
        "Refused too for an emergency, an adoption, or when the KV history no longer holds\n"
        "the previous version. The history records the rotation as aborted, with the reason.\n\n"
        "Exit 0 aborted (or the abort waits for a resume), 1 refused when served or the pass\n"
        "needs an operator, 2 refused or bad usage (nothing written).",
    )
    abort.add_argument("target", metavar="TARGET", help="the target's name in the config")
    abort.add_argument("--reason", default="", help="why: kept in the history and the audit trail")
    abort.add_argument("--actor", metavar="WHO", help="who aborts (default: your OS user@host)")
    status = verb("status", "show each target's phase, secrets, deadlines and last error")
    status.add_argument("target", metavar="TARGET", nargs="?", help="only this target")
    status.add_argument("--json", action="store_true", help="JSON (the default off a terminal)")
    status.add_argument(
        "--history", action="store_true", help="also list the last rotations of each target"
    )
    plan = verb(
        "plan",
        "show what the next pass would do for each target now, and why; changes nothing",
        "Show what the next pass would do for each target now, and why: start a rotation\n"
        "(due since when), store the new secret, wait for rollout until its deadline (and\n"
        "which consumers are behind), retire an old secret, nothing until the next rotation,\n"
        "blocked, backing off, or another process is acting. Computed by the same decision\n"
        "code as a pass, on a real read of Vault, of Intercom's list when the decision needs\n"
        "it (a read-scope token is enough) and of probed consumers: it only reads. No record\n"
        "is written, no lease taken, no secret created or deleted, no notification sent.\n\n"
        "Exit 0 planned, 1 a record does not read or Vault fails, 2 bad usage or unknown\n"
        "target.",
    )
    plan.add_argument("target", metavar="TARGET", nargs="?", help="only this target")
    plan.add_argument("--json", action="store_true", help="JSON (the default off a terminal)")
    verb("check-config", "validate the configuration and report every error at once")
    _add_adopt_and_doctor(verb)
    _add_emulate_intercom(verb)
    _add_completion_and_config_schema(verb)
    demo = verb(
        "demo",
        "watch the real daemon rotate a secret locally (OpenBao dev server + Intercom emulator)",
        "Start an OpenBao dev server and the Intercom emulator on loopback, and run the real\n"
        "daemon against them, with a consumer that signs and verifies throughout and confirms\n"
        "each new secret through the hook. Ctrl-C stops everything.\n\n"
        "Exit 0 once stopped (Ctrl-C, SIGTERM or --rotations N) with every signature verified,\n"
        "after its summary; 1 a signature was rejected or a part failed; 2 it cannot start as\n"
        "asked (--port taken, no 'bao' installed).",
    )
    demo.add_argument(
        "--rotations", type=_positive, metavar="N", help="stop after N completed rotations"
    )
    demo.add_argument(
        "--schedule",
        type=_schedule,
        default="20s",
        help="how often to rotate: an interval or a 5-field cron line (default: 20s; at least 1s)",
    )
    demo.add_argument(
        "--grace", type=_grace, default="10s", help="grace period (default: 10s; at most 365d)"
    )
    demo.add_argument(
        "--port", type=_port, default=0, help="the Intercom emulator's port (default: any free)"
    )
    return parser


def _add_adopt_and_doctor(
    verb: Callable[[str, str, str | None], argparse.ArgumentParser],
) -> None:
    adopt = verb(
        "adopt",
        "take over an existing Intercom secret: its material comes on stdin, never as an argument",
        "Take over a secret created before rotator (in Intercom's dashboard, by hand).\n"
        "Reads the secret's material from stdin (one line; a pipe, not a terminal), checks\n"
        "that --secret-id is live at Intercom, writes the consumers' Vault path with\n"
        "check-and-set, reads it back, and records the secret as the target's current one,\n"
        "so the next rotation retires it. Prints the id and a fingerprint, never the material.\n\n"
        "  vault kv get -field=secret secret/legacy/web | rotator adopt web --secret-id 103\n\n"
        "Exit 0 adopted, 1 Vault or Intercom failed, 2 refused (unknown target or id, no\n"
        "material, a rotation in progress, or the path holds another secret: see --force).",
    )
    adopt.add_argument("target", metavar="TARGET", help="the target's name in the config")
    adopt.add_argument(
        "--secret-id", metavar="ID", required=True, help="the Intercom id of the secret to adopt"
    )
    adopt.add_argument(
        "--force",
        action="store_true",
        help="replace what the consumers' path holds (another secret, or other material); a "
        "secret this target owned is then retired as its confirmation policy says (after the "
        "grace period, or once confirmed)",
    )
    doctor = verb(
        "doctor",
        "check each target's Vault access, Intercom token, drift and state; say how to fix it",
        "Check each target's health: Vault reachable and unsealed,\n"
        "the token's read and write rights on the state and consumers' paths (asked of\n"
        "sys/capabilities-self, not by writing), the Intercom token and its scopes, secrets\n"
        "live at Intercom that rotator does not know, a consumers' secret deleted at\n"
        "Intercom, and blocked, backing-off or overdue rotations. Each finding is ok, warning\n"
        "or error, with the fix to apply. A target with rotate_on_drift = true whose\n"
        "consumers hold a deleted secret is rotated at once: the only change doctor ever\n"
        "makes; everything else it only reads.\n\n"
        "Exit 0 when no finding is an error, 1 otherwise, 2 bad usage or configuration.",
    )
    doctor.add_argument("target", metavar="TARGET", nargs="?", help="only this target")
    doctor.add_argument("--json", action="store_true", help="the findings as JSON")


def _add_emulate_intercom(
    verb: Callable[[str, str, str | None], argparse.ArgumentParser],
) -> None:
    from rotator.emulator.fault_help import SPEC_HELP

    emulate = verb(
        "emulate-intercom",
        "serve a local, stateful Intercom secure_mode_secrets API for tests and demos",
        "Serve Intercom's identity-verification-secret API (/secure_mode_secrets) locally,\n"
        "following its OpenAPI contract, plus GET /__verify?user_id=&user_hash= which answers\n"
        '{"valid": true|false} as Messenger would.\n\nFault injection (--faults SPEC). '
        + SPEC_HELP,
    )
    emulate.add_argument("--host", default="127.0.0.1", help="address to listen on")
    emulate.add_argument("--port", type=_port, default=4010, help="port (default: 4010)")
    emulate.add_argument(
        "--token",
        metavar="TOKEN:SCOPES[:WORKSPACE[:APP]]",
        action="append",
        type=_token,
        help="accept TOKEN with SCOPES (read, write; comma-separated, may be empty) in "
        "WORKSPACE (default: 'default'), counted against APP's rate limit (default: its own); "
        "repeatable. Without any: emulator-token:read,write",
    )
    emulate.add_argument("--faults", metavar="SPEC", type=_faults, help="faults to inject")
    emulate.add_argument(
        "--state",
        metavar="FILE",
        type=Path,
        help="keep the secrets in FILE (JSON, mode 0600) across restarts (default: in memory)",
    )


def _add_completion_and_config_schema(
    verb: Callable[[str, str, str | None], argparse.ArgumentParser],
) -> None:
    completion = verb(
        "completion",
        "print a shell completion script: verbs, options, choices and target names",
        "Print a completion script for SHELL on stdout: verbs, options and their choices, and\n"
        "the [[targets]] names of the configuration the command line names (--config, else\n"
        "$ROTATOR_CONFIG, else ./rotator.toml) where a TARGET goes.\n\n"
        "  bash: rotator completion bash > ~/.local/share/bash-completion/completions/rotator\n"
        "  zsh:  rotator completion zsh > ~/.zfunc/_rotator  (with fpath+=~/.zfunc before\n"
        "        compinit in ~/.zshrc)\n"
        "  fish: rotator completion fish > ~/.config/fish/completions/rotator.fish\n\n"
        "Open a new shell afterwards. Exit 0, or 2 for a shell it does not know.",
    )
    shells = ("bash", "zsh", "fish")  # what shtab writes and tests/test_completion.py runs
    completion.add_argument("shell", metavar="SHELL", choices=shells, help=" | ".join(shells))
    verb(
        "config-schema",
        "print the configuration file's JSON Schema, for completion and checks in an editor",
        "Print the JSON Schema of rotator.toml on stdout (from the models check-config uses):\n"
        "keys, types, choices, defaults and ranges, so an editor completes and checks the file\n"
        "as you type. check-config stays the full check: the rules between keys (exactly one\n"
        "of token_env or token_vault, ...) and what is read at run time are only there.\n\n"
        "  rotator config-schema > rotator.schema.json\n"
        "then, as the first line of rotator.toml (taplo, Even Better TOML in VS Code):\n"
        "  #:schema ./rotator.schema.json\n\n"
        "Exit 0.",
    )


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a port is a number, not {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is from 0 to 65535, not {port}")
    return port


def _schedule(text: str) -> str:
    """A schedule the configuration would take (checked here, so the error names the option,
    not the demo's temporary configuration file)."""
    from rotator.config.schedule import Schedule

    try:
        Schedule.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _grace(text: str) -> str:
    from rotator.config import bounds

    try:
        bounds.check_seconds(text, *bounds.GRACE_PERIOD)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a positive whole number, not {text!r}")
    return int(text)


def _token(text: str) -> object:
    from rotator.emulator.state import Token

    try:
        return Token.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _faults(text: str) -> object:
    from rotator.emulator.faults import FaultSpec, FaultSpecError

    try:
        return FaultSpec.parse(text)
    except FaultSpecError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
