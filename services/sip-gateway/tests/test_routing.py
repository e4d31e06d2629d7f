"""The static routes file: validation and lookups."""

from __future__ import annotations

from pathlib import Path

import pytest

from telecrm_gateway.errors import RoutingConfigError
from telecrm_gateway.routing import RoutingTable, load_routes


def test_a_line_routes_to_its_extension(routes: RoutingTable) -> None:
    route = routes.route("+15551230000")
    assert route is not None
    assert route.extension.number == "101"
    assert route.extension.employee_id == "emp-1"
    assert route.extension.ring_timeout == 20
    assert route.line is not None
    assert route.line.name == "Main"


@pytest.mark.parametrize("dialled", ["15551230000", "5551230000", "+1 (555) 123-0000"])
def test_a_line_matches_other_spellings_of_its_number(routes: RoutingTable, dialled: str) -> None:
    route = routes.route(dialled)
    assert route is not None
    assert route.extension.number == "101"


def test_an_extension_can_be_dialled_directly(routes: RoutingTable) -> None:
    route = routes.route("102")
    assert route is not None
    assert route.line is None
    assert route.extension.contact == "sip:102@127.0.0.1:5070"
    assert route.extension.ring_timeout == 30  # the default


def test_unknown_numbers_have_no_route(routes: RoutingTable) -> None:
    assert routes.route("999") is None
    assert routes.route("+15559999999") is None
    assert routes.route("") is None


def test_callers_that_are_extensions(routes: RoutingTable) -> None:
    assert routes.extension_of("101") is not None
    assert routes.extension_of("+15557654321") is None


def test_load_routes_reads_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "routes.toml"
    path.write_text(
        '[extensions."201"]\ncontact = "sip:201@10.0.0.5;transport=tcp"\nname = "Dana"\nring_timeout = 12\n'
        '[lines."+442071234567"]\nextension = "201"\n'
    )
    table = load_routes(path, region="GB")
    route = table.route("02071234567")  # national spelling, region GB
    assert route is not None
    assert route.extension.name == "Dana"
    assert route.extension.ring_timeout == 12


def test_the_packaged_default_routes_load() -> None:
    table = load_routes(None)
    assert table.route("101") is not None
    assert table.route("+15551230000") is not None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[lines."+15551230000"]\nextension = "101"\n', "not defined"),
        ('[extensions."101"]\ncontact = "http://x"\n', "not a SIP URI"),
        ('[extensions."101"]\ncontact = "sip:101@x"\nring_timeout = 0\n', "ring_timeout"),
        ('[extensions."101"]\ncontact = "sip:101@x"\nringtimeout = 5\n', "ringtimeout"),
        ("[extensions\n", "cannot read"),
    ],
)
def test_bad_routes_are_refused_with_the_reason(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "routes.toml"
    path.write_text(text)
    with pytest.raises(RoutingConfigError, match=problem):
        load_routes(path)


def test_a_missing_routes_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RoutingConfigError, match="cannot read"):
        load_routes(tmp_path / "nope.toml")
