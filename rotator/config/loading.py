"""Reading the configuration file: where it is, TOML, and every problem at once, by key.

The file is found at ``--config PATH``, else ``$ROTATOR_CONFIG``, else ``./rotator.toml``. An
empty ``--config ""`` is refused rather than read as "not given" (a script whose variable came
out empty would quietly use another file). The file must be a regular file of at most
``MAX_CONFIG_BYTES``: ``--config /dev/zero`` once read forever, and a FIFO would block.
Validation errors become one ``ConfigError`` whose lines name the TOML key of each problem
(``targets[0] (web).schedule: ...``), so a user fixes them all in one go.
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rotator.config.settings import ConfigError, Settings

DEFAULT_PATH = Path("rotator.toml")
CONFIG_ENV = "ROTATOR_CONFIG"
#: Bytes; a configuration of 10,000 targets (what one daemon is built to serve) is 2-3 MiB, a
#: few more with consumers and windows.
MAX_CONFIG_BYTES = 16 * 1024 * 1024


def config_path(explicit: str | None, environ: dict[str, str] | None = None) -> Path:
    """``explicit``, else ``$ROTATOR_CONFIG``, else ``./rotator.toml``."""
    if explicit is not None and not explicit.strip():
        raise ConfigError("--config", ["the path is empty: give the configuration file's path"])
    env = os.environ if environ is None else environ
    return Path(explicit or env.get(CONFIG_ENV) or DEFAULT_PATH)


def load_settings(path: Path) -> Settings:
    """Read and validate ``path``; raises ``ConfigError`` listing every problem."""
    try:
        raw = tomllib.loads(_read(path))
    except FileNotFoundError:
        raise ConfigError(
            str(path),
            [f"file not found (pass --config PATH or set ${CONFIG_ENV})"],
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(str(path), [f"cannot read the file: {e}"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(path), [f"not valid TOML: {e}"]) from None
    return parse_settings(raw, source=str(path))


def _read(path: Path) -> str:
    """The file's text: refused (``ConfigError``) when it is no regular file, or too large."""
    # Checked before opening: opening a FIFO waits for a writer.
    if not stat.S_ISREG(path.stat().st_mode):
        raise ConfigError(
            str(path),
            ["not a regular file (a directory, a device or a pipe): name the TOML file itself"],
        )
    with path.open("rb") as file:
        data = file.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            str(path),
            [f"larger than {MAX_CONFIG_BYTES // 2**20} MiB: is it the configuration file?"],
        )
    return data.decode("utf-8")


def parse_settings(raw: dict[str, Any], source: str = "<config>") -> Settings:
    try:
        return Settings.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(source, [_describe(error, raw) for error in e.errors()]) from None


def _describe(error: Any, raw: dict[str, Any]) -> str:
    key = _key(error["loc"], raw)
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key (check its spelling and its [section])"
    elif error["type"] == "missing":
        message = "required"
    return f"{key}: {message}" if key else message


def _key(loc: tuple[Any, ...], raw: dict[str, Any]) -> str:
    """``("targets", 0, "schedule")`` -> ``targets[0] (web).schedule``, the TOML way."""
    parts: list[str] = []
    node: Any = raw
    for item in loc:
        if isinstance(item, int):
            label = f"[{item}]"
            if isinstance(node, list) and item < len(node) and isinstance(node[item], dict):
                name = node[item].get("name")
                if isinstance(name, str):
                    label += f" ({name})"
            parts.append(label)
            node = node[item] if isinstance(node, list) and item < len(node) else None
        else:
            if str(item).startswith(("function-", "function_")):
                continue
            parts.append(("." if parts else "") + str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts)
