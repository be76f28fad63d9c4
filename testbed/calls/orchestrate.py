"""``run_calls``: every call of a scenario, placed on time, measured and judged.

    run_calls(specs, nodes=..., services=..., workdir=..., observer=..., thresholds=...)
        -> [CallResult]   (in ``calls:`` order, instances in order: name#1, name#2, ...)

For each ``calls:`` entry it expands ``count``/``concurrency``/``start``/``stagger`` into call
instances, turns ``ice.stun``/``ice.turn`` node names into that node's relay URLs and
credentials (the URL host is the node's *public* address: what the endpoints, maybe behind
NAT, can reach), applies the app profile, runs every instance with
:func:`~testbed.calls.session.run_call` under one ``TaskGroup``, and judges each result
(:func:`~testbed.calls.verdict.judged`).  Pure planning (:func:`plan_calls`) is separate from
running, so the plan is unit-tested without namespaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, TypedDict

from testbed.calls.engine import Engine
from testbed.calls.options import CallOptions, IceServer, IceTransportPolicy
from testbed.calls.profiles import DEFAULT_AUDIO, Profile, load_profile
from testbed.calls.result import CallResult
from testbed.calls.session import endpoint_zygote, run_call
from testbed.calls.verdict import DEFAULT_THRESHOLDS, judged
from testbed.errors import RunError
from testbed.records.timeline import CallState, Layer, Party, Role, TimelineEntry
from testbed.scenario.call_schema import CallSpec, IcePolicy, Media
from testbed.scenario.expect_schema import VerdictSettings

__all__ = ["CallPlan", "NodeInfo", "ServiceInfo", "plan_calls", "run_calls"]


class NodeInfo(Protocol):
    """What calls need to know about a node (``topology.NodePlan`` has it)."""

    @property
    def netns(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def public_address(self) -> str: ...


class ServiceInfo(Protocol):
    """What calls need to know about a running service (``services.run.RunningService``)."""

    @property
    def node(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def names(self) -> tuple[str, ...]: ...
    @property
    def urls(self) -> tuple[str, ...]: ...
    @property
    def username(self) -> str | None: ...
    @property
    def credential(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class CallPlan:
    """One call instance, ready to run."""

    spec: str
    instance: int
    options: CallOptions
    caller_netns: str
    callee_netns: str
    start_s: float
    """Planned start, seconds after the calls phase begins (a concurrency limit may delay it)."""
    group: int
    """Index of the ``calls:`` entry: instances of one entry share its concurrency limit."""
    concurrency: int
    engines: dict[Role, Engine] | None = None
    """The WebRTC stack at each end (None: aiortc at both)."""

    def engine_names(self) -> dict[str, str]:
        engines = self.engines or {}
        return {role.value: engines.get(role, Engine.AIORTC).value for role in Role}


def plan_calls(
    specs: Sequence[CallSpec],
    *,
    nodes: Mapping[str, NodeInfo],
    services: Sequence[ServiceInfo],
    thresholds: VerdictSettings | None = None,
) -> list[CallPlan]:
    """Expand and resolve every call (no I/O).  Raises :class:`RunError` for what the scenario
    checks should have caught (an unknown node, a relay node without a turn service)."""
    out: list[CallPlan] = []
    for group, spec in enumerate(specs):
        caller, callee = _node(nodes, spec.caller, spec.name), _node(nodes, spec.callee, spec.name)
        servers, policy, _transport = _ice(spec, nodes, services)
        profile = load_profile(spec.profile) if spec.profile is not None else None
        kinds = spec.kinds
        data = spec.data
        opus = audio_params(spec, profile)
        for i, name in enumerate(spec.instance_names, start=1):
            prelude = profile.prelude_messages(name) if profile is not None else ()
            options = CallOptions(
                name=name,
                duration_s=spec.duration,
                connect_timeout_s=spec.connect_timeout,
                audio=Media.AUDIO in kinds,
                video=Media.VIDEO in kinds,
                data_channel=Media.DATA in kinds,
                audio_codec=(spec.audio.codec.value if spec.audio else "opus"),
                video_codec=(spec.video.codec.value if spec.video else "vp8"),
                video_width=spec.video.width if spec.video else 320,
                video_height=spec.video.height if spec.video else 240,
                video_fps=spec.video.fps if spec.video else 15,
                data_interval_s=data.interval_s if data else 0.1,
                data_message_bytes=data.message_bytes if data else 100,
                data_reliable=data.reliable if data else True,
                ice_servers=servers,
                ice_transport_policy=policy,
                stun_prelude=tuple(m.hex() for m in prelude),
                stun_prelude_every_s=(
                    profile.stun_prelude.every_s if profile is not None and profile.stun_prelude else 2.0
                ),
                ice_restart=spec.ice.restart,
                # The same silence that counts as a failure triggers the restart.
                ice_restart_after_s=(thresholds or DEFAULT_THRESHOLDS).dead_after,
                profile=spec.profile,
                **opus,
            )
            out.append(
                CallPlan(
                    spec=spec.name,
                    instance=i,
                    options=options,
                    caller_netns=caller.netns,
                    callee_netns=callee.netns,
                    start_s=spec.start + (i - 1) * spec.stagger,
                    group=group,
                    concurrency=spec.concurrency or spec.count,
                    engines={
                        Role.CALLER: Engine(spec.engine.caller.value),
                        Role.CALLEE: Engine(spec.engine.callee.value),
                    },
                )
            )
    return out


def _node(nodes: Mapping[str, NodeInfo], name: str, call: str) -> NodeInfo:
    try:
        return nodes[name]
    except KeyError:
        raise RunError(f"call {call!r}: unknown node {name!r}") from None


def _relay(services: Sequence[ServiceInfo], node: str, call: str, key: str) -> ServiceInfo:
    for svc in services:
        if svc.node == node and svc.kind == "turn":
            return svc
    raise RunError(f"call {call!r}: ice.{key} names {node!r}, which runs no turn service")


def _with_host(url: str, host: str) -> str:
    scheme, _, rest = url.partition(":")
    _old_host, _, port_and_query = rest.partition(":")
    return f"{scheme}:{host}:{port_and_query}" if port_and_query else f"{scheme}:{host}"


class OpusOptions(TypedDict):
    audio_bitrate_bps: int
    audio_min_bitrate_bps: int
    audio_max_bitrate_bps: int
    audio_frame_ms: int
    audio_fec: bool
    adapt: bool


def audio_params(spec: CallSpec, profile: Profile | None) -> OpusOptions:
    """The Opus encoder's CallOptions fields: the profile's (aiortc's own without one), the
    scenario's ``audio.bitrate`` as the start (widening the range to include it) and ``adapt``."""
    params = profile.audio if profile is not None else DEFAULT_AUDIO
    start = int(spec.audio.bitrate) if spec.audio is not None and spec.audio.bitrate is not None else params.bitrate
    return {
        "audio_bitrate_bps": start,
        "audio_min_bitrate_bps": min(params.min_bitrate, start),
        "audio_max_bitrate_bps": max(params.max_bitrate, start),
        "audio_frame_ms": params.frame_ms,
        "audio_fec": params.fec,
        "adapt": params.adapt if spec.adapt is None else spec.adapt,
    }


def _ice(
    spec: CallSpec, nodes: Mapping[str, NodeInfo], services: Sequence[ServiceInfo]
) -> tuple[tuple[IceServer, ...], IceTransportPolicy, str | None]:
    profile = load_profile(spec.profile) if spec.profile is not None else None
    servers: list[IceServer] = []
    if spec.ice.stun is not None:
        svc = _relay(services, spec.ice.stun, spec.name, "stun")
        host = _node(nodes, spec.ice.stun, spec.name).public_address
        # A TURN server answers STUN Binding on its plain port (RFC 8656 section 3).
        plain = next(u for u in svc.urls if u.startswith("turn:"))
        port = plain.split("?")[0].rsplit(":", 1)[1]
        servers.append(IceServer(urls=(f"stun:{host}:{port}",)))
    transport: str | None = None
    if spec.ice.turn is not None:
        svc = _relay(services, spec.ice.turn, spec.name, "turn")
        host = _node(nodes, spec.ice.turn, spec.name).public_address
        transport = (
            spec.ice.transport.value
            if spec.ice.transport is not None
            else (profile.relay.transport if profile is not None and profile.relay.transport else "udp")
        )
        wanted = {"udp": ("turn:", "transport=udp"), "tcp": ("turn:", "transport=tcp"), "tls": ("turns:", "")}
        prefix, query = wanted[transport]
        url = next((u for u in svc.urls if u.startswith(prefix) and query in u), None)
        if url is None:
            raise RunError(
                f"call {spec.name!r}: the turn service on {spec.ice.turn!r} offers no {transport} "
                f"listener (its URLs: {', '.join(svc.urls)}); set tls_port for tls"
            )
        servers.append(IceServer(urls=(_with_host(url, host),), username=svc.username, credential=svc.credential))
        if profile is not None:
            relay_port = int(url.split("?")[0].rsplit(":", 1)[1])
            if not profile.relay_port_ok(relay_port):
                lo, hi = profile.relay.ports or (relay_port, relay_port)
                raise RunError(
                    f"call {spec.name!r}: a {profile.name} relay listens on port {lo}-{hi}, not {relay_port}"
                )
            realm = svc.names[0] if svc.names else None
            if not profile.realm_ok(realm):
                raise RunError(
                    f"call {spec.name!r}: a {profile.name} relay's REALM contains "
                    f"{profile.relay.realm_contains!r}; {spec.ice.turn!r} says {realm!r}"
                )
    elif profile is not None and profile.relay.required:
        raise RunError(f"call {spec.name!r}: a {profile.name} call needs ice.turn")
    policy = spec.ice.policy
    if policy is None:
        policy = IcePolicy(profile.ice_policy) if profile is not None and profile.ice_policy else IcePolicy.ALL
    return tuple(servers), IceTransportPolicy(policy.value), transport


def _check_engines(plans: Sequence[CallPlan]) -> None:
    """Before any call is placed: every engine a call names is installed (else one clear error
    naming the package, not a browser that fails to start mid-run)."""
    for plan in plans:
        if Engine.CHROMIUM in (plan.engines or {}).values():
            from testbed.calls.chromium.browser import ChromiumMissing, find_chromium

            try:
                find_chromium()
            except ChromiumMissing as exc:
                raise RunError(f"call {plan.spec!r}: {exc}") from None
            return


async def run_calls(
    specs: Sequence[CallSpec],
    *,
    nodes: Mapping[str, NodeInfo],
    services: Sequence[ServiceInfo],
    workdir: Path,
    observer: Callable[[str], None] | None = None,
    thresholds: VerdictSettings | None = None,
    origin: float | None = None,
) -> list[CallResult]:
    """Place every call of ``specs`` and return their judged results, in ``calls:`` order with
    instances in order.  A call that fails is a result (``outcome: blocked``); a harness failure
    (an endpoint that cannot start) raises ``CallError`` and cancels the other calls.
    ``observer(message)`` hears one line per call event worth showing (placed, connected,
    ended); it must not block.  ``origin`` (CLOCK_MONOTONIC, default: now) is the start of the
    calls phase: ``start:`` offsets and results' ``start_s`` count from it."""
    plans = plan_calls(specs, nodes=nodes, services=services, thresholds=thresholds)
    _check_engines(plans)
    limits: dict[int, asyncio.Semaphore] = {}
    for plan in plans:
        limits.setdefault(plan.group, asyncio.Semaphore(plan.concurrency))
    settings = thresholds or DEFAULT_THRESHOLDS
    say = observer or (lambda _message: None)
    began = time.monotonic() if origin is None else origin
    zygote: Path | None = None

    async def one(plan: CallPlan) -> CallResult:
        await asyncio.sleep(max(0.0, began + plan.start_s - time.monotonic()))
        async with limits[plan.group]:
            started = round(time.monotonic() - began, 3)
            name = plan.options.name
            say(f"call {name}: placing")

            def watch(entry: TimelineEntry) -> None:
                if entry.is_(Party.RELAY, Layer.CALL, CallState.CONNECTED) or entry.is_(
                    Party.RELAY, Layer.CALL, CallState.TIMEOUT
                ):
                    say(f"call {name}: {entry.state} at {entry.t:.2f} s")

            result = await run_call(
                plan.options,
                caller_netns=plan.caller_netns,
                callee_netns=plan.callee_netns,
                workdir=workdir,
                observer=watch,
                engines=plan.engines,
                zygote=zygote,
            )
        result = judged(
            replace(result, spec=plan.spec, instance=plan.instance, start_s=started, engines=plan.engine_names()),
            settings,
        )
        say(
            f"call {name}: {result.outcome}"
            + (f" ({'; '.join(result.outcome_reasons)})" if result.outcome_reasons else "")
        )
        return result

    async with contextlib.AsyncExitStack() as stack:
        if _shares_a_zygote(plans):
            # Several aiortc endpoints: fork them from one process that imported aiortc once
            # (docs/performance.md, "Calls"); a lone call starts its endpoints as always.
            zygote = await stack.enter_async_context(endpoint_zygote(workdir))
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(one(plan)) for plan in plans]
    return [task.result() for task in tasks]


ZYGOTE_ENV = "TESTBED_CALLS_ZYGOTE"
"""``0``: no zygote (benchmarks/call_scale.py --baseline measures endpoints started afresh)."""


def _shares_a_zygote(plans: Sequence[CallPlan]) -> bool:
    if os.environ.get(ZYGOTE_ENV) == "0":
        return False
    aiortc_ends = sum(
        1 for plan in plans for role in Role if (plan.engines or {}).get(role, Engine.AIORTC) is Engine.AIORTC
    )
    return aiortc_ends > 2
