"""Tokens every service accepts: signed by crm, refused when expired, forged, foreign or of a wrong type."""

from __future__ import annotations

import jwt
import pytest

from telecrm_common.auth import (
    AuthSettings,
    Principal,
    Role,
    TokenError,
    TokenIssuer,
    TokenVerifier,
    Visibility,
    default_rights,
)

SETTINGS = AuthSettings(secret="a-test-secret-that-is-long-enough-32b")
OTHER = AuthSettings(secret="another-secret-that-is-long-enough!")


def _agent(visibility: Visibility = Visibility.OWN) -> Principal:
    return Principal(
        subject="u1",
        employee_id="emp-1",
        name="Ivana",
        roles=frozenset({Role.AGENT}),
        team_ids=frozenset({"sales"}),
        rights=default_rights([Role.AGENT]),
        visibility=visibility,
    )


def test_a_token_carries_the_user_and_their_rights() -> None:
    token, ttl = TokenIssuer(SETTINGS).issue(_agent())
    principal = TokenVerifier(SETTINGS).verify(token)
    assert ttl == SETTINGS.access_ttl_seconds
    assert principal.employee_id == "emp-1"
    assert principal.roles == {Role.AGENT}
    assert principal.has("task.create")
    assert not principal.has("task.delete")
    assert principal.may_see("emp-1")
    assert not principal.may_see("emp-2", "sales")


def test_visibility_follows_the_role() -> None:
    assert _agent(Visibility.TEAM).may_see("emp-2", "sales")
    supervisor = Principal(
        subject="s",
        employee_id="emp-9",
        roles=frozenset({Role.SUPERVISOR}),
        supervised_team_ids=frozenset({"b"}),
    )
    assert supervisor.may_see("emp-3", "b")
    assert not supervisor.may_see("emp-3", "c")
    admin = Principal(subject="a", roles=frozenset({Role.ADMIN}))
    assert admin.may_see("anyone", None)
    assert admin.has("contact.delete")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: TokenIssuer(SETTINGS).issue(_agent(), now=0)[0], "expired"),
        (
            lambda: TokenIssuer(OTHER).issue(_agent())[0],
            "invalid",
        ),
        (lambda: "not.a.token", "malformed"),
        (
            lambda: jwt.encode({"iss": "elsewhere", "sub": "x"}, "k" * 32, algorithm="HS256"),
            "issuer",
        ),
    ],
)
def test_bad_tokens_are_refused_with_a_reason(make: object, message: str) -> None:
    with pytest.raises(TokenError, match=message):
        TokenVerifier(SETTINGS).verify(make())  # type: ignore[operator]
