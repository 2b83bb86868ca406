"""mtapy.filters.ratelimit - the seed's sender rate limiter (Twisted sender_warn), made correct.

DESCRIPTION  Counts calls per key (what Exim passes: $sender_address, $sender_host_address)
             in a window that starts at a key's first call; the call after COUNT of them in
             one window passes the limit: the answer is "yes" on ${readsocket} (the seed's
             protocol) and True on ${dlfunc}, and one alert mail per key and window goes to
             ALERT_TO and ALERT_CC through the local MTA, with the key's top subjects from
             Exim's log when the pool's user can read it (as the seed did with exigrep).
             The counts live in the pool's shared state (mtapy.state), so every worker, every
             MTA instance calling the pool (and, with Redis, every host) counts together, and
             worker crashes, reloads and daemon restarts keep them.

                 # policy.py of the pool                    # Exim, RCPT ACL
                 from mtapy.filters import ratelimit        warn condition = ${dlfunc{/usr/lib/\\
                 ratelimit.read_conf("/etc/exim4/             mtapy/mtapy_exim.so}{python}\\
                                     sender_warn.conf")       {over}{$sender_address}}
                 over = ratelimit.over                           log_message = tons-o-mail
                 sender_warn = ratelimit.sender_warn

SETTINGS     Module constants (read at every call), or read_conf() of the seed's INI file
             ([thresholds] time, count; [alerts] fromAddr, toAddr, ccAddr, subject), or a
             RateLimit(...) instance with the same names as keyword arguments.
ADMIN        mtapyctl ratelimit POOL KEY [--reset] [--name NAME] shows (and resets) a key.
SEE ALSO     mtapy/state.py, deploy/exim/conf.d/ (the ACL snippet), README.md "Rate limiting"
"""

import configparser
import re
import smtplib
import sys
import time
from email.message import EmailMessage
from typing import Any, Dict, List

from mtapy import state

# The seed's defaults (its first version's 100 per 3600 s).
NAME = "sender"           # several limiters in one pool keep apart by name
COUNT = 100               # calls allowed per key and window ([thresholds] count)
WINDOW = 3600             # seconds ([thresholds] time)
ALERT_FROM = "postmaster@localhost"
ALERT_TO = "postmaster@localhost"
ALERT_CC = ""
ALERT_SUBJECT = "Mail Abuse Alert"
SMTP = "localhost:25"     # the local MTA the alert goes through ("" = no alert)
EXIM_LOG = "/var/log/exim4/mainlog"  # for the key's top subjects ("" = leave them out)

_registry: Dict[str, "RateLimit"] = {}


class RateLimit:
    """One limiter; settings as the module constants above (lower case)."""

    def __init__(self, name=None, count=None, window=None, alert_from=None, alert_to=None,
                 alert_cc=None, alert_subject=None, smtp=None, exim_log=None):
        self._given = {k: v for k, v in dict(
            name=name, count=count, window=window, alert_from=alert_from, alert_to=alert_to,
            alert_cc=alert_cc, alert_subject=alert_subject, smtp=smtp,
            exim_log=exim_log).items() if v is not None}
        _registry[self.setting("name")] = self

    def setting(self, name: str) -> Any:
        """A keyword given to this instance, else the module constant of that name."""
        if name in self._given:
            return self._given[name]
        return getattr(sys.modules[__name__], name.upper())

    def _key(self, key: str, name=None) -> str:
        return f"ratelimit:{name or self.setting('name')}:{key or '<>'}"

    def over(self, key: str) -> bool:
        """Count a call for `key`; True once it is past COUNT in this window."""
        # setting() for the three, read directly: this runs for every RCPT.
        given = self._given
        name = given.get("name", NAME)
        window = float(given.get("window", WINDOW))
        stored = self._key(key, name)
        hit = state.hit(stored, int(given.get("count", COUNT)), window)
        if hit.passed and state.add(f"{stored}:alerted:{hit.started!r}", ttl=window):
            self._alert(key or "<>", hit)
        return hit.passed

    def sender_warn(self, key: str) -> str:
        """over() as the seed's ${readsocket} daemon answered it: "yes" or "no"."""
        return "yes" if self.over(key) else "no"

    def show(self, key: str) -> str:
        found = state.peek(self._key(key))
        count, window = int(self.setting("count")), float(self.setting("window"))
        if found is None:
            return f"{key}: no calls in the current window (limit {count} per {window:g} s)"
        left = found.started + window - time.time()
        return (f"{key}: {found.count} calls in the window that started "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(found.started))} "
                f"({left:.0f} s left); limit {count} per {window:g} s: "
                f"{'OVER' if found.count > count else 'under'}")

    def reset(self, key: str) -> str:
        state.delete(self._key(key))
        return f"{key}: count reset"

    def _alert(self, key: str, hit: "state.Hit") -> None:
        """One mail to the admins; a failure to send is logged, never the caller's failure."""
        smtp = self.setting("smtp")
        if not smtp:
            return
        message = EmailMessage()
        message["Subject"] = self.setting("alert_subject")
        message["From"] = self.setting("alert_from")
        message["To"] = self.setting("alert_to")
        if self.setting("alert_cc"):
            message["Cc"] = self.setting("alert_cc")
        message.set_content(
            "Someone has tried to send more emails through our MTA than is humanly possible.\n"
            f"The sender is '{key}': {hit.count} calls since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(hit.started))}, "
            f"more than {self.setting('count')} in {float(self.setting('window')):g} s.\n\n"
            + top_subjects(key, self.setting("exim_log")))
        host, _, port = smtp.rpartition(":")
        try:
            with smtplib.SMTP(host or smtp, int(port or 25), timeout=5) as mta:
                mta.send_message(message)
        except (OSError, smtplib.SMTPException) as e:
            print(f"ratelimit: the alert for {key} could not be sent through {smtp}: {e}",
                  file=sys.stderr)


