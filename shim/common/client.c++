// client.c++ - the shim's one connection to mtapy-workerd, per MTA process
#include "client.h"

#include "settings.h"

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

struct Connection {
  int fd = -1;
  pid_t owner = 0;  // the process that connected
  uint64_t nextId = 1;
};
Connection connection;

void disconnect() {
  if (connection.fd >= 0 && connection.owner == getpid()) close(connection.fd);
  connection.fd = -1;
}

void connectToDaemon(const Settings& s) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) wire::fail(std::string("socket: ") + strerror(errno));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  strncpy(address.sun_path, s.socket.c_str(), sizeof address.sun_path - 1);
  // A Unix connect never blocks: EAGAIN means a full backlog, an overloaded daemon.
  if (::connect(fd, (sockaddr*)&address, sizeof address) < 0) {
    int error = errno;
    close(fd);
    wire::fail("cannot reach mtapy-workerd at " + s.socket + ": " + strerror(error) +
               " (is it running? systemctl status mtapy-workerd)");
  }
  connection.fd = fd;
  connection.owner = getpid();
}

}  // namespace

wire::Received call(capnp::MallocMessageBuilder& message, int fd) {
  const Settings& s = settings();
  if (!s.error.empty()) wire::fail(s.error);
  if (connection.owner != getpid()) {
    // A forked child: the inherited descriptor belongs to the parent's conversation.
    if (connection.fd >= 0) close(connection.fd);
    connection.fd = -1;
  }
  auto request = message.getRoot<proto::Request>();
  request.setId(connection.nextId++);
  if (!s.pool.empty()) request.setPool(s.pool);
  request.setTimeoutMs(s.timeoutMs);
  wire::Deadline deadline = wire::deadlineIn(s.timeoutMs + kDaemonMarginMs);

  // A kept connection may have died with a restarted daemon: then send on a new one, once.
  for (int attempt = 0;; attempt++) {
    bool reused = connection.fd >= 0;
    if (!reused) connectToDaemon(s);
    try {
      wire::sendMessage(connection.fd, message, fd, deadline);
      KJ_IF_MAYBE(response, wire::receiveMessage(connection.fd, deadline)) {
        return kj::mv(*response);
      }
      wire::fail("mtapy-workerd closed the connection without answering");
    } catch (const kj::Exception& e) {
      disconnect();
      bool stale = reused && attempt == 0 && e.getDescription().startsWith("sendmsg");
      if (!stale) throw;
    }
  }
}

}  // namespace mtapy::shim
