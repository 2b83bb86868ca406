// filter-loop.h - every message in flight at once, on one thread: submit's side and the pool's
// DESCRIPTION  One epoll loop takes submit's connections, reads each request, opens the
//              message's files and sends its doFilter call on one datagram socket to the pool
//              (submission.h); answers come back on that socket, matched to their message by
//              the call's id, and go to submit. So a message costs no thread, and a wakeup
//              serves every connection and answer that is ready, which is what makes a busy
//              filter cheap. Each message has a deadline: 30 s for submit's request, then the
//              pool's timeout (plus a margin: the daemon answers a timed-out call itself),
//              including the time it waits for a free worker. Past it, submit gets kTempfail.
//              The pool's socket is made on first use, and anew when a send finds it gone
//              (the daemon restarted); the calls sent on the old one then get kTempfail, as
//              their workers are gone with it (else they get it at their deadline).
// SHUTDOWN     stdin's EOF (courierfilter stop) unlinks the socket; the connections already
//              made are served, and the loop returns when none is left.
// SEE ALSO     courierfilter.c++, submission.h, shim/common/client.h (connectToPool)
#pragma once

#include "shim/common/settings.h"

#include <string>

namespace mtapy::courier {

// Serve `listening` (non-blocking) until stdin ends and every message has had its reply.
// `path` is the socket's name, unlinked at stdin's EOF.
void serve(int listening, const std::string& path, const shim::Settings& settings);

}  // namespace mtapy::courier
