// framed-read.h - read one framed Cap'n Proto message, and its fd, on the daemon's event loop
// DESCRIPTION  capnp::tryReadMessage() reads the segment table and the body separately; on this
//              path (every call crosses the daemon twice) one read of up to 16 KiB usually
//              holds the whole message, so a message costs one read instead of two or three.
//              The framing rules are proto/wire.c++'s (framedSize), shared with the shim.
#pragma once

#include "proto/wire.h"

#include <kj/async-io.h>
#include <kj/timer.h>

namespace mtapy::workerd {

// A message begun must be complete this soon: a peer that stalls mid-message ties up memory.
constexpr auto kMessageCompletion = 30 * kj::SECONDS;

// The next message on `stream` with the fd sent along, if any; null at a clean end of stream.
// Waits for its first byte without limit; messages over `limit` bytes are refused.
kj::Promise<kj::Maybe<wire::Received>> readFramed(kj::AsyncCapabilityStream& stream,
                                                  kj::Timer& timer,
                                                  size_t limit = wire::kMaxMessageWords * 8);

}  // namespace mtapy::workerd
