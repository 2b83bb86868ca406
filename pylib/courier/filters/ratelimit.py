"""courier.filters.ratelimit - upstream's ratelimit filter, counting across the pool's workers.

DESCRIPTION  Refuses a message with "421 Too many messages from IP, slow down." once its
             client's IP has sent more than max_connections messages in `interval` minutes
             (the current minute and the ones before it), as upstream's ratelimit does, but
             counted once for every worker of the pool (courier.filters._window).
SETTINGS     [ratelimit.py] in pythonfilter-modules.conf, read by init_filter():
               max_connections = 60     messages allowed per window
               interval = 1             the window, in whole minutes
               limit_network = False    count per IPv4 /24 or IPv6 /48 instead of per address
             The names of older releases (maxConnections, limitNetwork) are accepted too;
             senders_purge_interval is not needed (the counts expire by themselves).
DIFFERENCE   A message without a client IP (submitted locally) is not counted; upstream
             counted all of them as one client, "None".
SEE ALSO     courier/filters/ratelimitauth.py, courier/filters/_window.py
"""

import ipaddress
import sys
from typing import List

import courier.config
import courier.control
from courier.filters import _window

max_connections = 60
interval = 1
limit_network = False

_OLDER_NAMES = {"maxConnections": "max_connections", "limitNetwork": "limit_network"}


def init_filter() -> None:
    settings = courier.config.get_module_config("ratelimit.py")
    for older, name in _OLDER_NAMES.items():
        if older in settings:
            settings.setdefault(name, settings.pop(older))
    globals().update(settings)
    sys.stderr.write("Initialized the ratelimit python filter\n")


def do_filter(body_path: str, control_paths: List[str]) -> str:
    try:
        ip = courier.control.get_senders_ip(control_paths)
    except OSError:
        return "451 Internal failure locating control files"
    if not ip:
        return ""
    client = ip
    if limit_network:
        network = 24 if ipaddress.ip_address(ip).version == 4 else 48
        client = str(ipaddress.ip_network(f"{ip}/{network}", strict=False))
    if _window.count("ratelimit.py", client, int(interval)) > max_connections:
        return f"421 Too many messages from {ip}, slow down."
    return ""
