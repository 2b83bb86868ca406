// datagram.h - one Cap'n Proto message as one Unix datagram, with descriptors and credentials
// DESCRIPTION  A pool's call socket is SOCK_DGRAM: every idle worker of the pool waits on it,
//              and the kernel hands each datagram to one of them, so a call blocking in one
//              worker delays nobody while another is idle. A datagram holds one message in
//              the standard framing; a message over kInlineBytes travels in a sealed memfd
//              attached as the first descriptor after an 8-byte marker, because a Unix
//              datagram cannot outgrow the sender's send buffer (~208 KiB by default).
// SECURITY     Receivers get the sender's uid from SCM_CREDENTIALS, filled in by the kernel.
//              A connected client socket accepts datagrams only from the socket it is
//              connected to, so an answer can come only from its pool's workers or daemon.
// DIAGNOSTICS  Failures throw kj::Exception with a description fit for the MTA's log.
// SEE ALSO     wire.h (deadlines, stream framing), policy.capnp, docs/design.md
#pragma once

#include "wire.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <vector>

namespace mtapy::wire {

// Messages up to this size travel inside the datagram itself.
constexpr size_t kInlineBytes = 64 * 1024;
// At most this many descriptors come with one call, besides the spill memfd: a message body,
// or a Courier message's data file and control files (one per batchsize recipients, 100 by
// default: this allows 12,700 recipients). The kernel's own limit is 253 (SCM_MAX_FD).
constexpr size_t kMaxFds = 128;

// A socket address as the kernel reported it (an autobound client's is abstract: "\0xxxxx").
struct Address {
  sockaddr_un address{};
  socklen_t length = 0;
};

struct Datagram {
  kj::Array<capnp::word> words;
  std::vector<kj::AutoCloseFd> fds;  // the attached descriptors, spill memfd removed
  ucred sender{};                    // valid when the socket has SO_PASSCRED set
  Address from;
  capnp::FlatArrayMessageReader reader() const;
};

// Send `message` on `sock` (to `to` if given, else to its connected peer) with `fds`.
// Throws with errno EAGAIN in the description when the peer's queue stays full past `deadline`.
void sendDatagram(int sock, const Address* to, capnp::MessageBuilder& message,
                  kj::ArrayPtr<const int> fds, Deadline deadline);

// Receive one datagram; null when none arrived before `deadline` (kForever: wait).
// Throws on a datagram that is not one well-framed message.
kj::Maybe<Datagram> receiveDatagram(int sock, Deadline deadline);

// Whether a failed sendDatagram() found the receiver's queue full (the pool is overloaded).
bool wasQueueFull(const kj::Exception& e);
// Whether it found the connected peer gone (the daemon restarted: connect anew).
bool wasPeerGone(const kj::Exception& e);

}  // namespace mtapy::wire
