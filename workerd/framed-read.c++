// framed-read.c++ - read one framed Cap'n Proto message, and its fd, on the daemon's event loop
#include "framed-read.h"

#include <kj/debug.h>

#include <cstring>

namespace mtapy::workerd {
namespace {

constexpr size_t kFirstRead = 16 * 1024;

struct Reading {
  kj::Array<kj::byte> first = kj::heapArray<kj::byte>(kFirstRead);
  size_t have = 0;
  size_t limit;
  kj::AutoCloseFd fd;
};

// Read until the framing tells the message's size, then the rest of it.
kj::Promise<kj::Maybe<wire::Received>> readRest(kj::AsyncCapabilityStream& stream,
                                                kj::Own<Reading> r) {
  size_t total = wire::framedSize(r->first.slice(0, r->have), r->limit);
  if (total == 0) {
    KJ_REQUIRE(r->have < r->first.size(), "malformed message: no framing");
    auto more = stream.tryReadWithFds(r->first.begin() + r->have, 1, r->first.size() - r->have,
                                      &r->fd, r->fd == nullptr ? 1 : 0);
    return more.then([&stream, r = kj::mv(r)](kj::AsyncCapabilityStream::ReadResult got) mutable {
      if (got.byteCount == 0) {
        kj::throwFatalException(KJ_EXCEPTION(DISCONNECTED, "connection closed mid-message"));
      }
      r->have += got.byteCount;
      return readRest(stream, kj::mv(r));
    });
  }
  // The protocol alternates, so nothing may follow this message yet.
  KJ_REQUIRE(r->have <= total, "the peer sent more than one message at once");
  wire::Received received;
  received.words = kj::heapArray<capnp::word>(total / 8);
  received.fd = kj::mv(r->fd);
  auto bytes = received.words.asBytes();
  memcpy(bytes.begin(), r->first.begin(), r->have);
  if (r->have == total) return kj::Maybe<wire::Received>(kj::mv(received));
  auto rest = bytes.slice(r->have, total);
  return stream.read(rest.begin(), rest.size()).then([received = kj::mv(received)]() mutable {
    return kj::Maybe<wire::Received>(kj::mv(received));
  });
}

}  // namespace

kj::Promise<kj::Maybe<wire::Received>> readFramed(kj::AsyncCapabilityStream& stream,
                                                  kj::Timer& timer, size_t limit) {
  auto r = kj::heap<Reading>();
  r->limit = limit;
  auto first = stream.tryReadWithFds(r->first.begin(), 1, r->first.size(), &r->fd, 1);
  return first.then([&stream, &timer,
                     r = kj::mv(r)](kj::AsyncCapabilityStream::ReadResult got) mutable
                    -> kj::Promise<kj::Maybe<wire::Received>> {
    if (got.byteCount == 0) return kj::Maybe<wire::Received>(nullptr);  // clean end
    r->have = got.byteCount;
    return readRest(stream, kj::mv(r))
        .exclusiveJoin(timer.afterDelay(kMessageCompletion).then([]() -> kj::Maybe<wire::Received> {
          KJ_FAIL_REQUIRE("message not completed within 30 s");
        }));
  });
}

}  // namespace mtapy::workerd
