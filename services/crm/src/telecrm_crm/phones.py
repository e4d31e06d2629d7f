"""Phone numbers as people type them, made comparable: E.164, an extension apart, digits to match by.

Agents type numbers the way their country writes them ("0888 123 456", "8 (499) 369-04-39",
"(044) 123-45-67", "+40 721 234 567 int. 12", "+7 499 369 04 39 доб. 12"); the PBX presents them
in yet other forms ("00359...", "sip:+359...@pbx"). :func:`parse_phone` turns each into:

- ``e164``: the number in E.164 when it has at least five digits and is a possible number of its
  country (parsed with the installation's default region when it has no country code); the key of the
  exact look-up. The call log normalizes the numbers of calls the same way
  (:func:`telecrm_common.telephony.normalize_number`: possible, not necessarily valid), so the two meet;
- ``valid``: whether it is also a number of an assigned range (``phonenumbers.is_valid_number``); an
  unassigned, too short or unparseable number is still kept as typed, flagged invalid, never refused;
- ``extension``: what follows an extension marker in English, Bulgarian, Romanian, Russian or
  Ukrainian ("ext. 12", "x12", "int. 12", "доб. 12", "дод. 12", "вн. 12", "внутр. 12", "вътр. 12");
- ``digits``: the digits to match the end of a number by (those of the E.164 form when there is one,
  else those typed), and :func:`suffix_range`, the index range of "ends with these N digits" over
  the reversed digits stored per phone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers

MAX_RAW_LENGTH = 64
MAX_EXTENSION_LENGTH = 16
MAX_DIGITS = 32  # of the reversed-digits column
MIN_NUMBER_DIGITS = 5  # fewer is an extension or a short code, never E.164 (as the call log decides)
# After the last digit, in byte order: "ends with 1234" is rdigits in ["4321", "4321:").
_AFTER_DIGITS = ":"

_EXTENSION = re.compile(
    r"""
    [\s,;]*\(?\s*
    (?<![^\W\d_])                   # the marker is not the end of a word
    (?:
        ext(?:ension)?|x|\#|int(?:erior)?|
        доб(?:авочный|авочен)?|дод(?:атковий)?|вн(?:утр(?:енний|ішній)?)?|вътр(?:ешен)?
    )
    \s*[.:]{0,2}\s*(?:№\s*)?
    (?P<extension>\d{1,16})
    \s*\)?\s*$
    """,
    re.IGNORECASE | re.VERBOSE,
)
_URI_SCHEMES = ("sip:", "sips:", "tel:")


@dataclass(frozen=True)
class ParsedPhone:
    """A number as typed and what it means."""

    raw: str
    e164: str | None
    extension: str | None
    valid: bool
    digits: str  # E.164 digits when parsed, else the typed number's digits (extension excluded)
    country_code: int | None = None

    @property
    def rdigits(self) -> str | None:
        """The digits reversed, as stored for the last-digits look-up (None without digits)."""
        return reverse_digits(self.digits) if self.digits else None

    @property
    def match_key(self) -> str | None:
        """What makes two phones the same number: the E.164 form, else the typed digits."""
        return self.e164 or (self.digits or None)


def is_region(code: str) -> bool:
    """Whether ``code`` is a region phonenumbers knows ("BG", "RO", "UA", "RU"...)."""
    return code.upper() in phonenumbers.SUPPORTED_REGIONS


def only_digits(text: str) -> str:
    return "".join(ch for ch in text if "0" <= ch <= "9")


def reverse_digits(digits: str) -> str:
    return digits[::-1][:MAX_DIGITS]


def split_extension(text: str) -> tuple[str, str | None]:
    """``("+7 499 369 04 39", "12")`` from ``"+7 499 369 04 39 доб. 12"``; the extension is None when
    there is no marker (a bare trailing group of digits is part of the number)."""
    found = _EXTENSION.search(text)
    if found is None or not only_digits(text[: found.start()]):
        return text, None
    return text[: found.start()].rstrip(" ,;(-"), found.group("extension")


def _strip_uri(text: str) -> str:
    lowered = text[:5].lower()
    if lowered.startswith(_URI_SCHEMES):
        text = text.split(":", 1)[1].split("@", 1)[0]  # sip:+35921234567@pbx -> +35921234567
        text = text.split(";", 1)[0]  # ;phone-context=..., ;user=phone
    return text


def parse_phone(raw: str, default_region: str, *, extension: str | None = None) -> ParsedPhone:
    """Parse a number as typed (see the module's docstring); never raises on a bad number.

    ``extension``, when given apart, wins over one written in ``raw``.
    """
    text = raw.strip()
    number, written_extension = split_extension(_strip_uri(text))
    extension = (extension or "").strip() or written_extension
    number = number.strip()
    typed_digits = only_digits(number)
    if number.startswith("00"):
        number = "+" + number[2:]  # the international prefix of most of Europe, whatever the region
    try:
        parsed = phonenumbers.parse(number, None if number.startswith("+") else default_region.upper())
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is None or len(typed_digits) < MIN_NUMBER_DIGITS or not phonenumbers.is_possible_number(parsed):
        return ParsedPhone(raw=text, e164=None, extension=extension, valid=False, digits=typed_digits)
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return ParsedPhone(
        raw=text,
        e164=e164,
        extension=extension or (parsed.extension or None),
        valid=phonenumbers.is_valid_number(parsed),
        digits=e164[1:],
        country_code=parsed.country_code,
    )


def country_code_of(e164: str | None) -> int | None:
    if not e164:
        return None
    try:
        return phonenumbers.parse(e164, None).country_code
    except phonenumbers.NumberParseException:
        return None


def suffix_range(digits: str, length: int) -> tuple[str, str] | None:
    """The ``rdigits`` range of the numbers ending with the last ``length`` digits of ``digits``, or
    None when there are fewer digits than that (an extension, a short code: no fallback)."""
    if length < 1 or len(digits) < length:
        return None
    low = reverse_digits(digits[-length:])
    return low, low + _AFTER_DIGITS


def display(phone: ParsedPhone) -> str:
    """The number written for people: international format when parsed, as typed otherwise."""
    if phone.e164 is None:
        return phone.raw
    formatted = phonenumbers.format_number(
        phonenumbers.parse(phone.e164, None), phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )
    return f"{formatted} ext. {phone.extension}" if phone.extension else formatted


__all__ = [
    "MAX_EXTENSION_LENGTH",
    "MAX_RAW_LENGTH",
    "ParsedPhone",
    "country_code_of",
    "display",
    "is_region",
    "only_digits",
    "parse_phone",
    "reverse_digits",
    "split_extension",
    "suffix_range",
]
