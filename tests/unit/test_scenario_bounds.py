"""Hostile scenario input: every bound gives a file:line scenario error, never a traceback,
a MemoryError or a hang (issue 14 items 4, 5 and 7)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import TypeVar

import pytest

from testbed.errors import ScenarioError
from testbed.files import MAX_LIST_FILE_BYTES, MAX_SCENARIO_BYTES, InputFileError, read_text_file
from testbed.runner import precheck
from testbed.scenario import yamlsrc
from testbed.scenario.loader import LoadedScenario, discover, load_scenario, parse_scenario

T = TypeVar("T")

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


# --- item 5: only regular files, up to a stated size --------------------------------------------


def _scenario_file(tmp_path: Path, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(BASE)
    return path


def _load_error(path: Path) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return info.value


def _without_hanging(fn: Callable[[], T], unblock: Callable[[], None]) -> T:
    """``fn()`` in a thread; if it has not returned after a generous minute it is blocked (a FIFO
    open or read): unblock it so the test fails instead of hanging the suite."""
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(fn)
        try:
            return future.result(timeout=60)
        except FutureTimeout:
            unblock()
            pytest.fail("reading the file blocked")


def _open_fifo_writer(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    os.close(fd)


def test_scenario_symlink_to_dev_zero(tmp_path: Path) -> None:
    link = tmp_path / "zero.yaml"
    link.symlink_to("/dev/zero")
    err = _load_error(link)
    assert err.file == str(link)
    assert "is a character device; only regular files are read" in err.bare_message


def test_scenario_fifo_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)

    def load() -> str:
        try:
            load_scenario(fifo)
        except ScenarioError as exc:
            return exc.bare_message
        return "loaded"

    message = _without_hanging(load, lambda: _open_fifo_writer(fifo))
    assert "FIFO" in message and "only regular files" in message


def test_fifo_in_a_scenario_directory_is_reported_not_skipped(tmp_path: Path) -> None:
    _scenario_file(tmp_path, "a.yaml")
    os.mkfifo(tmp_path / "b.yaml")
    assert discover([tmp_path]) == [tmp_path / "a.yaml", tmp_path / "b.yaml"]


def test_scenario_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(BASE + "description: " + "x" * MAX_SCENARIO_BYTES + "\n")
    err = _load_error(path)
    assert f"more than the limit of {MAX_SCENARIO_BYTES} bytes (1 MiB)" in err.bare_message


def test_scenario_directory_and_missing(tmp_path: Path) -> None:
    assert "is a directory" in _load_error(_dir(tmp_path)).bare_message
    err = _load_error(tmp_path / "nope.yaml")
    assert err.bare_message == "no such file" and err.hint is not None


def _dir(tmp_path: Path) -> Path:
    d = tmp_path / "d.yaml"
    d.mkdir()
    return d


def test_a_regular_scenario_through_a_symlink_loads(tmp_path: Path) -> None:
    link = tmp_path / "link.yaml"
    link.symlink_to(_scenario_file(tmp_path))
    assert load_scenario(link).scenario.name == "x"


def _list_scenario(tmp_path: Path, list_path: str) -> LoadedScenario:
    path = tmp_path / "lists.yaml"
    path.write_text(
        "name: x\ncalls: [{name: c}]\ncensor:\n"
        f"  lists: {{blocked: {{file: {list_path}}}}}\n"
        "  rules: [{name: r, match: {dst: {list: blocked}}, action: drop}]\n"
    )
    return load_scenario(path)


def _precheck_error(loaded: LoadedScenario) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        precheck(loaded)
    return info.value


def test_list_file_symlink_to_dev_zero(tmp_path: Path) -> None:
    (tmp_path / "zero.txt").symlink_to("/dev/zero")
    err = _precheck_error(_list_scenario(tmp_path, "zero.txt"))
    assert "lists.blocked: zero.txt: is a character device; only regular files are read" in err.bare_message


def test_list_file_fifo_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    loaded = _list_scenario(tmp_path, "pipe.txt")

    def check() -> str:
        try:
            precheck(loaded)
        except ScenarioError as exc:
            return exc.bare_message
        return "accepted"

    message = _without_hanging(check, lambda: _open_fifo_writer(fifo))
    assert "pipe.txt: is a FIFO (named pipe)" in message


def test_list_file_size_limit(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    with big.open("wb") as f:
        f.truncate(MAX_LIST_FILE_BYTES + 1)  # sparse: no disk used
    err = _precheck_error(_list_scenario(tmp_path, "big.txt"))
    assert (
        f"big.txt: is {MAX_LIST_FILE_BYTES + 1} bytes, more than the limit of {MAX_LIST_FILE_BYTES}" in err.bare_message
    )


def test_list_file_within_limits_loads(tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text("# blocked\n203.0.113.0/24\n")
    precheck(_list_scenario(tmp_path, "ok.txt"))


def test_reader_stops_at_the_limit_for_a_file_that_grows(tmp_path: Path) -> None:
    # /proc files report size 0 but have content: the read itself must stop at limit + 1.
    with pytest.raises(InputFileError, match="grew past the limit of 16 bytes"):
        read_text_file("/proc/self/status", limit=16)


# --- item 7a: numbers are finite, positive where they must be, and bounded ---------------------

# Each template has one {v}; every bad value must give a scenario error at that key.
_NUMBER_SITES = [
    "calls: [{name: c, duration: {v}}]",
    "calls: [{name: c, connect_timeout: {v}}]",
    "calls: [{name: c, start: {v}}]",
    "calls: [{name: c, count: 2, stagger: {v}}]",
    "calls: [{name: c, data: {rate: {v}}}]",
    "probes: [{name: p, node: caller, run: ['true'], start: {v}}]",
    "probes: [{name: p, node: caller, run: ['true'], timeout: {v}}]",
    "probes: [{name: p, node: caller, run: ['true'], expect: {within: {v}}}]",
    "timeout: {v}\ncalls: [{name: c}]",
    "calls: [{name: c}]\nexpect: [{call: c, setup: {v}}]",
    "calls: [{name: c}]\nexpect: [{call: c, mos: {min: {v}}}]",
    "calls: [{name: c}]\nexpect: [{call: c, survives: {v}, window: {from: 1s}}]",
    "calls: [{name: c}]\nverdict: {max_jitter_ms: {v}}",
    "calls: [{name: c}]\nverdict: {dead_after: {v}}",
    "calls: [{name: c}]\ncensor: {rules: [{name: r, action: {throttle: {rate: {v}}}}]}",
    "calls: [{name: c}]\ncensor: {rules: [{name: r, action: {throttle: {rate: 1Mbit, burst: {v}}}}]}",
    "calls: [{name: c}]\ncensor: {rules: [{name: r, action: {delay: {time: {v}}}}]}",
    "calls: [{name: c}]\ncensor: {rules: [{name: r, action: {delay: {time: 1s, jitter: {v}}}}]}",
    "calls: [{name: c}]\ncensor: {rules: [{name: r, action: {cut: {after_seconds: {v}}}}]}",
    "calls: [{name: c}]\ncensor: {rules: [{name: r, action: {cut: {after_bytes: {v}}}}]}",
    "calls: [{name: c}]\ncensor: {rules: [{name: r, action: {drop: true, block_after: {for: {v}}}}]}",
    "calls: [{name: c}]\ncensor: {rules: [{name: r, match: {time: {from: {v}}}, action: drop}]}",
    "calls: [{name: c}]\ncensor: {rules: [{name: r, match: {time: {from: 0s, every: {v}, active: 1s}}, action: drop}]}",
    "calls: [{name: c}]\ncensor: {rules: [{name: r, match: {age: {min: {v}}}, action: drop}]}",
    "calls: [{name: c}]\ncensor: {rules: [{name: r, match: {flow_bytes: {min: {v}}}, action: drop}]}",
]
_BAD_NUMBERS = {
    "inf": ".inf",
    "-inf": "-.inf",
    "nan": ".nan",
    "float-overflow": "1.0e+999",
    "huge-int": "9" * 400,
    "huge-text": '"' + "9" * 400 + 's"',
    "negative": "-1",
    "absurd": "1.0e+300",
}


# A verdict threshold is only compared with: a huge (finite) one is harmless, so not refused.
_NUMBER_CASES = [
    pytest.param(site, bad, id=f"{bad}-{i}")
    for bad in _BAD_NUMBERS
    for i, site in enumerate(_NUMBER_SITES)
    if not (bad == "absurd" and "verdict" in site)
]


@pytest.mark.parametrize(("site", "bad"), _NUMBER_CASES)
def test_non_finite_and_absurd_numbers_are_refused(site: str, bad: str) -> None:
    text = "name: x\n" + site.replace("{v}", _BAD_NUMBERS[bad]) + "\n"
    err = _error(text)
    # The key holding the value, or (for a range given as a mapping) the range's own key.
    fields = re.findall(r"(\w+): ", site.split("{v}")[0])[-2:]
    assert err.line is not None and err.key is not None, str(err)
    assert set(fields) & set(re.split(r"[.\[\]]+", err.key)), str(err)


@pytest.mark.parametrize(
    "text",
    [
        "name: x\ntimeout: 0\ncalls: [{name: c}]\n",
        "name: x\ncalls: [{name: c, connect_timeout: 0s}]\n",
        "name: x\nprobes: [{name: p, node: caller, run: ['true'], timeout: 0}]\n",
    ],
)
def test_zero_timeouts_are_refused(text: str) -> None:
    err = _error(text)
    assert "greater than 0" in err.bare_message


def test_a_week_is_the_longest_duration() -> None:
    ok = parse_scenario("name: x\ntimeout: 168h\ncalls: [{name: c, duration: 7d}]\n".replace("7d", "168h"))
    assert ok.timeout == 7 * 24 * 3600.0
    err = _error("name: x\ncalls: [{name: c, duration: 169h}]\n")
    assert err.key == "calls[0].duration" and "604800" in err.bare_message


def test_huge_integer_seed_is_a_scenario_error() -> None:
    assert "seed" in (_error("name: x\nseed: " + "9" * 5000 + "\ncalls: [{name: c}]\n").key or "")
    assert _error("name: x\nseed: " + "9" * 40 + "\ncalls: [{name: c}]\n").key == "seed"
