"""mtapy.result_codes - the codes the worker's Python half hands back to its C++ half.

DESCRIPTION  mtapy._worker.expand() returns (code, value, traceback) and mtapy.local_scan.run()
             returns (verdict, message, ...) as plain tuples; their first item is one of these
             numbers. The C++ side is workerd/worker/result-codes.h (kExpandValue ...);
             pylib/tests/test_result_codes.py fails if a name or a value differs.
"""

# mtapy._worker.expand(): the policy returned a value, returned None (Exim's forced failure),
# or raised.
EXPAND_VALUE, EXPAND_FORCED_FAIL, EXPAND_FAILURE = 0, 1, 2

# mtapy.local_scan.run(): accept, reject (550), temporary reject (451), or the policy failed
# (the pool's on_error).
SCAN_ACCEPT, SCAN_REJECT, SCAN_TEMPREJECT, SCAN_FAILURE = 0, 1, 2, 3
