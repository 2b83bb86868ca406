// pool.h - one pool: its worker processes, its queue, its deadlines and its on_error
// DESCRIPTION  A Pool keeps process_limit workers of one policy running as one user, hands each
//              call to an idle worker (or queues it, up to queue_limit), kills a worker that
//              overruns the deadline (stack dump first, then SIGKILL) and replaces workers that
//              exit. Every failure becomes one log line and the pool's on_error answer.
// DIAGNOSTICS  A worker that exits before it is ready throttles this pool for throttle_time;
//              meanwhile calls get on_error at once. Other pools and the daemon go on.
// SEE ALSO     spawn.c++, worker/worker-main.c++, proto/worker.capnp
#pragma once

#include "config.h"
#include "proto/admin.capnp.h"
#include "proto/policy.capnp.h"

#include <capnp/message.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>

#include <array>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mtapy::workerd {

using Reply = kj::Own<capnp::MallocMessageBuilder>;  // a proto::Response

// A Response holding only a Failure; `id` is set by the caller.
Reply failureReply(proto::Failure::Kind kind, kj::StringPtr message);

class Pool final : private kj::TaskSet::ErrorHandler {
 public:
  Pool(const PoolConfig& config, std::string workerProgram, std::string pylib,
       kj::AsyncIoContext& io);
  ~Pool() noexcept;

  void start();

  // Run one call. Always resolves, with the policy's answer or the on_error answer.
  kj::Promise<Reply> call(proto::Request::Reader request, kj::Maybe<kj::AutoCloseFd> body);

  // Finish queued and running calls, then end every worker.
  kj::Promise<void> stop();

  void status(proto::PoolStatus::Builder out);
  const PoolConfig& config() const { return config_; }

 private:
  struct Job;
  struct Worker;

  kj::Own<Job> newJob(proto::Request::Reader request, kj::Maybe<kj::AutoCloseFd> body,
                      unsigned timeoutMs);
  kj::Maybe<Reply> refusal();
  void spawnOne();
  void ensureWorkers();
  void throttle(const std::string& why);
  void schedule();
  void dispatch();
  kj::Promise<void> awaitHello(Worker& worker);
  kj::Promise<void> run(Worker& worker, kj::Own<Job> job);
  void retire(Worker& worker);
  void overran(Job& job);
  void exited(pid_t pid, int status);
  void failQueued(proto::Failure::Kind kind, const std::string& message);
  Reply finish(Job& job, Reply reply);
  bool throttled() const;
  void checkStopped();
  Worker* find(pid_t pid);
  void taskFailed(kj::Exception&& exception) override;

  PoolConfig config_;
  std::string workerProgram_, pylib_;
  kj::AsyncIoContext& io_;
  kj::Timer& timer_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::deque<kj::Own<Job>> queue_;
  kj::TimePoint throttledUntil_;
  bool stopping_ = false, dispatchPending_ = false;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> stopped_;

  // Figures for `mtapyctl status`.
  uint64_t calls_ = 0, failures_ = 0, nextJobId_ = 1;
  std::map<std::string, std::pair<uint64_t, uint64_t>> perFunction_;
  std::array<uint32_t, 1024> latencyMicros_{};
  size_t latencyCount_ = 0;

  kj::TaskSet tasks_;
};

}  // namespace mtapy::workerd
