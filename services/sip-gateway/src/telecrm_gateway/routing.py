"""Static routing: what a called number rings, read from a TOML file.

The request URI's user part selects a line (a DID, matched exactly or by its E.164 form) or an
extension directly. A line points at a *target*: one extension, a ring group or a queue. Each target
may name an *overflow* target tried when nobody answered it (or everyone refused); a line may override
its target's overflow. A route is therefore a chain of :class:`Stage` s, tried in order; after the last
one the call is missed.

Targets are written ``"extension:101"``, ``"group:sales"``, ``"queue:support"`` or ``"missed"`` (end
the call as missed: no voicemail here). Queues are a static table until the queue service answers
``RouteCall``: a queue is an ordered list of members rung like a group (sequential by default).

Capacity: one pjsua2 process holds 4 SIP legs, so a call may use at most
``PJSUA_MAX_CALLS // GATEWAY_MAX_CALLS`` legs (the caller's and the agents'). A ring-all group that would
need more is refused when the routes are loaded (:meth:`RoutingTable.check_capacity`), naming the group.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from telecrm_common.telephony import normalize_number
from telecrm_gateway.errors import RoutingConfigError

DEFAULT_RING_TIMEOUT = 30.0
DEFAULT_MEMBER_TIMEOUT = 15.0
MAX_TIMEOUT = 600.0


class Strategy(StrEnum):
    """How a group rings its members."""

    ALL = "all"  # every member at once; the first to answer wins
    SEQUENTIAL = "sequential"  # one after another, ``member_timeout`` seconds each, in the listed order


class TargetKind(StrEnum):
    EXTENSION = "extension"
    GROUP = "group"
    QUEUE = "queue"
    MISSED = "missed"


@dataclass(frozen=True, slots=True)
class Target:
    """Where a call (or its overflow) goes: ``extension:101``, ``group:sales``, ``queue:x`` or ``missed``."""

    kind: TargetKind
    name: str = ""

    def __str__(self) -> str:
        return self.kind.value if self.kind is TargetKind.MISSED else f"{self.kind.value}:{self.name}"

    @classmethod
    def parse(cls, text: str) -> Target:
        text = text.strip()
        if text == TargetKind.MISSED.value:
            return MISSED
        kind, sep, name = text.partition(":")
        kinds = (TargetKind.EXTENSION, TargetKind.GROUP, TargetKind.QUEUE)
        if not sep or not name.strip() or kind not in {k.value for k in kinds}:
            raise ValueError(
                f"not a target: {text!r} (write extension:<number>, group:<name>, queue:<name> or missed)"
            )
        return cls(TargetKind(kind), name.strip())


MISSED = Target(TargetKind.MISSED)


# --- the file's shape ------------------------------------------------------------------------------


def _target(value: str | None) -> str | None:
    if value is not None:
        Target.parse(value)
    return value


class _ExtensionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact: str = ""  # empty: sip:<number>@<registrar>
    name: str = ""
    employee_id: str = ""
    ring_timeout: float = Field(default=DEFAULT_RING_TIMEOUT, gt=0, le=MAX_TIMEOUT)
    overflow: str | None = None
    record: bool = False  # record every call this extension answers

    @field_validator("contact")
    @classmethod
    def _sip_uri(cls, value: str) -> str:
        value = value.strip()
        if value and (not value.lower().startswith(("sip:", "sips:")) or len(value) < 6):
            raise ValueError(f"not a SIP URI: {value!r}")
        return value

    check_overflow = field_validator("overflow")(_target)


class _GroupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategy: Literal["all", "sequential"] = "all"
    members: list[str] = Field(min_length=1)
    member_timeout: float = Field(default=DEFAULT_MEMBER_TIMEOUT, gt=0, le=MAX_TIMEOUT)
    timeout: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT)
    overflow: str | None = None
    name: str = ""  # shown as the callee's name in the call log ("Sales")

    check_overflow = field_validator("overflow")(_target)

    @field_validator("members")
    @classmethod
    def _distinct(cls, members: list[str]) -> list[str]:
        seen: set[str] = set()
        for member in members:
            if member in seen:
                raise ValueError(f"extension {member} is listed twice")
            seen.add(member)
        return members


class _QueueConfig(_GroupConfig):
    strategy: Literal["all", "sequential"] = "sequential"


class _LineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    extension: str | None = None
    group: str | None = None
    queue: str | None = None
    name: str = ""  # the line's display name: the agent's phone shows it after the caller's name
    overflow: str | None = None  # overrides the target's own overflow
    record: bool = False  # record every answered call on this line

    check_overflow = field_validator("overflow")(_target)

    @model_validator(mode="after")
    def _one_target(self) -> _LineConfig:
        given = [key for key in ("extension", "group", "queue") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(
                "a line needs exactly one of extension, group or queue"
                + (f" (it has {', '.join(given)})" if given else "")
            )
        return self

    def target(self) -> Target:
        if self.extension is not None:
            return Target(TargetKind.EXTENSION, self.extension)
        if self.group is not None:
            return Target(TargetKind.GROUP, self.group)
        return Target(TargetKind.QUEUE, self.queue or "")


class _RoutesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    registrar: str = ""  # where agents' phones register (Kamailio): the default contact of an extension
    extensions: dict[str, _ExtensionConfig] = Field(default_factory=dict)
    groups: dict[str, _GroupConfig] = Field(default_factory=dict)
    queues: dict[str, _QueueConfig] = Field(default_factory=dict)
    lines: dict[str, _LineConfig] = Field(default_factory=dict)

    @field_validator("registrar")
    @classmethod
    def _registrar_uri(cls, value: str) -> str:
        value = value.strip()
        if value and (not value.lower().startswith(("sip:", "sips:")) or "@" in value):
            raise ValueError(f"not a SIP URI without a user (sip:host:port;params): {value!r}")
        return value


# --- what the gateway uses -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Extension:
    """An agent's phone: the number, where to reach it and who sits behind it."""

    number: str
    contact: str
    name: str = ""
    employee_id: str = ""
    ring_timeout: float = DEFAULT_RING_TIMEOUT
    overflow: Target = MISSED
    record: bool = False


