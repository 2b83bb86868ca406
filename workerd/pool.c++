// pool.c++ - one pool: its worker processes, its queue, its deadlines and its on_error
#include "pool.h"

#include "framed-read.h"
#include "proto/worker.capnp.h"
#include "spawn.h"

#include <capnp/serialize-async.h>
#include <kj/debug.h>
#include <kj/time.h>
#include <spdlog/spdlog.h>

#include <sys/wait.h>
#include <algorithm>
#include <csignal>
#include <random>

namespace mtapy::workerd {

using Kind = proto::Failure::Kind;

namespace {

constexpr auto kKillGrace = 200 * kj::MILLISECONDS;  // time for the stack dump before SIGKILL
constexpr auto kRetireGrace = 10 * kj::SECONDS;      // for a worker told to exit, before SIGKILL
constexpr size_t kMaxFunctionNames = 1000;           // bounded stats even for junk names

// A worker's next message; its end of stream is a DISCONNECTED error (it died).
kj::Promise<wire::Received> readFromWorker(kj::AsyncCapabilityStream& stream, kj::Timer& timer) {
  return readFramed(stream, timer).then([](kj::Maybe<wire::Received> got) -> wire::Received {
    KJ_IF_MAYBE(message, got) return kj::mv(*message);
    kj::throwFatalException(KJ_EXCEPTION(DISCONNECTED, "the worker closed its socket"));
  });
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
      return "lost its socket to the daemon (exit 72)";
    case 127:
      return "could not be executed (exit 127)";
    default:
      return "exited with status " + std::to_string(code);
  }
}

}  // namespace

Reply failureReply(Kind kind, kj::StringPtr message) {
  auto reply = kj::heap<capnp::MallocMessageBuilder>();
  auto failure = reply->initRoot<proto::Response>().initFailure();
  failure.setKind(kind);
  failure.setMessage(message);
  return reply;
}

struct Pool::Job : public kj::Refcounted {
  uint64_t callerId = 0;
  bool isExpand = true;
  std::string function, messageId;
  capnp::MallocMessageBuilder request;  // the copy a worker gets
  kj::Maybe<kj::AutoCloseFd> body;
  int bodyFd = -1;  // body's number, kept here because writes may complete later
  kj::TimePoint started = kj::origin<kj::TimePoint>(), deadline = kj::origin<kj::TimePoint>();
  Worker* worker = nullptr;  // set while a worker runs it
  kj::Own<kj::PromiseFulfiller<Reply>> done;
};

struct Pool::Worker {
  enum State { kStarting, kIdle, kBusy, kStopping };
  pid_t pid;
  kj::Maybe<pid_t> reap;  // for UnixEventPort::onChildExit()
  kj::Own<kj::AsyncCapabilityStream> stream;
  State state = kStarting;
  uint64_t calls = 0, retireAfter = 0;
  bool ready = false;
  Job* current = nullptr;            // the call it runs, while kBusy
  kj::Promise<void> task = nullptr;  // reading the Hello, or running a Job
};

Pool::Pool(const PoolConfig& config, std::string workerProgram, std::string pylib,
           kj::AsyncIoContext& io)
    : config_(config),
      workerProgram_(kj::mv(workerProgram)),
      pylib_(kj::mv(pylib)),
      io_(io),
      timer_(io.provider->getTimer()),
      throttledUntil_(timer_.now()),
      tasks_(*this) {}

Pool::~Pool() noexcept {
  for (auto& w : workers_) kill(w->pid, SIGKILL);
}

void Pool::start() {
  ensureWorkers();
}

bool Pool::throttled() const {
  return timer_.now() < throttledUntil_;
}

void Pool::ensureWorkers() {
  // A stopping pool still needs workers for calls it has already queued.
  bool queued =
      std::any_of(queue_.begin(), queue_.end(), [](auto& j) { return j->done->isWaiting(); });
  if ((stopping_ && !queued) || throttled()) return;
  while (workers_.size() < config_.processLimit) {
    try {
      spawnOne();
    } catch (const kj::Exception& e) {  // out of fds or processes: try again later
      throttle(std::string("cannot start a worker: ") + e.getDescription().cStr());
      return;
    }
  }
}

