"""geoip - the country of an IP address, from a CIDR table: a module, an Exim policy, a CLI tool.

DESCRIPTION  The GeoIP example of the old Exim-Python patch, ported to Python 3 and mtapy. The
             table (countries.csv beside this file: "network,country code" lines, longest
             prefix wins) is read once, when the worker imports this file; a reload of the pool
             (mtapyctl reload, or SIGHUP to mtapy-workerd) reads it again.

EXIM         Make this file a pool's policy (workerd.toml: policy = "/etc/mtapy/policies/geoip.py")
             and ask it from an ACL; MTAPY_SO is /usr/lib/mtapy/mtapy_exim.so:

               acl_check_connect:
                 deny  condition = ${dlfunc{MTAPY_SO}{python}{blocked}{$sender_host_address}}
                       message   = no mail accepted from your country
                 warn  set acl_c_country = ${dlfunc{MTAPY_SO}{python}{country}{$sender_host_address}}
                 accept

             blocked() answers "true" or "false", so it can be a condition by itself. An optional
             second argument names the countries to refuse instead of BLOCKED_COUNTRIES below,
             so each ACL may choose: ${dlfunc{MTAPY_SO}{python}{blocked}{$sender_host_address}{ZZ XX}}.
             country() answers None for an address that is not in the table; in Exim that is a
             forced failure, so a `set` or `add_header` using it is skipped (the variable keeps
             its old value). Never use country() directly in `deny condition =`: a forced
             failure there makes the deny fire.

CLI          python3 geoip.py [--table FILE] [--block "ZZ XX"] ADDRESS...
             prints "ADDRESS COUNTRY blocked|allowed" for each address ("-" when not in the
             table); exit status 2 for a malformed address.
"""

import ipaddress
import os
import sys

TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "countries.csv")
BLOCKED_COUNTRIES = frozenset({"ZZ", "XX"})  # what blocked() refuses unless told otherwise


def load(path):
    """Read a country table: {prefix length: {network address as int: code}} per IP version."""
    table = {4: {}, 6: {}}
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            try:
                network, code = (field.strip() for field in line.split(","))
                net = ipaddress.ip_network(network, strict=False)
            except ValueError as e:
                raise ValueError(f"{path}:{number}: expected 'network,code': {e}") from None
            by_length = table[net.version].setdefault(net.prefixlen, {})
            by_length[int(net.network_address)] = code.upper()
    # Longest prefixes first, so the first match is the most specific one.
    return {v: sorted(lengths.items(), reverse=True) for v, lengths in table.items()}


COUNTRIES = load(TABLE)


def _address(ip):
    """The ipaddress object for IP, or None when IP is empty or not an address."""
    try:
        return ipaddress.ip_address(ip.strip())
    except ValueError:
        return None


def country(ip, table=None):
    """The country code of IP, or None when IP is not in the table (or not an address)."""
    address = _address(ip)
    if address is None:
        return None
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    bits = address.max_prefixlen
    value = int(address)
    for length, networks in (table or COUNTRIES)[address.version]:
        code = networks.get(value >> (bits - length) << (bits - length))
        if code is not None:
            return code
    return None


def blocked(ip, countries=None):
    """True when IP's country is in COUNTRIES (a string "ZZ XX" from Exim) or BLOCKED_COUNTRIES."""
    wanted = BLOCKED_COUNTRIES if countries is None else set(countries.upper().split())
    return country(ip) in wanted


def main(argv):
    """The command-line tool: look up each address given."""
    import argparse

    parser = argparse.ArgumentParser(description="Look up addresses in a geoip country table.")
    parser.add_argument("--table", default=TABLE, help="the CSV table (default: %(default)s)")
    parser.add_argument("--block", help='countries to report as blocked, e.g. "ZZ XX"')
    parser.add_argument("addresses", nargs="+", metavar="ADDRESS")
    options = parser.parse_args(argv)
    table = load(options.table)
    refused = set(options.block.upper().split()) if options.block else BLOCKED_COUNTRIES
    status = 0
    for ip in options.addresses:
        if _address(ip) is None:
            print(f"{ip}: not an IP address", file=sys.stderr)
            status = 2
            continue
        code = country(ip, table)
        print(ip, code or "-", "blocked" if code in refused else "allowed")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
