"""The desktop's languages: one message catalogue per language, chosen per user.

A language's catalogue is ``i18n/<code>.json`` (the desktop's common messages) merged with
``i18n/<area>/<code>.json`` of each area of pages (tasks, reports, admin...): an area keeps its messages
beside each other, and a key defined twice is an error, not a silent override.

The user's language is kept in a cookie (crm's profile has no field for it yet); without one, the
browser's ``Accept-Language`` picks among the languages there are, and English is the fallback. The
pages are rendered in it and the page's script gets the same catalogue, so every string the desktop
adds is translated in one place. Placeholders are ``{name}``; every catalogue has every key.

A message that counts something ("{total} tasks") is an object of plural forms keyed by the CLDR
categories its language uses (English and Bulgarian: one / other; Romanian: one / few / other; Ukrainian
and Russian: one / few / many / other), chosen by the ``count`` (else the ``total``) it is given: "1 task",
"2 задачи", "5 задач", "21 задача". The page's script picks with ``Intl.PluralRules``, the templates with
:func:`plural_category`, which follows the same rules for integers.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

LANGUAGES: tuple[str, ...] = ("en", "bg", "ro", "uk", "ru")
# The plural categories each language's messages must give (CLDR's, for whole numbers).
PLURAL_CATEGORIES: dict[str, frozenset[str]] = {
    "en": frozenset({"one", "other"}),
    "bg": frozenset({"one", "other"}),
    "ro": frozenset({"one", "few", "other"}),
    "uk": frozenset({"one", "few", "many", "other"}),
    "ru": frozenset({"one", "few", "many", "other"}),
}
COUNT_NAMES = ("count", "total")  # what a plural message is chosen by (count: when total is formatted)
Message = str | dict[str, str]
DEFAULT_LANGUAGE = "en"
LANGUAGE_COOKIE = "telecrm_lang"
TIME_ZONE_COOKIE = "telecrm_tz"


@cache
def catalogue(language: str) -> dict[str, Message]:
    """The messages of ``language`` (English for a language there is no catalogue of)."""
    if language not in LANGUAGES:
        language = DEFAULT_LANGUAGE
    root = resources.files("telecrm_web").joinpath("i18n")
    messages: dict[str, Message] = json.loads(root.joinpath(f"{language}.json").read_text("utf-8"))
    for area in sorted((entry for entry in root.iterdir() if entry.is_dir()), key=lambda entry: entry.name):
        part = area.joinpath(f"{language}.json")
        if not part.is_file():
            continue
        extra: dict[str, Message] = json.loads(part.read_text("utf-8"))
        if twice := sorted(set(extra) & set(messages)):
            raise ValueError(f"i18n/{area.name}/{language}.json defines again: {', '.join(twice[:5])}")
        messages.update(extra)
    return messages


def language_names() -> dict[str, str]:
    """Each language's own name, for the language menu."""
    return {code: str(catalogue(code)["language_name"]) for code in LANGUAGES}


def plural_category(language: str, count: int) -> str:
    """CLDR's plural category of the whole number ``count`` in ``language``."""
    n = abs(count)
    if language in ("uk", "ru"):
        if n % 10 == 1 and n % 100 != 11:
            return "one"
        if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
            return "few"
        return "many"
    if language == "ro":
        if n == 1:
            return "one"
        if n == 0 or 2 <= n % 100 <= 19:
            return "few"
        return "other"
    return "one" if n == 1 else "other"


def choose(language: str, message: Message, values: dict[str, object]) -> str:
    """The text of ``message`` for ``values``: its plural form for the count among them."""
    if isinstance(message, str):
        return message
    count = next((values[name] for name in COUNT_NAMES if isinstance(values.get(name), int)), None)
    if isinstance(count, int):
        return message.get(plural_category(language, count)) or message["other"]
    return message["other"]


def pick_language(cookie: str | None, accept_language: str | None, default: str = DEFAULT_LANGUAGE) -> str:
    """The user's chosen language, else the browser's best supported one, else ``default``."""
    if cookie in LANGUAGES:
        return cookie
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, index, primary))
    if ranked:
        return min(ranked)[2]
    return default if default in LANGUAGES else DEFAULT_LANGUAGE


class Translator:
    """``t("signed_in_as", name="Ada")`` in the templates."""

    def __init__(self, language: str) -> None:
        self.language = language if language in LANGUAGES else DEFAULT_LANGUAGE
        self.messages = catalogue(self.language)

    def __call__(self, key: str, **values: object) -> str:
        message = self.messages.get(key) or catalogue(DEFAULT_LANGUAGE).get(key, key)
        text = choose(self.language, message, values)
        return text.format(**values) if values else text
