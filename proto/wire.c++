// wire.c++ - send and receive one framed Cap'n Proto message with blocking I/O
#include "wire.h"

#include <kj/debug.h>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>
#include <ctime>

namespace mtapy::wire {
namespace {


// recvmsg() that also collects one SCM_RIGHTS descriptor; returns bytes read (0 = EOF).
size_t receiveSome(int sock, kj::byte* into, size_t size, kj::AutoCloseFd& fd, Deadline deadline) {
  for (;;) {
    iovec iov{into, size};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      waitFor(sock, POLLIN, deadline);
      continue;
    }
    if (n < 0) fail(std::string("recvmsg: ") + strerror(errno));
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; i++) {
        int got;
        memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
        // Keep the first descriptor; close any extra one a confused peer sent.
        if (fd == nullptr)
          fd = kj::AutoCloseFd(got);
        else
          ::close(got);
      }
    }
    return size_t(n);
  }
}

void receiveExactly(int sock, kj::byte* into, size_t size, kj::AutoCloseFd& fd, Deadline deadline) {
  while (size > 0) {
    size_t n = receiveSome(sock, into, size, fd, deadline);
    if (n == 0) fail("connection closed in the middle of a message");
    into += n;
    size -= n;
  }
}

}  // namespace

int64_t nowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

bool ready(int sock, short events, Deadline deadline) {
  for (;;) {
    int timeout = -1;
    if (deadline != kForever) {
      int64_t left = deadline - nowMs();
      if (left <= 0) return false;
      timeout = int(left);
    }
    pollfd p{sock, events, 0};
    int n = ::poll(&p, 1, timeout);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(std::string("poll: ") + strerror(errno));
    if (n > 0) return true;
  }
}

void waitFor(int sock, short events, Deadline deadline) {
  if (!ready(sock, events, deadline))
    fail("timed out waiting for the other end of the mtapy socket");
}

void fail(const std::string& what) {
  throw kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::heapString(what));
}

Deadline deadlineIn(int64_t milliseconds) {
  return nowMs() + milliseconds;
}

void sendMessage(int sock, capnp::MessageBuilder& message, int fd, Deadline deadline) {
  kj::Array<capnp::word> flat = capnp::messageToFlatArray(message);
  auto bytes = flat.asBytes();
  size_t sent = 0;
  while (sent < bytes.size()) {
    iovec iov{const_cast<kj::byte*>(bytes.begin()) + sent, bytes.size() - sent};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    if (sent == 0 && fd >= 0) {
      memset(control, 0, sizeof control);
      mh.msg_control = control;
      mh.msg_controllen = sizeof control;
      cmsghdr* c = CMSG_FIRSTHDR(&mh);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      memcpy(CMSG_DATA(c), &fd, sizeof fd);
    }
    ssize_t n = ::sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      waitFor(sock, POLLOUT, deadline);
      continue;
    }
    if (n < 0) fail(std::string("sendmsg: ") + strerror(errno));
    sent += size_t(n);
  }
}

capnp::FlatArrayMessageReader Received::reader() const {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = kMaxMessageWords;
  return capnp::FlatArrayMessageReader(words, options);
}

// How much one read takes before the size is known: most requests and answers fit, so a
// message usually costs poll() + one recvmsg().
constexpr size_t kFirstRead = 16 * 1024;

size_t framedSize(kj::ArrayPtr<const kj::byte> bytes, size_t limit) {
  if (bytes.size() < 8) return 0;
  uint32_t segments;
  memcpy(&segments, bytes.begin(), 4);
  if (++segments > 512) fail("malformed message: too many segments");
  size_t tableBytes = (segments + 2) / 2 * 8;  // count + sizes as 32-bit words, padded to 64 bits
  if (bytes.size() < tableBytes) return 0;
  size_t bodyWords = 0;
  for (uint32_t i = 0; i < segments; i++) {
    uint32_t words;
    memcpy(&words, bytes.begin() + 4 + 4 * i, 4);
    bodyWords += words;
  }
  if (bodyWords > limit / 8) fail("message too large");
  return tableBytes + bodyWords * 8;
}

kj::Maybe<Received> receiveMessage(int sock, Deadline deadline) {
  Received got;
  waitFor(sock, POLLIN, deadline);  // an answer is never there at once: don't try first
  auto first = kj::heapArray<kj::byte>(kFirstRead);
  size_t have = 0, total = 0;
  while (total == 0) {  // until the framing says how long the message is
    size_t n = receiveSome(sock, first.begin() + have, first.size() - have, got.fd, deadline);
    if (n == 0 && have == 0) return nullptr;
    if (n == 0) fail("connection closed in the middle of a message");
    have += n;
    total = framedSize(first.slice(0, have));
    if (total == 0 && have == first.size()) fail("malformed message: no framing");
  }
  // The protocol alternates, so nothing may follow this message yet.
  if (have > total) fail("the peer sent more than one message at once");
  got.words = kj::heapArray<capnp::word>(total / 8);
  auto bytes = got.words.asBytes();
  memcpy(bytes.begin(), first.begin(), have);
  receiveExactly(sock, bytes.begin() + have, total - have, got.fd, deadline);
  return kj::mv(got);
}

}  // namespace mtapy::wire
