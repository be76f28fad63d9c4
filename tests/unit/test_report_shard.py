"""``testbed run --shard K/N [--durations-from JSON]``: which files a CI matrix job runs."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from testbed.report.shard import Shard, ShardError, durations_from_result, partition, select, select_items

CLI = [sys.executable, "-m", "testbed.cli"]
KEYS = [f"scenarios/s{i:02d}.yaml" for i in range(11)]


@pytest.mark.parametrize(("text", "shard"), [("1/2", Shard(1, 2)), ("2/2", Shard(2, 2)), (" 3 / 7 ", Shard(3, 7))])
def test_shard_parses(text: str, shard: Shard) -> None:
    assert Shard.parse(text) == shard


@pytest.mark.parametrize("text", ["0/2", "3/2", "x/y", "1/0", "", "1", "1/2/3", "-1/2", "1.0/2"])
def test_bad_shard_is_refused(text: str) -> None:
    with pytest.raises(ShardError, match="--shard"):
        Shard.parse(text)


@pytest.mark.parametrize("value", ["0/2", "3/2", "x/y"])
def test_bad_shard_on_the_command_line_is_a_one_line_usage_error(value: str, tmp_path: Path) -> None:
    # Refused before any scenario is read (the path does not even exist) and before root is needed.
    proc = subprocess.run(
        [*CLI, "run", str(tmp_path / "none"), "--shard", value], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"testbed: error: --shard '{value}'"), proc.stderr


def test_durations_without_shard_is_a_usage_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*CLI, "run", str(tmp_path), "--durations-from", "x.json"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "add --shard" in proc.stderr and "Traceback" not in proc.stderr


@given(
    n=st.integers(1, 9),
    keys=st.lists(st.text(min_size=1, max_size=8), unique=True, max_size=30),
    weights=st.dictionaries(st.text(min_size=1, max_size=8), st.floats(0, 1e4)),
)
def test_partition_is_complete_disjoint_and_independent_of_order(
    n: int, keys: list[str], weights: dict[str, float]
) -> None:
    shards = partition(keys, n, weights)
    assert len(shards) == n
    flat = [k for s in shards for k in s]
    assert sorted(flat) == sorted(keys)  # complete, and nothing twice
    shuffled = list(keys)
    random.Random(0).shuffle(shuffled)
    assert partition(shuffled, n, weights) == shards  # stable: the order files are found in does not matter
    for k in range(1, n + 1):
        assert set(select(shuffled, Shard(k, n), weights)) == set(shards[k - 1])


def test_without_durations_it_is_sorted_round_robin() -> None:
    shards = partition(list(reversed(KEYS)), 3)
    assert shards == [KEYS[0::3], KEYS[1::3], KEYS[2::3]]
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_more_shards_than_files_leaves_some_empty() -> None:
    assert partition(KEYS[:2], 4) == [[KEYS[0]], [KEYS[1]], [], []]


def test_durations_balance_the_shards_longest_first() -> None:
    # Round-robin would put both long files (s00, s02) on shard 1: 200 s against 4 s.
    weights = {KEYS[0]: 100.0, KEYS[2]: 100.0, KEYS[1]: 1.0, KEYS[3]: 1.0, KEYS[4]: 1.0, KEYS[5]: 1.0}
    assert partition(KEYS[:6], 2) == [[KEYS[0], KEYS[2], KEYS[4]], [KEYS[1], KEYS[3], KEYS[5]]]
    shards = partition(KEYS[:6], 2, weights)
    loads = [sum(weights[k] for k in s) for s in shards]
    assert loads == [102.0, 102.0]
    assert shards == [[KEYS[0], KEYS[1], KEYS[4]], [KEYS[2], KEYS[3], KEYS[5]]]  # ties: the lower shard


def test_unknown_durations_weigh_the_mean_of_the_known() -> None:
    # s00 and s01 known (10 s, 30 s: mean 20); the new s02 counts 20 s: 30 against 20 + 10.
    shards = partition(KEYS[:3], 2, {KEYS[0]: 10.0, KEYS[1]: 30.0})
    assert shards == [[KEYS[1]], [KEYS[0], KEYS[2]]]


@given(weights=st.lists(st.floats(0.1, 1000), min_size=1, max_size=25), n=st.integers(1, 6))
def test_longest_first_is_within_graham_bound(weights: list[float], n: int) -> None:
    keys = [f"k{i:02d}" for i in range(len(weights))]
    w = dict(zip(keys, weights, strict=True))
    loads = [sum(w[k] for k in s) for s in partition(keys, n, w)]
    # LPT's makespan is at most the ideal (total / n) plus the longest item; never all on one shard.
    assert max(loads) <= sum(weights) / n + max(weights) + 1e-6


def test_durations_come_from_a_result_file_by_name() -> None:
    doc = {"schema_version": 1, "scenarios": [{"name": "a", "duration_s": 4.5}, {"name": "b", "duration_s": 0}]}
    assert durations_from_result(doc) == {"a": 4.5, "b": 0.0}
    for bad, what in [
        ({}, "no 'scenarios'"),
        ({"scenarios": [{"duration_s": 1}]}, "no 'name'"),
        ({"scenarios": [{"name": "a", "duration_s": "1"}]}, "finite number"),
        ({"scenarios": [{"name": "a", "duration_s": -1}]}, "negative"),
    ]:
        with pytest.raises(ShardError, match=what):
            durations_from_result(bad)


def test_bad_durations_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("name: s\n")
    bad = tmp_path / "d.json"
    bad.write_text(json.dumps({"scenarios": [{"name": "s", "duration_s": "slow"}]}))
    proc = subprocess.run(
        [*CLI, "run", str(tmp_path / "s.yaml"), "--shard", "1/2", "--durations-from", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stderr.startswith(f"testbed: error: --durations-from {bad}:"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_items_are_split_by_path_and_weighed_by_scenario_name() -> None:
    # (path, scenario name): the durations came from a run in another directory, so only names match.
    items = [(f"/ci/job/{k}", f"name-{i}") for i, k in enumerate(KEYS[:4])]
    durations = {"name-0": 50.0, "name-2": 50.0, "name-1": 1.0, "name-3": 1.0}
    picked = [
        select_items(items, Shard(k, 2), key=lambda it: it[0], name=lambda it: it[1], durations=durations)
        for k in (1, 2)
    ]
    assert [[n for _, n in p] for p in picked] == [["name-0", "name-1"], ["name-2", "name-3"]]
    # Without durations: sorted round-robin over the paths.
    plain = [
        select_items(items, Shard(k, 2), key=lambda it: it[0], name=lambda it: it[1], durations={}) for k in (1, 2)
    ]
    assert [[n for _, n in p] for p in plain] == [["name-0", "name-2"], ["name-1", "name-3"]]
