"""The scenario model: what a scenario file *describes*, frozen and validated.

Nothing here touches the system; the runner applies a ``Scenario``.  The file format is
documented in the README ("Scenario files"); every key below appears there.

Design rules:
- unknown keys are errors (a typo must never silently turn a check off);
- durations accept ``5``, ``5s``, ``250ms``, ``2m``;
- defaults describe the common case: a ``caller`` inside the censored network, a ``callee``
  outside it, and one audio + data call between them.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import replace
from enum import Enum
from typing import Annotated, Any

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from testbed.scenario import template
from testbed.scenario.app_schema import AppSpec, app_reference_problems, binary_problems
from testbed.scenario.call_schema import CallSpec, call_reference_problems
from testbed.scenario.common import NODE_NAME_RE, Duration, Side, Timeout, _Frozen
from testbed.scenario.expect_schema import Expectation, VerdictSettings
from testbed.scenario.policy_schema import Lists, PolicySettings, Rules, policy_reference_problems
from testbed.scenario.yamlsrc import format_path

RESERVED_NODES = frozenset({"censor", "python"})  # python: the `{python}` probe word


Port = Annotated[int, Field(ge=1, le=65535)]
_HOSTNAME_RE = r"^([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*\.?$"


class HttpsService(_Frozen):
    """An HTTPS server whose certificate carries ``names`` (clients pick the SNI the censor sees)."""

    names: tuple[Annotated[str, Field(pattern=_HOSTNAME_RE, max_length=253)], ...] = Field(
        ("example.com",), min_length=1
    )
    port: Port = 443


class HttpService(_Frozen):
    """A plain-HTTP server with the routes of ``https`` (clients pick the Host header the censor sees)."""

    port: Port = 80


class QuicService(_Frozen):
    """An HTTP/3 server (QUIC, UDP) whose certificate carries ``names``, like ``https``."""

    names: tuple[Annotated[str, Field(pattern=_HOSTNAME_RE, max_length=253)], ...] = Field(
        ("example.com",), min_length=1
    )
    port: Port = 443


class Iperf3Service(_Frozen):
    port: Port = 5201


class TurnService(_Frozen):
    """A STUN/TURN relay (coturn): UDP and TCP on ``port``, TLS on ``tls_port`` (443 works too)."""

    port: Port = 3478
    tls_port: Port | None = 5349
    realm: str = Field("testbed", min_length=1, max_length=127, pattern=r"^[A-Za-z0-9._-]+$")
    """Sent in TURN's REALM attribute: Telegram's relays say "telegram..." and DPI keys on it."""
    username: str = Field("testbed", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    password: str = Field("testbed", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")

    @model_validator(mode="after")
    def _ports_differ(self) -> TurnService:
        if self.tls_port == self.port:
            raise ValueError("tls_port must differ from port")
        return self


_SERVICE_KINDS = ("https", "http", "quic", "iperf3", "turn")


class ServiceSpec(_Frozen):
    """One service; exactly one of its keys is set (``- https: {...}``, ``- http``, ``- quic``, ``- iperf3``, ``- turn``)."""

    https: HttpsService | None = None
    http: HttpService | None = None
    quic: QuicService | None = None
    iperf3: Iperf3Service | None = None
    turn: TurnService | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ServiceSpec:
        chosen = [k for k in _SERVICE_KINDS if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError(f"each service entry names exactly one service: {', '.join(_SERVICE_KINDS)}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in _SERVICE_KINDS if getattr(self, k) is not None)

    @property
    def ports(self) -> tuple[int, ...]:
        if self.turn is not None:
            return (self.turn.port,) + ((self.turn.tls_port,) if self.turn.tls_port else ())
        svc = self.https or self.http or self.quic or self.iperf3
        assert svc is not None
        return (svc.port,)

    @property
    def sockets(self) -> tuple[tuple[str, int], ...]:
        """(transport, port) pairs the service listens on: TCP 443 and UDP 443 do not clash."""
        if self.turn is not None:
            tls = (("tcp", self.turn.tls_port),) if self.turn.tls_port else ()
            return (("udp", self.turn.port), ("tcp", self.turn.port)) + tls
        if self.quic is not None:
            return (("udp", self.quic.port),)
        if self.https is not None:
            return (("tcp", self.https.port),)
        if self.http is not None:
            return (("tcp", self.http.port),)
        assert self.iperf3 is not None
        return (("tcp", self.iperf3.port), ("udp", self.iperf3.port))  # iperf3 -u uses the same port

    @property
    def port(self) -> int:
        return self.ports[0]


class NatType(str, Enum):
    """RFC 4787 behaviour of a NAT in front of a node (mapping / filtering)."""

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    """Full cone: one public port per internal port, anyone may send to it (EIM + EIF)."""
    PORT_RESTRICTED = "port-restricted"
    """One public port per internal port; only hosts:ports it sent to may answer (EIM + APDF)."""
    SYMMETRIC = "symmetric"
    """A new public port for every destination (APDM + APDF): direct calls between two NATed
    nodes fail and need a relay."""


class IpMode(str, Enum):
    """Which IP versions a run's network carries (``ip:``). The default is ``dual``: ICE gathers
    IPv6 candidates first, as real networks let it. NAT types are IPv4-only (there is no NAT66),
    so a scenario with a ``nat:`` node and no ``ip:`` is ``v4``: its NAT then decides, as its
    author meant; ``ip: dual`` with NAT gives NATed IPv4 beside routed IPv6 (README, "IPv6").
    """

    V4 = "v4"
    V6 = "v6"
    DUAL = "dual"

    @property
    def has_v4(self) -> bool:
        return self is not IpMode.V6

    @property
    def has_v6(self) -> bool:
        return self is not IpMode.V4


class NatSpec(_Frozen):
    type: NatType = NatType.PORT_RESTRICTED


class NodeSpec(_Frozen):
    side: Side = Side.OUTSIDE
    services: tuple[ServiceSpec, ...] = ()
    nat: NatSpec | None = None
    """Put the node behind its own NAT (a namespace between it and the censor)."""
    apps: tuple[AppSpec, ...] = ()
    """Your own programs, started after the services and the censor (docs/apps.md)."""

    @field_validator("nat", mode="before")
    @classmethod
    def _nat_shorthand(cls, value: Any) -> Any:
        return {"type": value} if isinstance(value, str) else value

    @field_validator("services", mode="before")
    @classmethod
    def _services_shorthand(cls, value: Any) -> Any:
        # Allow `services: [iperf3]` as well as `services: [{iperf3: {port: 5201}}]`.
        if isinstance(value, list):
            return [{v: {}} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _distinct_ports(self) -> NodeSpec:
        sockets = [p for s in self.services for p in s.sockets]
        if len(set(sockets)) != len(sockets):
            raise ValueError("two services of one node cannot share a port (of one transport)")
        return self


class CensorSpec(_Frozen):
    inspect_packets: int = Field(32, ge=1, le=10_000)
    """Stop classifying a flow after this many payload packets (real DPI gives up early). 32 is
    enough for a WebRTC flow's ICE checks and DTLS handshake to be followed by its first media
    packets, so calls get their ``rtp``/``srtp`` labels (measured on the baseline call: 24 is not);
    set TSPU's 15-20 to emulate it exactly."""
    queue_max_len: int = Field(8192, ge=64, le=1_000_000)
    """Kernel NFQUEUE length; packets beyond it are dropped by the kernel (fail closed)."""
    max_flows: int = Field(65536, ge=16, le=10_000_000)
    reassemble_tls: bool = True
    """Reassemble a TLS ClientHello split over TCP segments before reading its SNI. ``false``
    reads the first data segment only, like TSPU's 2021 throttler, which a ClientHello split
    over segments evaded (censor-behaviors.md B.9)."""
    offload: bool = True
    """Settled flows leave the queue: the kernel forwards a flow whose verdict can no longer
    change, and conntrack accounting keeps its counters (docs/policy.md, "Offload"). ``false``
    queues every packet (e.g. to compare, or to study IP fragments: conntrack reassembles them)."""
    profiles: tuple[Annotated[str, Field(min_length=1, max_length=4096)], ...] = Field((), max_length=32)
    """Censor profiles (docs/profiles.md): shipped names or paths of profile files (relative to the
    scenario's directory). The loader merges their rules after ``rules`` and their lists into
    ``lists`` (``testbed.scenario.profiles``); the merged section keeps this field as written."""
    rules: Rules = ()
    """Policy rules, first match wins (docs/policy.md); a profile's follow, named ``profile/rule``."""
    lists: Lists = Field(default_factory=dict)
    """Named address lists for rules (and labels on flows that touch them)."""
    policy: PolicySettings = Field(default_factory=lambda: PolicySettings.model_validate({}))

    @field_validator("profiles", mode="before")
    @classmethod
    def _one_profile(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _queue_holds_held_packets(self) -> CensorSpec:
        # Held (delayed/shaped) packets stay in the kernel queue until released; if the queue
        # were shorter than the policy's hold budget the kernel would drop packets unseen.
        if self.queue_max_len < self.policy.max_held + 256:
            raise ValueError(
                f"queue_max_len ({self.queue_max_len}) must exceed policy.max_held ({self.policy.max_held}) "
                "by at least 256, or the kernel drops held packets behind the scenario's back"
            )
        return self


class SuccessPct(_Frozen):
    min: float = Field(ge=0, le=100)


class ProbeExpect(_Frozen):
    exit: int | str = 0
    """The exit code the command must end with, or ``nonzero`` (it must fail: blocked)."""
    within: Duration | None = None
    """It must also finish within this time (a throttle makes a download slow)."""
    slower_than: Duration | None = None
    """It must take at least this long (evidence of throttling or delay)."""
    success_pct: SuccessPct | None = None
    """Repeated probes: at least this share of the attempts exit 0 (``{min: 95}``)."""
    blocked_within: Duration | None = None
    """Repeated probes: an attempt fails within this time of the first one, and none succeeds after it."""

    @field_validator("exit")
    @classmethod
    def _exit(cls, value: int | str) -> int | str:
        if isinstance(value, str) and value != "nonzero":
            raise ValueError("exit is a number (0..255) or 'nonzero'")
        if isinstance(value, int) and not 0 <= value <= 255:
            raise ValueError("exit codes are 0..255")
        return value


class MatrixOutcome(str, Enum):
    """A cell of ``testbed matrix`` (``testbed.matrix.Outcome`` has the same values)."""

    OK = "ok"
    DEGRADED = "degraded"
    BLOCKED = "blocked"
    BROKEN = "broken"


MatrixOutcomes = MatrixOutcome | tuple[MatrixOutcome, ...]
MatrixExpect = MatrixOutcomes | dict[str, MatrixOutcomes]
"""``blocked`` / ``[ok, degraded]`` for every workload, or ``{my-call: blocked, web: ok}``."""


class RepeatSpec(_Frozen):
    """Run the probe again and again: an attempt every ``every``, until ``until`` after its start
    (an attempt still running at the next tick is waited for: attempts never overlap)."""

    every: Timeout
    until: Timeout

    @model_validator(mode="after")
    def _order(self) -> RepeatSpec:
        if self.until < self.every:
            raise ValueError("until must be at least every (until: how long to keep repeating)")
        if self.until / self.every > 100_000:
            raise ValueError("at most 100000 attempts: make `every` longer or `until` shorter")
        return self


class ProbeSpec(_Frozen):
    """A command run inside a node during the scenario (curl, openssl, iperf3, ping, a VPN client...).

    ``{node}`` in an argument becomes that node's address (``{censor}`` is not a node), and
    ``{cert:node}`` the path of the certificate of the HTTPS (or QUIC) service on that node.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    node: str
    run: tuple[str, ...] = Field(min_length=1)
    start: Duration = 0.0
    """Seconds after the censor is ready (and services are up) before the command starts."""
    timeout: Timeout = 30.0
    """Per attempt, for a repeated probe."""
    repeat: RepeatSpec | None = None
    expect: ProbeExpect = Field(default_factory=ProbeExpect)

    @model_validator(mode="after")
    def _repeat_expectations(self) -> ProbeSpec:
        exp = self.expect
        over_time = exp.success_pct is not None or exp.blocked_within is not None
        if over_time and self.repeat is None:
            raise ValueError("success_pct and blocked_within need `repeat: {every: 1s, until: 20s}`")
        if self.repeat is not None and (exp.within is not None or exp.slower_than is not None or exp.exit != 0):
            raise ValueError(
                "a repeated probe is checked over its attempts: use expect {success_pct: {min: N}} or "
                "{blocked_within: T}, not exit/within/slower_than"
            )
        return self

    @property
    def span(self) -> float:
        """From its start to the end of its last attempt, at most."""
        return (self.repeat.until if self.repeat is not None else 0.0) + self.timeout

    @field_validator("run", mode="before")
    @classmethod
    def _run_words(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError("give the command as a list of words: [curl, -sS, 'https://...'] (no shell)")
        if isinstance(value, list):
            return [str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for v in value]
        return value


def _default_nodes() -> dict[str, NodeSpec]:
    return {"caller": NodeSpec(side=Side.INSIDE), "callee": NodeSpec(side=Side.OUTSIDE)}


def _nat_without_ip_is_v4(data: Any) -> Any:
    """A scenario with a NATed node and no ``ip:`` is IPv4-only (see :class:`IpMode`)."""
    if isinstance(data, dict) and "ip" not in data and isinstance(data.get("nodes"), dict):
        if any(isinstance(n, dict) and n.get("nat") is not None for n in data["nodes"].values()):
            return {**data, "ip": IpMode.V4.value}
    return data


class Scenario(_Frozen):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    description: str = ""
    source: str | list[str] | None = None
    """Where the emulated behaviour comes from (paper, thread, measurement)."""
    seed: int = Field(0, ge=0, le=2**63 - 1)
    ip: IpMode = IpMode.DUAL
    """IP versions of the network: ``v4``, ``v6`` or ``dual`` (the default, but ``v4`` when a node
    has ``nat:``; README, "IPv6")."""
    timeout: Timeout | None = None
    """Hard limit for the whole scenario; default: the longest call plus a margin."""
    nodes: dict[str, NodeSpec] = Field(default_factory=_default_nodes)
    censor: CensorSpec = Field(default_factory=lambda: CensorSpec.model_validate({}))
    calls: tuple[CallSpec, ...] = ()
    probes: tuple[ProbeSpec, ...] = ()
    expect: tuple[Expectation, ...] = ()
    verdict: VerdictSettings = Field(default_factory=lambda: VerdictSettings.model_validate({}))
    variables: dict[str, str] = Field(default_factory=dict, alias="vars")
    """Values for ``{NAME}`` placeholders in apps and probes (``vars: {secret: s3cr3t}``)."""
    expect_matrix: dict[str, MatrixExpect] = Field(default_factory=dict, max_length=64)
    """What ``testbed matrix`` must measure (docs/profiles.md, "Matrix"): censor (``none``, a
    shipped profile's name, or a profile file's path) -> outcome(s) for every workload, or
    -> {workload: outcome(s)}. ``testbed run`` ignores it."""

    @field_validator("nodes", mode="before")
    @classmethod
    def _nodes_may_be_null(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value

    @field_validator("variables", mode="before")
    @classmethod
    def _var_values(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for k, v in value.items()
            }
        return value

    @field_validator("variables")
    @classmethod
    def _var_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name):
                raise ValueError(f"variable name {name!r}: letters, digits and '_', not starting with a digit")
            if name in template.BUILTIN_WORDS:
                raise ValueError(f"{{{name}}} is built in; choose another variable name")
        return value

    @field_validator("nodes")
    @classmethod
    def _node_names(cls, value: dict[str, NodeSpec]) -> dict[str, NodeSpec]:
        for name in value:
            if name in RESERVED_NODES:
                raise ValueError(f"{name!r} is built in; do not declare it under nodes")
            if not re.match(NODE_NAME_RE, name):
                raise ValueError(
                    f"node name {name!r} must be lowercase letters, digits or '_', start with a letter, "
                    "at most 20 characters"
                )
        if len(value) < 2:
            raise ValueError("a scenario needs at least two nodes besides the censor")
        if len(value) > 200:
            raise ValueError("at most 200 nodes")
        return value

    @model_validator(mode="before")
    @classmethod
    def _ip_default(cls, data: Any) -> Any:
        return _nat_without_ip_is_v4(data)

    @model_validator(mode="after")
    def _references(self, info: ValidationInfo) -> Scenario:
        # The loader asks to defer these checks so that it can report each one at its own line.
        if info.context and info.context.get("defer_references"):
            return self
        problems = reference_problems(self)
        if problems:
            raise ValueError("; ".join(f"{format_path(p)}: {msg}" for p, msg, _ in problems))
        return self

    @model_validator(mode="after")
    def _has_work(self, info: ValidationInfo) -> Scenario:
        # `testbed up` builds the network for the user's own tools: nothing to run is its point.
        if info.context and info.context.get("idle_ok"):
            return self
        if not self.calls and not self.probes:
            raise ValueError(
                "a scenario needs at least one call or probe to run, e.g. `calls: [{name: my-call}]` "
                "(`testbed up` brings its network up without one)"
            )
        return self

    def effective_timeout(self) -> float:
        if self.timeout is not None:
            return self.timeout
        longest = [c.latest_end() for c in self.calls]
        longest += [p.start + p.span for p in self.probes]
        # Apps start (in order) before the calls: each may take its ready_timeout.
        apps = sum(a.ready_timeout for n in self.nodes.values() for a in n.apps)
        return max(longest, default=0.0) + apps + 30.0


def probe_names_for(scenario: Scenario, *, app: bool = False) -> template.Names:
    """What placeholders may name in this scenario."""
    tls = [n for n, spec in scenario.nodes.items() if any(s.https or s.quic for s in spec.services)]
    return template.Names(
        nodes=set(scenario.nodes), vars=set(scenario.variables), tls_nodes=set(tls), app=app, ipv6=scenario.ip.has_v6
    )


def reference_problems(scenario: Scenario) -> list[tuple[tuple[str | int, ...], str, list[str]]]:
    """Cross-references that a schema cannot express: (path, message, valid choices)."""
    out: list[tuple[tuple[str | int, ...], str, list[str]]] = []
    names = [c.name for c in scenario.calls]
    instances = [n for c in scenario.calls for n in c.instance_names]
    nodes = sorted(scenario.nodes)
    out.extend(call_reference_problems(scenario.calls, scenario.nodes))
    if scenario.ip is IpMode.V6:
        # NAT types are IPv4 behaviours (RFC 4787) and testbed does no NAT66.
        for name, spec in scenario.nodes.items():
            if spec.nat is not None:
                msg = "NAT is IPv4-only and this scenario is `ip: v6`: use `ip: dual` or remove the node's `nat:`"
                out.append((("nodes", name, "nat"), msg, []))
    probe_names: set[str] = set()
    for i, probe in enumerate(scenario.probes):
        if probe.node not in scenario.nodes and probe.node != "censor":
            out.append((("probes", i, "node"), f"unknown node {probe.node!r}", nodes))
        if probe.name in probe_names or probe.name in names:
            out.append((("probes", i, "name"), f"name {probe.name!r} is used twice", []))
        probe_names.add(probe.name)
        for j, word in enumerate(probe.run):
            out.extend((("probes", i, "run", j), msg, []) for msg in template.problems(word, probe_names_for(scenario)))
    var_names = replace(probe_names_for(scenario), vars=())  # a variable's value uses no variables
    for name, text in scenario.variables.items():
        if name in scenario.nodes:
            out.append((("vars", name), f"{{{name}}} is a node's address; choose another variable name", []))
        out.extend((("vars", name), msg, []) for msg in template.problems(text, var_names))
    apps = {n: spec.apps for n, spec in scenario.nodes.items()}
    out.extend(app_reference_problems(apps, probe_names_for(scenario, app=True)))
    rule_names = [r.name for r in scenario.censor.rules]
    for i, exp in enumerate(scenario.expect):
        if exp.call is not None and exp.call not in names and exp.call not in instances:
            out.append((("expect", i, "call"), f"unknown call {exp.call!r}", names))
        rule = exp.censor.rule if exp.censor is not None else None
        if rule is not None and rule not in rule_names:
            close = difflib.get_close_matches(rule, rule_names, n=1)
            guess = f" (did you mean {close[0]!r}?)" if close else ""
            if not rule_names:
                guess = " (the censor has no rules; omit `rule` to check the whole censor)"
            out.append((("expect", i, "censor", "rule"), f"unknown rule {rule!r}{guess}", rule_names))
    out.extend(_matrix_problems(scenario, names=[*names, *instances], probes=[p.name for p in scenario.probes]))
    from testbed.core.labels import Label  # the classifier's vocabulary, for rules' label matchers

    out.extend(
        policy_reference_problems(
            scenario.censor.rules,
            scenario.censor.lists,
            nodes=scenario.nodes,
            known_labels={str(label) for label in Label},
        )
    )
    if not out:
        # Programs last, and only then: a typo in a name is reported as such, not as a missing program.
        out.extend(binary_problems(apps))
    return out


def _matrix_problems(
    scenario: Scenario, *, names: list[str], probes: list[str]
) -> list[tuple[tuple[str | int, ...], str, list[str]]]:
    """``expect_matrix`` keys: censors that exist, workloads the scenario has."""
    if not scenario.expect_matrix:
        return []
    from importlib import resources

    # As testbed.scenario.profiles spells them (shipped_profile_names, is_profile_path), read here
    # directly: that module imports this one.
    shipped = sorted(
        p.name.removesuffix(".yaml")
        for p in resources.files("testbed.data").joinpath("censors").iterdir()
        if p.name.endswith(".yaml")
    )

    def is_profile_path(ref: str) -> bool:
        return "/" in ref or ref.endswith((".yaml", ".yml"))

    out: list[tuple[tuple[str | int, ...], str, list[str]]] = []
    censors = ["none", *shipped]
    workloads = sorted(dict.fromkeys([*names, *probes]))
    for censor, want in scenario.expect_matrix.items():
        # A path names the user's own profile file (read when the matrix runs, relative to the
        # scenario's directory, like `censor.profiles`); a bare name must be a known column.
        if censor not in censors and not is_profile_path(censor):
            close = difflib.get_close_matches(censor, censors, n=1, cutoff=0.5)
            guess = f" (did you mean {close[0]!r}?)" if close else ""
            msg = f"unknown censor {censor!r}{guess}; name `none`, a shipped profile, or the path of a profile file"
            out.append((("expect_matrix", censor), msg, censors))
        if isinstance(want, dict):
            for workload in want:
                if workload not in workloads:
                    close = difflib.get_close_matches(workload, workloads, n=1)
                    guess = f" (did you mean {close[0]!r}?)" if close else ""
                    out.append(
                        (("expect_matrix", censor, workload), f"unknown workload {workload!r}{guess}", workloads)
                    )
    return out
