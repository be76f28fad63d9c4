"""The CI files docs/ci.md ships: valid for their CI system's schema, consistent with each other
and with the commands they call (the workflows cannot run here; their syntax and wiring can be
checked).

The schemas are the ones check-jsonschema vendors (``vendor.github-workflows`` from SchemaStore,
``vendor.gitlab-ci`` from GitLab), installed by the ``test`` extra; nothing is downloaded.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.cli import build_parser

DOCS = Path(__file__).resolve().parents[2] / "docs"
GITHUB = DOCS / "ci" / "github-actions.yml"
GITLAB = DOCS / "ci" / "gitlab-ci.yml"


@pytest.mark.parametrize(("path", "schema"), [(GITHUB, "vendor.github-workflows"), (GITLAB, "vendor.gitlab-ci")])
def test_the_file_is_valid_for_its_ci_schema(path: Path, schema: str) -> None:
    pytest.importorskip("check_jsonschema")
    proc = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_schema_check_catches_a_broken_workflow(tmp_path: Path) -> None:
    # The check above is only worth something if it fails on a mistake a person would make.
    pytest.importorskip("check_jsonschema")
    broken = tmp_path / "wf.yml"
    broken.write_text(GITHUB.read_text().replace("runs-on:", "run-on:", 1))
    proc = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1


def _testbed_commands(script: str) -> list[list[str]]:
    """Every ``testbed`` command line in a script, as argv after ``testbed``."""
    out = []
    for line in re.sub(r"\\\n\s*", " ", script).splitlines():
        m = re.search(r"\.venv/bin/testbed\s+(.*)", line)
        if m:  # a GitHub expression is one word: ${{ matrix.shard }} -> ${{matrix.shard}}
            out.append(re.sub(r"\$\{\{\s*(.*?)\s*\}\}", r"${{\1}}", m.group(1)).split())
    return out


def _parse(argv: list[str]) -> Any:
    # CI variables stand in for real values; a shell variable that may be empty is dropped.
    argv = [a for a in argv if a != "$durations"]
    argv = [re.sub(r"\$\{\{matrix\.shard\}\}|\"?\$CI_NODE_INDEX\"?|\$CI_NODE_TOTAL", "1", a).strip('"') for a in argv]
    return build_parser().parse_args(argv)


def test_github_matrix_shards_and_merge_are_wired_together() -> None:
    wf = yaml.safe_load(GITHUB.read_text())
    shard, merge = wf["jobs"]["shard"], wf["jobs"]["merge"]
    n = len(shard["strategy"]["matrix"]["shard"])
    assert shard["strategy"]["matrix"]["shard"] == list(range(1, n + 1))
    assert shard["strategy"]["fail-fast"] is False and shard["runs-on"] == "ubuntu-latest"
    runs = "\n".join(s.get("run", "") for s in shard["steps"])
    assert "sudo scripts/setup.sh" in runs
    (run, clean) = _testbed_commands(runs)
    assert f"${{{{matrix.shard}}}}/{n}" in run
    args = _parse(run)
    assert args.command == "run" and args.json == "out/results.json" and args.junit == "out/junit.xml"
    assert args.report == "out/html" and clean == ["clean"]
    upload = next(s for s in shard["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["with"]["path"] == "out/" and upload["if"] == "always()"

    assert merge["needs"] == "shard" and merge["if"] == "always()"
    download = next(s for s in merge["steps"] if s.get("uses", "").startswith("actions/download-artifact"))
    prefix = upload["with"]["name"].replace("${{ matrix.shard }}", "")
    assert download["with"]["pattern"] == prefix + "*"
    (merge_cmd,) = _testbed_commands("\n".join(s.get("run", "") for s in merge["steps"]))
    args = _parse(merge_cmd)
    assert (args.command, args.report_command) == ("report", "merge")
    assert args.shards == [download["with"]["path"] + prefix + "*"]


def test_gitlab_parallel_shards_and_merge_are_wired_together() -> None:
    ci = yaml.safe_load(GITLAB.read_text())
    shard, merge = ci["testbed-shard"], ci["testbed-report"]
    assert isinstance(shard["parallel"], int) and shard["parallel"] >= 2
    (run,) = _testbed_commands("\n".join(shard["script"]))
    assert '"$CI_NODE_INDEX/$CI_NODE_TOTAL"' in " ".join(run)
    args = _parse(run)
    assert args.json == "out/shard-1/results.json" and args.report == "out/shard-1/html"
    assert shard["artifacts"]["when"] == "always" and "out/" in shard["artifacts"]["paths"]
    assert merge["needs"] == [{"job": "testbed-shard", "artifacts": True}] and merge["when"] == "always"
    (merge_cmd,) = _testbed_commands("\n".join(merge["script"]))
    assert _parse(merge_cmd).shards == ["out/shard-*"]


@pytest.mark.parametrize("path", [GITHUB, GITLAB])
def test_docs_show_the_shipped_file_verbatim(path: Path) -> None:
    doc = (DOCS / "ci.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", doc, flags=re.S)
    assert path.read_text() in blocks, f"docs/ci.md must show {path.name} as shipped"
