// pool.h - one pool: its sockets, its scoreboard, its supervisor, and the answers workers owe
// DESCRIPTION  Workers take calls straight from the pool's sockets. The pool watches them
//              through the scoreboard: every kScanInterval it kills a worker past its call's
//              deadline (stack dump first) and answers that caller with on_error; when a worker
//              dies mid-call it answers that caller too, so every call gets an answer. While the
//              pool has no worker (all fail to start) the daemon answers its calls itself, at
//              once, with on_error. Counts and latencies of dead workers are kept for status.
// SEE ALSO     supervisor.h, pool-sockets.h, proto/scoreboard.h, call-kinds.h
#pragma once

#include "call-kinds.h"
#include "config.h"
#include "pool-sockets.h"
#include "proto/admin.capnp.h"
#include "proto/scoreboard.h"
#include "supervisor.h"

#include <kj/async-io.h>
#include <kj/async-unix.h>

#include <map>
#include <string>
#include <vector>

namespace mtapy::workerd {

class Pool final : private Supervisor::Events, private kj::TaskSet::ErrorHandler {
 public:
  Pool(const PoolConfig& config, const std::string& socketDir, Spawner& spawner,
       kj::AsyncIoContext& io);
  ~Pool() noexcept;

  void start();
  // Refuse new callers, let workers answer every call already queued, then end them.
  kj::Promise<void> stop();
  void status(proto::PoolStatus::Builder out);
  const PoolConfig& config() const { return config_; }

 private:
  void workerExited(uint32_t slot, pid_t pid, const std::string& why, bool wasReady) override;
  void readinessChanged() override;
  kj::Promise<void> scanDeadlines();
  // Answer the call in `slot` ourselves (its worker died or overran), once.
  void answerLost(uint32_t slot, proto::Failure::Kind kind, const std::string& message,
                  pid_t alive);
  // What a ${readsocket} caller reads for a failed call: DEFER, or a fail-open pool's value.
  std::string lineAnswer(proto::Request::Which which, proto::Failure::Kind kind,
                         const std::string& message);
  kj::Promise<void> standIn();
  void answerWaiting(proto::Failure::Kind kind, const std::string& message);
  void keep(const scoreboard::Slot& slot);
  void taskFailed(kj::Exception&& exception) override;

  PoolConfig config_;
  calls::OnError onError_;
  kj::AsyncIoContext& io_;
  PoolSockets sockets_;
  uint32_t slots_;
  kj::AutoCloseFd tableFd_;
  scoreboard::Table* table_;
  std::vector<uint64_t> answered_;  // per slot: the call number already answered by us
  Supervisor supervisor_;
  bool standingIn_ = false, stopping_ = false;

  // Figures of workers that are gone, for `mtapyctl status`.
  uint64_t calls_ = 0, failures_ = 0;
  std::map<std::string, std::pair<uint64_t, uint64_t>> perFunction_;
  std::vector<uint32_t> latencies_;  // the latest, of gone workers

  kj::TaskSet tasks_;
};

}  // namespace mtapy::workerd
