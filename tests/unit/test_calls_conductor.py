"""The relay's call logic, driven with virtual time (no processes, no sockets, no sleeping)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from testbed.calls.conductor import Abort, Action, Conductor, Finish, Phase, Send
from testbed.calls.options import CallOptions
from testbed.calls.signalling import (
    Answer,
    Bye,
    Dial,
    Done,
    Failure,
    HangUp,
    Hello,
    Layer,
    Message,
    Offer,
    Restart,
    Role,
    StateChange,
    Stats,
)
from testbed.records.timeline import TimelineEntry

CALLER, CALLEE = Role.CALLER, Role.CALLEE
T0 = 1000.0  # CLOCK_MONOTONIC at run_call start: any value; results are relative to it


@dataclass
class FakeRelay:
    """Drives a Conductor like the session does, with a virtual clock, and keeps what it sent."""

    conductor: Conductor
    now: float = T0
    sent: list[tuple[Role, Message]] = field(default_factory=list)
    outcome: Finish | Abort | None = None
    seen: list[TimelineEntry] = field(default_factory=list)

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self.sent.append((action.to, action.message))
            else:
                assert self.outcome is None
                self.outcome = action

    def advance(self, seconds: float) -> None:
        """Let virtual time pass, firing timers the way the session's loop does."""
        target = self.now + seconds
        while (deadline := self.conductor.next_deadline()) is not None and deadline <= target:
            self.now = deadline
            self._apply(self.conductor.on_timer(self.now))
        self.now = target

    def recv(self, role: Role, message: Message) -> None:
        self._apply(self.conductor.receive(role, message, self.now))

    def state(self, role: Role, layer: Layer, state: str) -> None:
        self.recv(role, StateChange(t=self.now, layer=layer, state=state))

    def lost(self, role: Role, detail: str) -> None:
        self._apply(self.conductor.lost(role, self.now, detail))

    def sent_to(self, role: Role) -> list[Message]:
        return [m for r, m in self.sent if r is role]


def make(duration_s: float = 5.0, **kwargs: object) -> FakeRelay:
    options = CallOptions(name="t", duration_s=duration_s, **kwargs)  # type: ignore[arg-type]
    relay = FakeRelay(Conductor(options, start=T0, start_timeout_s=20.0, teardown_timeout_s=3.0))
    relay.conductor._observer = relay.seen.append
    return relay


def connect(relay: FakeRelay) -> None:
    relay.advance(0.5)
    relay.recv(CALLEE, Hello(role=CALLEE, pid=2))
    relay.recv(CALLER, Hello(role=CALLER, pid=1))
    relay.advance(0.01)
    relay.state(CALLER, Layer.SIGNALLING, "offer-sent")
    relay.recv(CALLER, Offer(sdp="offer"))
    relay.recv(CALLEE, Answer(sdp="answer"))
    relay.advance(0.04)
    relay.state(CALLER, Layer.CONNECTION, "connected")
    relay.advance(0.002)
    relay.state(CALLEE, Layer.CONNECTION, "connected")


def finish_normally(relay: FakeRelay) -> None:
    for role in (CALLER, CALLEE):
        relay.recv(role, Stats(t=relay.now, report={}))
        relay.state(role, Layer.CONNECTION, "closed")
        relay.recv(role, Done())


def test_happy_path() -> None:
    relay = make(duration_s=5.0)
    connect(relay)
    assert relay.sent_to(CALLER) == [Dial(), Answer(sdp="answer")]
    assert relay.sent_to(CALLEE) == [Offer(sdp="offer")]
    assert relay.conductor.phase is Phase.CONNECTED
    relay.advance(4.99)
    assert HangUp() not in relay.sent_to(CALLER)
    relay.advance(0.02)
    # A normal hang-up goes to the caller only; the callee hears Bye from the caller.
    assert relay.sent_to(CALLER)[-1] == HangUp(reason="duration reached")
    assert not any(isinstance(m, HangUp) for m in relay.sent_to(CALLEE))
    relay.recv(CALLER, Bye())
    assert relay.sent_to(CALLEE)[-1] == Bye()
    finish_normally(relay)
    assert relay.outcome == Finish()
    result = relay.conductor.result(wall_s=6.0)
    assert result.connected and result.error is None
    assert result.setup_ms == pytest.approx(42.0)  # offer sent -> the later "connected"
    assert result.media_s == pytest.approx(5.0)
    labels = [entry.label for entry in result.state_timeline]
    assert labels[:3] == ["callee:endpoint:ready", "caller:endpoint:ready", "relay:signalling:dial"]
    assert "relay:call:connected" in labels and labels[-1] == "relay:call:ended"
    assert result.state_timeline[0].t == pytest.approx(0.5)
    assert [e.t for e in result.state_timeline] == sorted(e.t for e in result.state_timeline)
    assert relay.seen == list(relay.conductor._timeline)  # the observer saw every entry live


