// daemon.h - mtapy-workerd: its pools, the admin socket, reloads, signals and a graceful stop
// DESCRIPTION  Runs as root and never runs policy code, and is not on the call path: each
//              pool's workers take calls from the pool's own sockets. The daemon supervises
//              them (pool.h) and serves mtapyctl (admin.h).
//              Reload (SIGHUP, `mtapyctl reload [POOL]`): re-read the config file; if it has
//              any error nothing changes; else pools are added, removed, and every (or the
//              named) pool starts a new generation with its new settings. [daemon] settings
//              other than log_level, and a pool's queue_limit and readsocket, need a restart.
//              SIGTERM/SIGINT: refuse new callers, let workers answer every call already
//              queued, then exit 0.
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

class Daemon final : public AdminActions, private kj::TaskSet::ErrorHandler {
 public:
  Daemon(Config config, std::string workerProgram, kj::AsyncIoContext& io);
  ~Daemon() noexcept;

  // Serve until a stop signal has been handled.
  kj::Promise<void> run();

  void status(proto::Status::Builder out) override;
  kj::Promise<void> reload(std::string pool, proto::ReloadReport::Builder out) override;

 private:
  kj::Promise<void> applyReload(std::string only, proto::ReloadReport::Builder out);
  void noteRestartNeeded(const Config& next, std::vector<std::string>& notes);
  Pool* find(const std::string& name);
  kj::Promise<ReloadResult> remove(const std::string& name);
  void relinkClients();
  kj::Promise<void> reloadOnHangup();
  kj::Promise<void> stop(int signal);
  void taskFailed(kj::Exception&& exception) override;

  Config config_;
  kj::AsyncIoContext& io_;
  ExecSpawner spawner_;
  std::vector<std::unique_ptr<Pool>> pools_;
  struct Removed {
    std::unique_ptr<Pool> pool;
    kj::ForkedPromise<void> stopped;
  };
  std::vector<Removed> removed_;  // stopping; gone once their workers are
  kj::Own<Admin> admin_;
  kj::TimePoint started_;
  kj::ForkedPromise<void> reloads_;  // one reload at a time
  kj::TaskSet tasks_;
};

}  // namespace mtapy::workerd
