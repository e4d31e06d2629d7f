"""Numbers as agents in Bulgaria, Romania, Ukraine and Russia type them: parsed, never lost."""

from __future__ import annotations

import pytest

from telecrm_common.telephony import normalize_number
from telecrm_crm.phones import display, parse_phone, reverse_digits, split_extension, suffix_range


@pytest.mark.parametrize(
    ("typed", "region", "e164", "extension", "valid"),
    [
        # Bulgaria: mobile and Sofia landline, national and international, with an extension.
        ("0888 123 456", "BG", "+359888123456", None, True),
        ("+359 888 123 456", "BG", "+359888123456", None, True),
        ("00359 88 812 3456", "BG", "+359888123456", None, True),
        ("02/981 12 34", "BG", "+35929811234", None, True),
        ("02 981 1234 вн. 305", "BG", "+35929811234", "305", True),
        ("02 981 1234, вътр. 305", "BG", "+35929811234", "305", True),
        # Russia: the mask of the issue, the trunk prefix 8, extensions after "доб."
        ("+7 (499) 369-04-39", "BG", "+74993690439", None, True),
        ("8 (499) 369-04-39", "RU", "+74993690439", None, True),
        ("+7 (499) 369-04-39 доб. 12", "BG", "+74993690439", "12", True),
        ("+7 499 369 04 39 (доб. 1234)", "BG", "+74993690439", "1234", True),
        ("(499) 369-04-39 внутр. 7", "RU", "+74993690439", "7", True),
        # Ukraine.
        ("044 123 45 67", "UA", "+380441234567", None, True),
        ("(044) 123-45-67 (дод. 7)", "UA", "+380441234567", "7", True),
        ("+380 44 123 4567 вн. 21", "BG", "+380441234567", "21", True),
        # Romania.
        ("0721 234 567", "RO", "+40721234567", None, True),
        ("+40 21 234 5678 int. 12", "BG", "+40212345678", "12", True),
        ("021 234 5678 interior 12", "RO", "+40212345678", "12", True),
        # English markers and SIP URIs.
        ("+1 212 555 0100 ext. 42", "BG", "+12125550100", "42", True),
        ("+1 212 555 0100 x42", "BG", "+12125550100", "42", True),
        ("sip:+35929811234@pbx.example;user=phone", "RU", "+35929811234", None, True),
        ("tel:+74993690439", "BG", "+74993690439", None, True),
        # Possible but unassigned: normalized (so calls from it still match), flagged invalid.
        ("+1 555 123 4567", "BG", "+15551234567", None, False),
    ],
)
def test_numbers_in_the_usual_formats_are_understood(
    typed: str, region: str, e164: str, extension: str | None, valid: bool
) -> None:
    phone = parse_phone(typed, region)
    assert (phone.e164, phone.extension, phone.valid) == (e164, extension, valid)
    assert phone.raw == typed.strip()
    assert phone.digits == e164[1:]


@pytest.mark.parametrize(
    ("typed", "digits"),
    [
        ("call me back", ""),
        ("+359 2", "3592"),
        ("0", "0"),
        ("++--", ""),
        ("12-34", "1234"),
    ],
)
def test_a_number_that_does_not_parse_is_kept_as_typed_and_flagged(typed: str, digits: str) -> None:
    phone = parse_phone(typed, "BG")
    assert phone.e164 is None
    assert not phone.valid
    assert phone.raw == typed
    assert phone.digits == digits
    assert phone.rdigits == (digits[::-1] or None)


def test_an_extension_given_apart_wins_and_a_word_ending_in_x_is_no_marker() -> None:
    assert parse_phone("+359 2 981 1234 вн. 5", "BG", extension="17").extension == "17"
    assert split_extension("Next 123") == ("Next 123", None)
    assert split_extension("ext. 12") == ("ext. 12", None)  # nothing before it is no number
    assert split_extension("+7 499 369 04 39, доб.: 12") == ("+7 499 369 04 39", "12")


def test_contacts_numbers_meet_the_call_logs_numbers() -> None:
    """The call log normalizes call numbers with telecrm_common.telephony; both must agree."""
    for typed in ("0888 123 456", "+7 (499) 369-04-39", "00359 2 981 1234", "0721 234 567"):
        region = "RO" if typed.startswith("0721") else "BG"
        assert parse_phone(typed, region).e164 == normalize_number(typed, region)


def test_the_last_digits_are_a_range_of_the_reversed_digits() -> None:
    low, high = suffix_range("359888123456", 9)  # type: ignore[misc]
    assert (low, high) == ("654321888", "654321888:")
    assert low <= reverse_digits("79888123456") < high  # another country, same last 9 digits
    assert not low <= reverse_digits("359888123457") < high
    assert suffix_range("12345", 9) is None  # an extension: no fallback


def test_numbers_are_written_for_people_in_international_format() -> None:
    assert display(parse_phone("8 (499) 369-04-39 доб. 12", "RU")) == "+7 499 369-04-39 ext. 12"
    assert display(parse_phone("call me", "BG")) == "call me"
