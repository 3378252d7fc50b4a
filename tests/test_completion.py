"""``rotator completion``: the scripts it prints load in their shell and complete a real line.

Each shell runs the generated script as a user's would: bash calls the completion function with
``COMP_WORDS`` set, fish answers ``complete -C``, and zsh (which completes only inside its line
editor) is driven through ``zsh/zpty`` with Tab. The zsh and fish tests skip where that shell is
not installed (``apt-get install zsh fish``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROTATOR = [sys.executable, "-m", "rotator"]
BASH, ZSH, FISH = (shutil.which(shell) or shell for shell in ("bash", "zsh", "fish"))

CONFIG = """\
[vault]
address = "http://127.0.0.1:8200"

[[targets]]
name = "web"   # the site's Messenger
token_env = "INTERCOM_TOKEN"
secret_name = "web"
vault_path = "apps/web/intercom"

[[targets.consumers]]
name = "not-a-target"

[[targets]]
name = 'ios-app'
token_env = "INTERCOM_TOKEN"
secret_name = "ios"
vault_path = "apps/ios/intercom"
"""


def script(shell: str) -> str:
    result = subprocess.run(
        [*ROTATOR, "completion", shell], capture_output=True, text=True, check=True, timeout=30
    )
    return result.stdout


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> Path:
    """A directory holding ``rotator.toml`` (the default) and ``other.toml`` (named by
    ``--config``), each with its own target names."""
    root = tmp_path_factory.mktemp("configs")
    (root / "rotator.toml").write_text(CONFIG)
    (root / "other.toml").write_text(
        CONFIG.replace('"web"   #', '"billing" #').replace("'ios-app'", "'android-app'")
    )
    return root


def bash_complete(script_path: Path, words: list[str], cwd: Path, env: dict[str, str]) -> set[str]:
    """What bash's completion function offers for ``words`` (the last one being typed)."""
    words_text = " ".join(f"'{w}'" for w in words)
    program = textwrap.dedent(f"""\
        source '{script_path}'
        COMP_WORDS=({words_text})
        COMP_CWORD={len(words) - 1}
        COMP_LINE="${{COMP_WORDS[*]}}"
        COMP_POINT=${{#COMP_LINE}}
        _shtab_rotator rotator "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
        printf '%s\\n' "${{COMPREPLY[@]}}"
        """)
    result = subprocess.run(
        [BASH, "--norc", "--noprofile", "-c", program],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        check=True,
        timeout=30,
    )
    return {line for line in result.stdout.splitlines() if line}


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bash") / "rotator.bash"
    path.write_text(script("bash"))
    return path


def test_bash_script_is_valid_bash(bash_script):
    """The bash script parses (`bash -n`) and registers its function for `rotator`."""
    subprocess.run([BASH, "-n", str(bash_script)], check=True, timeout=30)
    assert "complete -o bashdefault -F _shtab_rotator rotator" in bash_script.read_text()


@pytest.mark.parametrize(
    ("words", "expected", "unexpected"),
    [
        (["rotator", "rot"], {"rotate-now"}, {"run", "status"}),
        (["rotator", "c"], {"check-config", "completion", "config-schema", "confirm"}, {"run"}),
        (["rotator", "rotate-now", "--em"], {"--emergency"}, {"--yes"}),
        (["rotator", "status", "--"], {"--json", "--history", "--config"}, {"--emergency"}),
        (["rotator", "--log-format", ""], {"auto", "json", "console"}, set()),
        (["rotator", "completion", ""], {"bash", "zsh", "fish"}, {"tcsh"}),
        (["rotator", "rotate-now", ""], {"web", "ios-app"}, {"not-a-target"}),
        (["rotator", "status", "i"], {"ios-app"}, {"web"}),
        (["rotator", "--config", "other.toml", "pause", ""], {"billing", "android-app"}, {"web"}),
        (["rotator", "confirm", "--config", "other.toml", "b"], {"billing"}, {"web"}),
    ],
)
def test_bash_completes_verbs_options_choices_and_targets(
    bash_script, configs, words, expected, unexpected
):
    """Tab in bash offers the verbs, a verb's options, an option's choices, and the target names
    of the configuration the line would read (./rotator.toml, or --config's), not consumers."""
    offered = bash_complete(bash_script, words, configs, env={"PATH": "/usr/bin:/bin"})
    assert expected <= offered, offered
    assert not unexpected & offered, offered


def test_bash_target_names_follow_rotator_config(bash_script, configs, tmp_path):
    """With no --config, target names come from $ROTATOR_CONFIG, as `rotator` itself reads."""
    env = {"PATH": "/usr/bin:/bin", "ROTATOR_CONFIG": str(configs / "other.toml")}
    offered = bash_complete(bash_script, ["rotator", "rotate-now", ""], tmp_path, env)
    assert offered == {"billing", "android-app"}
    # No configuration where it is looked for: nothing offered, and no error printed.
    assert bash_complete(bash_script, ["rotator", "plan", ""], tmp_path, {"PATH": "/usr/bin"}) == (
        set()
    )


