"""The static routes file: validation and lookups."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from telecrm_gateway.errors import RoutingConfigError
from telecrm_gateway.main import EXIT_UNAVAILABLE, serve
from telecrm_gateway.routing import RoutingTable, Strategy, load_routes
from telecrm_gateway.service import GatewayService
from telecrm_gateway.settings import GatewaySettings


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


# --- groups, queues, overflow ---------------------------------------------------------------------

GROUPS = """
registrar = "sip:10.0.0.2:5060;transport=tcp"

[extensions."101"]
name = "Alice"
[extensions."102"]
contact = "sip:102@192.0.2.7"
[extensions."103"]
ring_timeout = 12
overflow = "queue:support"

[groups.sales]
strategy = "all"
members = ["101", "102"]
timeout = 25
overflow = "queue:support"
name = "Sales team"

[queues.support]
members = ["103", "101"]
member_timeout = 10
overflow = "missed"

[lines."+15551230000"]
group = "sales"
name = "Sales line"

[lines."+15551230001"]
extension = "103"
overflow = "group:sales"
"""


def test_groups_queues_and_overflow_make_a_chain_of_stages(tmp_path: Path) -> None:
    path = tmp_path / "routes.toml"
    path.write_text(GROUPS)
    table = load_routes(path, max_legs=4)
    route = table.route("+15551230000")
    assert route is not None
    assert route.extension is None
    assert route.line is not None
    assert route.line.name == "Sales line"
    assert [str(stage.target) for stage in route.stages] == ["group:sales", "queue:support"]
    sales, support = route.stages
    assert (sales.strategy, sales.timeout, sales.display_name) == (Strategy.ALL, 25, "Sales team")
    assert [m.number for m in sales.members] == ["101", "102"]
    # A queue rings in order by default; its timeout defaults to each member's turn, one after another.
    assert (support.strategy, support.member_timeout, support.timeout) == (Strategy.SEQUENTIAL, 10, 20)
    assert [m.number for m in support.members] == ["103", "101"]
    assert route.legs_needed == 3
    # A line's overflow replaces its target's own (103 overflows to the queue when dialled directly).
    line = table.route("+15551230001")
    assert line is not None
    assert [str(stage.target) for stage in line.stages] == ["extension:103", "group:sales", "queue:support"]
    direct = table.route("103")
    assert direct is not None
    assert [str(stage.target) for stage in direct.stages] == ["extension:103", "queue:support"]


def test_phones_without_a_contact_are_found_at_the_registrar(tmp_path: Path) -> None:
    path = tmp_path / "routes.toml"
    path.write_text(GROUPS)
    table = load_routes(path)
    assert table.extensions["101"].contact == "sip:101@10.0.0.2:5060;transport=tcp"
    assert table.extensions["102"].contact == "sip:102@192.0.2.7"


def test_a_ring_all_group_too_big_for_one_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "routes.toml"
    path.write_text(GROUPS)
    load_routes(path, max_legs=3)  # caller + 2 members: fits
    with pytest.raises(
        RoutingConfigError, match=r'groups."sales": rings 2 members at once.*GATEWAY_MAX_CALLS'
    ):
        load_routes(path, max_legs=2)
    extensions = {n: {"contact": f"sip:{n}@x"} for n in ("1", "2", "3", "4")}
    queue = {"q": {"members": ["1", "2", "3", "4"]}}  # sequential: one agent leg at a time
    RoutingTable.from_mapping({"extensions": extensions, "queues": queue}).check_capacity(2)
    four = RoutingTable.from_mapping(
        {"extensions": extensions, "groups": {"big": {"members": list(extensions)}}}
    )
    with pytest.raises(RoutingConfigError, match=r'groups."big".*needs 5 SIP legs.*at most 4'):
        four.check_capacity(4)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"lines": {"1": {"group": "nope"}}}, r'lines."1": group nope is not defined'),
        ({"lines": {"1": {"queue": "nope"}}}, r'lines."1": queue nope is not defined'),
        ({"lines": {"1": {"extension": "101", "group": "g"}}}, "exactly one of extension, group or queue"),
        ({"lines": {"1": {"name": "x"}}}, "exactly one of extension, group or queue"),
        (
            {"groups": {"g": {"members": ["101", "999"]}}},
            r'groups."g".members\[1\]: extension 999 is not defined',
        ),
        ({"groups": {"g": {"members": []}}}, r"groups.g.members: List should have at least 1 item"),
        ({"groups": {"g": {"members": ["101", "101"]}}}, "extension 101 is listed twice"),
        ({"groups": {"g": {"members": ["101"], "strategy": "random"}}}, r"groups.g.strategy"),
        ({"groups": {"g": {"members": ["101"], "member_timeout": 0}}}, r"groups.g.member_timeout"),
        (
            {"groups": {"g": {"members": ["101"], "overflow": "voicemail"}}},
            r"groups.g.overflow: not a target",
        ),
        ({"groups": {"g": {"members": ["101"], "overflow": "group:h"}}}, r'groups."g" \(overflow\): group h'),
        (
            {
                "groups": {
                    "a": {"members": ["101"], "overflow": "group:b"},
                    "b": {"members": ["101"], "overflow": "group:a"},
                },
            },
            r"overflow loops: group:a -> group:b -> group:a",
        ),
        ({"extensions": {"102": {"name": "no contact"}}}, r'extensions."102": no contact, and no registrar'),
        ({"registrar": "sip:101@pbx"}, "registrar: not a SIP URI without a user"),
    ],
)
def test_bad_groups_and_targets_are_refused_naming_the_place(data: dict[str, object], problem: str) -> None:
    base: dict[str, object] = {"extensions": {"101": {"contact": "sip:101@x"}}}
    merged = {**base, **data}
    if "extensions" in data:
        merged["extensions"] = {**base["extensions"], **data["extensions"]}  # type: ignore[dict-item]
    with pytest.raises(RoutingConfigError, match=problem):
        RoutingTable.from_mapping(merged)


def test_the_file_name_is_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "routes.toml"
    path.write_text('[extensions."101"]\ncontact = "sip:101@x"\n[lines."5"]\ngroup = "sales"\n')
    with pytest.raises(RoutingConfigError, match=rf'{path}: lines."5": group sales is not defined'):
        load_routes(path)


async def test_the_gateway_does_not_start_with_a_group_it_cannot_ring(tmp_path: Path) -> None:
    path = tmp_path / "routes.toml"
    path.write_text(GROUPS)
    # Two calls per process leave two legs per call: the caller and one agent, not two.
    assert await serve(GatewaySettings(routes_file=path, max_calls=2)) == EXIT_UNAVAILABLE
    table = RoutingTable.from_mapping(tomllib.loads(GROUPS))
    with pytest.raises(RoutingConfigError, match=r'groups\."sales"'):
        GatewayService(GatewaySettings(max_calls=2), table, publish)


async def publish(event: object) -> None:
    raise AssertionError("nothing is published")
