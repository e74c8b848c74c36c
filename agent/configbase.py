"""Shared pieces for every config section: strict models, secrets, readable errors, TOML example.

Each part of the agent defines its own section model (a :class:`Section`) next to its code;
``agent.config`` assembles them. Unknown keys are errors everywhere.
"""

from __future__ import annotations

import os
import re
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from agent.errors import ConfigError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)


def check_name(v: str, what: str) -> str:
    """Names that become topic levels, table keys and file names: 1-64 safe characters."""
    if not _NAME.match(v):
        raise ValueError(
            f"{what} must be 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    return v


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def resolve_secret(value: str | None, file: str | None, env: str | None, what: str) -> str | None:
    """Return a secret from, in order, an environment variable, a file, or the inline value.

    Raises ConfigError naming ``what`` when the variable is unset or the file unreadable.
    """
    if env:
        if env not in os.environ:
            raise ConfigError(
                f"{what}: environment variable {env} is not set", f"export {env}=... or use a file"
            )
        return os.environ[env]
    if file:
        try:
            return Path(file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"{what}: cannot read secret file {file}: {exc.strerror}",
                "check the path and that the agent's user may read it (mode 0600/0640)",
            ) from exc
    return value


# -- error formatting ------------------------------------------------------------------------------


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def format_validation_error(exc: ValidationError, source: str = "config") -> str:
    """One line per problem: ``cameras[1].detect_fps: -3 is not > 0``."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        # pydantic adds the union member / tag name to the location; drop the noise
        loc = tuple(p for p in loc if p not in ("str", "int", "float", "bool"))
        path = _loc(loc)
        typ = err["type"]
        inp = err.get("input")
        ctx = err.get("ctx") or {}
        if typ == "extra_forbidden":
            msg = "unknown key (check the spelling; `edge-agent config example` lists every key)"
        elif typ == "missing":
            msg = "is required"
        elif typ in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
            op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[
                typ
            ]
            bound = next(iter(ctx.values()), "?")
            msg = f"{inp!r} is not {op} {bound}"
        elif typ == "literal_error":
            msg = f"{inp!r} is not one of {ctx.get('expected', '')}"
        elif typ == "value_error":
            msg = str(ctx.get("error", err["msg"]))
            if inp is not None and not isinstance(inp, (dict, list)):
                msg = f"{inp!r}: {msg}"
        else:
            shown = "" if isinstance(inp, (dict, list)) or inp is None else f"{inp!r}: "
            msg = f"{shown}{err['msg'].lower()}"
        lines.append(f"{path}: {msg}")
    return "\n".join(f"{source}: {line}" for line in lines)


# -- commented example generated from the schema ---------------------------------------------------


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, Path):
        return _toml_value(str(v))
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }" if v else "{}"
    if v is None:
        return '""'
    if hasattr(v, "value"):  # Enum
        return _toml_value(v.value)
    return _toml_value(str(v))


def _model_type(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _list_item_model(annotation: Any) -> type[BaseModel] | None:
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        args = typing.get_args(annotation)
        if args:
            return _model_type(args[0])
    return None


def _comment(text: str | None, indent: str = "") -> list[str]:
    if not text:
        return []
    return [f"{indent}# {line}".rstrip() for line in text.strip().splitlines()]


def example_toml(model: type[BaseModel], prefix: str = "") -> str:
    """A commented TOML document for ``model``: every key with its default and description.

    Lists of tables are shown with the entries in the field's ``examples`` (so the example is a
    working config). Keys whose default is ``None`` are shown commented out.
    """
    scalars: list[str] = []
    tables: list[str] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        sub = _model_type(ann)
        item = _list_item_model(ann)
        path = f"{prefix}.{name}" if prefix else name
        if sub is not None:
            tables.append("")
            tables.extend(_comment(field.description))
            tables.append(f"[{path}]")
            body = example_toml(sub, path)
            tables.append(body)
        elif item is not None:
            examples = (field.examples or [[]])[0]
            tables.append("")
            tables.extend(_comment(field.description))
            if not examples:
                tables.append(f"# [[{path}]]  (none by default; keys as below)")
                body = example_toml(item, path)
                tables.extend(
                    "# " + line if line and not line.startswith("#") else line for line in body.splitlines()
                )
            for ex in examples:
                inst = item.model_validate(ex)
                tables.append(f"[[{path}]]")
                tables.append(_instance_toml(inst, path, explicit=set(ex.keys())))
        else:
            scalars.extend(_comment(field.description))
            if field.is_required():
                ex = (field.examples or [None])[0]
                scalars.append(f"# {name} = {_toml_value(ex) if ex is not None else '...'}  (required)")
                continue
            default = field.get_default(call_default_factory=True)
            if name == "id" and prefix == "device":
                scalars.append(f'# {name} = "<hostname>"')
                continue
            if default is None:
                ex = (field.examples or [None])[0]
                scalars.append(f"# {name} = {_toml_value(ex) if ex is not None else '...'}")
            else:
                scalars.append(f"{name} = {_toml_value(default)}")
    return "\n".join(scalars + tables).strip("\n")


def _instance_toml(inst: BaseModel, path: str, explicit: set[str]) -> str:
    lines: list[str] = []
    tables: list[str] = []
    for name, field in type(inst).model_fields.items():
        v = getattr(inst, name)
        sub = _model_type(field.annotation)
        item = _list_item_model(field.annotation)
        lines.extend(_comment(field.description))
        if sub is not None and isinstance(v, BaseModel):
            tables.append(f"[{path}.{name}]")
            tables.append(_instance_toml(v, f"{path}.{name}", set(v.model_fields_set)))
        elif item is not None:
            for x in v:
                tables.append(f"[[{path}.{name}]]")
                tables.append(_instance_toml(x, f"{path}.{name}", set(x.model_fields_set)))
            if not v:
                lines.append(f"# {name}: see [[{path}.{name}]] (none here)")
        elif v is None:
            lines.append(f"# {name} = ...")
        else:
            val = v.model_dump(mode="json") if isinstance(v, BaseModel) else v
            lines.append(f"{name} = {_toml_value(val)}" + ("" if name in explicit else ""))
    return "\n".join(lines + tables)
