"""Apps: long-running user processes in nodes (a VPN server, a proxy client, your own tool).

Schema of ``nodes.<n>.apps`` (docs/apps.md)::

    apps:
      - name: echo                      # unique in the scenario
        run: [socat, "TCP-LISTEN:7000,fork,reuseaddr", EXEC:cat]   # argv, no shell; templated
        files: {"conf.json": "..."}     # written into the app's own directory ({dir}) first; templated
        env: {KEY: value}               # added to testbed's environment; values templated
        ready: {tcp: 7000}              # or {udp: PORT}, {log: REGEX}, {file: PATH}, {after: 1s}, {exit: 0}
        ready_timeout: 10s
        after: [other-app]              # start order (across nodes); cycles and unknown names are errors

Cross-reference checks (names, ``after`` order, placeholders, binaries) take the scenario's parts
as arguments, so this module does not import ``model.py`` (which imports it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from testbed.core.policy_regex import RegexError, compile_regex
from testbed.scenario import template
from testbed.scenario.common import NAME_PATTERN, Duration, Timeout, _Frozen

__all__ = [
    "PACKAGES",
    "AppSpec",
    "ReadySpec",
    "app_order",
    "app_reference_problems",
    "binary_problems",
]

Port = Annotated[int, Field(ge=1, le=65535)]
Problem = tuple[tuple[str | int, ...], str, list[str]]

PACKAGES: Mapping[str, str] = {
    "ss-server": "shadowsocks-libev",
    "ss-local": "shadowsocks-libev",
    "ss-tunnel": "shadowsocks-libev",
    "ss-redir": "shadowsocks-libev",
    "wireguard-go": "wireguard-go",
    "wg": "wireguard-tools",
    "wg-quick": "wireguard-tools",
    "openvpn": "openvpn",
    "obfs4proxy": "obfs4proxy",
    "lyrebird": "obfs4proxy",
    "stunnel": "stunnel4",
    "stunnel4": "stunnel4",
    "socat": "socat",
    "iperf3": "iperf3",
    "curl": "curl",
    "tor": "tor",
    "snowflake-client": "snowflake-client",
    "snowflake-proxy": "snowflake-proxy",
    "nc": "netcat-openbsd",
    "ncat": "ncat",
    "openssl": "openssl",
    "dig": "bind9-dnsutils",
    "tcpdump": "tcpdump",
    "hysteria": "",  # not in Debian
    "xray": "",
    "v2ray": "v2ray",
    "sing-box": "",
}
"""Program -> the Debian package that installs it ("" : known not to be packaged)."""


class ReadySpec(_Frozen):
    """When an app counts as ready; exactly one key. Until then, it must not exit (but ``exit``)."""

    tcp: Port | None = None
    """A TCP socket listens on this port in the node."""
    udp: Port | None = None
    """A UDP socket is bound to this port in the node."""
    log: str | None = Field(None, min_length=1, max_length=1024)
    """A line of its output (stdout or stderr) matches this RE2 regex (searched, not anchored)."""
    file: str | None = Field(None, min_length=1, max_length=4096)
    """This path exists (relative: in the app's directory; templated, e.g. ``{rundir}/x``)."""
    after: Duration | None = None
    """This long after the start, if it is still running."""
    exit: int | None = Field(None, ge=0, le=255)
    """A set-up step, not a daemon: ready once it exits with this code (then it is done, and not
    watched; e.g. ``wg setconf`` after ``wireguard-go -f`` started)."""

    @model_validator(mode="after")
    def _exactly_one(self) -> ReadySpec:
        chosen = [k for k in ("tcp", "udp", "log", "file", "after", "exit") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError("ready takes exactly one of: tcp, udp, log, file, after, exit (e.g. {tcp: 8388})")
        return self

    @field_validator("log")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                compile_regex(value)
            except RegexError as exc:
                raise ValueError(f"not a usable regex: {exc}") from None
        return value

    def describe(self) -> str:
        if self.tcp is not None:
            return f"TCP port {self.tcp} listening"
        if self.udp is not None:
            return f"UDP port {self.udp} bound"
        if self.log is not None:
            return f"a line of output matching {self.log!r}"
        if self.file is not None:
            return f"file {self.file} existing"
        if self.exit is not None:
            return f"exit {self.exit}"
        return f"still running after {self.after:g} s"


def _words(value: Any) -> Any:
    """``run: [ss-server, -p, 8388]``: numbers become words; a single string is refused (no shell)."""
    if isinstance(value, str):
        raise ValueError("give the command as a list of words: [socat, 'TCP-LISTEN:7000', ...] (no shell)")
    if isinstance(value, list):
        for v in value:
            if isinstance(v, bool):
                raise ValueError(
                    f'a word is {v!r}: YAML reads yes/no/on/off/true/false unquoted as booleans; quote it ("yes")'
                )
        return [str(v) if isinstance(v, (int, float)) else v for v in value]
    return value


class AppSpec(_Frozen):
    name: str = Field(pattern=NAME_PATTERN)
    run: tuple[str, ...] = Field(min_length=1)
    files: dict[str, str] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    ready: ReadySpec | None = None
    """None: ready as soon as it started (an exit later still fails the run)."""
    ready_timeout: Timeout = 10.0
    after: tuple[str, ...] = ()

    @field_validator("run", mode="before")
    @classmethod
    def _run_words(cls, value: Any) -> Any:
        return _words(value)

    @field_validator("env", mode="before")
    @classmethod
    def _env_values(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for k, v in value.items()
            }
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for k in value:
            if not k or not (k[0].isalpha() or k[0] == "_") or not all(c.isalnum() or c == "_" for c in k):
                raise ValueError(f"environment variable name {k!r}: letters, digits and '_', not starting with a digit")
        return value

    @field_validator("files")
    @classmethod
    def _relative_paths(cls, value: dict[str, str]) -> dict[str, str]:
        for rel in value:
            p = PurePosixPath(rel)
            if not rel or p.is_absolute() or ".." in p.parts or rel.endswith("/"):
                raise ValueError(
                    f"file name {rel!r} must be a relative path inside the app's directory (no '..', not absolute)"
                )
        return value

    @property
    def templated(self) -> list[tuple[tuple[str | int, ...], str]]:
        """(path below the app, text) of everything rendered with placeholders."""
        out: list[tuple[tuple[str | int, ...], str]] = [(("run", i), w) for i, w in enumerate(self.run)]
        out += [(("env", k), v) for k, v in self.env.items()]
        out += [(("files", k), v) for k, v in self.files.items()]
        if self.ready is not None and self.ready.file is not None:
            out.append((("ready", "file"), self.ready.file))
        return out


def app_order(apps: Sequence[tuple[str, AppSpec]]) -> list[tuple[str, AppSpec]]:
    """(node, app) in start order: each after those it names in ``after``, otherwise in the order
    written. Assumes the names were checked (:func:`app_reference_problems`)."""
    pending = list(apps)
    done: set[str] = set()
    out: list[tuple[str, AppSpec]] = []
    while pending:
        for i, (node, app) in enumerate(pending):
            if all(a in done for a in app.after):
                out.append((node, app))
                done.add(app.name)
                del pending[i]
                break
        else:
            raise ValueError(f"apps {', '.join(a.name for _, a in pending)} wait for each other")
    return out


def _cycle(start: str, after: Mapping[str, tuple[str, ...]]) -> list[str] | None:
    """A cycle through ``start`` in the ``after`` graph, as names (first == last), or None."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        name, path = stack.pop()
        for dep in after.get(name, ()):
            if dep == start:
                return path + [start]
            if dep not in seen and dep in after:
                seen.add(dep)
                stack.append((dep, path + [dep]))
    return None


def app_reference_problems(nodes: Mapping[str, Sequence[AppSpec]], names: template.Names) -> list[Problem]:
    """Unique names, known ``after`` names, no cycles, placeholders that render."""
    out: list[Problem] = []
    where: dict[str, tuple[str | int, ...]] = {}
    for node, apps in nodes.items():
        for i, app in enumerate(apps):
            base: tuple[str | int, ...] = ("nodes", node, "apps", i)
            if app.name in where:
                out.append(
                    ((*base, "name"), f"app name {app.name!r} is used twice (apps' names are unique in a scenario)", [])
                )
            where.setdefault(app.name, base)
            for path, text in app.templated:
                out.extend(((*base, *path), msg, []) for msg in template.problems(text, names))
    after = {app.name: app.after for apps in nodes.values() for app in apps}
    reported: set[str] = set()
    for node, apps in nodes.items():
        for i, app in enumerate(apps):
            for j, dep in enumerate(app.after):
                if dep not in after:
                    out.append((("nodes", node, "apps", i, "after", j), f"unknown app {dep!r}", sorted(after)))
                elif dep == app.name:
                    out.append(
                        (("nodes", node, "apps", i, "after", j), f"app {app.name!r} cannot start after itself", [])
                    )
            if app.name not in reported:
                cycle = _cycle(app.name, after)
                if cycle is not None and len(cycle) > 2:
                    reported.update(cycle)
                    out.append(
                        (
                            ("nodes", node, "apps", i, "after"),
                            f"apps wait for each other in a cycle: {' -> '.join(cycle)} (none could start)",
                            [],
                        )
                    )
    return out


def _installed(word: str, which: Callable[[str], str | None]) -> bool:
    if "/" in word:
        return os.path.isfile(word) and os.access(word, os.X_OK)
    return which(word) is not None


def binary_problems(
    nodes: Mapping[str, Sequence[AppSpec]], *, which: Callable[[str], str | None] = shutil.which
) -> list[Problem]:
    """Apps whose program is not installed on this machine (the one the run uses: namespaces share
    its filesystem). A program named by a placeholder other than ``{python}`` (``{dir}/start.sh``)
    is only known at run time, and checked then."""
    out: list[Problem] = []
    for node, apps in nodes.items():
        for i, app in enumerate(apps):
            word = app.run[0]
            if word.startswith("{python}"):
                continue
            try:
                parts = template.parse(word)
            except template.TemplateError:
                continue  # reported by app_reference_problems
            if len(parts) != 1 or not isinstance(parts[0], str):
                continue
            program = parts[0]
            if _installed(program, which):
                continue
            base = os.path.basename(program)
            package = PACKAGES.get(base)
            if package:
                fix = f"install it: apt-get install {package}"
            elif package == "":
                fix = "it is not packaged in Debian: install it by hand, or give its full path"
            else:
                fix = "install it (apt-file search bin/" + base + " finds the package), or give its full path"
            out.append(
                (
                    (("nodes", node, "apps", i, "run", 0)),
                    f"app {app.name!r}: program {program!r} is not installed; {fix}",
                    [],
                )
            )
    return out
