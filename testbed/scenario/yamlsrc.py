"""YAML to plain Python data, remembering the line of every key and item.

PyYAML's ``safe_load`` forgets where things were, and silently keeps the last of two equal keys.
We compose the node graph instead, convert it ourselves, and keep a map from each value's path
(a tuple of keys and list indices) to its 1-based line, so that a validation error deep inside a
scenario can say ``baseline.yaml:14: calls[0].duration: ...``.

Converting it ourselves also puts us in charge of aliases, which PyYAML would expand without
limit: a 520-byte "billion laughs" file expands to gigabytes, an alias inside its own anchor is an
infinite structure, and 5000 nested ``[`` exhaust Python's recursion limit.  So YAML input is
refused, with its line, when it is longer than ``MAX_YAML_CHARS``, nests deeper than ``MAX_DEPTH``
(in the text, or once aliases are expanded), holds more than ``MAX_VALUES`` values once aliases
and merge keys (``<<``) are expanded, or uses an alias inside the collection it names.  The limits
are far above any real scenario (the largest shipped one has under 100 values and nests 8 deep)
and are stated in README.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import yaml

from testbed.errors import ScenarioError
from testbed.records.json import JsonObject

Path_ = tuple[str | int, ...]

MAX_YAML_CHARS = 1024 * 1024
"""Characters in one YAML document (the scenario file limit, ``loader.MAX_SCENARIO_BYTES``)."""
MAX_DEPTH = 64
"""Nesting of mappings and lists, counted after alias expansion."""
MAX_VALUES = 200_000
"""Mappings, lists and scalars after expanding aliases and merge keys (a 1 MiB file of short
scalars has about this many; billion laughs needs 10**9)."""

_MERGE_TAG = "tag:yaml.org,2002:merge"
_ALIAS_HINT = (
    "YAML aliases (*name) are copied wherever they are used; write the values out or use fewer levels of aliases"
)


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
    if len(text) > MAX_YAML_CHARS:
        raise ScenarioError(
            f"the YAML text is {len(text)} characters, more than the limit of {MAX_YAML_CHARS}",
            file=file,
            hint="a scenario is a short description; put long address lists in a `{file: ...}` list",
        )
    loader = _BoundedLoader(text, file)
    try:
        root = loader.get_single_node()
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
    finally:
        loader.dispose()
    if root is None:
        raise ScenarioError("the file is empty", file=file, hint="a scenario needs at least `name:` and `calls:`")
    return _Converter(smap).convert(root, (), 1), smap


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's composer with a nesting limit and no self-referencing aliases.

    PyYAML composes recursively (two frames per level) and lets an alias name a collection that
    is still open, which makes a cyclic node graph; both are refused here, at the offending line,
    before anything walks the graph.
    """

    def __init__(self, text: str, file: str) -> None:
        super().__init__(text)
        self._file = file
        self._depth = 0
        self._open_anchors: set[str] = set()

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in types-PyYAML
        line = event.start_mark.line + 1 if event.start_mark is not None else None
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open_anchors:
                raise ScenarioError(
                    f"the alias *{event.anchor} is inside the collection &{event.anchor} it names "
                    "(an endless structure)",
                    file=self._file,
                    line=line,
                    hint="an alias can only repeat a value that is complete before it",
                )
            return super().compose_node(parent, index)
        anchor = getattr(event, "anchor", None)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise ScenarioError(
                f"nested more than {MAX_DEPTH} levels deep",
                file=self._file,
                line=line,
                hint="a scenario nests a few levels; check for unclosed brackets",
            )
        if anchor is not None:
            self._open_anchors.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor is not None:
                self._open_anchors.discard(anchor)


