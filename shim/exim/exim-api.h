// exim-api.h - Exim's local_scan.h for C++ (it has no extern "C" guard of its own)
// DESCRIPTION  Only symbols that Debian's exim4 really exports may be used (nm -D
//              --defined-only /usr/sbin/exim4; docs/design.md section 3.3): child_open_* are not.
#pragma once

#define LOCAL_SCAN  // maps string_copy() and friends to the exported *_function symbols
extern "C" {
#include <local_scan.h>
}
// Weak references: the library then also loads into programs that are not Exim, which is what
// LD_PRELOAD does to every program of Exim's init script (the "fast first call" drop-in).
// Inside Exim they bind as usual; elsewhere nothing here is ever called.
#pragma weak body_linecount
#pragma weak body_zerocount
#pragma weak expand_string
#pragma weak header_add
#pragma weak header_list
#pragma weak header_remove
#pragma weak interface_address
#pragma weak interface_port
#pragma weak log_write
#pragma weak message_id
#pragma weak receive_add_recipient
#pragma weak receive_remove_recipient
#pragma weak received_protocol
#pragma weak recipients_count
#pragma weak recipients_list
#pragma weak sender_address
#pragma weak sender_host_address
#pragma weak sender_host_authenticated
#pragma weak sender_host_name
#pragma weak sender_host_port
#pragma weak string_copyn_function
#pragma weak string_sprintf_trc

#undef LOCAL_SCAN  // it names our schema's union member too
#undef OK          // keep Exim's one-word result macros out of our code: use the k* names below
#undef DEFER
#undef FAIL
#undef ERROR

namespace mtapy::exim {
// dlfunc results. DEFER (1) and ERROR (3) fail an expansion exactly as FAIL does, plus a line
// in Exim's panic log for each call: the shim reports every failure as FAIL.
constexpr int kOk = 0, kFail = 2, kFailForced = 4;
}
