// datagram.c++ - one Cap'n Proto message as one Unix datagram, with descriptors and credentials
#include "datagram.h"

#include <kj/debug.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>

namespace mtapy::wire {
namespace {

// Starts a datagram whose message is in the first attached descriptor. No framed message
// starts this way: its first word would claim 2^32 segments.
constexpr uint32_t kSpilled[2] = {0xFFFFFFFF, 0x4C4C4950};  // "PILL"

constexpr char kQueueFull[] = "the pool's queue is full";
constexpr char kPeerGone[] = "the pool's socket is gone";

// A sealed memfd holding `bytes`, for a message too large for one datagram.
kj::AutoCloseFd spill(kj::ArrayPtr<const kj::byte> bytes) {
  int fd = memfd_create("mtapy-message", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) fail(std::string("memfd_create: ") + strerror(errno));
  kj::AutoCloseFd owned(fd);
  for (size_t done = 0; done < bytes.size();) {
    ssize_t n = ::write(fd, bytes.begin() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(std::string("writing a large message: ") + strerror(errno));
    done += size_t(n);
  }
  // The receiver reads it after we may have moved on; nobody may change it meanwhile.
  fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
  return owned;
}

// The whole content of a spilled message; the sender may be hostile, so bound and copy it.
kj::Array<capnp::word> unspill(int fd) {
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) fail("malformed message: spill is no file");
  size_t size = size_t(st.st_size);
  if (size > kMaxMessageWords * 8) fail("message too large");
  if (size % 8 != 0 || size == 0) fail("malformed message: spill size");
  auto words = kj::heapArray<capnp::word>(size / 8);
  auto bytes = words.asBytes();
  for (size_t done = 0; done < size;) {
    ssize_t n = ::pread(fd, bytes.begin() + done, size - done, off_t(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("malformed message: spill shorter than it said");
    done += size_t(n);
  }
  return words;
}

}  // namespace

capnp::FlatArrayMessageReader Datagram::reader() const {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = kMaxMessageWords;
  return capnp::FlatArrayMessageReader(words, options);
}

bool wasQueueFull(const kj::Exception& e) {
  return e.getDescription().startsWith(kQueueFull);
}

bool wasPeerGone(const kj::Exception& e) {
  return e.getDescription().startsWith(kPeerGone);
}

void sendDatagram(int sock, const Address* to, capnp::MessageBuilder& message,
                  kj::ArrayPtr<const int> fds, Deadline deadline) {
  kj::Array<capnp::word> flat = capnp::messageToFlatArray(message);
  auto bytes = flat.asBytes();
  kj::AutoCloseFd spilled;
  int all[kMaxFds + 1];
  size_t count = 0;
  iovec iov{bytes.begin(), bytes.size()};
  if (bytes.size() > kInlineBytes) {
    spilled = spill(bytes);
    all[count++] = spilled;
    iov = {const_cast<uint32_t*>(kSpilled), sizeof kSpilled};
  }
  KJ_REQUIRE(fds.size() <= kMaxFds, "too many descriptors for one datagram");
  for (int fd : fds) all[count++] = fd;

  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (to != nullptr) {
    mh.msg_name = const_cast<sockaddr_un*>(&to->address);
    mh.msg_namelen = to->length;
  }
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * (kMaxFds + 1))];
  if (count > 0) {
    memset(control, 0, sizeof control);
    mh.msg_control = control;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * count);
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * count);
    memcpy(CMSG_DATA(c), all, sizeof(int) * count);
  }
  for (;;) {
    if (::sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0) return;
    if (errno == EINTR) continue;
    if (errno == ECONNREFUSED || errno == ENOTCONN || errno == ECONNRESET || errno == EPIPE) {
      fail(std::string(kPeerGone) + " (its daemon stopped or restarted): sendmsg: " +
           strerror(errno));
    }
    if (errno != EAGAIN) fail(std::string("sendmsg: ") + strerror(errno));
    // The receiving queue is full (every worker busy and queue_limit calls waiting).
    if (!ready(sock, POLLOUT, deadline)) {
      fail(std::string(kQueueFull) + ": every worker is busy and queue_limit calls wait");
    }
  }
}

kj::Maybe<Datagram> receiveDatagram(int sock, Deadline deadline) {
  // One buffer per thread: a thread receives one datagram at a time (workers, Exim processes
  // and mtapy-courierfilter have one thread; mtapyctl's and tests' may have more).
  static thread_local kj::Array<capnp::word> buffer = kj::heapArray<capnp::word>(kInlineBytes / 8);
  Datagram got;
  for (;;) {
    iovec iov{buffer.begin(), buffer.size() * sizeof(capnp::word)};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * (kMaxFds + 1)) +
                                  CMSG_SPACE(sizeof(ucred))];
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_name = &got.from.address;
    mh.msg_namelen = sizeof got.from.address;
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      if (!ready(sock, POLLIN, deadline)) return nullptr;
      continue;
    }
    if (n < 0) fail(std::string("recvmsg: ") + strerror(errno));
    got.from.length = mh.msg_namelen;
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
      if (c->cmsg_level != SOL_SOCKET) continue;
      if (c->cmsg_type == SCM_CREDENTIALS) memcpy(&got.sender, CMSG_DATA(c), sizeof got.sender);
      if (c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; i++) {
        int fd;
        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        got.fds.emplace_back(fd);  // owned at once, so none leaks if we throw below
      }
    }
    if (mh.msg_flags & MSG_CTRUNC) fail("malformed message: too many descriptors");
    if (size_t(n) > iov.iov_len) fail("malformed message: datagram over 64 KiB");
    auto bytes = kj::arrayPtr(reinterpret_cast<kj::byte*>(buffer.begin()), size_t(n));
    if (size_t(n) == sizeof kSpilled && memcmp(bytes.begin(), kSpilled, sizeof kSpilled) == 0) {
      if (got.fds.empty()) fail("malformed message: spilled without its descriptor");
      got.words = unspill(got.fds.front());
      got.fds.erase(got.fds.begin());
      bytes = got.words.asBytes();
    } else {
      got.words = kj::heapArray<capnp::word>(buffer.slice(0, (size_t(n) + 7) / 8));
    }
    if (framedSize(bytes) != bytes.size()) fail("malformed message: framing does not match");
    return kj::mv(got);
  }
}

}  // namespace mtapy::wire
