// client.c++ - a shim's socket to its pool: one per MTA process
#include "client.h"

#include <kj/debug.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>

namespace mtapy::shim {
namespace {

// The daemon answers a timed-out call itself, with a better message, if we wait this long more.
constexpr unsigned kDaemonMarginMs = 1000;

// Whether `answer` answers the request `id` (and not an earlier one).
bool answers(const wire::Datagram& answer, uint64_t id) {
  auto reader = answer.reader();
  return reader.getRoot<proto::Response>().getId() == id;
}

}  // namespace

void stamp(proto::Request::Builder request, uint64_t id, const Settings& s) {
  request.setId(id);
  if (!s.pool.empty()) request.setPool(s.pool);
  request.setTimeoutMs(s.timeoutMs);
}

Client::~Client() { disconnect(); }

void Client::disconnect() {
  if (fd_ >= 0 && owner_ == getpid()) close(fd_);
  fd_ = -1;
}

void Client::connect(const Settings& s) {
  fd_ = connectToPool(s);
  owner_ = getpid();
}

int connectToPool(const Settings& s) {
  std::string path = poolSocket(s);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) wire::fail(std::string("socket: ") + strerror(errno));
  // An address of our own (abstract, chosen by the kernel): answers come back to it.
  sockaddr_un self{};
  self.sun_family = AF_UNIX;
  sockaddr_un pool{};
  pool.sun_family = AF_UNIX;
  strncpy(pool.sun_path, path.c_str(), sizeof pool.sun_path - 1);
  if (bind(fd, (sockaddr*)&self, sizeof(sa_family_t)) < 0 ||
      ::connect(fd, (sockaddr*)&pool, sizeof pool) < 0) {
    int error = errno;
    close(fd);
    if (error == EACCES) {
      wire::fail("uid " + std::to_string(getuid()) + " may not call the pool at " + path +
                 " (add it to that pool's clients in workerd.toml)");
    }
    bool absent = error == ENOENT || error == ECONNREFUSED;
    if (absent && !s.pool.empty()) {  // a reload may have removed the pool
      wire::fail("cannot reach mtapy-workerd: no pool " + s.pool + " at " + path +
                 " (is mtapy-workerd running, with [pools." + s.pool + "] in its workerd.toml?)");
    }
    wire::fail("cannot reach mtapy-workerd at " + path + ": " + strerror(error) +
               (s.pool.empty() && s.socket.empty()
                    ? " (is it running? is uid " + std::to_string(getuid()) +
                          " a client of exactly one pool? else set pool = in shim.conf)"
                    : " (is it running? systemctl status mtapy-workerd)"));
  }
  return fd;
}

wire::Datagram Client::call(capnp::MallocMessageBuilder& message, kj::ArrayPtr<const int> fds,
                            const Settings& s) {
  if (!s.error.empty()) wire::fail(s.error);
  if (owner_ != getpid()) {
    // A forked child: the inherited socket belongs to the parent's conversation.
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  uint64_t id = nextId_++;
  stamp(message.getRoot<proto::Request>(), id, s);
  // A full queue may hold us at most our own timeout; then the pool is overloaded.
  wire::Deadline queued = wire::deadlineIn(s.timeoutMs);
  wire::Deadline deadline = wire::deadlineIn(s.timeoutMs + kDaemonMarginMs);

  // A kept socket may point at the pool of a daemon that restarted: then send anew, once.
  for (int attempt = 0;; attempt++) {
    bool reused = fd_ >= 0;
    if (!reused) connect(s);
    try {
      wire::sendDatagram(fd_, nullptr, message, fds, queued);
      break;
    } catch (const kj::Exception& e) {
      bool stale = reused && attempt == 0 && !wire::wasQueueFull(e);
      disconnect();
      if (!stale) throw;
    }
  }
  for (;;) {
    KJ_IF_MAYBE(answer, wire::receiveDatagram(fd_, deadline)) {
      // An answer to an earlier call that we gave up on (or answered twice): not ours.
      if (answers(*answer, id)) return kj::mv(*answer);
      continue;
    }
    wire::fail("timed out waiting for an answer from mtapy-workerd's pool");
  }
}

namespace {
Client processClient;  // the MTA process's conversation with its pool
}  // namespace

wire::Datagram call(capnp::MallocMessageBuilder& message, int fd) {
  return call(message, fd, settings());
}

wire::Datagram call(capnp::MallocMessageBuilder& message, int fd, const Settings& s) {
  return processClient.call(message, fd >= 0 ? kj::arrayPtr(&fd, 1) : nullptr, s);
}

void prepare(capnp::MallocMessageBuilder& typical) noexcept {
  int pair[2] = {-1, -1};
  try {
    const Settings& s = settings();
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) < 0) return;
    stamp(typical.getRoot<proto::Request>(), 0, s);  // no real call has id 0
    wire::sendDatagram(pair[0], nullptr, typical, nullptr, wire::kForever);
    (void)wire::receiveDatagram(pair[1], wire::kForever);
    capnp::MallocMessageBuilder answer;
    auto response = answer.initRoot<proto::Response>();
    response.setValue(kj::StringPtr("a value").asBytes());
    wire::sendDatagram(pair[1], nullptr, answer, nullptr, wire::kForever);
    KJ_IF_MAYBE(got, wire::receiveDatagram(pair[0], wire::kForever)) {
      if (answers(*got, 0)) {
        auto reader = got->reader();
        (void)reader.getRoot<proto::Response>().getValue().size();
      }
    }
  } catch (...) {
    // Then the first call does this work itself, and reports what fails for it.
  }
  for (int fd : pair) {
    if (fd >= 0) close(fd);
  }
}

}  // namespace mtapy::shim
