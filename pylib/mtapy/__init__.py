"""mtapy - Python mail policy for MTAs, run out of process by mtapy-workerd.

A policy is a plain Python file named in the daemon's config (a pool's ``policy``). In Exim
pools it is imported with ``__name__ == "__exim__"``, so one file can be a module, an Exim
policy and a command-line tool. See README.md for the call contracts.
"""
