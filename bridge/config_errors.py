"""Configuration errors as a person reads them: the key, what was expected, the value given, once.

pydantic's own messages speak of its types ("Tuple should have at least 1 item after
validation", "Value error, ...", "Input should be a valid integer"); :func:`describe` turns each
error into one line of the form ``key: expected ..., got <value>``. It is generic over the error
types, so new configuration sections get the same rendering without code here.

Two rules keep it honest: a container's length error is dropped when one of its items failed
(pydantic counts only the valid items, so one bad subscription entry also reported "at least 1
item ... not 0" for a list that has one), and values are never echoed for keys that hold secrets;
every secret found in the document is also scrubbed from the text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from bridge.redact import redact

MAX_SHOWN_VALUE = 80
_SECRET_KEY_PARTS = ("api_key", "password", "secret", "token")
_UNKNOWN_KEY = "unknown key (check the spelling against the README's configuration reference)"


class Invalid(ValueError):
    """Raised by a validator: ``expected`` says what is wanted; ``key`` and ``value`` refine the place.

    ``key`` is a sub-key of the field or model being validated (a model validator that blames one
    field names it), ``value`` the offending value when it is not the validator's whole input.
    """

    _NOTHING: object = object()

    def __init__(self, expected: str, *, key: str | int | None = None, value: object = _NOTHING) -> None:
        super().__init__(expected)
        self.expected = expected
        self.key = key
        self.value = value

    @property
    def has_value(self) -> bool:
        """Whether the validator named the offending value itself."""
        return self.value is not Invalid._NOTHING


def _expectation(error: ErrorDetails) -> str:
    """What was expected, in words, for one pydantic error."""
    kind, ctx = error["type"], error.get("ctx", {})
    phrases = {
        "missing": "required, but not given",
        "extra_forbidden": _UNKNOWN_KEY,
        "int_parsing": "expected a whole number",
        "int_type": "expected a whole number",
        "int_from_float": "expected a whole number",
        "float_parsing": "expected a number",
        "float_type": "expected a number",
        "bool_parsing": "expected true or false",
        "bool_type": "expected true or false",
        "string_type": "expected a string (quote it in YAML)",
        "tuple_type": "expected a list",
        "list_type": "expected a list",
        "dict_type": "expected a mapping (a YAML section of keys)",
        "model_type": "expected a mapping (a YAML section of keys)",
        "model_attributes_type": "expected a mapping (a YAML section of keys)",
        "literal_error": f"expected {ctx.get('expected')}",
        "enum": f"expected {ctx.get('expected')}",
        "greater_than": f"expected a number greater than {_number(ctx.get('gt'))}",
        "greater_than_equal": f"expected at least {_number(ctx.get('ge'))}",
        "less_than": f"expected less than {_number(ctx.get('lt'))}",
        "less_than_equal": f"expected at most {_number(ctx.get('le'))}",
        "too_short": f"expected at least {_items(ctx.get('min_length'))}",
        "too_long": f"expected at most {_items(ctx.get('max_length'))}",
    }
    if kind in phrases:
        return phrases[kind]
    cause = ctx.get("error")
    if kind in ("value_error", "assertion_error") and cause is not None:
        return str(cause)
    message = error["msg"]
    return "expected " + message[len("Input should be ") :] if message.startswith("Input should be ") else message


def _number(bound: object) -> str:
    return f"{bound:g}" if isinstance(bound, float) else str(bound)


def _items(count: object) -> str:
    return f"{count} item" if count == 1 else f"{count} items"


def _is_secret_key(key: object) -> bool:
    """``api_key``, ``password``, ``key_password``...; not ``password_file``, whose value is a path."""
    if not isinstance(key, str) or key.endswith("_file"):
        return False
    return any(part in key.lower() for part in _SECRET_KEY_PARTS)


def _shown(value: object) -> str | None:
    """A short rendering of a scalar (or a short list of them); None when echoing it would not help."""
    if isinstance(value, list | tuple) and all(isinstance(item, str | int | float | bool) for item in value):
        text = "[" + ", ".join(_shown(item) or "" for item in value) + "]"
    elif isinstance(value, bool) or value is None:
        text = {True: "true", False: "false", None: "null (empty)"}[value]
    elif isinstance(value, str):
        text = repr(value)
    elif isinstance(value, int | float):
        text = str(value)
    else:
        return None
    return text if len(text) <= MAX_SHOWN_VALUE else text[: MAX_SHOWN_VALUE - 3] + "..."


def _line(error: ErrorDetails, missing_hints: Mapping[str, str]) -> str:
    loc: list[str | int] = list(error["loc"])
    cause = error.get("ctx", {}).get("error")
    value: object = error.get("input")
    if isinstance(cause, Invalid):
        if cause.key is not None:
            loc.append(cause.key)
        if cause.has_value:
            value = cause.value
    key = ".".join(str(part) for part in loc) or "(top level)"
    if error["type"] == "missing" and key in missing_hints:
        return f"{key}: {missing_hints[key]}"
    text = f"{key}: {_expectation(error)}"
    secret = any(_is_secret_key(part) for part in loc)
    if secret or error["type"] in ("missing", "extra_forbidden"):
        return text
    shown = _shown(value)
    return f"{text}, got {shown}" if shown is not None else text


def describe(exc: ValidationError, secrets: Iterable[str] = (), missing_hints: Mapping[str, str] | None = None) -> str:
    """Every error of ``exc`` as one line each, under one heading, with ``secrets`` scrubbed.

    Args:
        exc: pydantic's error.
        secrets: literal values never to show (see :func:`secrets_in`).
        missing_hints: for a required key (by its dotted path), what to say instead of "required".
    """
    errors = exc.errors(include_url=False)
    locations = [tuple(error["loc"]) for error in errors]
    lines: list[str] = []
    for error, loc in zip(errors, locations, strict=True):
        item_failed = any(len(other) > len(loc) and other[: len(loc)] == loc for other in locations)
        if error["type"] == "too_short" and item_failed:
            continue
        line = _line(error, missing_hints or {})
        if line not in lines:
            lines.append(line)
    text = lines[0] if len(lines) == 1 else f"{len(lines)} errors:\n" + "\n".join(f"  {line}" for line in lines)
    return redact(f"invalid configuration: {text}", secrets)


def secrets_in(document: Any, env: Mapping[str, str], env_names: Iterable[str]) -> list[str]:
    """Every value under a secret-named key of ``document``, plus the named environment variables."""
    found = [env[name] for name in env_names if env.get(name)]
    if isinstance(document, Mapping):
        for key, item in document.items():
            if _is_secret_key(key) and isinstance(item, str):
                found.append(item)
            else:
                found.extend(secrets_in(item, {}, ()))
    elif isinstance(document, list):
        for item in document:
            found.extend(secrets_in(item, {}, ()))
    return found


def describe_yaml_error(path: object, exc: yaml.YAMLError) -> str:
    """A YAML syntax error as ``file, line L, column C: not valid YAML: <problem> (<context> at ...)``."""

    def at(mark: Any) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    problem_mark = getattr(exc, "problem_mark", None)
    where = f"{path}, {at(problem_mark)}" if problem_mark is not None else str(path)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    if context and context_mark is not None:
        context = f"{context} at {at(context_mark)}"
    return f"{where}: not valid YAML: {problem}" + (f" ({context})" if context else "")
