"""mtapy.filters.spamtrap: mail to a trap is rejected, or only the trap is dropped."""

import pytest

from mtapy.filters import spamtrap
from mtapy.filters.spamtrap import SpamtrapFilter
from mtapy.testing import scan

MESSAGE = b"Subject: hello\n\nbody\n"


def test_mail_to_a_trap_address_is_rejected_by_default(monkeypatch):
    monkeypatch.setattr(spamtrap, "SPAMTRAPS", ["trap@example.org"])
    result = scan(spamtrap, MESSAGE, recipients=["user@example.org", "TRAP@example.org"])
    assert (result.verdict, result.message) == ("reject", spamtrap.MESSAGE)


def test_mail_to_no_trap_is_accepted_unchanged(monkeypatch):
    monkeypatch.setattr(spamtrap, "SPAMTRAPS", ["trap@example.org"])
    result = scan(spamtrap, MESSAGE, recipients=["user@example.org"])
    assert result.verdict == "accept" and result.removed_recipients == []


def test_a_trap_domain_catches_every_address_in_it():
    check = SpamtrapFilter(["@trap.example.org"])
    assert scan(check, MESSAGE, recipients=["any@Trap.Example.org"]).verdict == "reject"
    assert scan(check, MESSAGE, recipients=["any@example.org"]).verdict == "accept"


def test_remove_drops_only_the_trap_recipients():
    check = SpamtrapFilter(["trap@example.org"], action="remove")
    result = scan(check, MESSAGE, recipients=["a@example.org", "trap@example.org", "b@x.org"])
    assert result.verdict == "accept" and result.removed_recipients == ["trap@example.org"]
    assert result.recipients == ["a@example.org", "b@x.org"]


def test_remove_with_only_traps_leaves_no_recipient():
    check = SpamtrapFilter(["trap@example.org"], action="remove")
    result = scan(check, MESSAGE, recipients=["trap@example.org"])
    assert result.verdict == "accept" and result.recipients == []


def test_an_unknown_action_is_refused():
    with pytest.raises(ValueError):
        SpamtrapFilter(["trap@example.org"], action="bounce")
