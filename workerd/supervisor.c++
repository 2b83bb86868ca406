// supervisor.c++ - one generation's worker processes: spawn, hello, go, reap, throttle, retire
#include "supervisor.h"

#include "call-kinds.h"
#include "framed-read.h"
#include "proto/worker.capnp.h"

#include <kj/debug.h>
#include <spdlog/spdlog.h>

#include <sys/socket.h>
#include <sys/wait.h>
#include <algorithm>
#include <csignal>
#include <random>

namespace mtapy::workerd {
namespace {

constexpr auto kKillGrace = 200 * kj::MILLISECONDS;  // time for the stack dump before SIGKILL
constexpr auto kRetireGrace = 10 * kj::SECONDS;      // a stopping worker's last call, at most
constexpr auto kFirstBackoff = 1 * kj::SECONDS;
constexpr auto kRespawnDelay = 100 * kj::MILLISECONDS;  // after a kill from outside
constexpr size_t kMaxLine = 4096;  // a worker's output line is cut here in the log
constexpr unsigned kLogEntriesPerSecond = 100;

std::string asLogText(const std::string& text) {
  return calls::printableLines(text, calls::kLogContinuation);
}

std::string describeExit(int status) {
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  int code = WEXITSTATUS(status);
  switch (code) {
    case 70:
      return "could not drop privileges (exit 70)";
    case 71:
      return "could not load the policy (exit 71)";
    case 72:
      return "lost its channel to the daemon (exit 72)";
    case 127:
      return "could not be executed (exit 127)";
    default:
      return "exited with status " + std::to_string(code);
  }
}

// A failure of the policy or the pool's setup, as opposed to a kill from outside.
bool policyFailed(int status, bool timedOut) {
  if (timedOut) return true;
  if (WIFSIGNALED(status)) return WTERMSIG(status) != SIGKILL;
  return WEXITSTATUS(status) != 0;
}

}  // namespace

struct Supervisor::Output {
  pid_t pid;
  kj::Own<kj::AsyncInputStream> stream;
  std::string pending;  // after its last newline, not logged yet
};

struct Supervisor::Worker {
  enum State { kStarting, kReady, kStopping };
  pid_t pid;
  uint32_t slot;
  kj::Maybe<pid_t> reap;  // for UnixEventPort::onChildExit()
  kj::Own<kj::AsyncCapabilityStream> control;
  int controlFd;  // the same, for one-byte words sent without waiting
  State state = kStarting;
  bool timedOut = false;  // killed by start_timeout
  bool ready = false;     // said Hello
  // Its exit was collected while its last words may still come: its pid may be another
  // process's by now, so nothing is sent to it (what it forked is killed by process group).
  bool reaped = false;
  std::string failure, traceback;  // why it could not start, when it said so
  kj::Promise<void> hello = nullptr;

