"""mtapy.filters.spf with Debian's python3-spf, against a fake DNS zone (no network)."""

import pytest

spf = pytest.importorskip(
    "spf", reason="python3-spf is not installed (apt-get install -y python3-spf)"
)

from mtapy.filters import spf as spf_filter  # noqa: E402
from mtapy.filters.spf import SpfFilter  # noqa: E402
from mtapy.testing import scan  # noqa: E402

ZONE = {
    ("strict.example", "TXT"): [[b"v=spf1 ip4:192.0.2.0/24 -all"]],
    ("soft.example", "TXT"): [[b"v=spf1 ip4:192.0.2.0/24 ~all"]],
    ("byname.example", "TXT"): [[b"v=spf1 a:mail.byname.example -all"]],
    ("mail.byname.example", "A"): ["198.51.100.7"],
    ("broken.example", "TXT"): [[b"v=spf1 ip4:192.0.2.0/24 bogus-mechanism -all"]],
    ("split.example", "TXT"): [[b"v=spf1 ip4:192.0.2.0/24 ", b"ip4:203.0.113.0/24 -all"]],
    ("helo.example", "TXT"): [[b"v=spf1 ip4:203.0.113.9 -all"]],
}
MESSAGE = b"Subject: hello\n\nbody\n"


@pytest.fixture(autouse=True)
def fake_dns(monkeypatch):
    """Answer pyspf's lookups from ZONE; tempfail.example simulates a DNS timeout."""
    queries = []

    def lookup(name, qtype, strict=True, timeout=None):
        queries.append((name, qtype))
        if name.startswith("tempfail.example"):
            raise spf.TempError("DNS timeout (fake)")
        return [((name, qtype), value) for value in ZONE.get((name.lower(), qtype), [])]

    monkeypatch.setattr(spf, "DNSLookup", lookup)
    return queries


def check(sender, ip, check=spf_filter, **fields):
    return scan(
        check, MESSAGE, sender=sender, host=ip, sender_helo_name="mx.client.example", **fields
    )


def test_an_authorised_client_passes_and_gets_received_spf(fake_dns):
    result = check("user@strict.example", "192.0.2.10")
    assert result.verdict == "accept"
    header = result.header("Received-SPF")
    assert header.startswith("Pass (") and "client-ip=192.0.2.10;" in header
    assert 'envelope-from="user@strict.example"' in header and "helo=mx.client.example" in header
    assert ("strict.example", "TXT") in fake_dns


def test_spf_fail_is_rejected():
    result = check("user@strict.example", "203.0.113.5")
    assert result.verdict == "reject" and result.smtp_code == 550
    assert "SPF fail" in result.message and "203.0.113.5" in result.message


def test_a_mechanisms_resolve_through_the_fake_zone():
    assert check("user@byname.example", "198.51.100.7").verdict == "accept"
    assert check("user@byname.example", "198.51.100.8").verdict == "reject"


def test_txt_records_split_into_strings_are_joined():
    assert check("user@split.example", "203.0.113.1").verdict == "accept"


def test_softfail_is_accepted_by_default_and_rejectable():
    result = check("user@soft.example", "203.0.113.5")
    assert result.verdict == "accept" and result.header("Received-SPF").startswith("SoftFail")
    strict = SpfFilter(actions={"softfail": "reject"})
    assert check("user@soft.example", "203.0.113.5", check=strict).verdict == "reject"


def test_a_domain_without_spf_is_none_and_accepted():
    result = check("user@nospf.example", "203.0.113.5")
    assert result.verdict == "accept" and result.header("Received-SPF").startswith("None")


def test_temperror_tempfails_by_default_and_can_accept():
    assert check("user@tempfail.example", "192.0.2.10").verdict == "tempreject"
    relaxed = SpfFilter(actions={"temperror": "accept"})
    result = check("user@tempfail.example", "192.0.2.10", check=relaxed)
    assert result.verdict == "accept" and result.header("Received-SPF").startswith("TempError")


def test_permerror_is_accepted_by_default_and_can_reject():
    result = check("user@broken.example", "192.0.2.10")
    assert result.verdict == "accept" and result.header("Received-SPF").startswith("PermError")
    strict = SpfFilter(actions={"permerror": "reject"})
    assert check("user@broken.example", "192.0.2.10", check=strict).verdict == "reject"


def test_a_null_sender_is_checked_against_the_helo_name():
    result = scan(
        spf_filter, MESSAGE, sender="", host="203.0.113.9", sender_helo_name="helo.example"
    )
    assert result.verdict == "accept" and result.header("Received-SPF").startswith("Pass")
    bad = scan(spf_filter, MESSAGE, sender="", host="192.0.2.1", sender_helo_name="helo.example")
    assert bad.verdict == "reject"


def test_local_authenticated_and_loopback_clients_are_not_checked(fake_dns):
    assert check("user@strict.example", "").added_headers == []
    assert check("user@strict.example", "127.0.0.1").added_headers == []
    authed = check("user@strict.example", "203.0.113.5", sender_host_authenticated="plain")
    assert authed.verdict == "accept" and authed.added_headers == []
    assert fake_dns == []


def test_an_invalid_action_is_refused():
    with pytest.raises(ValueError):
        SpfFilter(actions={"fail": "bounce"})
