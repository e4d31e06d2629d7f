"""Small, forgiving parsers for the SIP values the gateway reads (RFC 3261 name-addr, request line)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

_QUOTED_DISPLAY = re.compile(r'^\s*"((?:[^"\\]|\\.)*)"\s*<([^>]*)>')
_TOKEN_DISPLAY = re.compile(r"^\s*([^<\"]*?)\s*<([^>]*)>")


@dataclass(frozen=True, slots=True)
class NameAddr:
    """A parsed From/To value: display name and URI (header parameters such as tag dropped)."""

    display: str
    uri: str

    @property
    def user(self) -> str:
        return uri_user(self.uri)


def parse_name_addr(value: str) -> NameAddr:
    """Parse ``"Name" <sip:user@host>;tag=x``, ``Name <sip:...>`` or a bare ``sip:user@host;tag=x``."""
    m = _QUOTED_DISPLAY.match(value)
    if m:
        return NameAddr(re.sub(r"\\(.)", r"\1", m.group(1)).strip(), m.group(2).strip())
    m = _TOKEN_DISPLAY.match(value)
    if m:
        return NameAddr(m.group(1).strip(), m.group(2).strip())
    # addr-spec without angle brackets: everything after ';' is a header parameter
    return NameAddr("", value.strip().split(";", 1)[0].strip())


def uri_user(uri: str) -> str:
    """The user part of a sip:/sips:/tel: URI, percent-decoded; "" when there is none."""
    uri = uri.strip().strip("<>")
    scheme, sep, rest = uri.partition(":")
    if not sep:
        return ""
    scheme = scheme.lower()
    if scheme == "tel":
        return unquote(rest.split(";", 1)[0])
    if scheme not in ("sip", "sips"):
        return ""
    if "@" not in rest:
        return ""
    user = rest.split("@", 1)[0].split(";", 1)[0].split(":", 1)[0]
    return unquote(user)


def request_uri(message: str) -> str:
    """The request URI from the start line of a SIP request ("" when it is not a request line)."""
    line = message.lstrip("\r\n").split("\n", 1)[0].strip()
    parts = line.split()
    if len(parts) == 3 and parts[2].upper().startswith("SIP/"):
        return parts[1]
    return ""


def via_transport(message: str) -> str:
    """The transport named by the first Via header ("UDP", "TCP", "TLS"...), "UDP" when unknown."""
    for line in message.split("\n")[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            if not line.strip():
                break  # end of headers
            continue
        if name.strip().lower() in ("via", "v"):
            parts = value.strip().split(None, 1)[0].split("/")
            if len(parts) == 3:
                return parts[2].upper()
            break
    return "UDP"
