"""YAML to plain Python data, remembering the line of every key and item.

PyYAML's ``safe_load`` forgets where things were, and silently keeps the last of two equal keys.
We compose the node graph instead, convert it ourselves, and keep a map from each value's path
(a tuple of keys and list indices) to its 1-based line, so that a validation error deep inside a
scenario can say ``baseline.yaml:14: calls[0].duration: ...``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from testbed.errors import ScenarioError

Path_ = tuple[str | int, ...]


@dataclass
class SourceMap:
    file: str
    lines: dict[Path_, int] = field(default_factory=dict)

    def line_of(self, path: Path_) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        path = tuple(path)
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]


def format_path(path: Path_) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def load_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    smap = SourceMap(file)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ScenarioError(
            f"not valid YAML: {exc.problem or exc}",
            file=file,
            line=line,
            hint="check indentation and quoting around this line",
        ) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"not valid YAML: {exc}", file=file) from None
    if root is None:
        raise ScenarioError("the file is empty", file=file, hint="a scenario needs at least `name:` and `calls:`")
    constructor = yaml.SafeLoader("")
    return _convert(root, (), smap, constructor), smap


def _convert(node: yaml.Node, path: Path_, smap: SourceMap, constructor: yaml.SafeLoader) -> Any:
    smap.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        constructor.flatten_mapping(node)  # resolves YAML merge keys (<<)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) or isinstance(key, bool):
                raise ScenarioError(
                    f"keys must be plain words, not {type(key).__name__}",
                    file=smap.file,
                    line=key_node.start_mark.line + 1,
                    key=format_path(path) or None,
                )
            key = str(key)
            if key in out:
                raise ScenarioError(
                    f"duplicate key {key!r}",
                    file=smap.file,
                    line=key_node.start_mark.line + 1,
                    key=format_path(path) or None,
                    hint="YAML keeps only the last of two equal keys; remove or merge one of them",
                )
            child = (*path, key)
            smap.lines[child] = key_node.start_mark.line + 1
            out[key] = _convert(value_node, child, smap, constructor)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), smap, constructor) for i, item in enumerate(node.value)]
    return constructor.construct_object(node, deep=True)
