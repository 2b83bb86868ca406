// daemon.h - mtapy-workerd: its pools, the admin socket, signals and a graceful stop
// DESCRIPTION  Runs as root and never runs policy code, and is not on the call path: each
//              pool's workers take calls from the pool's own sockets. The daemon supervises
//              them (pool.h) and serves mtapyctl (admin.h). SIGTERM/SIGINT: refuse new callers,
//              let workers answer every call already queued, then exit 0.
// SEE ALSO     pool.h, admin.h, pool-sockets.h, proto/admin.capnp
#pragma once

#include "admin.h"
#include "config.h"
#include "pool.h"
#include "spawn.h"

#include <kj/async-io.h>

#include <memory>
#include <vector>

namespace mtapy::workerd {

class Daemon {
 public:
  Daemon(Config config, std::string workerProgram, kj::AsyncIoContext& io);

  // Serve until a stop signal has been handled.
  kj::Promise<void> run();

 private:
  kj::Promise<void> stop(int signal);
  kj::Promise<void> ignoreHangups();

  Config config_;
  kj::AsyncIoContext& io_;
  ExecSpawner spawner_;
  std::vector<std::unique_ptr<Pool>> pools_;
  kj::Own<Admin> admin_;
};

}  // namespace mtapy::workerd
