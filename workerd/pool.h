// pool.h - one pool: its sockets, its generations of workers, reloads, and its stand-in
// DESCRIPTION  Workers take calls straight from the pool's sockets, which outlive every
//              generation: a reload starts a new generation (held, so it takes no call),
//              and only when all of its workers have loaded the new code and passed its
//              self_test() does it go live; the old generation then finishes the calls in
//              flight and exits. A new generation that fails is abandoned and the live one
//              serves on, untouched. While the pool has no worker (all fail to start) the
//              daemon answers its calls itself, at once, with on_error. With reload_on_change
//              an edit of the policy's files reloads the pool on its own.
// SEE ALSO     generation.h, pool-sockets.h, policy-watch.h, daemon.c++ (config reload)
#pragma once

#include "call-stats.h"
#include "config.h"
#include "generation.h"
#include "policy-watch.h"
#include "pool-sockets.h"
#include "proto/admin.capnp.h"

#include <kj/async-io.h>

#include <ctime>
#include <memory>
#include <string>
#include <vector>

namespace mtapy::workerd {

struct ReloadResult {
  proto::PoolReload::Outcome outcome;
  uint32_t generation = 0;
  std::string code, message, traceback;
  uint32_t liveAfterMs = 0, drainedAfterMs = 0;
};

class Pool final : private Generation::Owner, private kj::TaskSet::ErrorHandler {
 public:
  Pool(const PoolConfig& config, const std::string& socketDir, Spawner& spawner,
       kj::AsyncIoContext& io);
  ~Pool() noexcept;

  void start();
  // Start a generation running `config` (this pool's, as re-read). Resolves once it serves
  // and the old one has exited, or once it failed; reloads of one pool run one at a time.
  kj::Promise<ReloadResult> reload(const PoolConfig& config);
  // Refuse new callers, let workers answer every call already queued, then end them.
  kj::Promise<void> stop();
  // A new pool: resolves ADDED once all of its first workers are ready, or FAILED.
  kj::Promise<ReloadResult> started();
  void status(proto::PoolStatus::Builder out);
  // The live generation's config.
  const PoolConfig& config() const { return config_; }

 private:
  kj::Promise<ReloadResult> startGeneration(PoolConfig config);
  kj::Promise<ReloadResult> promote(PoolConfig config, kj::TimePoint asked);
  kj::Promise<void> end(std::unique_ptr<Generation> generation, Supervisor::Ending how);
  void watchPolicy();
  void readinessChanged() override;
  void startFailed(Generation& g, const std::string& why, const std::string& tb) override;
  kj::Promise<void> standIn();
  void answerWaiting(proto::Failure::Kind kind, const std::string& message);
  void taskFailed(kj::Exception&& exception) override;

  PoolConfig config_;
  calls::OnError onError_;
  Spawner& spawner_;
  kj::AsyncIoContext& io_;
  PoolSockets sockets_;
  uint32_t generations_ = 0;             // numbers given so far
  std::unique_ptr<Generation> live_;
  std::unique_ptr<Generation> starting_;  // a reload's, until it is live or abandoned
  std::vector<std::unique_ptr<Generation>> ending_;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> startingSettled_;  // all ready, or failed
  std::string startError_, startTraceback_;
  std::string reloadFailure_;  // shown by status until a reload succeeds
  time_t reloadFailedAt_ = 0;
  kj::ForkedPromise<void> reloads_;  // the last reload asked for; the next waits for it
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> allEnded_;
  CallStats gone_;  // of generations that are gone
  std::unique_ptr<PolicyWatch> watch_;
  bool standingIn_ = false, stopping_ = false;
  kj::TaskSet tasks_;
};

}  // namespace mtapy::workerd
