"""The parts that need no service: message catalogues, language choice, where log-in may return to,
and the origin check."""

from __future__ import annotations

import re

import pytest

from telecrm_web.i18n import LANGUAGES, PLURAL_CATEGORIES, Message, Translator, catalogue, pick_language
from telecrm_web.pages import safe_next
from telecrm_web.security import origin_allowed

PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _placeholders(message: Message) -> set[str]:
    texts = [message] if isinstance(message, str) else list(message.values())
    return {name for text in texts for name in PLACEHOLDER.findall(text)}


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_language_has_every_message_with_the_same_placeholders(language: str) -> None:
    english, other = catalogue("en"), catalogue(language)
    assert set(other) == set(english)
    for key, message in english.items():
        assert _placeholders(other[key]) == _placeholders(message), key
        forms = [other[key]] if isinstance(other[key], str) else list(other[key].values())
        assert all(form.strip() for form in forms), key


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_counting_message_has_every_plural_form_its_language_uses(language: str) -> None:
    for key, message in catalogue(language).items():
        if isinstance(message, dict):
            assert set(message) == PLURAL_CATEGORIES[language] | {"other"}, key
            assert all("{total}" in form for form in message.values()), key


@pytest.mark.parametrize(
    ("language", "count", "text"),
    [
        ("en", 1, "1 task"),
        ("en", 0, "0 tasks"),
        ("bg", 1, "1 задача"),
        ("bg", 3, "3 задачи"),
        ("ro", 1, "1 sarcină"),
        ("ro", 19, "19 sarcini"),
        ("ro", 20, "20 de sarcini"),
        ("ro", 101, "101 de sarcini"),
        ("ro", 102, "102 sarcini"),
    ],
)
def test_counts_take_their_languages_plural_form(language: str, count: int, text: str) -> None:
    assert Translator(language)("tasks_total", total=count) == text


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (1, "1 контакт"),
        (21, "21 контакт"),
        (3, "3 контакта"),
        (11, "11 контактов"),
        (14, "14 контактов"),
        (25, "25 контактов"),
    ],
)
def test_russian_counts_take_one_few_or_many(count: int, text: str) -> None:
    assert Translator("ru")("total_contacts", total=count) == text


def test_a_formatted_total_takes_its_form_from_the_count() -> None:
    assert Translator("uk")("total_contacts", total="1 002", count=1002) == "1 002 контакти"


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
