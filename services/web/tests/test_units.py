"""The parts that need no service: message catalogues, language choice, where log-in may return to,
and the origin check."""

from __future__ import annotations

import re

import pytest

from telecrm_web.i18n import LANGUAGES, Translator, catalogue, pick_language
from telecrm_web.pages import safe_next
from telecrm_web.security import origin_allowed

PLACEHOLDER = re.compile(r"\{(\w+)\}")


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_language_has_every_message_with_the_same_placeholders(language: str) -> None:
    english, other = catalogue("en"), catalogue(language)
    assert set(other) == set(english)
    for key, text in english.items():
        assert set(PLACEHOLDER.findall(other[key])) == set(PLACEHOLDER.findall(text)), key
        assert other[key].strip(), key


def test_messages_are_filled_in_and_an_unknown_language_falls_back_to_english() -> None:
    assert Translator("ru")("signed_in_as", name="Ада") == "Вы вошли как Ада"
    assert Translator("xx")("logout") == "Log out"


@pytest.mark.parametrize(
    ("cookie", "accept", "chosen"),
    [
        ("uk", "ro", "uk"),  # the user's own choice wins
        (None, "de-DE,ro;q=0.8,en;q=0.5", "ro"),
        (None, "bg;q=0.3,ru;q=0.9", "ru"),
        (None, "de, fr", "en"),
        ("zz", None, "en"),
        (None, "ru;q=oops, bg", "bg"),
    ],
)
def test_the_language_is_the_users_choice_else_the_browsers_else_english(
    cookie: str | None, accept: str | None, chosen: str
) -> None:
    assert pick_language(cookie, accept) == chosen


@pytest.mark.parametrize(
    ("asked", "kept"),
    [
        ("/desktop?x=1", "/desktop?x=1"),
        ("https://evil.example/", "/desktop"),
        ("//evil.example/path", "/desktop"),
        ("/\\evil.example", "/desktop"),
        ("/desk\ntop", "/desktop"),
        (None, "/desktop"),
    ],
)
def test_log_in_only_returns_to_a_path_of_this_site(asked: str | None, kept: str) -> None:
    assert safe_next(asked) == kept


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({"host": "desk.example", "origin": "https://desk.example"}, True),
        ({"host": "desk.example", "origin": "https://evil.example"}, False),
        ({"host": "desk.example", "origin": "null"}, False),
        ({"host": "desk.example", "referer": "https://desk.example/desktop"}, True),
        ({"host": "desk.example", "referer": "https://evil.example/page"}, False),
        ({"host": "desk.example"}, True),  # no browser: the CSRF token decides
        ({"host": "desk.example", "origin": "https://desk.example", "sec-fetch-site": "cross-site"}, False),
        ({"host": "internal:8080", "origin": "https://crm.example.com"}, True),  # allowed by settings
    ],
)
def test_the_origin_must_be_this_site_or_an_allowed_one(headers: dict[str, str], allowed: bool) -> None:
    assert origin_allowed(headers, ["https://crm.example.com/"]) is allowed
