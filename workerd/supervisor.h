// supervisor.h - one generation's worker processes: spawn, hello, go, reap, throttle, retire
// DESCRIPTION  Keeps process_limit workers of one generation of a pool running, each in its
//              own scoreboard slot. The first worker writes the generation's code snapshot;
//              once it is ready the snapshot is sealed and the others start from it. A worker
//              is ready once it says Hello on its channel (proto/worker.capnp); it takes calls
//              straight from its pool's sockets, never through us, once told to go: at once in
//              the live generation, and in a new one (held) only when go() says all are ready.
//              In the live generation a worker that fails before it is ready because of the
//              policy (import error, hung import past start_timeout, boot error) throttles the
//              pool, with a backoff from 1 s up to throttle_time; in a held one it is reported
//              (the reload fails). A worker killed from outside is simply replaced. Each
//              worker's stdout and stderr come to the daemon's log, line by line, prefixed.
// DIAGNOSTICS  Every exit that was not asked for is one log line with the pool, pid and why.
// SEE ALSO     spawn.h (the injected Spawner), pool.c++ (answers a dead worker's caller)
#pragma once

#include "config.h"
#include "proto/worker.capnp.h"
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
    virtual void readinessChanged() = 0;  // live()/throttled()/allReady() may have changed
    // The first worker loaded the code it wrote into the snapshot; seal it. False: kill it.
    virtual bool codeLoaded(proto::CodeIdentity::Reader code) = 0;
    // Held only: a worker could not start because of the policy (why, traceback).
    virtual void startFailed(const std::string& why, const std::string& traceback) = 0;
  };

  // `held`: a new generation, whose workers wait for go().
  Supervisor(const PoolConfig& config, Spawner& spawner, WorkerSpec descriptors, uint32_t slots,
             bool held, kj::AsyncIoContext& io, Events& events);
  ~Supervisor() noexcept;

  void start();
  // Let every worker take calls, now and when replaced.
  void go();
  // All the workers it should have have said Hello.
  bool allReady() const;
  // With max_idle: one worker more, up to process_limit (all are busy); or retire the idle
  // worker `pid`, unless the pool is down to min_processes. Between calls only.
  void grow();
  bool retireIdle(pid_t pid);
  bool takingCalls() const { return !held_ && !stopping_; }
  // Workers that exist and are not stopping.
  bool live() const;
  bool throttled() const;
  uint32_t throttledSeconds() const;
  // Dump the stack of `pid` (faulthandler), then kill it shortly after.
  void killOverrun(pid_t pid);
  // Resolve when no worker is left, after telling each to:
  enum class Ending {
    kRetire,   // finish its call and exit (a reload's old generation)
    kDrain,    // answer the calls already queued, then exit (the daemon stops)
    kAbandon,  // nothing: SIGKILL (a new generation that failed; it has taken no call)
  };
  kj::Promise<void> end(Ending how);
  struct View {
    pid_t pid;
    uint32_t slot;
    const char* state;  // "starting", "ready" (held), "stopping", or null: the scoreboard tells
  };
  std::vector<View> workers() const;
  pid_t pidIn(uint32_t slot) const;

 private:
  struct Worker;
  struct Output;  // a worker's stdout and stderr, copied to the log
  void ensureWorkers();
  void spawnOne(bool takeCode);
  void tell(Worker& w, char word);
  void throttle(const std::string& why);
  kj::Promise<void> awaitHello(Worker& w);
  kj::Promise<void> copyOutput(Output& output);
  bool admitLogEntry();
  void exited(pid_t pid, int status);
  Worker* find(pid_t pid);
  Worker* findLive(pid_t pid);  // not one whose exit was collected: its pid is not its own
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
  bool held_, codeSealed_ = false;
  unsigned target_;  // workers to keep: process_limit, or fewer with max_idle
  bool stopping_ = false;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> stopped_;
  kj::TaskSet tasks_;
};

}  // namespace mtapy::workerd
