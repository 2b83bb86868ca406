// listener.c++ - a Unix listening socket on the KJ loop whose connections can carry fds
#include "listener.h"

#include "pool-sockets.h"

#include <kj/debug.h>
#include <spdlog/spdlog.h>

#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>

namespace mtapy::workerd {
namespace {

sockaddr_un addressOf(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  KJ_REQUIRE(path.size() < sizeof address.sun_path, "socket path too long", path);
  memcpy(address.sun_path, path.c_str(), path.size() + 1);
  return address;
}

// The socket's folder, created 0755 if missing (e.g. /run/mtapy after a reboot).
void makeParent(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return;
  std::string dir = path.substr(0, slash);
  if (mkdir(dir.c_str(), 0755) < 0 && errno != EEXIST) {
    KJ_FAIL_SYSCALL("mkdir", errno, dir);
  }
}

int bindSocket(const std::string& path, mode_t mode) {
  makeParent(path);
  sockaddr_un address = addressOf(path);
  claimSocketPath(path);

  int fd;
  KJ_SYSCALL(fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  kj::AutoCloseFd owned(fd);
  mode_t old = umask(0777 & ~mode);  // no window in which the socket has looser permissions
  int bound = bind(fd, (sockaddr*)&address, sizeof address);
  umask(old);
  KJ_SYSCALL(bound, "bind", path);  // the socket has `mode` from the umask: no chmod by path
  KJ_SYSCALL(listen(fd, 256));
  return owned.release();
}

}  // namespace

Listener::Listener(const std::string& path, mode_t mode, kj::AsyncIoContext& io)
    : path_(path),
      fd_(bindSocket(path, mode)),
      io_(io),
      observer_(io.unixEventPort, fd_, kj::UnixEventPort::FdObserver::OBSERVE_READ) {}

Listener::~Listener() {
  unlink(path_.c_str());
}

kj::Promise<Accepted> Listener::accept() {
  int fd = accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) {
    if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) {
      return observer_.whenBecomesReadable().then([this]() { return accept(); });
    }
    // EMFILE and friends: wait a little rather than spin; the connection waits in the backlog.
    if (!failing_) {
      spdlog::error("{}: accept failed: {}; retrying every 100 ms", path_, strerror(errno));
      failing_ = true;
    }
    return io_.provider->getTimer().afterDelay(100 * kj::MILLISECONDS).then([this]() {
      return accept();
    });
  }
  if (failing_) spdlog::info("{}: accepting connections again", path_);
  failing_ = false;
  kj::AutoCloseFd owned(fd);
  ucred peer{};
  socklen_t length = sizeof peer;
  KJ_SYSCALL(getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &length));
  using Provider = kj::LowLevelAsyncIoProvider;
  auto stream = io_.lowLevelProvider->wrapUnixSocketFd(
      kj::mv(owned),
      Provider::TAKE_OWNERSHIP | Provider::ALREADY_CLOEXEC | Provider::ALREADY_NONBLOCK);
  return Accepted{kj::mv(stream), peer};
}

}  // namespace mtapy::workerd
