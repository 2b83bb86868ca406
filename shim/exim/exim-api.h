// exim-api.h - Exim's local_scan.h for C++ (it has no extern "C" guard of its own)
// DESCRIPTION  Only symbols that Debian's exim4 really exports may be used (nm -D
//              --defined-only /usr/sbin/exim4; notes/exim-4.96.md §2): child_open_* are not.
#pragma once

#define LOCAL_SCAN  // maps string_copy() and friends to the exported *_function symbols
extern "C" {
#include <local_scan.h>
}
#undef LOCAL_SCAN  // it names our schema's union member too
#undef OK          // keep Exim's one-word result macros out of our code: use the k* names below
#undef DEFER
#undef FAIL
#undef ERROR

namespace mtapy::exim {
constexpr int kOk = 0, kDefer = 1, kFail = 2, kError = 3, kFailForced = 4;  // dlfunc results
}
