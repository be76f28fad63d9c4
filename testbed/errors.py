"""The exceptions testbed raises on purpose.

Every error a user can cause (a bad scenario, a corrupt capture, a missing privilege) is a
``TestbedError`` whose message names the problem and the fix; the CLI prints it and exits 2
(usage/input errors) or 1 (a run that went wrong), never with a traceback.

    TestbedError
    ├── UsageError            bad command-line arguments or environment
    ├── ScenarioError         a scenario file that does not load or validate (file, line, key, hint)
    ├── CaptureError          a pcap/pcapng that cannot be read (file, byte offset)
    ├── PrivilegeError        not root / missing CAP_NET_ADMIN or CAP_SYS_ADMIN, missing binaries
    └── RunError              something failed while a scenario was running
        ├── TopologyError     namespaces, links, addresses, routes
        ├── CensorError       the censor engine died or could not bind its queue
        └── CallError         an endpoint process failed

``core.packet.MalformedPacket`` is deliberately *not* in this tree: it is an expected outcome
of parsing untrusted bytes inside the sans-IO core, handled there, never shown to a user.
"""

from __future__ import annotations


class TestbedError(Exception):
    """Root of every error testbed raises on purpose."""

    exit_code = 1


class UsageError(TestbedError):
    exit_code = 2


class ScenarioError(TestbedError):
    """A scenario file that cannot be used; the message carries file:line, the key and a hint."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.key = key
        self.hint = hint
        self.bare_message = message
        where = file or "<scenario>"
        if line is not None:
            where = f"{where}:{line}"
        text = f"{where}: {message}"
        if key:
            text = f"{where}: {key}: {message}"
        if hint:
            text += f"\n  hint: {hint}"
        super().__init__(text)


class CaptureError(TestbedError):
    """A capture file that cannot be read; names the file and the byte offset."""

    exit_code = 2

    def __init__(self, message: str, *, file: str, offset: int | None = None) -> None:
        self.file = file
        self.offset = offset
        where = file if offset is None else f"{file} at byte offset {offset}"
        super().__init__(f"{where}: {message}")


class PrivilegeError(TestbedError):
    exit_code = 2


class RunError(TestbedError):
    exit_code = 1


class TopologyError(RunError):
    pass


class AppNotReadyError(RunError):
    """An app never became ready (exited first, or its ready check timed out). Often the
    censor's doing: a VPN client is ready once its tunnel is up, through the censor."""

    kind = "app-not-ready"
    """The result's ``error_kind``."""


class CensorError(RunError):
    pass


class CallError(RunError):
    pass