def test_an_unknown_shell_is_refused_with_exit_2():
    """`rotator completion tcsh` names the shells it knows and exits 2, without a traceback."""
    result = subprocess.run(
        [*ROTATOR, "completion", "tcsh"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2
    assert "invalid choice: 'tcsh' (choose from 'bash', 'zsh', 'fish')" in result.stderr
    assert "Traceback" not in result.stderr
    assert not result.stdout


def test_other_verbs_do_not_import_shtab():
    """Building the parser (what every verb does) leaves shtab unimported: start-up stays lean."""
    code = (
        "import sys\nfrom rotator.cli.parser import build_parser\nbuild_parser()\n"
        "print('shtab' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert result.stdout.strip() == "False"


@pytest.mark.skipif(not Path(FISH).is_absolute(), reason="fish is not installed")
@pytest.mark.parametrize(
    ("line", "expected", "unexpected"),
    [
        ("rotator rot", {"rotate-now"}, {"run"}),
        ("rotator rotate-now --em", {"--emergency"}, set()),
        ("rotator completion ", {"bash", "zsh", "fish"}, set()),
        ("rotator doctor ", {"web", "ios-app"}, {"not-a-target"}),
        ("rotator --config other.toml rotate-now ", {"billing", "android-app"}, {"web"}),
    ],
)
def test_fish_completes_a_line(configs, tmp_path, line, expected, unexpected):
    """fish, with the script sourced, completes verbs, options, choices and target names."""
    path = tmp_path / "rotator.fish"
    path.write_text(script("fish"))
    subprocess.run([FISH, "--no-execute", str(path)], check=True, timeout=30)
    result = subprocess.run(
        [FISH, "--no-config", "-c", f"source {path}; complete -C '{line}'"],
        capture_output=True,
        text=True,
        cwd=configs,
        check=True,
        timeout=30,
    )
    offered = {row.split("\t")[0] for row in result.stdout.splitlines()}
    assert expected <= offered, offered
    assert not unexpected & offered, offered


# Drives an interactive zsh through a pseudo-terminal: loads the script as a user's fpath would,
# types the line and Tab, and prints each match compadd was given (every case expects one: with
# none, it waits until the test's timeout).
_ZSH_DRIVER = r"""
zmodload zsh/zpty || exit 3
zpty z zsh -f -i
zpty -w z "PROMPT= ; RPROMPT= ; unsetopt zle_bracketed_paste"
zpty -w z "fpath=(${(q)1} \$fpath); autoload -Uz compinit && compinit -u -D"
zpty -w z 'compadd () { if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return $?; fi; typeset -a hits; builtin compadd -A hits "$@"; (( $#hits )) && print -r -l -- "<hit>"${^hits} > /dev/tty; return 1 }'
zpty -w z "print -r -- '<ready>'"
zpty -r z line '*<ready>*'
zpty -r z line '*<ready>*'
zpty -w -n z "$2"$'\t'
# Typed-ahead input makes zle skip completion: wait for the first match before typing on.
zpty -r z out '*<hit>*'
zpty -w z $'\C-u'"print -r -- '<done>'"
while zpty -r z line; do out+="$line"; [[ $out == *'<done>'*'<done>'* ]] && break; done
print -r -- "$out" | tr -d '\r' | grep -o '<hit>[^<]*' | sed 's/<hit>//'
zpty -d z
"""


@pytest.mark.skipif(not Path(ZSH).is_absolute(), reason="zsh is not installed")
@pytest.mark.parametrize(
    ("line", "expected", "unexpected"),
    [
        ("rotator rot", {"rotate-now"}, {"run"}),
        ("rotator rotate-now --em", {"--emergency"}, set()),
        ("rotator completion ", {"bash", "zsh", "fish"}, set()),
        ("rotator status ", {"web", "ios-app"}, {"not-a-target"}),
        ("rotator rotate-now --config other.toml ", {"billing", "android-app"}, {"web"}),
    ],
)
def test_zsh_completes_a_line(configs, tmp_path, line, expected, unexpected):
    """zsh, with the script on its fpath as `_rotator`, completes verbs, options, choices and
    target names when Tab is pressed in its line editor."""
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "_rotator").write_text(script("zsh"))
    subprocess.run([ZSH, "-n", str(functions / "_rotator")], check=True, timeout=30)
    result = subprocess.run(
        [ZSH, "-f", "-c", _ZSH_DRIVER, "zsh", str(functions), line],
        capture_output=True,
        text=True,
        cwd=configs,
        check=True,
        timeout=20,
    )
    offered = set(result.stdout.split())
    assert expected <= offered, offered
    assert not unexpected & offered, offered
