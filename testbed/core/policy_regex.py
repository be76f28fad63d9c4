"""Policy regular expressions (SNI ``regex``): RE2, so matching is linear in the text, whatever the pattern.

Python's ``re`` backtracks: ``(a+)+$`` against an SNI of 28 ``a`` s took ~26 s, and since the
censor fails closed every flow stalled meanwhile (issue 14, item 3). RE2 (google-re2) guarantees
time linear in the input and memory bounded by ``max_mem`` per pattern, at the price of the
constructs that need backtracking: backreferences, lookahead/lookbehind, possessive quantifiers
and atomic groups. Those are refused when the policy is loaded, with the construct and a way
around it, rather than silently changed.

Pure computation (RE2 is a C++ library behind a binding, no I/O), so the sans-IO core may use it.
"""

from __future__ import annotations

from typing import Protocol

import re2  # type: ignore[import-untyped]  # google-re2 ships no type information

__all__ = ["Regex", "RegexError", "compile_regex"]

# RE2's own default: a program that does not fit is refused at load ("pattern too large").
_MAX_MEM = 8 << 20


class Regex(Protocol):
    """What the matchers use of a compiled pattern."""

    def search(self, text: str) -> object | None: ...


class RegexError(ValueError):
    """A pattern RE2 cannot compile; the message names the construct and the fix."""


# The argument of RE2's complaint (after ": ") -> (construct, how to do without it).
_UNSUPPORTED: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("(?=", "(?!"), "lookahead",
     "anchor the pattern instead, or put the exclusion in `not: {sni: ...}`"),
    (("(?<=", "(?<!"), "lookbehind",
     "anchor the pattern instead, or put the exclusion in `not: {sni: ...}`"),
    (("(?P=",), "a named backreference",
     "RE2 cannot refer back to a group; spell the repeated text out, or use one rule per name"),
    (("(?>",), "an atomic group", "drop the `(?>...)`: RE2 never backtracks, so plain `(...)` means the same"),
    (("\\Z",), "`\\Z`", "write `\\z` (or `$`) for the end of the name"),
    (("(?(",), "a conditional group", "split the pattern into several regexes (a rule matches if any does)"),
)  # fmt: skip


def _explain(pattern: str, reason: str) -> str:
    """Name the construct RE2 refused, from its error message, and say what to write instead."""
    what, _, arg = reason.partition(": ")
    unsupported: tuple[str, str] | None = None
    if what == "invalid escape sequence" and arg[1:2].isdigit():
        unsupported = (f"a backreference ({arg})",
                       "RE2 cannot refer back to a group; spell the repeated text out, or use one rule per name")  # fmt: skip
    elif what == "bad repetition operator" and arg.endswith("+"):
        unsupported = (f"a possessive quantifier ({arg})",
                       "drop the trailing `+`: RE2 never backtracks, so the plain quantifier means the same")  # fmt: skip
    else:
        if arg == "(?P" and "(?P=" in pattern:
            arg = "(?P="  # RE2 stops at "(?P" for a named backreference
        for starts, construct, fix in _UNSUPPORTED:
            if arg.startswith(starts):
                unsupported = (construct, fix)
                break
    if unsupported is not None:
        construct, fix = unsupported
        return (f"{pattern!r} uses {construct}, which RE2 does not support (policy regexes are RE2 "
                f"syntax, matched in linear time): {fix}")  # fmt: skip
    return f"bad regular expression {pattern!r}: {reason} (policy regexes are RE2 syntax, docs/policy.md)"


def compile_regex(pattern: str) -> Regex:
    """Compile ``pattern`` with RE2, or raise ``RegexError`` saying what to write instead."""
    options = re2.Options()
    options.log_errors = False  # RE2 would print every refused pattern to stderr
    options.never_capture = True  # rules only ask whether it matches
    options.max_mem = _MAX_MEM
    try:
        compiled: Regex = re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else ""
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise RegexError(_explain(pattern, str(reason))) from None
    return compiled