def test_dial_waits_for_both_endpoints() -> None:
    relay = make()
    relay.recv(CALLER, Hello(role=CALLER, pid=1))
    assert relay.sent == []
    relay.recv(CALLEE, Hello(role=CALLEE, pid=2))
    assert relay.sent == [(CALLER, Dial())]


def test_endpoint_never_ready_is_a_harness_abort() -> None:
    relay = make()
    relay.recv(CALLER, Hello(role=CALLER, pid=1))
    relay.advance(20.0)
    assert isinstance(relay.outcome, Abort)
    assert "callee endpoint not ready after 20 s" in relay.outcome.reason


def test_endpoint_dying_at_start_is_a_harness_abort() -> None:
    relay = make()
    relay.lost(CALLEE, "exited with code 1")
    assert relay.outcome == Abort("callee endpoint exited with code 1 before it was ready", CALLEE)


def test_hello_with_wrong_role_aborts() -> None:
    relay = make()
    relay.recv(CALLER, Hello(role=CALLEE, pid=1))
    assert isinstance(relay.outcome, Abort)


def test_connect_timeout_is_a_measured_failure() -> None:
    relay = make(connect_timeout_s=3.0)
    relay.recv(CALLER, Hello(role=CALLER, pid=1))
    relay.recv(CALLEE, Hello(role=CALLEE, pid=2))
    relay.state(CALLER, Layer.ICE_CONNECTION, "checking")
    relay.state(CALLER, Layer.CONNECTION, "connecting")
    relay.advance(3.0)
    assert relay.sent_to(CALLER)[-1] == HangUp(reason="connect timeout")
    assert relay.sent_to(CALLEE)[-1] == HangUp(reason="connect timeout")
    finish_normally(relay)
    result = relay.conductor.result()
    assert not result.connected and result.setup_ms is None and result.media_s is None
    assert result.error is not None
    assert result.error.startswith("not connected within 3 s")
    assert "caller: ice-connection=checking, connection=connecting" in result.error
    assert "callee: no state reported" in result.error


def test_callee_killed_mid_call() -> None:
    relay = make(duration_s=10.0)
    connect(relay)
    relay.advance(2.0)
    relay.lost(CALLEE, "was killed by SIGKILL")
    # The survivor is told to hang up at once; Bye to the dead peer is not forwarded.
    assert relay.sent_to(CALLER)[-1] == HangUp(reason="callee endpoint lost")
    relay.recv(CALLER, Bye())
    assert not any(isinstance(m, Bye) for m in relay.sent_to(CALLEE))
    relay.recv(CALLER, Stats(t=relay.now, report={}))
    relay.recv(CALLER, Done())
    assert relay.outcome == Finish()
    result = relay.conductor.result()
    assert result.connected
    assert result.error == "callee endpoint was killed by SIGKILL after 2.0 s of media"
    assert result.media_s == pytest.approx(2.0)
    assert "callee:endpoint:lost" in [entry.label for entry in result.state_timeline]


def test_lost_after_done_is_a_normal_exit() -> None:
    relay = make(duration_s=1.0)
    connect(relay)
    relay.advance(1.0)
    relay.recv(CALLER, Done())
    relay.lost(CALLER, "exited with code 0")
    assert relay.conductor.result().error is None


