"""``rotator completion bash|zsh|fish``: a shell completion script made from the parser itself.

shtab writes the script from the same ``argparse`` parser that ``rotator`` runs, so verbs, flags
and choices (``--log-format json``) complete as they are today and cannot drift. It is imported
here only: no other verb pays for it at start-up.

Two completions shtab cannot know are added: ``--config`` and ``--state`` complete file names,
and a verb's TARGET completes the names of the ``[[targets]]`` in the configuration the command
line would read (``--config PATH``, else ``$ROTATOR_CONFIG``, else ``./rotator.toml``). Those
names are read by ``awk`` in the shell, not by starting Python at each Tab: a name is the
``name = "..."`` line of a ``[[targets]]`` table (not of its ``[[targets.consumers]]``).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

# Prints the name of each [[targets]] table of a TOML file, one a line. A table header changes
# the section; only `name` lines inside a [[targets]] table count. No single quote in here: each
# shell quotes it in single quotes.
_AWK_TARGETS = r"""
  /^[[:space:]]*\[/ { in_target = ($0 ~ /^[[:space:]]*\[\[[[:space:]]*targets[[:space:]]*\]\]/) }
  in_target && /^[[:space:]]*name[[:space:]]*=/ {
    sub(/^[^=]*=[[:space:]]*/, ""); sub(/[[:space:]]*(#.*)?$/, ""); gsub(/["\047]/, ""); print
  }
"""

_BASH = f"""
# The [[targets]] names of the configuration this command line would read.
_rotator_targets() {{
  local config="${{ROTATOR_CONFIG:-rotator.toml}}" i
  for ((i = 1; i < ${{#COMP_WORDS[@]}} - 1; i++)); do
    case "${{COMP_WORDS[i]}}" in
      --config) config="${{COMP_WORDS[i + 1]}}" ;;
      --config=*) config="${{COMP_WORDS[i]#--config=}}" ;;
    esac
  done
  compgen -W "$(awk '{_AWK_TARGETS}' "$config" 2>/dev/null)" -- "$1"
}}
"""

_ZSH = f"""
# The [[targets]] names of the configuration this command line would read.
_rotator_targets() {{
  # $words lost the options once _arguments took them: the whole line is in $BUFFER.
  local config="${{ROTATOR_CONFIG:-rotator.toml}}" i
  local -a line_words=(${{(Q)${{(z)BUFFER}}}})
  for ((i = 1; i <= ${{#line_words}}; i++)); do
    case "${{line_words[i]}}" in
      --config) config="${{line_words[i + 1]}}" ;;
      --config=*) config="${{line_words[i]#--config=}}" ;;
    esac
  done
  compadd -- ${{(f)"$(awk '{_AWK_TARGETS}' "$config" 2>/dev/null)"}}
}}
"""

_FISH = f"""
# The [[targets]] names of the configuration this command line would read.
function _rotator_targets
  set -l config rotator.toml
  set -q ROTATOR_CONFIG; and set config $ROTATOR_CONFIG
  set -l words (commandline -opc)
  for i in (seq (count $words))
    if test "$words[$i]" = --config; and test $i -lt (count $words)
      set config $words[(math $i + 1)]
    else if string match -q -- '--config=*' $words[$i]
      set config (string replace -- '--config=' '' $words[$i])
    end
  end
  awk '{_AWK_TARGETS}' $config 2>/dev/null
end
"""

TARGETS = {
    "bash": "_rotator_targets",
    "zsh": "_rotator_targets",
    "fish": "(_rotator_targets)",
    "preamble": {"bash": _BASH, "zsh": _ZSH, "fish": _FISH},
}


def completion(shell: str) -> int:
    """Print ``shell``'s completion script (the parser refused any other shell, exit 2)."""
    import shtab

    from rotator.cli.parser import build_parser

    parser = build_parser()
    for action in _actions(parser):
        if action.dest in {"config", "state"}:
            action.complete = shtab.FILE  # type: ignore[attr-defined]
        elif action.dest == "target":
            action.complete = TARGETS  # type: ignore[attr-defined]
    print(shtab.complete(parser, shell=shell), end="")
    return 0


def _actions(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    """Every action of ``parser`` and of its verbs' parsers."""
    for action in parser._actions:  # noqa: SLF001 - shtab walks the same list
        yield action
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for sub in dict.fromkeys(action.choices.values()):
                yield from _actions(sub)
