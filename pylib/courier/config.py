"""courier.config - Courier's configuration, as courier-pythonfilter's filters read it.

DESCRIPTION  Files under Courier's sysconfdir (Debian: /etc/courier): me, defaultdomain,
             dsnfrom, locals, locallowercase, and the gdbm databases made by makedat
             (aliases.dat, smtpaccess.dat, hosteddomains.dat; Debian's python3-gdbm reads
             them). The folders come from `courier-config` when it is installed, else
             Debian's layout; $COURIER_SYSCONFDIR overrides sysconfdir (tests, other builds).
             get_module_config()/apply_module_config() read pythonfilter-modules.conf, whose
             values are Python expressions, as documented. camelCase names are kept.
"""

import ast
import configparser
import dbm
import ipaddress
import os
import socket
import subprocess
from typing import Dict, List, Optional

_DEBIAN = {"sysconfdir": "/etc/courier", "localstatedir": "/var/lib/courier",
           "sbindir": "/usr/sbin", "bindir": "/usr/bin", "mailuser": "courier",
           "mailgroup": "courier"}
MODULE_CONFIG_PATHS = ["/etc/pythonfilter-modules.conf",
                       "/usr/local/etc/pythonfilter-modules.conf"]


def _courier_config() -> Dict[str, str]:
    values = dict(_DEBIAN)
    try:
        out = subprocess.run(["courier-config"], capture_output=True, text=True,
                             timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key in values and value:
            values[key] = value
    return values


_layout = _courier_config()
sysconfdir = os.environ.get("COURIER_SYSCONFDIR", _layout["sysconfdir"])
localstatedir = _layout["localstatedir"]
sbindir, bindir = _layout["sbindir"], _layout["bindir"]
mailuser, mailgroup = _layout["mailuser"], _layout["mailgroup"]


def _path(name: str) -> str:
    return os.path.join(sysconfdir, name)


def _first_line(name: str) -> Optional[str]:
    try:
        with open(_path(name)) as f:
            return f.readline().strip() or None
    except OSError:
        return None


def _lookup(database: str, key: str) -> Optional[str]:
    path = _path(database)
    try:
        with dbm.open(path, "r") as db:
            value = db.get(key.encode())
    except dbm.error as e:
        if os.path.exists(path):  # there, but unreadable: never answer "not listed" then
            raise OSError(f"cannot read {path} (Courier's .dat files need python3-gdbm): {e}")
        return None
    return None if value is None else value.decode("utf-8", "replace")


def version() -> Optional[str]:
    try:
        out = subprocess.run([os.path.join(sbindir, "courier"), "--version"],
                             capture_output=True, text=True, timeout=5).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return out[1] if len(out) > 1 and out[0] == "Courier" else None


def is_min_version(min_version: str) -> bool:
    """True if the installed Courier is `min_version` or newer."""
    installed = version()
    if installed is None:
        return False
    as_numbers = lambda v: [int(p) if p.isdigit() else 0 for p in v.split(".")]
    return as_numbers(installed) >= as_numbers(min_version)


def me() -> str:
    return _first_line("me") or socket.gethostname()


def defaultdomain() -> str:
    return _first_line("defaultdomain") or me()


def dsnfrom() -> str:
    return _first_line("dsnfrom") or f'"Courier mail server at {me()}" <@>'


def esmtphelo(connection: Optional[socket.socket] = None) -> str:
    """The name to greet with: esmtphelo's setting, with "*" the connection's reverse name."""
    helo = _first_line("esmtphelo") or me()
    if helo == "*" and connection is not None:
        try:
            return socket.gethostbyaddr(connection.getsockname()[0])[0]
        except OSError:
            return me()
    return me() if helo == "*" else helo


def locallowercase() -> bool:
    return os.path.exists(_path("locallowercase"))


def is_local(domain: str) -> bool:
    """Whether `domain` is local: listed in `locals` ("!d" excludes, ".d" a suffix), else me()."""
    domain = domain.lower()
    try:
        with open(_path("locals")) as f:
            entries = [line.strip().lower() for line in f if line.strip()]
    except OSError:
        return domain == me().lower()
    for entry in entries:
        negated = entry.startswith("!")
        name = entry[1:] if negated else entry
        if domain == name or (name.startswith(".") and domain.endswith(name)):
            return not negated
    return False


def is_hosteddomain(domain: str) -> bool:
    """Whether `domain`, or a parent of it given as ".parent", is in hosteddomains.dat."""
    domain = domain.lower()
    if _lookup("hosteddomains.dat", domain) is not None:
        return True
    parts = domain.split(".")
    return any(_lookup("hosteddomains.dat", "." + ".".join(parts[i:])) is not None
               for i in range(1, len(parts)))


def get_alias(address: str) -> Optional[List[str]]:
    """The addresses `address` expands to in aliases.dat, or None."""
    local, _, domain = address.partition("@")
    key = f"{local}@{me()}" if not domain or is_local(domain) else address
    found = _lookup("aliases.dat", key.lower())
    return None if found is None else [a for a in found.split("\n") if a]


def _access_keys(ip: str) -> List[str]:
    """smtpaccess keys for `ip`, most specific first (a.b.c.d, a.b.c, ...; IPv6 by groups)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return []
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address.version == 4:
        parts = str(address).split(".")
        return [".".join(parts[:n]) for n in range(4, 0, -1)]
    groups = address.exploded.split(":")
    return [":" + ":".join(groups[:n]) for n in range(8, 0, -1)]


def smtpaccess(ip: str) -> Optional[str]:
    """The smtpaccess value of `ip` (the most specific entry), or None."""
    for key in _access_keys(ip):
        found = _lookup("smtpaccess.dat", key)
        if found is not None:
            return found
    return None


def get_smtpaccess_val(key: str, ip: str) -> Optional[str]:
    """None if absent, '' if the entry has `key` without value, else its value."""
    value = smtpaccess(ip)
    if value is None:
        return None
    for item in value.split(","):
        name, sep, setting = item.partition("=")
        if name.strip() == key:
            return setting.strip() if sep else ""
    return None


def is_relayed(ip: str) -> bool:
    return get_smtpaccess_val("RELAYCLIENT", ip) is not None


def get_block_val(ip: str) -> Optional[str]:
    return get_smtpaccess_val("BLOCK", ip)


def is_whiteblocked(ip: str) -> bool:
    return get_block_val(ip) == ""


def get_module_config(module_name: str) -> Dict[str, object]:
    """The section `module_name` of pythonfilter-modules.conf, values evaluated as Python."""
    parser = configparser.RawConfigParser()
    parser.optionxform = str  # keep the names' case
    parser.read(MODULE_CONFIG_PATHS)
    if not parser.has_section(module_name):
        return {}
    config = {}
    for name, text in parser.items(module_name):
        try:
            config[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            config[name] = eval(text, {})  # noqa: S307 - the documented format: root's own file
    return config


def apply_module_config(module_name: str, module_namespace: Dict[str, object]) -> None:
    """Set the names of `module_namespace` (a filter's globals()) from its config section."""
    module_namespace.update(get_module_config(module_name))


# The names of older pythonfilter releases.
isMinVersion = is_min_version
getAlias = get_alias
getBlockVal = get_block_val
getSmtpaccessVal = get_smtpaccess_val
isHosteddomain = is_hosteddomain
isLocal = is_local
isRelayed = is_relayed
isWhiteblocked = is_whiteblocked
getModuleConfig = get_module_config
applyModuleConfig = apply_module_config
