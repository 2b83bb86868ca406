// client.h - the shim's one connection to mtapy-workerd, per MTA process
// DESCRIPTION  Connects lazily, keeps the connection for the life of the process (an Exim
//              process serves a whole SMTP session), and makes a fresh one in a forked child
//              (getpid() differs) without touching the parent's. No threads, no signal handlers,
//              no change to signal dispositions: I/O is non-blocking with MSG_NOSIGNAL, and
//              every wait is bounded by the settings' timeout.
// DIAGNOSTICS  Transport problems throw kj::Exception with a message fit for the MTA's log.
// SEE ALSO     settings.h, proto/wire.h, proto/policy.capnp
#pragma once

#include "proto/policy.capnp.h"
#include "proto/wire.h"

#include <capnp/message.h>

namespace mtapy::shim {

// Send `request` (a proto::Request; id, pool and timeout are filled in here) with `fd`
// attached unless it is -1, and return the daemon's Response.
wire::Received call(capnp::MallocMessageBuilder& request, int fd);

}  // namespace mtapy::shim
