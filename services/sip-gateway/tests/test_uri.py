"""The SIP value parsers."""

from __future__ import annotations

import pytest

from telecrm_gateway.sip.uri import parse_name_addr, request_uri, uri_user, via_transport


@pytest.mark.parametrize(
    ("value", "display", "uri"),
    [
        ('"Ann Lee" <sip:+15557654321@10.0.0.1:5060>;tag=abc', "Ann Lee", "sip:+15557654321@10.0.0.1:5060"),
        ('"Say \\"hi\\"" <sip:101@pbx>', 'Say "hi"', "sip:101@pbx"),
        ("Bob <sip:102@pbx;transport=tcp>;tag=1", "Bob", "sip:102@pbx;transport=tcp"),
        ("<sip:anonymous@anonymous.invalid>;tag=x", "", "sip:anonymous@anonymous.invalid"),
        ("sip:103@pbx;tag=zzz", "", "sip:103@pbx"),
    ],
)
def test_parse_name_addr(value: str, display: str, uri: str) -> None:
    parsed = parse_name_addr(value)
    assert (parsed.display, parsed.uri) == (display, uri)


@pytest.mark.parametrize(
    ("uri", "user"),
    [
        ("sip:+15551230000@gw;user=phone", "+15551230000"),
        ("sips:101@pbx:5061", "101"),
        ("sip:alice:secret@pbx", "alice"),
        ("sip:%2B4930123@pbx", "+4930123"),
        ("tel:+15551230000;phone-context=x", "+15551230000"),
        ("sip:pbx.example.com", ""),
        ("mailto:a@b", ""),
        ("garbage", ""),
    ],
)
def test_uri_user(uri: str, user: str) -> None:
    assert uri_user(uri) == user


def test_request_uri_and_via_transport() -> None:
    message = (
        "INVITE sip:101@127.0.0.1:5060 SIP/2.0\r\n"
        "v: SIP/2.0/tcp 10.0.0.2:5060;branch=z9hG4bK1\r\n"
        "Call-ID: x\r\n\r\nv=0\r\n"
    )
    assert request_uri(message) == "sip:101@127.0.0.1:5060"
    assert via_transport(message) == "TCP"
    assert request_uri("SIP/2.0 200 OK\r\n") == ""
    assert via_transport("INVITE sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n") == "UDP"
