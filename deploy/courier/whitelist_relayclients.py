"""A sample Courier filter: accept mail from hosts smtpaccess marks RELAYCLIENT.

Upstream's filter of this name works unchanged; this one is here so that the sample chain
runs without it. It reads Courier's smtpaccess.dat (Debian's python3-gdbm).
"""

from courier import config, control


def do_filter(body_path, control_paths):
    address = control.get_senders_ip(control_paths)
    if address and config.is_relayed(address):
        return "200 Ok"
    return ""
