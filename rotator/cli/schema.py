"""``rotator config-schema``: the JSON Schema of ``rotator.toml``, from the models that read it.

pydantic writes the schema of ``rotator.config.settings.Settings``: every key, its type, its
choices, its default, its range, and that unknown keys are errors. Three things it cannot know
are taught here, so that every configuration ``check-config`` accepts is valid to the schema:

- a duration (``rotator.config.bounds.within``) is held as seconds but written as ``"30d"`` or a
  number of seconds: either is allowed, the number within the setting's range;
- a schedule is written as an interval or a 5-field cron line (a ``Schedule`` in memory);
- the ``#:`` comment above a field in the models is its description (what an editor shows).

The schema checks each value on its own; the rules between keys (exactly one of ``token_env``
or ``token_vault``, names that must differ...) and what exists at run time stay with
``check-config``.
"""

from __future__ import annotations

import inspect
import json
import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from rotator.config import bounds
from rotator.config.schedule import Schedule
from rotator.config.settings import Settings

DIALECT = "https://json-schema.org/draft/2020-12/schema"

# What ``rotator.durations.parse_duration`` reads: seconds, or amounts with units (``1h30m``),
# in any case, spaces allowed.
_DURATION_TEXT = r"^\s*(\d+(\.\d+)?\s*([mM][sS]|[sSmMhHdDwW])\s*)+$|^\s*\d+(\.\d+)?\s*$"
_CRON_LINE = r"^\s*\S+(\s+\S+){4}\s*$"


class _ConfigSchema(GenerateJsonSchema):
    """pydantic's generator, taught rotator's durations and schedules (see the module doc)."""

    def function_before_schema(
        self, schema: core_schema.BeforeValidatorFunctionSchema
    ) -> JsonSchemaValue:
        function = schema["function"]["function"]
        closure = inspect.getclosurevars(function).nonlocals
        if function.__module__ == bounds.__name__ and {"low", "high"} <= closure.keys():
            return _duration(closure["low"], closure["high"])
        inner = schema["schema"]
        if inner["type"] == "dataclass" and inner["cls"] is Schedule:
            return _schedule()
        if inner["type"] == "literal" and _lowercases(function, inner["expected"]):
            # `region = "EU"` is read as "eu": offer the choices, accept them in any case.
            either = "|".join(
                "".join(f"[{c.lower()}{c.upper()}]" for c in v) for v in inner["expected"]
            )
            return {
                "anyOf": [
                    self.generate_inner(inner),
                    {"type": "string", "pattern": f"^\\s*({either})\\s*$"},
                ]
            }
        return super().function_before_schema(schema)

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, Schedule):
            return dft.text
        return super().encode_default(dft)


def _schedule() -> JsonSchemaValue:
    low, high = bounds.SCHEDULE_INTERVAL
    return {
        "type": "string",
        "anyOf": [{"pattern": _DURATION_TEXT}, {"pattern": _CRON_LINE}],
        "description": (
            f'an interval from {bounds.describe(low)} to {bounds.describe(high)} ("30d", "12h") '
            'or a 5-field cron line in UTC ("0 3 * * 1")'
        ),
    }


def _lowercases(function: Any, choices: list[Any]) -> bool:
    """Whether the validator reads each of ``choices`` (lowercase words) in upper case, too."""
    words = [c for c in choices if isinstance(c, str) and c.isalpha() and c.islower()]
    return len(words) == len(choices) and all(function(w.upper()) == w for w in words)


def _duration(low: float, high: float) -> JsonSchemaValue:
    return {
        "anyOf": [
            {"type": "string", "pattern": _DURATION_TEXT},
            {"type": "number", "minimum": low, "maximum": high},
        ],
        "description": (
            f'a duration from {bounds.describe(low)} to {bounds.describe(high)}: "90s", "24h", '
            '"1h30m", "30d", or a number of seconds'
        ),
    }


def config_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the configuration file."""
    schema = Settings.model_json_schema(schema_generator=_ConfigSchema)
    definitions = schema.get("$defs", {})
    for model in _models(Settings):
        target = schema if model is Settings else definitions.get(model.__name__)
        if target is not None:
            _describe_fields(model, target.get("properties", {}))
    _plain_quotes(schema)
    return {
        "$schema": DIALECT,
        "title": "rotator configuration (rotator.toml)",
        **{key: value for key, value in schema.items() if key != "title"},
    }


def _plain_quotes(node: Any) -> None:
    """Docstrings quote code as ``this``; a description as Markdown does: `this`."""
    if isinstance(node, dict):
        if isinstance(node.get("description"), str):
            node["description"] = node["description"].replace("``", "`")
        for value in node.values():
            _plain_quotes(value)
    elif isinstance(node, list):
        for value in node:
            _plain_quotes(value)


def print_schema() -> int:
    print(json.dumps(config_schema(), indent=2))
    return 0


def _models(model: type[BaseModel]) -> list[type[BaseModel]]:
    """``model`` and every model its fields hold, each once."""
    found: dict[type[BaseModel], None] = {model: None}
    for field in model.model_fields.values():
        for kind in _classes(field.annotation):
            if issubclass(kind, BaseModel) and kind not in found:
                found.update(dict.fromkeys(_models(kind)))
    return list(found)


def _classes(annotation: Any) -> list[type]:
    """The classes named in a type (``tuple[TargetSettings, ...]`` -> ``[TargetSettings]``)."""
    if isinstance(annotation, type):
        return [annotation]
    return [kind for arg in getattr(annotation, "__args__", ()) for kind in _classes(arg)]


_FIELD = re.compile(r"^\s+(\w+)\s*:")
_DOC = re.compile(r"^\s+#:\s?(.*)$")


def _describe_fields(model: type[BaseModel], properties: dict[str, Any]) -> None:
    """Set each field's description from the ``#:`` comment lines right above it in the
    model's source, where the field has none yet (durations and schedules keep their ranges
    after it)."""
    try:
        lines, _ = inspect.getsourcelines(model)
    except (OSError, TypeError):  # installed without sources: the schema is still whole
        return
    comment: list[str] = []
    for line in lines:
        if doc := _DOC.match(line):
            comment.append(doc.group(1).strip())
            continue
        field = _FIELD.match(line)
        if field and comment and field.group(1) in properties:
            text = " ".join(comment)
            prop = properties[field.group(1)]
            prop["description"] = (
                f"{text} ({prop['description']})" if "description" in prop else text
            )
        comment = []