void Pool::throttle(const std::string& why) {
  throttledUntil_ = timer_.now() + config_.throttleTimeMs * kj::MILLISECONDS;
  spdlog::error(
      "pool {}: {}; the pool is throttled for {} ms (throttle_time) and answers "
      "on_error meanwhile",
      config_.name, why, config_.throttleTimeMs);
  bool live = std::any_of(workers_.begin(), workers_.end(), [](auto& w) { return w->ready; });
  if (!live) failQueued(Kind::NO_WORKER, "pool " + config_.name + "'s workers fail to start");
  tasks_.add(timer_.atTime(throttledUntil_).then([this]() { ensureWorkers(); }));
}

void Pool::spawnOne() {
  Spawned spawned = spawnWorker(workerProgram_, config_, pylib_);
  auto worker = std::make_unique<Worker>();
  Worker& w = *worker;
  w.pid = spawned.pid;
  w.reap = spawned.pid;
  w.stream = io_.lowLevelProvider->wrapUnixSocketFd(kj::mv(spawned.socket));
  static std::mt19937 random{std::random_device{}()};
  w.retireAfter =
      config_.maxUse + (config_.maxUseJitter ? random() % (config_.maxUseJitter + 1) : 0);
  w.task = awaitHello(w).eagerlyEvaluate(nullptr);
  pid_t started = w.pid;
  tasks_.add(timer_.afterDelay(config_.startTimeoutMs * kj::MILLISECONDS).then([this, started]() {
    Worker* late = find(started);
    if (late == nullptr || late->ready || late->state == Worker::kStopping) return;
    spdlog::error(
        "pool {}: worker pid {} did not load its policy within {} ms (start_timeout); "
        "killing it",
        config_.name, started, config_.startTimeoutMs);
    late->state = Worker::kStopping;
    kill(started, SIGKILL);
  }));
  pid_t pid = w.pid;
  tasks_.add(
      io_.unixEventPort.onChildExit(w.reap).then([this, pid](int status) { exited(pid, status); }));
  workers_.push_back(kj::mv(worker));
}

kj::Promise<void> Pool::awaitHello(Worker& w) {
  return readFromWorker(*w.stream, timer_)
      .then(
          [this, &w](wire::Received message) {
            auto reader = message.reader();
            auto hello = reader.getRoot<proto::Hello>();
            if (hello.isBootError()) {
              auto failure = hello.getBootError();
              spdlog::error("{}{}", failure.getMessage().cStr(),
                            failure.getTraceback().size()
                                ? "\n" + std::string(failure.getTraceback().cStr())
                                : "");
              w.state = Worker::kStopping;  // it exits on its own
              return;
            }
            w.state = Worker::kIdle;
            w.ready = true;
            schedule();
          },
          [this, &w](kj::Exception&& e) {
            // It died before saying hello (exited() tells why), or said something unreadable.
            if (e.getType() != kj::Exception::Type::DISCONNECTED) {
              spdlog::error("pool {}: worker pid {} sent an unreadable hello: {}", config_.name,
                            w.pid, e.getDescription().cStr());
            }
            w.state = Worker::kStopping;
            kill(w.pid, SIGKILL);
          });
}