  void signal(int number) const {
    if (!reaped) kill(pid, number);
  }
  // It and what it forked. It leads a process group of its own only once its side of fork()
  // has called setsid(): a worker killed just after it was spawned must be named by pid.
  void killAll() const {
    kill(-pid, SIGKILL);
    signal(SIGKILL);
  }
};

Supervisor::Supervisor(const PoolConfig& config, Spawner& spawner, WorkerSpec descriptors,
                       uint32_t slots, bool held, kj::AsyncIoContext& io, Events& events)
    : config_(config),
      spawner_(spawner),
      descriptors_(descriptors),
      slotsUsed_(slots, false),
      io_(io),
      timer_(io.provider->getTimer()),
      events_(events),
      throttledUntil_(timer_.now()),
      logWindow_(timer_.now()),
      held_(held),
      target_(config.maxIdleMs ? config.minProcesses : config.processLimit),
      tasks_(*this) {}

Supervisor::~Supervisor() noexcept {
  for (auto& w : workers_) w->killAll();
}

void Supervisor::start() {
  ensureWorkers();
}

void Supervisor::go() {
  held_ = false;
  for (auto& w : workers_) {
    if (w->state == Worker::kReady) tell(*w, 'g');
  }
}

void Supervisor::grow() {
  if (target_ >= config_.processLimit) return;
  target_++;
  ensureWorkers();
}

bool Supervisor::retireIdle(pid_t pid) {
  Worker* w = find(pid);
  if (w == nullptr || w->state != Worker::kReady || target_ <= config_.minProcesses) return false;
  target_--;
  w->state = Worker::kStopping;
  tell(*w, 'r');
  spdlog::info("pool {}: worker pid {} idle past max_idle; {} left", config_.name, pid, target_);
  return true;
}

bool Supervisor::allReady() const {
  return workers_.size() == target_ &&
         std::all_of(workers_.begin(), workers_.end(),
                     [](auto& w) { return w->state == Worker::kReady; });
}

void Supervisor::tell(Worker& w, char word) {
  // One byte into a socket buffer nothing else fills: it never blocks. A worker that is gone
  // already is reaped in exited().
  (void)!send(w.controlFd, &word, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
}

bool Supervisor::live() const {
  return std::any_of(workers_.begin(), workers_.end(),
                     [](auto& w) { return w->state != Worker::kStopping; });
}

bool Supervisor::throttled() const {
  return timer_.now() < throttledUntil_;
}

uint32_t Supervisor::throttledSeconds() const {
  auto left = throttledUntil_ - timer_.now();
  return left > 0 * kj::SECONDS ? uint32_t(left / kj::SECONDS) + 1 : 0;
}

pid_t Supervisor::pidIn(uint32_t slot) const {
  for (auto& w : workers_) {
    if (w->slot == slot) return w->reaped ? 0 : w->pid;
  }
  return 0;
}

void Supervisor::ensureWorkers() {
  if (stopping_ || throttled()) return;
  // Until the first worker has loaded the code it snapshotted, it is the only one.
  while (workers_.size() < (codeSealed_ ? target_ : 1)) {
    try {
      spawnOne(!codeSealed_);
    } catch (const kj::Exception& e) {  // out of fds or processes: try again later
      throttle(std::string("cannot start a worker: ") + e.getDescription().cStr());
      return;
    }
  }
}

void Supervisor::throttle(const std::string& why) {
  backoff_ = std::min(std::max(backoff_ * 2, kFirstBackoff), config_.throttleTimeMs * kj::MILLISECONDS);
  throttledUntil_ = timer_.now() + backoff_;
  spdlog::error("pool {}: {}; no new worker for {} ms (backoff up to throttle_time); calls "
                "get on_error meanwhile when no worker is left",
                config_.name, why, backoff_ / kj::MILLISECONDS);
  tasks_.add(timer_.atTime(throttledUntil_).then([this]() {
    ensureWorkers();
    events_.readinessChanged();
  }));
  events_.readinessChanged();
}

void Supervisor::spawnOne(bool takeCode) {
  auto slot = std::find(slotsUsed_.begin(), slotsUsed_.end(), false);
  KJ_ASSERT(slot != slotsUsed_.end(), "no free scoreboard slot");
  WorkerSpec spec = descriptors_;
  spec.slot = uint32_t(slot - slotsUsed_.begin());
  spec.takeCode = takeCode;
  static std::mt19937 random{std::random_device{}()};
  spec.maxUse =
      config_.maxUse + (config_.maxUseJitter ? random() % (config_.maxUseJitter + 1) : 0);
  Spawned spawned = spawner_.spawn(config_, spec);
  *slot = true;
  auto worker = std::make_unique<Worker>();
  Worker& w = *worker;
  w.pid = spawned.pid;
  w.slot = spec.slot;
  w.reap = spawned.pid;
  w.controlFd = spawned.control.get();
  w.control = io_.lowLevelProvider->wrapUnixSocketFd(kj::mv(spawned.control));
  w.hello = awaitHello(w).eagerlyEvaluate(nullptr);
  // Not the worker's: its last words may be read after its exit is handled, so the copy
  // goes on until the pipe's end of file (it and all it forked are gone).
  auto output = kj::heap<Output>();
  output->pid = spawned.pid;
  output->stream = io_.lowLevelProvider->wrapInputFd(kj::mv(spawned.output));
  Output& copy = *output;
  tasks_.add(copyOutput(copy).attach(kj::mv(output)));
  pid_t pid = w.pid;
  tasks_.add(timer_.afterDelay(config_.startTimeoutMs * kj::MILLISECONDS).then([this, pid]() {
    Worker* late = findLive(pid);
    if (late == nullptr || late->state != Worker::kStarting) return;
    late->failure = "worker pid " + std::to_string(pid) + " did not load its policy within " +
                    std::to_string(config_.startTimeoutMs) + " ms (start_timeout)";
    if (!held_) spdlog::error("pool {}: {}; killing it", config_.name, late->failure);
    late->timedOut = true;
    late->state = Worker::kStopping;
    late->signal(SIGKILL);
  }));
  tasks_.add(io_.unixEventPort.onChildExit(w.reap).then([this, pid](int status) {
    Worker* gone = find(pid);
    if (gone == nullptr || gone->ready) {
      exited(pid, status);
      return kj::Promise<void>(kj::READY_NOW);
    }
    // A worker that could not start says why just before it exits, and its exit may be seen
    // before its words: read them first. Killing what it forked closes its channel.
    gone->reaped = true;
    kill(-pid, SIGKILL);
    return kj::mv(gone->hello)
        .exclusiveJoin(timer_.afterDelay(1 * kj::SECONDS))
        .then([this, pid, status]() { exited(pid, status); });
  }));
  workers_.push_back(kj::mv(worker));
}

kj::Promise<void> Supervisor::awaitHello(Worker& w) {
  return readFramed(*w.control, timer_).then(
      [this, &w](kj::Maybe<wire::Received> got) {
        KJ_IF_MAYBE(message, got) {
          auto reader = message->reader();
          auto hello = reader.getRoot<proto::Hello>();
          if (hello.isBootError()) {
            auto failure = hello.getBootError();
            // The policy's words (its exception), for the log and for mtapyctl reload.
            w.failure = calls::printableLines(failure.getMessage());
            w.traceback = calls::printableLines(failure.getTraceback());
            if (!held_) {
              spdlog::error("{}", asLogText(w.failure + (w.traceback.empty() ? "" : "\n") +
                                            w.traceback));
            }
            w.state = Worker::kStopping;  // it exits on its own
            return;
          }
          if (w.state != Worker::kStarting) return;
          if (!codeSealed_) {
            if (!events_.codeLoaded(hello.getCode())) {
              w.failure = "the generation's code snapshot could not be sealed";
              w.state = Worker::kStopping;
              w.signal(SIGKILL);
              return;
            }
            codeSealed_ = true;
            ensureWorkers();
          }
          w.state = Worker::kReady;
          w.ready = true;
          backoff_ = 0 * kj::SECONDS;
          if (!held_) tell(w, 'g');
          events_.readinessChanged();
        }
        // else: it died before saying hello; exited() tells why
      },
      [this, &w](kj::Exception&& e) {
        spdlog::error("pool {}: worker pid {} sent an unreadable hello: {}", config_.name, w.pid,
                      e.getDescription().cStr());
        w.state = Worker::kStopping;
        w.signal(SIGKILL);
      });
}

kj::Promise<void> Supervisor::copyOutput(Output& w) {
  auto buffer = kj::heapArray<char>(kMaxLine);
  auto read = w.stream->tryRead(buffer.begin(), 1, buffer.size());
  return read.then([this, &w, buffer = kj::mv(buffer)](size_t n) mutable -> kj::Promise<void> {
    w.pending.append(buffer.begin(), n);
    // Whole lines only: faulthandler writes a stack dump in many small pieces. What one read
    // brings up to its last newline is one entry, so a traceback written at once stays whole.
    size_t end = n == 0 || w.pending.size() >= kMaxLine ? w.pending.size()
                                                         : w.pending.rfind('\n') + 1;
    std::string text = w.pending.substr(0, end);
    w.pending.erase(0, end);
    while (!text.empty() && text.back() == '\n') text.pop_back();
    if (!text.empty() && admitLogEntry()) {
      spdlog::info("pool {} worker pid {}: {}", config_.name, w.pid, asLogText(text));
    }
    if (n == 0) return kj::READY_NOW;  // the worker and its children closed it
    return copyOutput(w);
  });
}

bool Supervisor::admitLogEntry() {
  // A policy that prints in a loop must not fill the disk: at most kLogEntriesPerSecond a
  // second per pool, and one line saying how many were dropped.
  auto now = timer_.now();
  if (now - logWindow_ >= 1 * kj::SECONDS && logDropped_ == 0) {
    logWindow_ = now;
    logEntries_ = 0;
  }
  if (logEntries_ < kLogEntriesPerSecond) {
    logEntries_++;
    return true;
  }
  if (logDropped_++ == 0) {
    tasks_.add(timer_.atTime(logWindow_ + 1 * kj::SECONDS).then([this]() {
      spdlog::warn("pool {}: dropped {} lines of worker output (over {} a second)", config_.name,
                   logDropped_, kLogEntriesPerSecond);
      logWindow_ = timer_.now();
      logEntries_ = logDropped_ = 0;
    }));
  }
  return false;
}

void Supervisor::killOverrun(pid_t pid) {
  Worker* w = findLive(pid);
  if (w == nullptr) return;
  w->state = Worker::kStopping;
  w->signal(SIGUSR2);  // faulthandler prints the stack to its output, which we log
  tasks_.add(timer_.afterDelay(kKillGrace).then([this, pid]() {
    if (Worker* still = findLive(pid)) still->signal(SIGKILL);
  }));
  events_.readinessChanged();
}

Supervisor::Worker* Supervisor::find(pid_t pid) {
  for (auto& w : workers_) {
    if (w->pid == pid) return w.get();
  }
  return nullptr;
}

Supervisor::Worker* Supervisor::findLive(pid_t pid) {
  Worker* w = find(pid);
  return w != nullptr && !w->reaped ? w : nullptr;
}

void Supervisor::exited(pid_t pid, int status) {
  auto it =
      std::find_if(workers_.begin(), workers_.end(), [pid](auto& w) { return w->pid == pid; });
  if (it == workers_.end()) return;
  Worker& w = **it;
  bool wasReady = w.ready;
  bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  std::string why = describeExit(status);
  if (!clean && !stopping_) spdlog::warn("pool {}: worker pid {} {}", config_.name, pid, why);
  bool failedToStart = !clean && !stopping_ && !w.ready;
  bool throttling = failedToStart && policyFailed(status, w.timedOut);
  std::string failure = w.failure.empty() ? "worker pid " + std::to_string(pid) + " " + why
                                          : w.failure;
  std::string traceback = w.traceback;
  uint32_t slot = w.slot;
  // First its caller is answered (through its keeper, for a line caller, which waits until
  // we close the channel), then what it and its policy forked die with it: workers lead
  // their own process group.
  events_.workerExited(slot, pid, why, wasReady);
  slotsUsed_[slot] = false;
  workers_.erase(it);
  kill(-pid, SIGKILL);
  if (throttling && held_) {
    events_.startFailed(failure, traceback);  // the reload fails; the generation is abandoned
  } else if (throttling) {
    throttle("a worker failed to start");
  } else if (failedToStart) {
    tasks_.add(timer_.afterDelay(kRespawnDelay).then([this]() { ensureWorkers(); }));
  } else {
    ensureWorkers();
  }
  events_.readinessChanged();
  if (stopping_ && workers_.empty()) {
    KJ_IF_MAYBE(f, stopped_) (*f)->fulfill();
    stopped_ = nullptr;
  }
}

kj::Promise<void> Supervisor::end(Ending how) {
  stopping_ = true;
  for (auto& w : workers_) {
    w->state = Worker::kStopping;
    pid_t pid = w->pid;
    if (how == Ending::kAbandon) {
      w->killAll();  // it and what its policy forked while importing
      continue;
    }
    tell(*w, how == Ending::kDrain ? 'd' : 'r');
    tasks_.add(timer_.afterDelay(config_.timeoutMs * kj::MILLISECONDS + kRetireGrace)
                   .then([this, pid]() {
                     Worker* late = findLive(pid);
                     if (late == nullptr) return;
                     spdlog::warn("pool {}: worker pid {} did not stop in time; killing it",
                                  config_.name, pid);
                     late->signal(SIGKILL);
                   }));
  }
  if (workers_.empty()) return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();
  stopped_ = kj::mv(paf.fulfiller);
  return kj::mv(paf.promise);
}

std::vector<Supervisor::View> Supervisor::workers() const {
  std::vector<View> out;
  for (auto& w : workers_) {
    const char* state = w->state == Worker::kStarting   ? "starting"
                        : w->state == Worker::kStopping ? "stopping"
                        : held_                         ? "ready"  // waiting for go()
                                                        : nullptr;
    out.push_back({w->pid, w->slot, state});
  }
  return out;
}

void Supervisor::taskFailed(kj::Exception&& exception) {
  spdlog::error("pool {}: internal error: {}", config_.name, exception.getDescription().cStr());
}

}  // namespace mtapy::workerd