@dataclass(frozen=True, slots=True)
class RingGroup:
    """A ring group or a (static) queue: members rung at once or in order."""

    kind: TargetKind  # GROUP or QUEUE
    name: str
    strategy: Strategy
    members: tuple[Extension, ...]
    member_timeout: float
    timeout: float
    overflow: Target = MISSED
    display_name: str = ""

    @property
    def target(self) -> Target:
        return Target(self.kind, self.name)


@dataclass(frozen=True, slots=True)
class Line:
    """A number customers dial (a DID), its target and its display name."""

    number: str
    target: Target
    name: str = ""
    overflow: Target | None = None
    record: bool = False

    @property
    def extension(self) -> str:
        """The extension the line rings ("" when it rings a group or queue)."""
        return self.target.name if self.target.kind is TargetKind.EXTENSION else ""


@dataclass(frozen=True, slots=True)
class Stage:
    """One step of a route: the extensions to ring, how, and for how long."""

    target: Target
    strategy: Strategy
    members: tuple[Extension, ...]
    member_timeout: float  # sequential: seconds each member rings before the next is tried
    timeout: float  # the whole stage: then its ringing legs are cancelled and the next stage starts
    display_name: str = ""

    @property
    def parallel(self) -> int:
        """Agent legs this stage rings at once."""
        return len(self.members) if self.strategy is Strategy.ALL else 1


@dataclass(frozen=True, slots=True)
class Route:
    """Where a call goes: its stages in order (then missed), and the line when it came in on one."""

    target: Target
    stages: tuple[Stage, ...]
    line: Line | None = None

    @property
    def extension(self) -> Extension | None:
        """The extension when the route's target is a single extension."""
        if self.target.kind is TargetKind.EXTENSION:
            return self.stages[0].members[0]
        return None

    @property
    def legs_needed(self) -> int:
        """SIP legs a call on this route may hold at once: the caller's and the most agents rung at once."""
        return 1 + max(stage.parallel for stage in self.stages)