kj::Promise<Reply> Pool::call(proto::Request::Reader request, kj::Maybe<kj::AutoCloseFd> body) {
  unsigned timeoutMs = config_.timeoutMs;
  if (request.getTimeoutMs() > 0) timeoutMs = std::min(timeoutMs, unsigned(request.getTimeoutMs()));
  kj::Own<Job> job = newJob(request, kj::mv(body), timeoutMs);
  auto paf = kj::newPromiseAndFulfiller<Reply>();
  job->done = kj::mv(paf.fulfiller);
  KJ_IF_MAYBE(refused, refusal()) {
    job->done->fulfill(kj::mv(*refused));
  } else {
    queue_.push_back(kj::addRef(*job));
    schedule();
  }
  Job& j = *job;
  auto deadline = timer_.atTime(job->deadline).then([this, &j, timeoutMs]() {
    bool running = j.worker != nullptr;
    if (running) overran(j);
    // The queue may now hold nothing but expired calls: a stopping pool can finish.
    tasks_.add(kj::evalLater([this]() { checkStopped(); }));
    return failureReply(Kind::TIMEOUT, j.function + " did not answer within " +
                                           std::to_string(timeoutMs) + " ms" +
                                           (running ? "" : " (no free worker)"));
  });
  return paf.promise.exclusiveJoin(kj::mv(deadline))
      .then([this, job = kj::mv(job)](Reply reply) mutable { return finish(*job, kj::mv(reply)); });
}

kj::Own<Pool::Job> Pool::newJob(proto::Request::Reader request, kj::Maybe<kj::AutoCloseFd> body,
                                unsigned timeoutMs) {
  auto job = kj::refcounted<Job>();
  job->callerId = request.getId();
  job->isExpand = request.isExpand();
  job->function = job->isExpand ? std::string(request.getExpand().getFunction().asChars().begin(),
                                              request.getExpand().getFunction().size())
                                : "local_scan";
  job->messageId = request.getMessageId();
  job->request.setRoot(request);  // a copy: the caller's message may go away any time now
  job->request.getRoot<proto::Request>().setId(nextJobId_++);
  KJ_IF_MAYBE(fd, body) job->bodyFd = fd->get();
  job->body = kj::mv(body);
  // The loop's cached time is good enough for deadlines, not for microsecond latencies.
  job->started = kj::systemPreciseMonotonicClock().now();
  job->deadline = timer_.now() + timeoutMs * kj::MILLISECONDS;
  return job;
}

kj::Maybe<Reply> Pool::refusal() {
  if (stopping_) return failureReply(Kind::SHUTTING_DOWN, "mtapy-workerd is stopping");
  bool live = std::any_of(workers_.begin(), workers_.end(),
                          [](auto& w) { return w->state != Worker::kStopping; });
  if (!live && throttled()) {
    return failureReply(Kind::NO_WORKER, "pool " + config_.name +
                                             " has no worker: its workers fail to start (see "
                                             "mtapy-workerd's log)");
  }
  // queue_limit counts calls that must wait: those beyond the workers idle right now.
  size_t idle = size_t(std::count_if(workers_.begin(), workers_.end(),
                                     [](auto& w) { return w->state == Worker::kIdle; }));
  size_t ahead = size_t(
      std::count_if(queue_.begin(), queue_.end(), [](auto& q) { return q->done->isWaiting(); }));
  if (ahead + 1 > idle + config_.queueLimit) {
    return failureReply(Kind::OVERLOADED, "pool " + config_.name +
                                              " is overloaded: " + std::to_string(ahead) +
                                              " calls already wait (queue_limit)");
  }
  return nullptr;
}

void Pool::schedule() {
  if (dispatchPending_) return;
  dispatchPending_ = true;
  tasks_.add(kj::evalLater([this]() {
    dispatchPending_ = false;
    dispatch();
  }));
}

void Pool::dispatch() {
  for (auto& w : workers_) {
    if (w->state != Worker::kIdle) continue;
    while (!queue_.empty() && !queue_.front()->done->isWaiting()) queue_.pop_front();
    if (queue_.empty()) break;
    kj::Own<Job> job = kj::mv(queue_.front());
    queue_.pop_front();
    w->task = run(*w, kj::mv(job)).eagerlyEvaluate(nullptr);
  }
  checkStopped();
}

