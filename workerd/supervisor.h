// supervisor.h - one pool's worker processes: spawn, hello, reap, throttle, retire, drain
// DESCRIPTION  Keeps process_limit workers of a pool running, each in its own scoreboard slot.
//              A worker is ready once it says Hello on its channel (proto/worker.capnp); it
//              then takes calls straight from its pool's sockets, never through us. A worker
//              that fails before it is ready because of the policy (import error, hung import
//              past start_timeout, boot error) throttles the pool, with a backoff from 1 s up
//              to throttle_time; a worker killed from outside is simply replaced. Each
//              worker's stdout and stderr come to the daemon's log, line by line, prefixed.
// DIAGNOSTICS  Every exit that was not asked for is one log line with the pool, pid and why.
// SEE ALSO     spawn.h (the injected Spawner), pool.c++ (answers a dead worker's caller)
#pragma once

#include "config.h"
#include "spawn.h"

#include <kj/async-io.h>
#include <kj/async-unix.h>

#include <memory>
#include <vector>

namespace mtapy::workerd {

class Supervisor final : private kj::TaskSet::ErrorHandler {
 public:
  // What the pool hears from us.
  class Events {
   public:
    virtual ~Events() = default;
    // Worker `pid` in `slot` is gone; `answered` is false when it died before being ready.
    virtual void workerExited(uint32_t slot, pid_t pid, const std::string& why, bool wasReady) = 0;
    virtual void readinessChanged() = 0;  // live()/throttled() may have changed
  };

  Supervisor(const PoolConfig& config, Spawner& spawner, WorkerSpec descriptors, uint32_t slots,
             kj::AsyncIoContext& io, Events& events);
  ~Supervisor() noexcept;

  void start();
  // Workers that exist and are not stopping.
  bool live() const;
  bool throttled() const;
  uint32_t throttledSeconds() const;
  // Dump the stack of `pid` (faulthandler), then kill it shortly after.
  void killOverrun(pid_t pid);
  // Drain: every worker answers the calls already queued, then exits. Resolves when none is left.
  kj::Promise<void> stop();
  struct View {
    pid_t pid;
    uint32_t slot;
    const char* state;  // "starting", "stopping" or null (ready: the scoreboard tells more)
  };
  std::vector<View> workers() const;
  pid_t pidIn(uint32_t slot) const;

 private:
  struct Worker;
  void ensureWorkers();
  void spawnOne();
  void throttle(const std::string& why);
  kj::Promise<void> awaitHello(Worker& w);
  kj::Promise<void> copyOutput(Worker& w);
  bool admitLogEntry();
  void exited(pid_t pid, int status);
  Worker* find(pid_t pid);
  void taskFailed(kj::Exception&& exception) override;

  const PoolConfig& config_;
  Spawner& spawner_;
  WorkerSpec descriptors_;
  std::vector<bool> slotsUsed_;
  kj::AsyncIoContext& io_;
  kj::Timer& timer_;
  Events& events_;
  std::vector<std::unique_ptr<Worker>> workers_;
  kj::TimePoint throttledUntil_;
  kj::Duration backoff_ = 0 * kj::SECONDS;
  kj::TimePoint logWindow_;
  unsigned logEntries_ = 0, logDropped_ = 0;
  bool stopping_ = false;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> stopped_;
  kj::TaskSet tasks_;
};

}  // namespace mtapy::workerd