def top_subjects(sender: str, log: str, top: int = 10) -> str:
    """The sender's most frequent subjects in Exim's main log, as the seed's exigrep did."""
    if not log:
        return ""
    counts: Dict[str, int] = {}
    arrival = re.compile(r" <= " + re.escape(sender) + r" .*? T=\"((?:[^\"\\]|\\.)*)\"")
    try:
        with open(log, errors="replace") as lines:
            for line in lines:
                found = arrival.search(line)
                if found:
                    counts[found[1]] = counts.get(found[1], 0) + 1
    except OSError as e:
        return f"(no subjects: {log} is not readable by this pool's user: {e.strerror})\n"
    ranked: List[str] = sorted(counts, key=lambda s: -counts[s])[:top]
    return "Top subjects in " + log + ":\n" + "".join(
        f"{counts[s]:7d} {s}\n" for s in ranked)


def read_conf(path: str) -> None:
    """Take the settings from the seed's sender_warn.conf (quotes around values are dropped)."""
    global WINDOW, COUNT, ALERT_FROM, ALERT_TO, ALERT_CC, ALERT_SUBJECT
    conf = configparser.ConfigParser()
    if not conf.read(path):
        raise FileNotFoundError(f"{path}: cannot read the rate limiter's settings")
    text = lambda section, key, default: conf.get(section, key, fallback=default).replace("'", "")
    WINDOW = int(text("thresholds", "time", WINDOW))
    COUNT = int(text("thresholds", "count", COUNT))
    ALERT_FROM = text("alerts", "fromAddr", ALERT_FROM)
    ALERT_TO = text("alerts", "toAddr", ALERT_TO)
    ALERT_CC = text("alerts", "ccAddr", ALERT_CC)
    ALERT_SUBJECT = text("alerts", "subject", ALERT_SUBJECT)


_default = RateLimit()


def over(key: str) -> bool:
    """For ${dlfunc} conditions: True when `key` passed the limit."""
    return _default.over(key)


def sender_warn(key: str) -> str:
    """For ${readsocket} (the seed's protocol): "yes" when `key` passed the limit, else "no"."""
    return _default.sender_warn(key)


# mtapyctl ratelimit POOL KEY [--reset] [--name NAME]: root only (the worker checks).
def show(key: str, name: str = NAME) -> str:
    return _limiter(name).show(key)


def reset(key: str, name: str = NAME) -> str:
    return _limiter(name).reset(key)


def _limiter(name: str) -> RateLimit:
    if name not in _registry:
        raise LookupError(f"no rate limiter named {name!r} in this pool's policy")
    return _registry[name]