class _Converter:
    """Node graph -> plain data, spending one unit of ``MAX_VALUES`` per value it produces."""

    def __init__(self, smap: SourceMap) -> None:
        self.smap = smap
        self.constructor = yaml.SafeLoader("")
        self.budget = MAX_VALUES
        self._stack: list[tuple[yaml.Node, Path_]] = []  # the nodes being converted, root first

    def _spend(self, path: Path_, node: yaml.Node) -> None:
        self.budget -= 1
        if self.budget < 0:
            raise self._error(f"more than {MAX_VALUES} values once YAML aliases and merge keys are expanded", path)

    def _error(self, message: str, path: Path_) -> ScenarioError:
        """An expansion error at the first alias use on the way to ``path``, not at the anchor."""
        key, line = path, self.smap.line_of(path)
        for (parent, parent_path), (child, child_path) in pairwise(self._stack):
            if not _within(child, parent):  # reached through an alias used inside ``parent``
                key = child_path
                # A mapping's value: the key's own line; a list item: the list's line.
                line = self.smap.lines.get(child_path) if isinstance(parent, yaml.MappingNode) else None
                line = line or self.smap.line_of(parent_path)
                break
        return ScenarioError(message, file=self.smap.file, line=line, key=format_path(key) or None, hint=_ALIAS_HINT)

    def convert(self, node: yaml.Node, path: Path_, depth: int) -> Any:
        self.smap.lines.setdefault(path, node.start_mark.line + 1)
        self._stack.append((node, path))
        try:
            self._spend(path, node)
            if depth > MAX_DEPTH:
                # Only aliases get here: the composer already bounds the nesting of the text itself.
                raise self._error(f"nested more than {MAX_DEPTH} levels deep once YAML aliases are expanded", path)
            if isinstance(node, yaml.MappingNode):
                out: JsonObject = {}
                merged, explicit = self._pairs(node, path, depth)
                for key, key_node, value_node in merged:
                    if key in explicit or key in out:
                        continue  # YAML merge: the mapping's own keys, then earlier sources, win
                    out[key] = self._child(key, key_node, value_node, path, depth)
                for key, (key_node, value_node) in explicit.items():
                    out[key] = self._child(key, key_node, value_node, path, depth)
                return out
            if isinstance(node, yaml.SequenceNode):
                return [self.convert(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
            return self._scalar(node, path)
        finally:
            self._stack.pop()

    def _child(self, key: str, key_node: yaml.Node, value_node: yaml.Node, path: Path_, depth: int) -> Any:
        child = (*path, key)
        self.smap.lines[child] = key_node.start_mark.line + 1
        return self.convert(value_node, child, depth + 1)

    def _pairs(
        self, node: yaml.MappingNode, path: Path_, depth: int
    ) -> tuple[list[tuple[str, yaml.Node, yaml.Node]], dict[str, tuple[yaml.Node, yaml.Node]]]:
        """(pairs merged in through ``<<``, in priority order; the mapping's own pairs by key)."""
        merged: list[tuple[str, yaml.Node, yaml.Node]] = []
        explicit: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for source in sources:
                    if not isinstance(source, yaml.MappingNode):
                        raise ScenarioError(
                            "`<<` merges mappings only",
                            file=self.smap.file,
                            line=source.start_mark.line + 1,
                            key=format_path(path) or None,
                            hint="write `<<: *name` or `<<: [*a, *b]` where each alias names a mapping",
                        )
                    # A merge is an alias expansion too: it spends the budget and nests one level.
                    self._spend(path, source)
                    if depth + 1 > MAX_DEPTH:
                        raise self._error(f"merge keys (<<) nest more than {MAX_DEPTH} levels deep", path)
                    inner_merged, inner_explicit = self._pairs(source, path, depth + 1)
                    merged.extend(inner_merged)
                    merged.extend((k, kn, vn) for k, (kn, vn) in inner_explicit.items())
                continue
            key = self._key(key_node, path)
            if key in explicit:
                raise ScenarioError(
                    f"duplicate key {key!r}",
                    file=self.smap.file,
                    line=key_node.start_mark.line + 1,
                    key=format_path(path) or None,
                    hint="YAML keeps only the last of two equal keys; remove or merge one of them",
                )
            explicit[key] = (key_node, value_node)
        return merged, explicit

    def _scalar(self, node: yaml.Node, path: Path_) -> Any:
        try:
            return self.constructor.construct_object(node, deep=True)
        except (ValueError, yaml.YAMLError) as exc:
            # e.g. an integer of more than 4300 digits (Python's int/str conversion limit).
            problem = exc.problem if isinstance(exc, yaml.MarkedYAMLError) else str(exc).split(";")[0]
            raise ScenarioError(
                f"not a usable value: {problem}",
                file=self.smap.file,
                line=node.start_mark.line + 1,
                key=format_path(path) or None,
            ) from None

    def _key(self, key_node: yaml.Node, path: Path_) -> str:
        key = self._scalar(key_node, path) if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(key, (str, int, float)) or isinstance(key, bool):
            raise ScenarioError(
                f"keys must be plain words, not {type(key).__name__ if key is not None else 'a collection or null'}",
                file=self.smap.file,
                line=key_node.start_mark.line + 1,
                key=format_path(path) or None,
            )
        return str(key)


def _within(child: yaml.Node, parent: yaml.Node) -> bool:
    """Whether ``child`` is written inside ``parent`` in the text (not reached through an alias)."""
    return parent.start_mark.index <= child.start_mark.index < parent.end_mark.index