class RoutingTable:
    """Looks up the route of a called number and whether a caller is one of our extensions.

    Raises RoutingConfigError (naming the place) when a target is missing or overflows loop.
    """

    def __init__(
        self,
        extensions: Mapping[str, Extension],
        lines: Mapping[str, Line],
        region: str = "US",
        groups: Mapping[str, RingGroup] | None = None,
        queues: Mapping[str, RingGroup] | None = None,
    ):
        self.extensions = dict(extensions)
        self.lines = dict(lines)
        self.groups = dict(groups or {})
        self.queues = dict(queues or {})
        self.region = region
        self._lines_e164 = {
            e164: line for line in self.lines.values() if (e164 := normalize_number(line.number, region))
        }
        self._line_routes = {
            number: self._route(line.target, line.overflow, line, f'lines."{number}"')
            for number, line in self.lines.items()
        }
        self._extension_routes = {
            number: self._route(Target(TargetKind.EXTENSION, number), None, None, f'extensions."{number}"')
            for number in self.extensions
        }
        for kind, table in ((TargetKind.GROUP, self.groups), (TargetKind.QUEUE, self.queues)):
            for name in table:
                self._route(Target(kind, name), None, None, f'{kind.value}s."{name}"')  # loops, references

    def route(self, dialled: str) -> Route | None:
        """The route for a request-URI user: a line (exactly, or by E.164), else an extension, else None."""
        line = self.lines.get(dialled)
        if line is None and dialled not in self.extensions:
            e164 = normalize_number(dialled, self.region)
            line = self._lines_e164.get(e164) if e164 else None
        if line is not None:
            return self._line_routes[line.number]
        return self._extension_routes.get(dialled)

    def extension_of(self, number: str) -> Extension | None:
        """The extension with this number, when the number is one of ours."""
        return self.extensions.get(number)

    def routes(self) -> list[Route]:
        """Every route a call can take (lines and extensions dialled directly)."""
        return [*self._line_routes.values(), *self._extension_routes.values()]

    def check_capacity(self, max_legs: int) -> None:
        """Refuse a ring-all group or queue that needs more SIP legs than one call may hold."""
        for group in (*self.groups.values(), *self.queues.values()):
            if group.strategy is Strategy.ALL and 1 + len(group.members) > max_legs:
                raise RoutingConfigError(
                    f'{group.kind.value}s."{group.name}": rings {len(group.members)} members at once, so a '
                    f"call needs {1 + len(group.members)} SIP legs, but a call may hold at most {max_legs} "
                    f"in one gateway process (pjsua2 holds 4 legs; 4 // GATEWAY_MAX_CALLS per call): "
                    f'use strategy = "sequential", ring at most {max_legs - 1} at once, '
                    f"or set GATEWAY_MAX_CALLS=1"
                )
        for route in self.routes():
            if route.legs_needed > max_legs:  # not reachable through the groups check; kept as a guard
                raise RoutingConfigError(f"route to {route.target} needs {route.legs_needed} SIP legs")

    def replace_with(self, other: RoutingTable) -> None:
        """Take ``other``'s routes in place: every holder of this table (the call logic, the APIs) uses
        them from the next look-up on; routes already handed to calls are not changed. Call it on the
        event loop, where the look-ups run, so none sees half of each table."""
        vars(self).update(vars(other))

    def to_mapping(self) -> dict[str, Any]:
        """The table in the routes file's shape (contacts and timeouts as resolved when it was loaded)."""

        def overflow(target: Target) -> str | None:
            return None if target == MISSED else str(target)

        def group(g: RingGroup) -> dict[str, Any]:
            return {
                "strategy": g.strategy.value,
                "members": [member.number for member in g.members],
                "member_timeout": g.member_timeout,
                "timeout": g.timeout,
                "overflow": overflow(g.overflow),
                "name": "" if g.display_name == g.name else g.display_name,
            }

        return {
            "registrar": "",
            "extensions": {
                number: {
                    "contact": e.contact,
                    "name": e.name,
                    "employee_id": e.employee_id,
                    "ring_timeout": e.ring_timeout,
                    "overflow": overflow(e.overflow),
                    "record": e.record,
                }
                for number, e in self.extensions.items()
            },
            "groups": {name: group(g) for name, g in self.groups.items()},
            "queues": {name: group(g) for name, g in self.queues.items()},
            "lines": {
                number: {
                    "extension": line.target.name if line.target.kind is TargetKind.EXTENSION else None,
                    "group": line.target.name if line.target.kind is TargetKind.GROUP else None,
                    "queue": line.target.name if line.target.kind is TargetKind.QUEUE else None,
                    "name": line.name,
                    "overflow": None if line.overflow is None else str(line.overflow),
                    "record": line.record,
                }
                for number, line in self.lines.items()
            },
        }

    # --- building routes

    def _stage(self, target: Target, where: str) -> tuple[Stage, Target]:
        """The stage that rings ``target`` and the target's own overflow."""
        if target.kind is TargetKind.EXTENSION:
            extension = self.extensions.get(target.name)
            if extension is None:
                raise RoutingConfigError(f"{where}: extension {target.name} is not defined")
            timeout = extension.ring_timeout
            stage = Stage(target, Strategy.ALL, (extension,), timeout, timeout, extension.name)
            return stage, extension.overflow
        table = self.groups if target.kind is TargetKind.GROUP else self.queues
        group = table.get(target.name)
        if group is None:
            raise RoutingConfigError(f"{where}: {target.kind.value} {target.name} is not defined")
        stage = Stage(
            target, group.strategy, group.members, group.member_timeout, group.timeout, group.display_name
        )
        return stage, group.overflow

    def _route(self, target: Target, overflow: Target | None, line: Line | None, where: str) -> Route:
        stages: list[Stage] = []
        seen: list[Target] = []
        current = target
        while True:
            if current in seen:
                chain = " -> ".join(str(t) for t in [*seen, current])
                raise RoutingConfigError(f"{where}: overflow loops: {chain}")
            seen.append(current)
            stage, own_overflow = self._stage(current, where if not stages else f"{where} (overflow)")
            stages.append(stage)
            following = overflow if overflow is not None and len(stages) == 1 else own_overflow
            if following.kind is TargetKind.MISSED:
                return Route(target, tuple(stages), line)
            current = following

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], region: str = "US") -> RoutingTable:
        try:
            parsed = _RoutesFile.model_validate(data)
        except ValidationError as exc:
            raise RoutingConfigError(f"invalid routes: {_describe(exc)}") from exc
        extensions: dict[str, Extension] = {}
        for number, e in parsed.extensions.items():
            contact = e.contact or contact_at(parsed.registrar, number)
            if not contact:
                raise RoutingConfigError(
                    f'extensions."{number}": no contact, and no registrar to find the phone at'
                )
            overflow = Target.parse(e.overflow) if e.overflow else MISSED
            extensions[number] = Extension(
                number, contact, e.name, e.employee_id, e.ring_timeout, overflow, record=e.record
            )

        def groups(kind: TargetKind, table: Mapping[str, _GroupConfig]) -> dict[str, RingGroup]:
            out: dict[str, RingGroup] = {}
            for name, g in table.items():
                members = []
                for i, number in enumerate(g.members):
                    extension = extensions.get(number)
                    if extension is None:
                        raise RoutingConfigError(
                            f'{kind.value}s."{name}".members[{i}]: extension {number} is not defined'
                        )
                    members.append(extension)
                strategy = Strategy(g.strategy)
                if g.timeout is not None:
                    timeout = g.timeout
                elif strategy is Strategy.SEQUENTIAL:
                    timeout = min(g.member_timeout * len(members), MAX_TIMEOUT)
                else:
                    timeout = DEFAULT_RING_TIMEOUT
                overflow = Target.parse(g.overflow) if g.overflow else MISSED
                out[name] = RingGroup(
                    kind, name, strategy, tuple(members), g.member_timeout, timeout, overflow, g.name or name
                )
            return out

        lines = {
            number: Line(
                number,
                line.target(),
                line.name,
                Target.parse(line.overflow) if line.overflow else None,
                record=line.record,
            )
            for number, line in parsed.lines.items()
        }
        return cls(
            extensions,
            lines,
            region,
            groups(TargetKind.GROUP, parsed.groups),
            groups(TargetKind.QUEUE, parsed.queues),
        )


