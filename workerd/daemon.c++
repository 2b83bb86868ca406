// daemon.c++ - mtapy-workerd: its pools, the admin socket, signals and a graceful stop
#include "daemon.h"

#include "pool-sockets.h"

#include <kj/debug.h>
#include <spdlog/spdlog.h>

#include <sys/un.h>
#include <unistd.h>
#include <algorithm>
#include <csignal>
#include <cstring>

namespace mtapy::workerd {
namespace {

// Type=notify: tell systemd we are ready (sd_notify without linking libsystemd).
void notifySystemd(const char* state) {
  const char* path = getenv("NOTIFY_SOCKET");
  if (path == nullptr || strlen(path) >= sizeof(sockaddr_un::sun_path)) return;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  strcpy(address.sun_path, path);
  if (address.sun_path[0] == '@') address.sun_path[0] = '\0';  // abstract namespace
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  sendto(fd, state, strlen(state), MSG_NOSIGNAL, (sockaddr*)&address,
         socklen_t(offsetof(sockaddr_un, sun_path) + strlen(path)));
  close(fd);
}

}  // namespace

Daemon::Daemon(Config config, std::string workerProgram, kj::AsyncIoContext& io)
    : config_(kj::mv(config)), io_(io), spawner_(kj::mv(workerProgram), config_.pylib) {
  for (const PoolConfig& pool : config_.pools) {
    pools_.push_back(std::make_unique<Pool>(pool, config_.socketDir, spawner_, io));
  }
  linkClientsToPools(config_);
  admin_ = kj::heap<Admin>(config_.adminSocket, pools_, io);
}

kj::Promise<void> Daemon::run() {
  for (auto& pool : pools_) pool->start();
  spdlog::info("mtapy-workerd ready: {} pool(s), sockets in {}/pools, admin on {}",
               pools_.size(), config_.socketDir, config_.adminSocket);
  notifySystemd("READY=1");
  auto serving = admin_->run().exclusiveJoin(ignoreHangups());
  auto& port = io_.unixEventPort;
  auto signalled = port.onSignal(SIGTERM).exclusiveJoin(port.onSignal(SIGINT));
  return signalled.exclusiveJoin(serving.then([]() -> siginfo_t { KJ_UNREACHABLE; }))
      .then([this](siginfo_t info) { return stop(info.si_signo); });
}

kj::Promise<void> Daemon::ignoreHangups() {
  // Its default action would end the daemon, and systemd counts that as a clean exit.
  return io_.unixEventPort.onSignal(SIGHUP).then([this](siginfo_t) {
    spdlog::warn("SIGHUP: reloading is not supported yet; restart mtapy-workerd to load new "
                 "policy code");
    return ignoreHangups();
  });
}

kj::Promise<void> Daemon::stop(int signal) {
  spdlog::info("{}: stopping; calls already queued are answered first", strsignal(signal));
  auto stops = kj::heapArrayBuilder<kj::Promise<void>>(pools_.size());
  for (auto& pool : pools_) stops.add(pool->stop());
  return kj::joinPromises(stops.finish()).then([this]() {
    admin_ = nullptr;
    spdlog::info("mtapy-workerd stopped");
  });
}

}  // namespace mtapy::workerd
