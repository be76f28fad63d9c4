"""Hostile scenario input: every bound gives a file:line scenario error, never a traceback,
a MemoryError or a hang (issue 14 items 4, 5 and 7)."""

from __future__ import annotations

import pytest

from testbed.errors import ScenarioError
from testbed.scenario import yamlsrc
from testbed.scenario.loader import parse_scenario

BASE = "name: x\ncalls: [{name: c}]\n"


def _error(text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "s.yaml")
    return info.value


# --- item 4: YAML bounds ------------------------------------------------------------------------


def _laughs(levels: int, width: int = 9) -> str:
    text = BASE + "a: &a [" + ",".join(["lol"] * width) + "]\n"
    prev = "a"
    for i in range(levels):
        name = f"l{i}"
        text += f"{name}: &{name} [" + ",".join([f"*{prev}"] * width) + "]\n"
        prev = name
    return text


def test_billion_laughs_is_refused_at_the_alias_use() -> None:
    text = _laughs(8)  # 9**9 = 387M values once expanded; ~400 bytes of text
    assert len(text) < 600
    err = _error(text)
    assert "more than 200000 values" in err.bare_message
    assert err.file == "s.yaml"
    assert err.line is not None and err.line > 3  # an alias use, not the `a:` anchor on line 3
    assert err.key is not None and err.key.startswith("l")
    assert err.hint is not None and "alias" in err.hint


def test_merge_key_laughs_are_refused() -> None:
    text = BASE + "m0: &m0 {a: 1, b: 2}\n"
    for i in range(1, 40):
        text += f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}]}}\n"
    err = _error(text)
    assert "values once YAML aliases and merge keys are expanded" in err.bare_message


def test_modest_aliases_still_work() -> None:
    data, smap = yamlsrc.load_yaml(_laughs(2), "s.yaml")
    assert len(data["l1"]) == 9 and data["l1"][0][0] == ["lol"] * 9


def test_recursive_alias_names_its_line() -> None:
    err = _error(BASE + "x: 1\na: &a [1, [2, *a]]\n")
    assert err.line == 4
    assert "*a is inside the collection &a" in err.bare_message


def test_recursive_merge_key() -> None:
    err = _error(BASE + "a: &a {b: 1, <<: *a}\n")
    assert err.line == 3
    assert "endless" in err.bare_message


def test_deep_nesting_in_the_text() -> None:
    err = _error(BASE + "d: " + "[" * 5000 + "]" * 5000 + "\n")
    assert err.line == 3
    assert f"nested more than {yamlsrc.MAX_DEPTH} levels" in err.bare_message


def test_deep_block_nesting() -> None:
    text = BASE + "".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "v\n"
    err = _error(text)
    assert err.line == 3 + yamlsrc.MAX_DEPTH - 1  # the first mapping that is one level too deep


def test_deep_nesting_through_aliases() -> None:
    text = BASE + "a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 100))
    err = _error(text)
    assert "once YAML aliases are expanded" in err.bare_message
    assert err.line is not None and err.line > 3


def test_nesting_at_the_limit_is_fine() -> None:
    depth = yamlsrc.MAX_DEPTH - 1  # the top-level mapping is one level
    data, _ = yamlsrc.load_yaml("d: " + "[" * depth + "]" * depth + "\n", "s.yaml")
    assert isinstance(data["d"], list)


def test_text_size_limit() -> None:
    text = BASE + "description: " + "x" * yamlsrc.MAX_YAML_CHARS + "\n"
    err = _error(text)
    assert f"limit of {yamlsrc.MAX_YAML_CHARS}" in err.bare_message


def test_merge_of_a_non_mapping_is_a_scenario_error() -> None:
    err = _error(BASE + "a: {<<: 5}\n")  # was a ConstructorError traceback
    assert err.line == 3 and "merges mappings only" in err.bare_message


def test_merge_keys_let_own_keys_override() -> None:
    text = "base: &b {duration: 5s, connect_timeout: 9s}\ncalls:\n  - {<<: *b, name: c, duration: 2s}\n"
    data, _ = yamlsrc.load_yaml(text, "s.yaml")
    assert data["calls"][0] == {"duration": "2s", "connect_timeout": "9s", "name": "c"}


def test_complex_key_is_refused() -> None:
    err = _error(BASE + "? [a, b]\n: 1\n")
    assert "keys must be plain words" in err.bare_message