def routes_document(data: Mapping[str, Any]) -> dict[str, Any]:
    """The routes file's content with every key given (defaults filled in), as JSON-ready data.

    Checks the shape only (the references and capacity are :meth:`RoutingTable.from_mapping`'s and
    :meth:`RoutingTable.check_capacity`'s); RoutingConfigError, caused by the ValidationError, otherwise.
    """
    try:
        return _RoutesFile.model_validate(data).model_dump(mode="json")
    except ValidationError as exc:
        raise RoutingConfigError(f"invalid routes: {_describe(exc)}") from exc


def contact_at(server: str, user: str) -> str:
    """``sip:<user>@<host:port;params>`` for a server URI without a user (a registrar, a trunk)."""
    if not server:
        return ""
    scheme, _, rest = server.partition(":")
    return f"{scheme}:{user}@{rest}"


def _describe(exc: ValidationError) -> str:
    """Pydantic's errors as ``place: problem`` lines (``lines."+1555".group: ...``)."""
    parts = []
    for error in exc.errors():
        place = ".".join(
            f'"{p}"' if isinstance(p, str) and not p.isidentifier() else str(p) for p in error["loc"]
        )
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{place}: {message}" if place else message)
    return "; ".join(parts)


def load_routes(path: Path | None, region: str = "US", max_legs: int | None = None) -> RoutingTable:
    """Read the routes file (or the packaged default when ``path`` is None).

    With ``max_legs``, also refuse ring-all groups that need more SIP legs than a call may hold.
    """
    try:
        if path is None:
            text = resources.files("telecrm_gateway").joinpath("default_routes.toml").read_text()
        else:
            text = Path(path).read_text()
        data = tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RoutingConfigError(f"cannot read routes from {path or 'the packaged default'}: {exc}") from exc
    try:
        table = RoutingTable.from_mapping(data, region)
        if max_legs is not None:
            table.check_capacity(max_legs)
    except RoutingConfigError as exc:
        raise RoutingConfigError(f"{path or 'default_routes.toml'}: {exc}") from exc
    return table
