// result-codes.h - the codes the worker's Python half hands back to its C++ half, by name
// DESCRIPTION  mtapy._worker.expand() and mtapy.local_scan.run() return plain tuples whose first
//              item is one of these numbers. The Python side is pylib/mtapy/result_codes.py;
//              pylib/tests/test_result_codes.py reads this file and fails if the two differ.
// SEE ALSO     python-host.c++, pylib/mtapy/_worker.py, pylib/mtapy/local_scan.py
#pragma once

namespace mtapy::worker {

// mtapy._worker.expand(): (code, value, traceback)
constexpr int kExpandValue = 0;       // the policy returned a value
constexpr int kExpandForcedFail = 1;  // it returned None: Exim's forced failure
constexpr int kExpandFailure = 2;     // it raised; the value is "ExceptionType: text"

// mtapy.local_scan.run(): (verdict, message, recipient and header changes, traceback)
constexpr int kScanAccept = 0;      // returned, or raised AcceptMessage
constexpr int kScanReject = 1;      // RejectMessage: 550
constexpr int kScanTempReject = 2;  // TempRejectMessage: 451
constexpr int kScanFailure = 3;     // any other exception: the pool's on_error

}  // namespace mtapy::worker
