"""The sipp runner: an agent phone that cannot start says so, with sipp's own words."""

from __future__ import annotations

import socket

import pytest

from tests.sipp.runner import LOOPBACK, Sipp, environment_ok, start_uas

ok, why = environment_ok()
pytestmark = [pytest.mark.sip, pytest.mark.skipif(not ok, reason=why)]


def test_a_phone_on_a_taken_port_is_an_error_not_a_silent_phone() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((LOOPBACK, 0))
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match=r"uas_answer\.xml exited at start .*Unable to bind"):
            start_uas("uas_answer.xml", port=port)


def test_a_phone_whose_own_port_got_taken_starts_on_another() -> None:
    phone = Sipp("uas_answer.xml")
    first = phone.port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((LOOPBACK, first))  # taken between the pick and sipp's bind
        with phone.start():
            assert phone.running
            assert phone.port != first
