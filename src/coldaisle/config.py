"""Typed YAML loading whose errors name the file, the line and the field.

PyYAML's node tree keeps the line of every key and value; we keep a map from each
path in the document to its line so a pydantic error location can be turned into
`file:line: field: message`. Nothing is half-applied: a document either validates
completely or raises `ConfigError`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from coldaisle.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
_CLOCK = re.compile(r"^\d{1,2}:\d{2}(:\d{2})?$")
Loc = tuple[str | int, ...]


def _construct(node: yaml.Node, path: Loc, lines: dict[Loc, int], file: str) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError("keys must be strings", file=file, line=key_node.start_mark.line + 1,
                                  field=_dotted(path) or None)
            if key in out:
                raise ConfigError(f"duplicate key {key!r}", file=file, line=key_node.start_mark.line + 1,
                                  field=_dotted((*path, key)))
            lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _construct(value_node, (*path, key), lines, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*path, i), lines, file) for i, item in enumerate(node.value)]
    if isinstance(node, yaml.ScalarNode) and node.style is None and _CLOCK.match(node.value):
        return node.value  # YAML 1.1 would read "03:04" as the base-60 integer 184
    return yaml.safe_load(yaml.serialize(node))


def _dotted(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_yaml_with_lines(text: str, file: str) -> tuple[Any, dict[Loc, int]]:
    """Parse one YAML document into plain Python plus a path -> line map."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise ConfigError(f"not valid YAML: {exc.problem}", file=file,
                          line=mark.line + 1 if mark else None) from None
    if node is None:
        raise ConfigError("the file is empty", file=file)
    lines: dict[Loc, int] = {}
    return _construct(node, (), lines, file), lines


def line_for(loc: Sequence[str | int], lines: dict[Loc, int]) -> int | None:
    """The line of the deepest existing prefix of `loc` (a missing key reports its parent)."""
    path = tuple(loc)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


def _has(node: Any, part: str | int) -> bool:
    if isinstance(node, dict):
        return isinstance(part, str) and part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _data_path(loc: tuple[str | int, ...], data: Any) -> tuple[str | int, ...]:
    """Keep the parts of a pydantic location that exist in the document (drops union tags)."""
    out: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        if _has(node, part):
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and any(part == v for v in node.values()):
            continue  # a discriminator value, e.g. `pcie_jitter` in timeline[0].pcie_jitter.node
        elif isinstance(part, str) and ("[" in part or part.startswith("function") or not isinstance(node, dict)):
            continue  # pydantic's own union-member tags (`str`, `int`, `function-after[...]`)
        else:
            out.extend(loc[i:i + 1])
            break
        out.append(part)
    return tuple(out)


def validation_to_config_error(exc: ValidationError, file: str, lines: dict[Loc, int],
                               data: Any = None) -> ConfigError:
    """Turn the first pydantic error into a ConfigError naming file, line and field."""
    err = exc.errors()[0]
    loc = _data_path(tuple(p for p in err["loc"] if isinstance(p, (str, int))), data)
    msg = err["msg"]
    if err["type"] == "union_tag_invalid":
        tag = str(err.get("ctx", {}).get("discriminator", "")).strip("'")
        loc = (*loc, tag) if tag else loc
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    more = len(exc.errors()) - 1
    hint = f"{more} more problem(s) follow once this one is fixed" if more else None
    return ConfigError(msg, file=file, line=line_for(loc, lines), field=_dotted(loc) or None, hint=hint)


def load_model(path: str | Path, model: type[M], *, context: dict[str, Any] | None = None,
               with_lines: bool = False) -> Any:
    """Read `path` and validate it as `model`, or raise ConfigError naming file:line:field."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror}", file=str(p)) from None
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", file=str(p)) from None
    return parse_model(text, str(p), model, context=context, with_lines=with_lines)


def parse_model(text: str, file: str, model: type[M], *, context: dict[str, Any] | None = None,
                with_lines: bool = False) -> Any:
    """Validate YAML text as `model` (`file` names it in errors); optionally return the line map too."""
    data, lines = load_yaml_with_lines(text, file)
    try:
        result = model.model_validate(data, context={"lines": lines, "file": file, **(context or {})})
    except ValidationError as exc:
        raise validation_to_config_error(exc, file, lines, data) from None
    return (result, lines) if with_lines else result


class Located:
    """Raises ConfigErrors at a document path after validation (cross-field checks)."""

    def __init__(self, file: str, lines: dict[Loc, int]) -> None:
        self.file, self.lines = file, lines

    def error(self, path: Sequence[str | int], message: str, hint: str | None = None) -> ConfigError:
        """A ConfigError for `path` (e.g. ("timeline", 3, "node"))."""
        return ConfigError(message, file=self.file, line=line_for(path, self.lines),
                           field=_dotted(path) or None, hint=hint)
