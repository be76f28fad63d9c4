"""Placeholders in the words, environment values and files a scenario writes for its apps and probes.

One grammar for both (pure: no I/O)::

    {addr:NODE}   the node's address (the one the rest of the network sees); {NODE} is the same (probes' old spelling)
    {addr6:NODE}  the node's IPv6 address (scenarios with ``ip: v6`` or ``ip: dual``; an error under ``v4``)
    {cert:NODE}   path of the PEM certificate of the node's https/quic service ({key:NODE}: its private key)
    {dir}         the app's own directory in the run directory (apps only)
    {rundir}      the run directory (/run/testbed/<rid>)
    {python}      the interpreter testbed runs under ({python} -m testbed.tools.quicget ...)
    {NAME}        a scenario-level variable (``vars: {NAME: value}``); its value may itself use the
                  placeholders above except {dir} (``vars: {ca: "{rundir}/ca.pem"}``), not other variables
    {{ and }}     a literal brace (curl's ``-w '%{{http_code}}'``, JSON in a file)

Anything else between braces, or a lone brace, is an error found when the scenario is loaded, so a
typo never reaches a running program.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

__all__ = [
    "BUILTIN_WORDS",
    "Kind",
    "Names",
    "Ref",
    "TemplateError",
    "lookup",
    "parse",
    "problems",
    "render",
]


class Kind(enum.Enum):
    ADDR = "addr"
    ADDR6 = "addr6"
    CERT = "cert"
    KEY = "key"
    DIR = "dir"
    RUNDIR = "rundir"
    PYTHON = "python"
    VAR = "var"
    NODE = "node"
    """``{NODE}``: the node's address (the probes' spelling before ``{addr:NODE}``)."""


_WITH_ARG = {
    Kind.ADDR.value: Kind.ADDR,
    Kind.ADDR6.value: Kind.ADDR6,
    Kind.CERT.value: Kind.CERT,
    Kind.KEY.value: Kind.KEY,
}
_BARE = {Kind.DIR.value: Kind.DIR, Kind.RUNDIR.value: Kind.RUNDIR, Kind.PYTHON.value: Kind.PYTHON}
BUILTIN_WORDS = frozenset(_WITH_ARG) | frozenset(_BARE)
"""Names a scenario variable may not take."""

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([^{}]*))?\}")


class TemplateError(ValueError):
    """A text that is not a valid template; the message names the problem and the fix."""


@dataclass(frozen=True, slots=True)
class Ref:
    kind: Kind
    arg: str = ""
    """The node (addr, addr6, cert, key, node) or the variable's name (var)."""

    def __str__(self) -> str:
        if self.kind in (Kind.VAR, Kind.NODE):
            return "{" + self.arg + "}"
        return "{" + str(self.kind.value) + (":" + self.arg if self.kind in _WITH_ARG.values() else "") + "}"


def parse(text: str) -> list[str | Ref]:
    """Literal pieces and placeholders, in order. Raises TemplateError for a lone brace or a
    placeholder of unknown shape (``{cert}``, ``{foo:bar}``)."""
    out: list[str | Ref] = []
    lit: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "{" and text.startswith("{{", i):
            lit.append("{")
            i += 2
        elif c == "}" and text.startswith("}}", i):
            lit.append("}")
            i += 2
        elif c == "}":
            raise TemplateError(f"a lone '}}' at character {i + 1} of {text!r}: write '}}}}' for a literal brace")
        elif c == "{":
            m = _PLACEHOLDER.match(text, i)
            if m is None:
                raise TemplateError(
                    f"a lone '{{' at character {i + 1} of {text!r}: write '{{{{' for a literal brace "
                    "(placeholders look like {addr:NODE}, {dir}, {secret})"
                )
            if lit:
                out.append("".join(lit))
                lit = []
            out.append(_ref(m.group(1), m.group(2), m.group(0)))
            i = m.end()
        else:
            lit.append(c)
            i += 1
    if lit:
        out.append("".join(lit))
    return out


