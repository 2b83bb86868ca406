"""mtapy-workerd end to end: pools, privilege separation, failures and recovery."""

import os

from conftest import pool_toml, write_policy

POLICY = """
    import os
    def whoami():
        return f"{os.getuid()} {__name__}"
"""


def test_policy_runs_as_the_pool_user_with_exim_module_name(make_daemon, stage, users):
    policy = write_policy(stage, "who.py", POLICY)
    d = make_daemon(pool_toml("a", policy, user="mtapy-t1") +
                    pool_toml("b", policy, user="mtapy-t2"))
    assert d.call("a", "whoami") == (0, f"{users['mtapy-t1'].pw_uid} __exim__", "")
    assert d.call("b", "whoami") == (0, f"{users['mtapy-t2'].pw_uid} __exim__", "")
