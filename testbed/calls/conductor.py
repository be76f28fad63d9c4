"""The relay's call logic as a sans-IO state machine: :class:`Conductor`.

Rule 1: no I/O, no clock.  The session (``session.py``) feeds it what happened -- a message from
an endpoint, an endpoint lost, a timer -- each with ``now`` (CLOCK_MONOTONIC seconds), and carries
out the :data:`Action` values it returns.  ``next_deadline()`` says when to call ``on_timer``.
Rule 2: a call that fails is a *measured outcome* (``error`` in the result), never an exception;
only a harness failure (an endpoint that never became ready) is an :class:`Abort`.

Phases::

    STARTING --both Hello--> DIALLING --both "connected"--> CONNECTED --duration_s--> HANGING_UP
       |                     |                                |                         |
       | start_timeout_s,    | connect_timeout_s,             | endpoint lost, failure, | all Done
       | lost before Hello   | endpoint lost, failure,        | connection failed       | or lost,
       v                     | connection failed              |                         | teardown
     Abort                   +------------> HANGING_UP <------+                         v timeout
                                                                                     FINISHED

With ``ice_restart``, a CONNECTED call whose media stalls (an endpoint reports ``media:stalled``)
or whose connection fails goes to RECONNECTING once: both endpoints get Restart, make a new peer
connection (a new ICE session) and the caller offers again; when both are connected again it is
CONNECTED, still hanging up ``duration_s`` after it first connected.

A normal hang-up is HangUp to the caller, which says Bye to the callee through the relay; on an
error every endpoint still running gets a HangUp.  Either way each endpoint stops its media, waits
``drain_s``, reports Stats, closes its peer connection and says Done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, auto

from testbed.calls import metrics
from testbed.calls.options import CallOptions
from testbed.calls.result import CallResult, Kind
from testbed.calls.signalling import (
    PEER_MESSAGES,
    Dial,
    Done,
    Failure,
    HangUp,
    Hello,
    Layer,
    Message,
    Restart,
    Role,
    StateChange,
    Stats,
)
from testbed.records.timeline import CallState, Party, TimelineEntry


@dataclass(frozen=True, slots=True)
class Send:
    to: Role
    message: Message


@dataclass(frozen=True, slots=True)
class Finish:
    """Every endpoint is done or gone: build the result; processes may be reaped."""


@dataclass(frozen=True, slots=True)
class Abort:
    """The harness failed (not the call): the session raises ``CallError``."""

    reason: str
    role: Role | None = None


Action = Send | Finish | Abort


class Phase(Enum):
    STARTING = auto()
    DIALLING = auto()
    CONNECTED = auto()
    RECONNECTING = auto()
    HANGING_UP = auto()
    FINISHED = auto()


@dataclass(slots=True)
class _Endpoint:
    ready: bool = False
    done: bool = False
    lost: bool = False
    hung_up: bool = False
    connected_at: float | None = None
    session_connected: bool = False
    """Connected in the current ICE session (reset by a restart)."""
    offer_sent_at: float | None = None
    states: dict[Layer, str] = field(default_factory=dict)
    report: metrics.EndpointReport | None = None

    @property
    def alive(self) -> bool:
        return self.ready and not self.done and not self.lost


class Conductor:
    def __init__(
        self,
        options: CallOptions,
        *,
        start: float,
        start_timeout_s: float = 30.0,
        teardown_timeout_s: float = 3.0,
        observer: Callable[[TimelineEntry], None] | None = None,
    ) -> None:
        """``observer``, if given, sees every timeline entry as it is recorded (live progress)."""
        self.options = options
        self._observer = observer
        self.phase = Phase.STARTING
        self._t0 = start
        self._start_timeout_s = start_timeout_s
        self._teardown_timeout_s = teardown_timeout_s
        self._endpoints = {role: _Endpoint() for role in Role}
        self._timeline: list[TimelineEntry] = []
        self._errors: list[str] = []
        self._deadline: float | None = start + start_timeout_s
        self._media_start: float | None = None
        self._hangup_at: float | None = None
        self.restarts = 0
        self._max_restarts = 1 if options.ice_restart else 0

    # -- inputs -------------------------------------------------------------------------------

    def receive(self, role: Role, message: Message, now: float) -> list[Action]:
        if self.phase is Phase.FINISHED:
            return []
        me = self._endpoints[role]
        match message:
            case Hello(role=said):
                if said is not role or me.ready:
                    return self._abort(f"{role} endpoint sent an unexpected hello ({said})", role)
                me.ready = True
                self._log(now, role.party, Layer.ENDPOINT, CallState.READY)
                if all(e.ready for e in self._endpoints.values()):
                    self.phase = Phase.DIALLING
                    self._deadline = now + self.options.connect_timeout_s
                    self._log(now, Party.RELAY, Layer.SIGNALLING, CallState.DIAL)
                    return [Send(Role.CALLER, Dial())]
                return []
            case _ if isinstance(message, PEER_MESSAGES):
                peer = self._endpoints[role.peer]
                return [Send(role.peer, message)] if peer.alive else []
            case StateChange(t=t, layer=layer, state=state):
                return self._state_change(role, me, t, layer, state, now)
            case Stats(report=report):
                me.report = metrics.parse_report(report)
                return []
            case Failure(message=text):
                if self.phase is Phase.STARTING:
                    return self._abort(f"{role} endpoint failed while starting: {text}", role)
                self._errors.append(f"{role} endpoint failed: {text}")
                return self._hang_up(now, f"{role} failed", everyone=True)
            case Done():
                me.done = True
                return self._maybe_finish(now)
            case _:
                return self._abort(f"{role} endpoint sent {message.type} to the relay", role)

    def lost(self, role: Role, now: float, detail: str) -> list[Action]:
        """The endpoint's connection closed or its process exited (``detail`` says which/how)."""
        me = self._endpoints[role]
        if self.phase is Phase.FINISHED or me.done or me.lost:
            return []
        if not me.ready:
            return self._abort(f"{role} endpoint {detail} before it was ready", role)
        me.lost = True
        self._log(now, role.party, Layer.ENDPOINT, CallState.LOST)
        when = {
            Phase.STARTING: "before the call",
            Phase.DIALLING: "while connecting",
            Phase.CONNECTED: f"after {self._since_media(now):.1f} s of media",
            Phase.RECONNECTING: f"while reconnecting, {self._since_media(now):.1f} s into the call",
            Phase.HANGING_UP: "while hanging up",
        }[self.phase]
        self._errors.append(f"{role} endpoint {detail} {when}")
        return self._hang_up(now, f"{role} endpoint lost", everyone=True) + self._maybe_finish(now)

    def next_deadline(self) -> float | None:
        return self._deadline

    def on_timer(self, now: float) -> list[Action]:
        if self._deadline is None or now < self._deadline:
            return []
        match self.phase:
            case Phase.STARTING:
                waiting = [r for r, e in self._endpoints.items() if not e.ready]
                return self._abort(
                    f"{' and '.join(waiting)} endpoint not ready after {self._start_timeout_s:g} s",
                    waiting[0] if len(waiting) == 1 else None,
                )
            case Phase.DIALLING:
                self._log(now, Party.RELAY, Layer.CALL, CallState.TIMEOUT)
                self._errors.append(
                    f"not connected within {self.options.connect_timeout_s:g} s ("
                    + "; ".join(f"{r}: {self._describe(e)}" for r, e in self._endpoints.items())
                    + ")"
                )
                return self._hang_up(now, "connect timeout", everyone=True)
            case Phase.CONNECTED:
                return self._hang_up(now, "duration reached", everyone=False)
            case Phase.RECONNECTING:
                self._errors.append(
                    "not reconnected by the end of the call's duration after an ICE restart ("
                    + "; ".join(f"{r}: {self._describe(e)}" for r, e in self._endpoints.items())
                    + ")"
                )
                return self._hang_up(now, "not reconnected", everyone=True)
            case Phase.HANGING_UP:
                stuck = [str(r) for r, e in self._endpoints.items() if e.ready and not (e.done or e.lost)]
                self._errors.append(
                    f"{' and '.join(stuck)} did not finish hanging up within {self._teardown_timeout_s:g} s"
                )
                return self._finish(now)
            case Phase.FINISHED:
                return []

    # -- output -------------------------------------------------------------------------------

    def result(self, *, wall_s: float | None = None) -> CallResult:
        caller, callee = self._endpoints[Role.CALLER], self._endpoints[Role.CALLEE]
        connected = caller.connected_at is not None and callee.connected_at is not None
        setup_ms = None
        if connected and caller.offer_sent_at is not None:
            both = max(caller.connected_at or 0.0, callee.connected_at or 0.0)
            setup_ms = round((both - caller.offer_sent_at) * 1000.0, 3)
        media_s = None
        if self._media_start is not None:
            end = self._hangup_at if self._hangup_at is not None else self._media_start
            media_s = round(end - self._media_start, 3)
        reports = {role: e.report for role, e in self._endpoints.items()}
        kinds = [
            k
            for k, on in (
                (Kind.AUDIO, self.options.audio),
                (Kind.VIDEO, self.options.video),
                (Kind.DATA, self.options.data_channel),
            )
            if on
        ]
        transports = tuple(metrics.build_transport(role, reports[role]) for role in Role)
        pair = next((t.selected_candidate_pair for t in transports if t.selected_candidate_pair), None)
        base = CallResult(
            name=self.options.name,
            connected=connected,
            setup_ms=setup_ms,
            state_timeline=tuple(sorted(self._timeline, key=lambda entry: entry.t)),
            streams=metrics.build_streams(reports, kinds, t0=self._t0),
            error="; ".join(self._errors) or None,
            selected_candidate_pair=pair,
            transports=transports,
            media_s=media_s,
            wall_s=None if wall_s is None else round(wall_s, 3),
            profile=self.options.profile,
            restarts=self.restarts,
            cpu_s={
                role.value: {"at_media": report.cpu_at_media_s, "total": report.cpu_total_s}
                for role, report in reports.items()
                if report is not None and report.cpu_total_s is not None
            }
            or None,
        )
        return metrics.with_quality(
            base,
            reports,
            t0=self._t0,
            media_start=self._media_start,
            media_end=self._hangup_at,
            turn_transport=self.options.turn_transport,
        )

    # -- internals ----------------------------------------------------------------------------

    def _state_change(self, role: Role, me: _Endpoint, t: float, layer: Layer, state: str, now: float) -> list[Action]:
        me.states[layer] = state
        self._log(t, role.party, layer, state)
        if layer is Layer.SIGNALLING and state == "offer-sent" and me.offer_sent_at is None:
            me.offer_sent_at = t
        if layer is Layer.MEDIA and state == "stalled" and self._can_restart():
            return self._restart(now, f"{role} stopped receiving media")
        if layer is not Layer.CONNECTION:
            return []
        if state == "connected" and not me.session_connected:
            me.session_connected = True
            if me.connected_at is None:
                me.connected_at = t
            if self.phase is Phase.DIALLING and all(e.connected_at is not None for e in self._endpoints.values()):
                self.phase = Phase.CONNECTED
                self._media_start = now
                self._deadline = now + self.options.duration_s
                self._log(now, Party.RELAY, Layer.CALL, CallState.CONNECTED)
            elif self.phase is Phase.RECONNECTING and all(e.session_connected for e in self._endpoints.values()):
                self.phase = Phase.CONNECTED
                self._log(now, Party.RELAY, Layer.CALL, CallState.RECONNECTED)
            return []
        if state in ("failed", "closed") and self.phase is Phase.CONNECTED and self._can_restart():
            return self._restart(now, f"{role} connection {state}")
        if state in ("failed", "closed") and self.phase in (
            Phase.DIALLING,
            Phase.CONNECTED,
            Phase.RECONNECTING,
        ):
            self._errors.append(f"{role} connection {state} {self._when(now)}")
            return self._hang_up(now, f"{role} connection {state}", everyone=True)
        return []

    def _can_restart(self) -> bool:
        return self.phase is Phase.CONNECTED and self.restarts < self._max_restarts

    def _restart(self, now: float, reason: str) -> list[Action]:
        """A new ICE session for the same call (as apps reconnect): both endpoints drop their
        peer connection and make a new one; the caller offers again.  The call still ends when
        its duration is up."""
        self.restarts += 1
        self.phase = Phase.RECONNECTING
        self._log(now, Party.RELAY, Layer.CALL, CallState.RESTART)
        for endpoint in self._endpoints.values():
            endpoint.session_connected = False
        return [Send(role, Restart(reason)) for role, e in self._endpoints.items() if e.alive]

    def _hang_up(self, now: float, reason: str, *, everyone: bool) -> list[Action]:
        if self.phase in (Phase.HANGING_UP, Phase.FINISHED):
            return []
        if self.phase in (Phase.CONNECTED, Phase.RECONNECTING):
            self._hangup_at = now
        self.phase = Phase.HANGING_UP
        self._deadline = now + self.options.drain_s + self._teardown_timeout_s
        self._log(now, Party.RELAY, Layer.SIGNALLING, CallState.HANGUP)
        actions: list[Action] = []
        targets = list(Role) if everyone or not self._endpoints[Role.CALLER].alive else [Role.CALLER]
        for role in targets:
            endpoint = self._endpoints[role]
            if endpoint.alive and not endpoint.hung_up:
                endpoint.hung_up = True
                actions.append(Send(role, HangUp(reason)))
        return actions

    def _maybe_finish(self, now: float) -> list[Action]:
        if all(e.done or e.lost for e in self._endpoints.values()):
            if self.phase is not Phase.HANGING_UP:
                # Both went away by themselves (e.g. both said Bye and closed): still an ending.
                self._hang_up(now, "endpoints gone", everyone=True)
            return self._finish(now)
        return []

    def _finish(self, now: float) -> list[Action]:
        self.phase = Phase.FINISHED
        self._deadline = None
        self._log(now, Party.RELAY, Layer.CALL, CallState.ENDED)
        return [Finish()]

    def _abort(self, reason: str, role: Role | None) -> list[Action]:
        self.phase = Phase.FINISHED
        self._deadline = None
        return [Abort(reason, role)]

    def _log(self, t: float, who: Party, layer: Layer, state: str) -> None:
        # str(state): a CallState is stored as the plain string it equals, so an entry read back
        # from JSON compares equal to the one recorded.
        entry = TimelineEntry(round(t - self._t0, 6), who, layer, str(state))
        self._timeline.append(entry)
        if self._observer is not None:
            self._observer(entry)

    def _since_media(self, now: float) -> float:
        return 0.0 if self._media_start is None else now - self._media_start

    def _when(self, now: float) -> str:
        if self.phase in (Phase.CONNECTED, Phase.RECONNECTING):
            return f"after {self._since_media(now):.1f} s of media"
        return "while connecting"

    @staticmethod
    def _describe(endpoint: _Endpoint) -> str:
        if not endpoint.ready:
            return "not ready"
        parts = [
            f"{layer}={endpoint.states[layer]}"
            # Which step stalled tells a censor's method apart: ICE blocked vs DTLS blocked.
            for layer in (Layer.ICE_GATHERING, Layer.ICE_CONNECTION, Layer.DTLS, Layer.CONNECTION)
            if layer in endpoint.states
        ]
        return ", ".join(parts) or "no state reported"


__all__ = ["Abort", "Action", "Conductor", "Finish", "Phase", "Send"]
