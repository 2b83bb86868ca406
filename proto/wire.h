// wire.h - send and receive one framed Cap'n Proto message with blocking I/O
// DESCRIPTION  The shim and the worker speak the framing of policy.capnp without an event loop:
//              one sendmsg() per message (MSG_NOSIGNAL, so no SIGPIPE is ever raised in the
//              MTA), an optional fd as SCM_RIGHTS on the first byte, poll() for deadlines.
// DIAGNOSTICS  Every failure throws a kj::Exception whose description says what happened.
// SEE ALSO     policy.capnp, datagram.h (the call sockets), workerd/framed-read.c++ (async side)
#pragma once

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/array.h>
#include <kj/io.h>

#include <cstdint>
#include <string>

namespace mtapy::wire {

// A point on CLOCK_MONOTONIC in milliseconds; kForever waits without limit.
using Deadline = int64_t;
constexpr Deadline kForever = -1;
Deadline deadlineIn(int64_t milliseconds);
int64_t nowMs();

// Whether `sock` became ready for poll() `events` before `deadline`.
bool ready(int sock, short events, Deadline deadline);
// The same, but throws "timed out ..." at the deadline.
void waitFor(int sock, short events, Deadline deadline);

// Larger messages are refused: 16 MiB is far above any header block an MTA sends us.
constexpr size_t kMaxMessageWords = 2 << 20;

// Throw a kj::Exception whose description is exactly `what` (it reaches MTA logs verbatim).
[[noreturn]] void fail(const std::string& what);

// Write `message` to `sock`, attaching `fd` unless it is -1.
void sendMessage(int sock, capnp::MessageBuilder& message, int fd, Deadline deadline);

struct Received {
  kj::Array<capnp::word> words;
  kj::AutoCloseFd fd;  // the attached descriptor, if any
  capnp::FlatArrayMessageReader reader() const;
};

// The byte length of the whole message whose start is `bytes`, from its framing; 0 when
// `bytes` is too short to tell. Throws on framing no honest peer sends, and on a message
// longer than `limit` bytes.
size_t framedSize(kj::ArrayPtr<const kj::byte> bytes, size_t limit = kMaxMessageWords * 8);

// Read one message; null when the peer closed the connection before sending any byte of it.
kj::Maybe<Received> receiveMessage(int sock, Deadline deadline);

}  // namespace mtapy::wire
