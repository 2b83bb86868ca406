"""courier.control against control files laid out as Courier 1.0.16 writes them."""

import pytest

from courier import control

PLAIN = (b"ssender@example.net\n"
         b"fdns; client.example.net (softdnserr [::ffff:127.0.0.1])\n"
         b"e\nt\n"
         b"M000000000000017C.000000006B01885B.000000C8\n"
         b"rsomeone@example.com\nR\nN\n"
         b"ORELAYCLIENT=\nOTCPREMOTEIP=::ffff:127.0.0.1\nuauthsmtp\n"
         b"E1795867355\np1795291355\nW1795276955\n")
# Two files of one message (batchsize 2): DSN options, ORCPT, 8-bit, each with its own M.
FIRST = (b"ssender@example.net\nfdns; client.example.net\neprobe-envid-1\ntH\n"
         b"M000000000000017E.000000006B0188D7.000000C9\n"
         b"ra@example.com\nRorig-a@example.com\nNSF\nrb@example.com\nR\nNN\n"
         b"OTCPREMOTEIP=::ffff:127.0.0.1\nuauthsmtp\nE1795867479\n8\n")
SECOND = (b"ssender@example.net\nM000000000000017F.000000006B0188D7.000000C9\n"
          b"rc@example.com\nR\nN\n8\nE1795867479\n")


def files(tmp_path, *contents):
    paths = []
    for i, content in enumerate(contents):
        path = tmp_path / f"C{i}"
        path.write_bytes(content)
        paths.append(str(path))
    return paths


def test_reading_a_plain_message(tmp_path):
    paths = files(tmp_path, PLAIN)
    assert control.get_sender(paths) == "sender@example.net"
    assert control.get_senders_ip(paths) == "127.0.0.1"  # the IPv4-mapped address as IPv4
    assert control.get_senders_mta(paths).startswith("dns; client.example.net")
    assert control.get_recipients(paths) == ["someone@example.com"]
    assert control.get_recipients_data(paths) == [["someone@example.com", "", ""]]
    assert control.get_auth_user(paths, "/no/body") is None
    assert control.get_lines(paths, "O") == ["RELAYCLIENT=", "TCPREMOTEIP=::ffff:127.0.0.1"]
    assert control.get_lines(paths, "O", 1) == ["RELAYCLIENT="]


def test_control_data_takes_scalars_from_the_first_file_and_recipients_from_all(tmp_path):
    paths = files(tmp_path, FIRST, SECOND)
    data = control.get_control_data(paths)
    assert data["s"] == "sender@example.net" and data["e"] == "probe-envid-1"
    assert data["t"] == "H" and data["M"] == "000000000000017E.000000006B0188D7.000000C9"
    assert data["E"] == "1795867479" and data["u"] == "authsmtp"
    assert data["8"] is True and data["w"] is False and data["V"] is False
    assert data["i"] is None and data["X"] is None and data["U"] == ""
    assert data["r"] == [["a@example.com", "orig-a@example.com", "SF"],
                         ["b@example.com", "", "N"], ["c@example.com", "", ""]]


def test_adding_and_removing_recipients_shows_in_the_files(tmp_path):
    paths = files(tmp_path, FIRST, SECOND)
    control.add_recipient(paths, "new@example.com")
    control.add_recipient_data(paths, ["dsn@example.com", "orig@example.com", "F"])
    assert open(paths[1], "rb").read().endswith(
        b"rnew@example.com\nR\nN\nrdsn@example.com\nRorig@example.com\nNF\n")
    assert control.del_recipient(paths, "b@example.com") is True
    assert control.del_recipient_data(paths, ["c@example.com", "", ""]) is True
    assert control.del_recipient(paths, "b@example.com") is False  # already done
    assert control.get_recipients(paths) == ["a@example.com", "new@example.com",
                                             "dsn@example.com"]
    first = open(paths[0], "rb").read()
    assert b"I1 R 250 Ok - Removed by courier.control.py\nS1 " in first  # b is recipient 1 there
    assert b"\nS0 " in open(paths[1], "rb").read()  # c is recipient 0 of the second file


def test_eight_bit_and_malformed_bytes_are_described_not_raised(tmp_path):
    paths = files(tmp_path, b"s\xc3\xa9t\xc3\xa9@example.net\nrbad\xff\xfe@example.com\nR\nN\n")
    assert control.get_sender(paths) == "été@example.net"
    assert control.get_recipients(paths) == ["(malformed utf8):bad%FF%FE@example.com"]


def test_the_old_camel_case_names_are_the_same_functions():
    assert control.getRecipients is control.get_recipients
    assert control.delRecipientData is control.del_recipient_data
    assert control.getSendersIP is control.get_senders_ip


def test_a_missing_control_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        control.get_sender([str(tmp_path / "gone")])


def test_upstream_s_rules_for_odd_arguments_and_files(tmp_path):
    paths = files(tmp_path, PLAIN)
    for wrong in (["x@example.com"], ["x@example.com", "", "", ""]):
        with pytest.raises(ValueError):
            control.add_recipient_data(paths, wrong)
        with pytest.raises(ValueError):
            control.del_recipient_data(paths, wrong)
    assert control.get_recipients(paths) == ["someone@example.com"]  # nothing was written
    no_sender = files(tmp_path, b"rsomeone@example.com\nR\nN\n")
    assert control.get_sender(no_sender) is None
    bounce = files(tmp_path, b"s\nrsomeone@example.com\nR\nN\n")
    assert control.get_sender(bounce) == ""
    # The AUTH record is looked for in every file, as upstream does.
    two = files(tmp_path, b"ssender@example.net\nra@example.com\nR\nN\n",
                b"iauthed-user\nrb@example.com\nR\nN\n")
    assert control.get_auth_user(two) == "authed-user"