def test_connection_failed_mid_call_hangs_up_everyone() -> None:
    relay = make(duration_s=30.0)
    connect(relay)
    relay.advance(10.0)
    relay.state(CALLER, Layer.CONNECTION, "failed")
    assert relay.sent_to(CALLER)[-1] == HangUp(reason="caller connection failed")
    assert relay.sent_to(CALLEE)[-1] == HangUp(reason="caller connection failed")
    finish_normally(relay)
    result = relay.conductor.result()
    assert result.connected and result.error == "caller connection failed after 10.0 s of media"


def test_endpoint_failure_report_hangs_up() -> None:
    relay = make()
    connect(relay)
    relay.recv(CALLEE, Failure(message="ValueError: bad sdp"))
    assert HangUp(reason="callee failed") in relay.sent_to(CALLER)
    finish_normally(relay)
    assert relay.conductor.result().error == "callee endpoint failed: ValueError: bad sdp"


def test_teardown_timeout_finishes_anyway() -> None:
    relay = make(duration_s=1.0, drain_s=0.2)
    connect(relay)
    relay.advance(1.0)
    relay.recv(CALLER, Done())
    relay.advance(3.2)
    assert relay.outcome == Finish()
    assert relay.conductor.result().error == "callee did not finish hanging up within 3 s"


def test_messages_after_finish_are_ignored() -> None:
    relay = make(duration_s=1.0)
    connect(relay)
    relay.advance(1.0)
    finish_normally(relay)
    assert relay.conductor.receive(CALLER, Offer(sdp="late"), relay.now) == []
    assert relay.conductor.next_deadline() is None


def test_relay_only_messages_from_an_endpoint_abort() -> None:
    relay = make()
    connect(relay)
    relay.recv(CALLEE, Dial())
    assert isinstance(relay.outcome, Abort)


def test_zero_duration_hangs_up_once_connected() -> None:
    relay = make(duration_s=0.0)
    connect(relay)
    relay.advance(0.0)
    assert relay.sent_to(CALLER)[-1] == HangUp(reason="duration reached")


def test_stalled_media_restarts_ice_once_and_the_call_goes_on() -> None:
    relay = make(duration_s=10.0, ice_restart=True)
    connect(relay)
    relay.advance(4.0)
    relay.state(CALLEE, Layer.MEDIA, "stalled")
    assert relay.sent_to(CALLER)[-1] == Restart(reason="callee stopped receiving media")
    assert relay.sent_to(CALLEE)[-1] == Restart(reason="callee stopped receiving media")
    assert relay.conductor.phase is Phase.RECONNECTING
    relay.state(CALLER, Layer.MEDIA, "stalled")  # the other side noticing too: no second restart
    assert sum(isinstance(m, Restart) for m in relay.sent_to(CALLER)) == 1
    relay.advance(0.5)
    relay.state(CALLER, Layer.CONNECTION, "connected")
    relay.state(CALLEE, Layer.CONNECTION, "connected")
    assert relay.conductor.phase is Phase.CONNECTED
    relay.advance(5.6)  # the call still ends 10 s after it first connected
    assert relay.sent_to(CALLER)[-1] == HangUp(reason="duration reached")
    relay.recv(CALLER, Bye())
    finish_normally(relay)
    result = relay.conductor.result()
    assert result.restarts == 1 and result.error is None
    assert result.media_s == pytest.approx(10.0, abs=0.01)
    labels = [entry.label for entry in result.state_timeline]
    assert labels.index("relay:call:restart") < labels.index("relay:call:reconnected")


def test_no_restart_unless_asked_and_failed_reconnect_is_an_error() -> None:
    relay = make(duration_s=10.0)
    connect(relay)
    relay.state(CALLEE, Layer.MEDIA, "stalled")
    assert not any(isinstance(m, Restart) for m in relay.sent_to(CALLEE))
    relay = make(duration_s=10.0, ice_restart=True)
    connect(relay)
    relay.advance(2.0)
    relay.state(CALLER, Layer.CONNECTION, "failed")
    assert isinstance(relay.sent_to(CALLEE)[-1], Restart)
    relay.advance(8.1)  # never reconnected
    assert isinstance(relay.sent_to(CALLEE)[-1], HangUp)
    finish_normally(relay)
    error = relay.conductor.result().error
    assert error is not None and "not reconnected" in error
