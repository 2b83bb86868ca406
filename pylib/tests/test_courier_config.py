"""courier.config over a Courier sysconfdir built here (files and gdbm .dat databases)."""

import dbm.gnu

import pytest

from courier import config


@pytest.fixture
def etc(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "sysconfdir", str(tmp_path))
    (tmp_path / "me").write_text("mx.example.test\n")
    (tmp_path / "locals").write_text("localhost\nexample.test\n!other.example.test\n.lan\n")
    with dbm.gnu.open(str(tmp_path / "smtpaccess.dat"), "c") as db:
        db[b"192.0.2"] = b"allow,RELAYCLIENT"
        db[b"198.51.100.7"] = b"deny,BLOCK=go away"
        db[b"203.0.113.1"] = b"allow,BLOCK"
        db[b":2001:0db8:0000:0000"] = b"allow,RELAYCLIENT"
    with dbm.gnu.open(str(tmp_path / "hosteddomains.dat"), "c") as db:
        db[b"hosted.test"] = b"1"
        db[b".parent.test"] = b"1"
    with dbm.gnu.open(str(tmp_path / "aliases.dat"), "c") as db:
        db[b"postmaster@mx.example.test"] = b"alice@example.test\nbob@example.test\n"
    return tmp_path


def test_names_and_defaults(etc):
    assert config.me() == "mx.example.test"
    assert config.defaultdomain() == "mx.example.test"  # no defaultdomain file: me
    assert config.dsnfrom() == '"Courier mail server at mx.example.test" <@>'
    assert config.esmtphelo() == "mx.example.test"
    assert config.locallowercase() is False
    (etc / "locallowercase").touch()
    assert config.locallowercase() is True


def test_local_domains(etc):
    assert config.is_local("Example.Test") and config.is_local("printer.lan")
    assert not config.is_local("other.example.test") and not config.is_local("example.org")
    (etc / "locals").unlink()
    assert config.is_local("mx.example.test") and not config.is_local("example.test")


def test_smtpaccess_lookups_from_most_specific(etc):
    assert config.smtpaccess("192.0.2.9") == "allow,RELAYCLIENT"
    assert config.is_relayed("192.0.2.9") and config.is_relayed("::ffff:192.0.2.9")
    assert not config.is_relayed("192.0.3.1") and config.smtpaccess("192.0.3.1") is None
    assert config.get_block_val("198.51.100.7") == "go away"
    assert config.get_block_val("203.0.113.1") == "" and config.is_whiteblocked("203.0.113.1")
    assert config.get_smtpaccess_val("BLOCK", "192.0.2.9") is None
    assert config.is_relayed("2001:db8::1")


def test_hosted_domains_and_aliases(etc):
    assert config.is_hosteddomain("hosted.test") and config.is_hosteddomain("a.b.parent.test")
    assert not config.is_hosteddomain("parent.test.org")
    assert config.get_alias("postmaster") == ["alice@example.test", "bob@example.test"]
    assert config.get_alias("postmaster@example.test") == ["alice@example.test",
                                                           "bob@example.test"]
    assert config.get_alias("nobody@example.org") is None


def test_module_config_values_are_python_and_apply_to_a_namespace(tmp_path, monkeypatch):
    conf = tmp_path / "pythonfilter-modules.conf"
    conf.write_text("[ratelimit.py]\nmaxConnections = 10\nintervals = [60, 3600]\n"
                    "label = 'rl'\nseconds = 60 * 5\n")
    monkeypatch.setattr(config, "MODULE_CONFIG_PATHS", [str(conf)])
    assert config.get_module_config("ratelimit.py") == {
        "maxConnections": 10, "intervals": [60, 3600], "label": "rl", "seconds": 300}
    assert config.get_module_config("absent.py") == {}
    namespace = {"maxConnections": 1, "other": True}
    config.applyModuleConfig("ratelimit.py", namespace)
    assert namespace["maxConnections"] == 10 and namespace["other"] is True


def test_an_unreadable_database_is_an_error_not_an_unlisted_address(etc):
    (etc / "smtpaccess.dat").write_bytes(b"not a gdbm file")
    with pytest.raises(OSError, match="python3-gdbm"):
        config.is_relayed("192.0.2.9")
