"""The operator guide's table of environment variables lists exactly those rotator reads.

The code is read, not trusted to a list kept by hand: every ``os.environ.get(NAME)``,
``os.getenv(NAME)``, ``os.environ[NAME]`` and ``os.environ.setdefault(NAME, ...)`` in ``rotator/``
(and ``env.get(NAME)`` on a mapping that stands for it), whose NAME is a string or a module
constant holding one; plus the variables the configuration names by default (a ``*_env`` key's
default, such as ``VAULT_TOKEN``). A variable added to the code without a row, or a row left
for a variable the code no longer reads, fails here.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

from pydantic import BaseModel

from rotator.config.settings import Settings

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "operator-guide.md"
#: Receivers that stand for the process environment: ``os.environ`` or a mapping passed in its
#: place (``env = os.environ if environ is None else environ``).
_ENVIRON = re.compile(r"^(os\.)?environ$|^env$|\.environ$|^self\._environ$")
_VARIABLE = re.compile(r"[A-Z][A-Z0-9_]*")


def _module(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def _name(node: ast.expr, module: str) -> str | None:
    """The variable's name: a string literal, or a constant of the module holding one, in
    capitals (a WSGI environ's keys, such as ``werkzeug.socket``, are no variables)."""
    value = None
    if isinstance(node, ast.Constant):
        value = node.value
    elif isinstance(node, ast.Name | ast.Attribute):
        value = getattr(importlib.import_module(module), ast.unparse(node).split(".")[-1], None)
    # None: a name held in a variable (a configuration's *_env key): see named_by_default.
    return value if isinstance(value, str) and _VARIABLE.fullmatch(value) else None


def read_by_the_code() -> set[str]:
    found = set()
    for path in sorted((REPO / "rotator").rglob("*.py")):
        module = _module(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and node.args:
                func = node.func
                if isinstance(func, ast.Attribute) and (
                    (
                        func.attr in {"get", "setdefault"}
                        and _ENVIRON.search(ast.unparse(func.value))
                    )
                    or ast.unparse(func) == "os.getenv"
                ):
                    name = _name(node.args[0], module)
                    found |= {name} if name else set()
            elif (
                isinstance(node, ast.Subscript)
                and isinstance(node.ctx, ast.Load)
                and _ENVIRON.search(ast.unparse(node.value))
                and (name := _name(node.slice, module))
            ):
                found.add(name)
    return found


def named_by_default(model: type[BaseModel] = Settings) -> set[str]:
    """The defaults of the configuration's ``*_env`` keys, in every section."""
    names = set()
    for key, field in model.model_fields.items():
        if key.endswith("_env") and isinstance(field.default, str):
            names.add(field.default)
        for kind in getattr(field.annotation, "__args__", (field.annotation,)):
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                names |= named_by_default(kind)
    return names


def documented() -> set[str]:
    """The first column of the table under "### Environment variables" in the guide."""
    text = GUIDE.read_text()
    section = text.split("### Environment variables", 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", section, re.MULTILINE))


def test_the_scan_finds_what_it_must():
    """The scan sees each way the code reads a variable: a literal (VAULT_ADDR), a module
    constant (ROTATOR_CONFIG, ROTATOR_FAILPOINTS), os.environ.setdefault, and a *_env default."""
    found = read_by_the_code()
    assert {"VAULT_ADDR", "ROTATOR_CONFIG", "ROTATOR_LOG_LEVEL", "ROTATOR_FAILPOINTS"} <= found
    assert "PYDANTIC_DISABLE_PLUGINS" in found
    assert "VAULT_TOKEN" in named_by_default()


def test_the_guide_lists_exactly_the_variables_rotator_reads():
    """The guide's table has one row per variable the code reads by a fixed name, and no row for
    one it does not read."""
    code = read_by_the_code() | named_by_default()
    doc = documented()
    assert sorted(code - doc) == [], "read by the code, missing from the guide's table"
    assert sorted(doc - code) == [], "in the guide's table, read nowhere in the code"
