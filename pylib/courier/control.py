"""courier.control - read and change the control files of a message in Courier's queue.

DESCRIPTION  A message has one or more control files: one record per line, its first byte
             the record's type (Courier's queue documentation, "Control file"). Scalars
             (sender, message id, ...) come from the first file; recipients from all of them,
             as r (address), R (original recipient), N (DSN flags) triples, leaving out those
             an S<n> or F<n> record marks done in that file. Values that are not valid UTF-8
             (8-bit bytes from an SMTP client) come back as
             "(malformed utf8):" + their percent-encoding, as documented.
             Changes are appended: a recipient is added to the last file; a recipient is
             removed by marking it delivered in the file that holds it, with a reply line
             saying so. camelCase names of every function are kept for old filters.
"""

import time
import urllib.parse
from typing import Dict, List, Optional

_FLAGS = "wm8VT"  # records whose presence means True
_SCALARS = "sfeMitEpWvXUu"


def _text(raw: bytes) -> str:
    raw = raw.strip()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "(malformed utf8):" + urllib.parse.quote_plus(raw, safe="@")


def _records(path: str) -> List[bytes]:
    with open(path, "rb") as f:
        return [line.rstrip(b"\n") for line in f]


def get_lines(control_paths: List[str], key: str, max_lines: int = 0) -> List[str]:
    """The values of records `key` (one character), in order, at most `max_lines` if given."""
    wanted = key.encode()
    found = []
    for path in control_paths:
        for record in _records(path):
            if record[:1] == wanted:
                found.append(_text(record[1:]))
                if max_lines and len(found) >= max_lines:
                    return found
    return found


def _first(control_paths: List[str], key: str) -> Optional[str]:
    values = get_lines(control_paths[:1], key, 1)
    return values[0] if values else None


def get_sender(control_paths: List[str]) -> Optional[str]:
    """The envelope sender ('' for a bounce), None in a control file without one."""
    return _first(control_paths, "s")


def get_senders_mta(control_paths: List[str]) -> Optional[str]:
    return _first(control_paths, "f")


def get_senders_ip(control_paths: List[str]) -> Optional[str]:
    """The client's address from the saved TCPREMOTEIP (an IPv4-mapped address as IPv4)."""
    for value in get_lines(control_paths, "O"):
        if value.startswith("TCPREMOTEIP="):
            ip = value[len("TCPREMOTEIP="):]
            return ip[len("::ffff:"):] if ip.lower().startswith("::ffff:") and "." in ip else ip
    return None


def get_auth_user(control_paths: List[str], body_path: Optional[str] = None) -> Optional[str]:
    """The SMTP AUTH user, or None; `body_path` is accepted for old callers, not needed."""
    values = get_lines(control_paths, "i", 1)
    return values[0] if values else None


def _recipients_of(path: str):
    """[(n, [address, original, dsn]), ...] of one file, and the numbers marked done."""
    triples, done, current = [], set(), {}
    for record in _records(path):
        key, value = record[:1], record[1:]
        if key in (b"r", b"R", b"N"):
            current[key] = _text(value)
            if key == b"N":
                triples.append((len(triples), [current.get(b"r", ""), current.get(b"R", ""),
                                               current[b"N"]]))
                current = {}
        elif key in (b"S", b"F"):
            number = value.split(b" ", 1)[0]
            if number.isdigit():
                done.add(int(number))
    return [(n, data) for n, data in triples if n not in done]


def get_recipients_data(control_paths: List[str]) -> List[List[str]]:
    """[[address, original recipient, DSN flags], ...] of recipients not yet done."""
    return [data for path in control_paths for _, data in _recipients_of(path)]


def get_recipients(control_paths: List[str]) -> List[str]:
    return [data[0] for data in get_recipients_data(control_paths)]


def get_control_data(control_paths: List[str]) -> Dict[str, object]:
    """Everything submit was given, keyed by record letter (see the documentation)."""
    data: Dict[str, object] = {}
    for key in _SCALARS:
        data[key] = _first(control_paths, key)
    for key in "sfU":
        data[key] = data[key] or ""
    for key in _FLAGS:
        data[key] = any(r[:1] == key.encode() for r in _records(control_paths[0]))
    data["r"] = get_recipients_data(control_paths)
    return data


def add_recipient(control_paths: List[str], recipient: str) -> None:
    """Add `recipient` (a canonical address) to the message."""
    add_recipient_data(control_paths, [recipient, "", ""])


def _triple(recipient_data: List[str]) -> List[str]:
    if len(recipient_data) != 3:
        raise ValueError("recipient_data must be [address, original recipient, DSN flags]")
    return list(recipient_data)


def add_recipient_data(control_paths: List[str], recipient_data: List[str]) -> None:
    """Add one recipient given as get_recipients_data() gives them."""
    address, original, dsn = _triple(recipient_data)
    with open(control_paths[-1], "ab") as f:
        f.write(b"".join(key + value.encode("utf-8", "surrogateescape") + b"\n"
                         for key, value in ((b"r", address), (b"R", original), (b"N", dsn))))


def del_recipient(control_paths: List[str], recipient: str) -> bool:
    """Mark the first undelivered `recipient` delivered; True if one was found."""
    return _mark_done(control_paths, lambda data: data[0] == recipient)


def del_recipient_data(control_paths: List[str], recipient_data: List[str]) -> bool:
    """The same, for the first recipient whose data equals `recipient_data`."""
    wanted = _triple(recipient_data)
    return _mark_done(control_paths, lambda data: data == wanted)


def _mark_done(control_paths, matches) -> bool:
    for path in control_paths:
        for n, data in _recipients_of(path):
            if matches(data):
                with open(path, "ab") as f:
                    f.write(b"I%d R 250 Ok - Removed by courier.control.py\n" % n)
                    f.write(b"S%d %d\n" % (n, int(time.time())))
                return True
    return False


# The names of older pythonfilter releases.
getLines = get_lines
getSender = get_sender
getSendersMta = get_senders_mta
getSendersIP = get_senders_ip
getAuthUser = get_auth_user
getRecipients = get_recipients
getRecipientsData = get_recipients_data
getControlData = get_control_data
addRecipient = add_recipient
addRecipientData = add_recipient_data
delRecipient = del_recipient
delRecipientData = del_recipient_data
