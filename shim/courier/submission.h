// submission.h - one message from Courier's submit: its files to the pool, the reply back
// DESCRIPTION  submit connects once per message and writes the data file's path, each control
//              file's path and an empty line; it then reads one SMTP-style reply, possibly
//              multi-line, until we close. The files are opened here, as Courier's user, and
//              their descriptors go to the pool with a doFilter call, so a pool user who cannot
//              read Courier's spool still reads and edits exactly this message; the body never
//              passes through the daemon.
// DIAGNOSTICS  submit has no timeout of its own: every wait here is bounded. Whatever keeps
//              the pool from answering (the daemon down, a hung or crashed filter, an
//              overloaded pool) gives submit a 4xx, so the sender keeps the message and tries
//              again; the reason goes to stderr, which courierfilter sends to syslog.
// SEE ALSO     proto/policy.capnp (DoFilter), pylib/mtapy/_worker.py (do_filter), docs/courier.md
#pragma once

#include "shim/common/client.h"

namespace mtapy::courier {

// Serve the connection `fd` (closed here) through `client`.
void serveSubmission(int fd, shim::Client& client, const shim::Settings& settings);

}  // namespace mtapy::courier
