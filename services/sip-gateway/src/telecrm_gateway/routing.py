"""Static routing: which extension a called number rings, read from a TOML file.

The request URI's user part selects a line (a DID, matched exactly or by its E.164 form) or an
extension directly. Later issues route through the queue service; this is the first version.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from telecrm_common.telephony import normalize_number
from telecrm_gateway.errors import RoutingConfigError

DEFAULT_RING_TIMEOUT = 30.0


class _ExtensionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact: str
    name: str = ""
    employee_id: str = ""
    ring_timeout: float = Field(default=DEFAULT_RING_TIMEOUT, gt=0, le=600)

    @field_validator("contact")
    @classmethod
    def _sip_uri(cls, value: str) -> str:
        value = value.strip()
        if not value.lower().startswith(("sip:", "sips:")) or len(value) < 6:
            raise ValueError(f"not a SIP URI: {value!r}")
        return value


class _LineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    extension: str
    name: str = ""


class _RoutesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    extensions: dict[str, _ExtensionConfig] = Field(default_factory=dict)
    lines: dict[str, _LineConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _lines_point_at_extensions(self) -> _RoutesFile:
        for number, line in self.lines.items():
            if line.extension not in self.extensions:
                raise ValueError(f"line {number} points at extension {line.extension}, which is not defined")
        return self


@dataclass(frozen=True, slots=True)
class Extension:
    """An agent's phone: the number, where to reach it and who sits behind it."""

    number: str
    contact: str
    name: str = ""
    employee_id: str = ""
    ring_timeout: float = DEFAULT_RING_TIMEOUT


@dataclass(frozen=True, slots=True)
class Line:
    """A number customers dial (a DID) and the extension it rings."""

    number: str
    extension: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class Route:
    """Where a call goes: the extension, and the line when the call came in on one."""

    extension: Extension
    line: Line | None


class RoutingTable:
    """Looks up the destination of a called number and whether a caller is one of our extensions."""

    def __init__(self, extensions: Mapping[str, Extension], lines: Mapping[str, Line], region: str = "US"):
        self.extensions = dict(extensions)
        self.lines = dict(lines)
        self.region = region
        self._lines_e164 = {
            e164: line for line in self.lines.values() if (e164 := normalize_number(line.number, region))
        }

    def route(self, dialled: str) -> Route | None:
        """The route for a request-URI user: a line (exactly, or by E.164), else an extension, else None."""
        line = self.lines.get(dialled)
        if line is None and dialled not in self.extensions:
            e164 = normalize_number(dialled, self.region)
            line = self._lines_e164.get(e164) if e164 else None
        if line is not None:
            return Route(self.extensions[line.extension], line)
        extension = self.extensions.get(dialled)
        return Route(extension, None) if extension is not None else None

    def extension_of(self, number: str) -> Extension | None:
        """The extension with this number, when the number is one of ours."""
        return self.extensions.get(number)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], region: str = "US") -> RoutingTable:
        try:
            parsed = _RoutesFile.model_validate(data)
        except ValidationError as exc:
            raise RoutingConfigError(f"invalid routes: {exc}") from exc
        extensions = {
            number: Extension(number, e.contact, e.name, e.employee_id, e.ring_timeout)
            for number, e in parsed.extensions.items()
        }
        lines = {number: Line(number, line.extension, line.name) for number, line in parsed.lines.items()}
        return cls(extensions, lines, region)


def load_routes(path: Path | None, region: str = "US") -> RoutingTable:
    """Read the routes file (or the packaged default when ``path`` is None)."""
    try:
        if path is None:
            text = resources.files("telecrm_gateway").joinpath("default_routes.toml").read_text()
        else:
            text = Path(path).read_text()
        data = tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RoutingConfigError(f"cannot read routes from {path or 'the packaged default'}: {exc}") from exc
    try:
        return RoutingTable.from_mapping(data, region)
    except RoutingConfigError as exc:
        raise RoutingConfigError(f"{path or 'default_routes.toml'}: {exc}") from exc
