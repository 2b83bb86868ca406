// generation.h - one generation of a pool: its code, its scoreboard, its workers
// DESCRIPTION  A pool's workers belong to a generation, started by the daemon's start or by a
//              reload, that fixes what they run: the pool's config as it was read, and the
//              policy's code as its first worker snapshotted it (pylib/mtapy/policy_file.py;
//              the daemon seals the snapshot, so a worker that replaces a crashed or recycled
//              one runs the same code). The generation watches its workers through its
//              scoreboard: every kScanInterval it kills a worker past its call's deadline
//              (stack dump first) and answers that caller with on_error; when a worker dies
//              mid-call it answers that caller too, so every call gets an answer.
//              Life: starting (a reload's new generation, held) -> live -> retired or drained;
//              a starting generation whose code fails is abandoned and never takes a call.
// SEE ALSO     pool.h (the generations of a pool), supervisor.h, proto/scoreboard.h
#pragma once

#include "call-kinds.h"
#include "call-stats.h"
#include "config.h"
#include "pool-sockets.h"
#include "proto/admin.capnp.h"
#include "proto/scoreboard.h"
#include "supervisor.h"

#include <kj/async-io.h>

#include <ctime>
#include <string>
#include <vector>

namespace mtapy::workerd {

class Generation final : private Supervisor::Events, private kj::TaskSet::ErrorHandler {
 public:
  // What the pool hears from a generation.
  class Owner {
   public:
    virtual ~Owner() = default;
    virtual void readinessChanged() = 0;  // a worker became ready, or a generation has none
    virtual void startFailed(Generation& g, const std::string& why, const std::string& tb) = 0;
  };

  // `held`: a reload's new generation; its workers take no call before go().
  Generation(uint32_t number, const PoolConfig& config, const PoolSockets& sockets, bool held,
             Spawner& spawner, kj::AsyncIoContext& io, Owner& owner);
  ~Generation() noexcept;

  void start();
  void go();
  // Resolves once every worker has exited (see Supervisor::Ending).
  kj::Promise<void> end(Supervisor::Ending how);

  uint32_t number() const { return number_; }
  const PoolConfig& config() const { return config_; }
  const Supervisor& supervisor() const { return supervisor_; }
  // "sha256 1a2b3c4d5e6f, mtime 2026-12-02 14:00:01 UTC, 3 files", or "" before it loaded.
  const std::string& code() const { return code_; }
  // Figures of its gone and present workers.
  CallStats stats() const;
  void status(proto::GenerationStatus::Builder out, const char* state) const;

 private:
  void workerExited(uint32_t slot, pid_t pid, const std::string& why, bool wasReady) override;
  void readinessChanged() override;
  bool codeLoaded(proto::CodeIdentity::Reader code) override;
  void startFailed(const std::string& why, const std::string& traceback) override;
  kj::Promise<void> scanDeadlines();
  void fitToLoad(int64_t now);
  // Answer the call in `slot` ourselves (its worker died or overran), once. `alive`: a live
  // process holding a line caller's connection (the worker, or its keeper), or 0.
  void answerLost(uint32_t slot, proto::Failure::Kind kind, const std::string& message,
                  pid_t alive);
  void taskFailed(kj::Exception&& exception) override;

  uint32_t number_;
  PoolConfig config_;
  calls::OnError onError_;
  const PoolSockets& sockets_;
  kj::AsyncIoContext& io_;
  Owner& owner_;
  kj::AutoCloseFd codeFd_;
  std::string code_;
  time_t loadedAt_ = 0;
  uint32_t slots_;
  kj::AutoCloseFd tableFd_;
  scoreboard::Table* table_;
  std::vector<uint64_t> answered_;  // per slot: the call number already answered by us
  std::vector<int64_t> lastActive_;  // per slot, with max_idle: when last seen at work (ns)
  std::vector<uint64_t> lastCall_;   // ... and its call number then
  CallStats gone_;                  // of its workers that are gone
  Supervisor supervisor_;
  kj::TaskSet tasks_;
};

}  // namespace mtapy::workerd
