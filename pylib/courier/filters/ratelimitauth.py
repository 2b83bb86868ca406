"""courier.filters.ratelimitauth - upstream's ratelimitauth filter, counting across the workers.

DESCRIPTION  Refuses a message with "421 User USER has exceeded sending limits; wait awhile
             and try again." once its SMTP AUTH user has sent more than max_connections
             messages in `interval` minutes, as upstream's ratelimitauth does, but counted
             once for every worker of the pool (courier.filters._window). Messages without
             AUTH are not counted.
SETTINGS     [ratelimitauth.py] in pythonfilter-modules.conf, read by init_filter():
               max_connections = 50     messages allowed per window
               interval = 120           the window, in whole minutes
             senders_purge_interval is not needed (the counts expire by themselves).
SEE ALSO     courier/filters/ratelimit.py, courier/filters/_window.py
"""

import sys
from typing import List

import courier.config
import courier.control
from courier.filters import _window

max_connections = 50
interval = 120


def init_filter() -> None:
    courier.config.apply_module_config("ratelimitauth.py", globals())
    sys.stderr.write("Initialized the ratelimitauth python filter\n")


def do_filter(body_path: str, control_paths: List[str]) -> str:
    try:
        user = courier.control.get_auth_user(control_paths)
    except OSError:
        return "451 Internal failure locating control files"
    if not user:
        return ""
    if _window.count("ratelimitauth.py", user, int(interval)) > max_connections:
        return f"421 User {user} has exceeded sending limits; wait awhile and try again."
    return ""