kj::Promise<void> Pool::run(Worker& w, kj::Own<Job> job) {
  w.state = Worker::kBusy;
  w.calls++;
  w.current = job.get();
  job->worker = &w;
  // The fd array must outlive a write that completes later: point into the (heap) Job.
  kj::ArrayPtr<const int> fds = job->bodyFd >= 0 ? kj::arrayPtr(&job->bodyFd, 1) : nullptr;
  auto sent = capnp::writeMessage(*w.stream, fds, job->request);
  kj::Own<Job> forError = kj::addRef(*job);
  return sent.then([this, &w]() { return readFromWorker(*w.stream, timer_); })
      .then(
          [this, &w, job = kj::mv(job)](wire::Received message) mutable {
            auto reply = kj::heap<capnp::MallocMessageBuilder>();
            auto reader = message.reader();
            reply->setRoot(reader.getRoot<proto::Response>());
            job->worker = nullptr;
            w.current = nullptr;
            job->done->fulfill(kj::mv(reply));
            w.state = Worker::kIdle;
            if (w.calls >= w.retireAfter) retire(w);
            schedule();
          },
          [this, &w, job = kj::mv(forError)](kj::Exception&& e) mutable {
            // EOF (it died), or an answer we cannot read (too large, garbage): either way this
            // worker is done for; exited() reaps and replaces it.
            job->worker = nullptr;
            w.current = nullptr;
            w.state = Worker::kStopping;
            kill(w.pid, SIGKILL);
            std::string why =
                e.getType() == kj::Exception::Type::DISCONNECTED
                    ? "died during the call"
                    : std::string("gave an unreadable answer: ") + e.getDescription().cStr();
            job->done->fulfill(failureReply(Kind::WORKER_CRASHED,
                                            "worker pid " + std::to_string(w.pid) + " " + why));
          });
}

void Pool::retire(Worker& w) {
  w.state = Worker::kStopping;
  w.stream = nullptr;  // end of file: the worker exits 0
  pid_t pid = w.pid;
  tasks_.add(timer_.afterDelay(kRetireGrace).then([this, pid]() {
    if (find(pid) == nullptr) return;
    spdlog::warn("pool {}: worker pid {} did not exit when told to; killing it", config_.name, pid);
    kill(pid, SIGKILL);
  }));
}

void Pool::overran(Job& job) {
  Worker& w = *job.worker;
  job.worker = nullptr;
  w.current = nullptr;
  spdlog::warn(
      "pool {}: {} overran its deadline in worker pid {}; its Python stack follows, "
      "then it is killed",
      config_.name, job.function, w.pid);
  kill(w.pid, SIGUSR2);  // faulthandler prints the stack to our stderr
  w.state = Worker::kStopping;
  w.task = nullptr;
  pid_t pid = w.pid;
  tasks_.add(timer_.afterDelay(kKillGrace).then([this, pid]() {
    if (find(pid) != nullptr) kill(pid, SIGKILL);
  }));
}

Pool::Worker* Pool::find(pid_t pid) {
  for (auto& w : workers_) {
    if (w->pid == pid) return w.get();
  }
  return nullptr;
}

void Pool::exited(pid_t pid, int status) {
  auto it =
      std::find_if(workers_.begin(), workers_.end(), [pid](auto& w) { return w->pid == pid; });
  if (it == workers_.end()) return;
  bool ready = (*it)->ready;
  if (Job* job = (*it)->current) {  // it died before we saw the end of its socket
    job->worker = nullptr;
    if (job->done->isWaiting()) {
      job->done->fulfill(failureReply(
          Kind::WORKER_CRASHED,
          "worker pid " + std::to_string(pid) + " " + describeExit(status) + " during the call"));
    }
  }
  bool expected =
      (*it)->state == Worker::kStopping && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  workers_.erase(it);
  if (!expected && !stopping_) {
    spdlog::warn("pool {}: worker pid {} {}", config_.name, pid, describeExit(status));
  }
  if (!ready && !stopping_) throttle("a worker failed to start");
  ensureWorkers();
  checkStopped();
}

void Pool::failQueued(Kind kind, const std::string& message) {
  for (auto& job : queue_) {
    if (job->done->isWaiting()) job->done->fulfill(failureReply(kind, message));
  }
  queue_.clear();
}