def _ref(word: str, arg: str | None, whole: str) -> Ref:
    if arg is not None:
        kind = _WITH_ARG.get(word)
        if kind is None:
            raise TemplateError(
                f"unknown placeholder {whole}: the ones with an argument are "
                "{addr:NODE}, {addr6:NODE}, {cert:NODE}, {key:NODE} (write '{{' for a literal brace)"
            )
        return Ref(kind, arg)
    if word in _WITH_ARG:
        raise TemplateError(f"{whole} needs a node: {{{word}:NODE}}")
    if word in _BARE:
        return Ref(_BARE[word])
    return Ref(Kind.VAR, word)  # a variable or a node: told apart by `problems`/`render` against the scenario


@dataclass(frozen=True, slots=True)
class Names:
    """What a scenario defines, to check placeholders against when it is loaded."""

    nodes: Collection[str]
    vars: Collection[str]
    tls_nodes: Collection[str]
    """Nodes with an https or quic service (they have a certificate and a key)."""
    app: bool
    """Checking an app's text (``{dir}`` allowed) rather than a probe's."""
    ipv6: bool = False
    """The scenario's network carries IPv6 (``ip: v6`` or ``dual``): ``{addr6:NODE}`` is allowed."""


def problems(text: str, names: Names) -> list[str]:
    """Why ``text`` cannot be rendered in this scenario (empty: it can)."""
    try:
        parts = parse(text)
    except TemplateError as exc:
        return [str(exc)]
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            continue
        if part.kind is Kind.ADDR6 and not names.ipv6:
            out.append(
                f"{part}: this scenario's network is IPv4-only (`ip: v4`, the default); "
                f"set `ip: dual` (or `v6`) at the top level, or use {{addr:{part.arg}}}"
            )
        elif part.kind in (Kind.ADDR, Kind.ADDR6, Kind.CERT, Kind.KEY) and part.arg not in names.nodes:
            out.append(f"{part} names no node (nodes: {', '.join(sorted(names.nodes))})")
        elif part.kind in (Kind.CERT, Kind.KEY) and part.arg not in names.tls_nodes:
            out.append(
                f"{part}: node {part.arg!r} runs no https or quic service (its certificate and key come from it)"
            )
        elif part.kind is Kind.DIR and not names.app:
            out.append("{dir} is an app's own directory; a probe has none (use {rundir})")
        elif part.kind is Kind.VAR and part.arg not in names.vars and part.arg not in names.nodes:
            known = sorted(set(names.vars))
            hint = f"scenario variables: {', '.join(known)}" if known else "the scenario has no `vars:`"
            out.append(
                f"unknown placeholder {part}: not a variable or a node ({hint}); "
                f"write '{{{{' and '}}}}' for literal braces"
            )
    return out


def render(text: str, value: Callable[[Ref], str]) -> str:
    """``text`` with each placeholder replaced by ``value(ref)`` (``{NODE}`` comes as Kind.VAR:
    the caller's lookup decides between a variable and a node)."""
    return "".join(p if isinstance(p, str) else value(p) for p in parse(text))


def lookup(
    *,
    addresses: Mapping[str, str],
    variables: Mapping[str, str],
    certs: Mapping[str, tuple[str, str]],
    python: str,
    rundir: str,
    appdir: str | None = None,
    addresses6: Mapping[str, str] | None = None,
) -> Callable[[Ref], str]:
    """The ``value`` function of :func:`render` for a run; raises KeyError for what a loaded
    scenario cannot contain (checked by :func:`problems`)."""

    def builtin(ref: Ref) -> str:
        if ref.kind is Kind.ADDR:
            return addresses[ref.arg]
        if ref.kind is Kind.ADDR6 and addresses6 is not None:
            return addresses6[ref.arg]
        if ref.kind is Kind.CERT:
            return certs[ref.arg][0]
        if ref.kind is Kind.KEY:
            return certs[ref.arg][1]
        if ref.kind is Kind.PYTHON:
            return python
        if ref.kind is Kind.RUNDIR:
            return rundir
        if ref.kind is Kind.DIR and appdir is not None:
            return appdir
        if ref.kind is Kind.VAR:  # {NODE}: a variable is taken first, by value() below
            return addresses[ref.arg]
        raise KeyError(str(ref))

    def value(ref: Ref) -> str:
        if ref.kind is Kind.VAR and ref.arg in variables:
            # One level: a variable's value may use the built-in placeholders, not variables.
            return render(variables[ref.arg], builtin)
        return builtin(ref)

    return value
