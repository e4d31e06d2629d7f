"""The desktop's languages: one message catalogue per language, chosen per user.

A language's catalogue is ``i18n/<code>.json`` (the desktop's common messages) merged with
``i18n/<area>/<code>.json`` of each area of pages (tasks, reports, admin...): an area keeps its messages
beside each other, and a key defined twice is an error, not a silent override.

The user's language is kept in a cookie (crm's profile has no field for it yet); without one, the
browser's ``Accept-Language`` picks among the languages there are, and English is the fallback. The
pages are rendered in it and the page's script gets the same catalogue, so every string the desktop
adds is translated in one place. Placeholders are ``{name}``; every catalogue has every key.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

LANGUAGES: tuple[str, ...] = ("en", "bg", "ro", "uk", "ru")
DEFAULT_LANGUAGE = "en"
LANGUAGE_COOKIE = "telecrm_lang"
TIME_ZONE_COOKIE = "telecrm_tz"


@cache
def catalogue(language: str) -> dict[str, str]:
    """The messages of ``language`` (English for a language there is no catalogue of)."""
    if language not in LANGUAGES:
        language = DEFAULT_LANGUAGE
    root = resources.files("telecrm_web").joinpath("i18n")
    messages: dict[str, str] = json.loads(root.joinpath(f"{language}.json").read_text("utf-8"))
    for area in sorted((entry for entry in root.iterdir() if entry.is_dir()), key=lambda entry: entry.name):
        part = area.joinpath(f"{language}.json")
        if not part.is_file():
            continue
        extra: dict[str, str] = json.loads(part.read_text("utf-8"))
        if twice := sorted(set(extra) & set(messages)):
            raise ValueError(f"i18n/{area.name}/{language}.json defines again: {', '.join(twice[:5])}")
        messages.update(extra)
    return messages


def language_names() -> dict[str, str]:
    """Each language's own name, for the language menu."""
    return {code: catalogue(code)["language_name"] for code in LANGUAGES}


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
        text = self.messages.get(key) or catalogue(DEFAULT_LANGUAGE).get(key, key)
        return text.format(**values) if values else text