Reply Pool::finish(Job& job, Reply reply) {
  auto response = reply->getRoot<proto::Response>();
  response.setId(job.callerId);
  auto micros = (kj::systemPreciseMonotonicClock().now() - job.started) / kj::MICROSECONDS;
  latencyMicros_[latencyCount_++ % latencyMicros_.size()] =
      uint32_t(std::min<int64_t>(micros, UINT32_MAX));
  calls_++;
  auto& counts = perFunction_.size() < kMaxFunctionNames || perFunction_.count(job.function)
                     ? perFunction_[job.function]
                     : perFunction_["(other)"];
  counts.first++;
  if (!response.isFailure()) return reply;

  failures_++;
  counts.second++;
  auto failure = response.getFailure();
  std::string id = job.messageId.empty() ? "" : " (message " + job.messageId + ")";
  std::string tb =
      failure.getTraceback().size() ? "\n" + std::string(failure.getTraceback().cStr()) : "";
  spdlog::error("pool {}: {}{} failed: {}{}", config_.name, job.function, id,
                failure.getMessage().cStr(), tb);
  if (config_.onError == OnError::kAccept) {
    if (job.isExpand) {
      response.setValue(kj::arrayPtr(reinterpret_cast<const kj::byte*>(config_.onErrorValue.data()),
                                     config_.onErrorValue.size()));
    } else {
      response.initScan().setVerdict(proto::ScanResult::Verdict::ACCEPT);
    }
  }
  return reply;
}

kj::Promise<void> Pool::stop() {
  stopping_ = true;
  auto paf = kj::newPromiseAndFulfiller<void>();
  stopped_ = kj::mv(paf.fulfiller);
  checkStopped();
  return kj::mv(paf.promise);
}

void Pool::checkStopped() {
  if (!stopping_) return;
  bool busy = std::any_of(workers_.begin(), workers_.end(),
                          [](auto& w) { return w->state == Worker::kBusy; });
  bool waiting =
      std::any_of(queue_.begin(), queue_.end(), [](auto& j) { return j->done->isWaiting(); });
  if (busy || waiting) return;
  for (auto& w : workers_) {
    if (w->state != Worker::kStopping) {
      w->task = nullptr;
      retire(*w);
    }
  }
  if (workers_.empty()) {
    KJ_IF_MAYBE(f, stopped_) (*f)->fulfill();
    stopped_ = nullptr;
  }
}

void Pool::status(proto::PoolStatus::Builder out) {
  out.setName(config_.name);
  out.setUser(config_.user);
  out.setPolicy(config_.policy);
  auto left = throttledUntil_ - timer_.now();
  out.setThrottledSeconds(left > 0 * kj::SECONDS ? uint32_t(left / kj::SECONDS) + 1 : 0);
  out.setQueued(uint32_t(std::count_if(queue_.begin(), queue_.end(),
                                       [](auto& job) { return job->done->isWaiting(); })));
  out.setCalls(calls_);
  out.setFailures(failures_);
  size_t n = std::min(latencyCount_, latencyMicros_.size());
  if (n > 0) {
    std::vector<uint32_t> sorted(latencyMicros_.begin(), latencyMicros_.begin() + n);
    std::sort(sorted.begin(), sorted.end());
    out.setP50Micros(sorted[n / 2]);
    out.setP99Micros(sorted[std::min(n - 1, n * 99 / 100)]);
  }
  static const char* names[] = {"starting", "idle", "busy", "stopping"};
  auto workers = out.initWorkers(unsigned(workers_.size()));
  for (unsigned i = 0; i < workers_.size(); i++) {
    workers[i].setPid(workers_[i]->pid);
    workers[i].setState(names[workers_[i]->state]);
    workers[i].setCalls(workers_[i]->calls);
  }
  auto functions = out.initFunctions(unsigned(perFunction_.size()));
  unsigned i = 0;
  for (auto& [name, counts] : perFunction_) {
    functions[i].setName(name);
    functions[i].setCalls(counts.first);
    functions[i++].setFailures(counts.second);
  }
}

void Pool::taskFailed(kj::Exception&& exception) {
  spdlog::error("pool {}: internal error: {}", config_.name, exception.getDescription().cStr());
}

}  // namespace mtapy::workerd
