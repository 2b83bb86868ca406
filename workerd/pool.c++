// pool.c++ - one pool: its sockets, its scoreboard, its supervisor, and the answers workers owe
#include "pool.h"

#include "proto/datagram.h"
#include "worker/line-protocol.h"

#include <capnp/message.h>
#include <kj/debug.h>
#include <spdlog/spdlog.h>

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <algorithm>
#include <cstring>
#include <ctime>

namespace mtapy::workerd {
namespace {

using Kind = proto::Failure::Kind;

constexpr auto kScanInterval = 100 * kj::MILLISECONDS;  // deadline precision
constexpr size_t kKeptLatencies = 1024;
constexpr size_t kMaxFunctionNames = 1000;  // bounded stats even for junk names

int64_t monotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// A worker may write anything into its slot: read strings with a bound.
std::string bounded(const char* text, size_t size) {
  return std::string(text, strnlen(text, size));
}

// A consistent copy of the call in `slot` (seqlock); false when the worker was mid-write.
bool readCall(const scoreboard::Slot& slot, scoreboard::Call& out) {
  for (int attempt = 0; attempt < 100; attempt++) {
    uint32_t before = slot.seq.load(std::memory_order_acquire);
    if (before & 1) continue;
    memcpy(&out, &slot.call, sizeof out);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (slot.seq.load(std::memory_order_relaxed) == before) return true;
  }
  return false;
}

kj::AutoCloseFd newTable(uint32_t slots) {
  int fd = memfd_create("mtapy-scoreboard", MFD_CLOEXEC);
  if (fd < 0) KJ_FAIL_SYSCALL("memfd_create", errno);
  kj::AutoCloseFd owned(fd);
  KJ_SYSCALL(ftruncate(fd, off_t(scoreboard::tableBytes(slots))));
  return owned;
}

scoreboard::Table* mapTable(int fd, uint32_t slots) {
  void* mapped =
      mmap(nullptr, scoreboard::tableBytes(slots), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mapped == MAP_FAILED) KJ_FAIL_SYSCALL("mmap", errno);
  auto* table = static_cast<scoreboard::Table*>(mapped);
  table->magic = scoreboard::kMagic;
  table->slotCount = slots;
  return table;
}

// Write `text` to descriptor `fd` of live process `pid` (a worker's ${readsocket} connection).
void writeToConnectionOf(pid_t pid, int fd, const std::string& text) {
  int process = int(syscall(SYS_pidfd_open, pid, 0));
  if (process < 0) return;
  int connection = int(syscall(SYS_pidfd_getfd, process, fd, 0));
  close(process);
  if (connection < 0) return;
  (void)!send(connection, text.data(), text.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  shutdown(connection, SHUT_WR);  // Exim's read ends here even while the worker holds it
  close(connection);
}

}  // namespace

Pool::Pool(const PoolConfig& config, const std::string& socketDir, Spawner& spawner,
           kj::AsyncIoContext& io)
    : config_(config),
      onError_{config.onError == OnError::kAccept, config.onErrorValue},
      io_(io),
      sockets_(config_, socketDir),
      slots_(config.processLimit),
      tableFd_(newTable(slots_)),
      table_(mapTable(tableFd_, slots_)),
      answered_(slots_, 0),
      supervisor_(config_, spawner,
                  WorkerSpec{0, 0, sockets_.calls.get(), tableFd_.get(),
                             sockets_.lines == nullptr ? -1 : sockets_.lines.get()},
                  slots_, io, *this),
      tasks_(*this) {}

Pool::~Pool() noexcept {
  munmap(table_, scoreboard::tableBytes(slots_));
}

void Pool::start() {
  supervisor_.start();
  tasks_.add(scanDeadlines());
}

kj::Promise<void> Pool::scanDeadlines() {
  return io_.provider->getTimer().afterDelay(kScanInterval).then([this]() {
    int64_t now = monotonicNs();
    for (uint32_t i = 0; i < slots_; i++) {
      scoreboard::Slot& slot = table_->slots[i];
      scoreboard::Call call;
      if (slot.state.load(std::memory_order_acquire) != scoreboard::kBusy) continue;
      if (!readCall(slot, call) || call.deadlineNs > now || answered_[i] == call.number) continue;
      pid_t pid = supervisor_.pidIn(i);
      if (pid == 0) continue;
      std::string function = bounded(call.function, sizeof call.function);
      spdlog::warn("pool {}: {} overran its deadline in worker pid {}; its Python stack "
                   "follows, then it is killed",
                   config_.name, function, pid);
      answerLost(i, Kind::TIMEOUT,
                 function + " did not answer within " +
                     std::to_string((call.deadlineNs - call.startedNs + 500000) / 1000000) + " ms",
                 pid);
      supervisor_.killOverrun(pid);
    }
    return scanDeadlines();
  });
}

void Pool::answerLost(uint32_t index, Kind kind, const std::string& message, pid_t alive) {
  scoreboard::Call call;
  if (!readCall(table_->slots[index], call)) return;
  answered_[index] = call.number;
  spdlog::error("{}", calls::failureLine(config_.name,
                                         bounded(call.function, sizeof call.function).c_str(),
                                         bounded(call.messageId, sizeof call.messageId).c_str(),
                                         message.c_str(), ""));
  auto which = proto::Request::Which(call.kind);
  if (call.connection >= 0) {
    if (alive) writeToConnectionOf(alive, call.connection, lineAnswer(which, kind, message));
    return;
  }
  if (call.addressLength == 0 || call.addressLength > sizeof call.address) return;
  capnp::MallocMessageBuilder answer;
  auto response = answer.initRoot<proto::Response>();
  response.setId(call.requestId);
  calls::answerFailure(response, which, kind, message, onError_);
  wire::Address to;
  to.address.sun_family = AF_UNIX;
  memcpy(to.address.sun_path, call.address, call.addressLength);
  to.length = socklen_t(sizeof(sa_family_t) + call.addressLength);
  try {
    wire::sendDatagram(sockets_.calls, &to, answer, nullptr, wire::deadlineIn(0));
  } catch (const kj::Exception&) {
    // The caller is gone.
  }
}

std::string Pool::lineAnswer(proto::Request::Which which, Kind kind,
                             const std::string& message) {
  capnp::MallocMessageBuilder answer;
  auto response = answer.initRoot<proto::Response>();
  calls::answerFailure(response, which, kind, message, onError_);
  return worker::readsocketReply(response);
}

void Pool::workerExited(uint32_t index, pid_t pid, const std::string& why, bool wasReady) {
  scoreboard::Slot& slot = table_->slots[index];
  scoreboard::Call call;
  if (slot.state.load(std::memory_order_acquire) == scoreboard::kBusy && readCall(slot, call) &&
      answered_[index] != call.number) {
    answerLost(index, Kind::WORKER_CRASHED,
               "worker pid " + std::to_string(pid) + " " + why + " during the call", 0);
  }
  keep(slot);
  memset(static_cast<void*>(&slot), 0, sizeof slot);
  answered_[index] = 0;
}

void Pool::keep(const scoreboard::Slot& slot) {
  calls_ += slot.calls;
  failures_ += slot.failures;
  for (const auto& f : slot.functions) {
    if (f.name[0] == '\0') continue;
    std::string name = bounded(f.name, sizeof f.name);
    if (perFunction_.size() >= kMaxFunctionNames && !perFunction_.count(name)) name = "(other)";
    perFunction_[name].first += f.calls;
    perFunction_[name].second += f.failures;
  }
  size_t n = std::min<size_t>(slot.latencyNext, scoreboard::kLatencies);
  latencies_.insert(latencies_.end(), slot.latencyMicros, slot.latencyMicros + n);
  if (latencies_.size() > kKeptLatencies)
    latencies_.erase(latencies_.begin(), latencies_.end() - kKeptLatencies);
}

void Pool::readinessChanged() {
  bool needed = !supervisor_.live() && (supervisor_.throttled() || stopping_);
  if (needed == standingIn_) return;
  standingIn_ = needed;
  if (needed) tasks_.add(standIn());
}

kj::Promise<void> Pool::standIn() {
  if (!standingIn_) return kj::READY_NOW;
  if (stopping_) {
    answerWaiting(Kind::SHUTTING_DOWN, "mtapy-workerd is stopping");
  } else {
    answerWaiting(Kind::NO_WORKER, "pool " + config_.name +
                                       " has no worker: its workers fail to start (see "
                                       "mtapy-workerd's log)");
  }
  // Poll rather than watch the socket: a watch would wake the daemon for every call that
  // workers take once they are back.
  return io_.provider->getTimer().afterDelay(20 * kj::MILLISECONDS).then([this]() {
    return standIn();
  });
}

void Pool::answerWaiting(Kind kind, const std::string& message) {
  for (int i = 0; i < 1000; i++) {
    kj::Maybe<wire::Datagram> got;
    try {
      got = wire::receiveDatagram(sockets_.calls, wire::deadlineIn(0));
    } catch (const kj::Exception&) {
      continue;  // malformed: nothing to answer
    }
    wire::Datagram* d;
    KJ_IF_MAYBE(received, got) d = received;
    else break;
    capnp::MallocMessageBuilder answer;
    auto response = answer.initRoot<proto::Response>();
    proto::Request::Which which = proto::Request::EXPAND;
    try {
      auto reader = d->reader();
      auto request = reader.getRoot<proto::Request>();
      response.setId(request.getId());
      which = request.which();
    } catch (const kj::Exception&) {
    }
    calls::answerFailure(response, which, kind, message, onError_);
    try {
      wire::sendDatagram(sockets_.calls, &d->from, answer, nullptr, wire::deadlineIn(0));
    } catch (const kj::Exception&) {
    }
  }
  if (sockets_.lines == nullptr) return;
  for (int fd; (fd = accept4(sockets_.lines, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0;) {
    std::string text = lineAnswer(proto::Request::EXPAND, kind, message);
    (void)!send(fd, text.data(), text.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    close(fd);
  }
}

kj::Promise<void> Pool::stop() {
  stopping_ = true;
  sockets_.unlink();  // new callers are refused; connected ones are still answered
  return supervisor_.stop().then([this]() {
    readinessChanged();
    answerWaiting(Kind::SHUTTING_DOWN, "mtapy-workerd is stopping");
  });
}

void Pool::status(proto::PoolStatus::Builder out) {
  out.setName(config_.name);
  out.setUser(config_.user);
  out.setPolicy(config_.policy);
  out.setSocket(sockets_.callPath);
  out.setThrottledSeconds(supervisor_.live() ? 0 : supervisor_.throttledSeconds());
  uint64_t calls = calls_, failures = failures_;
  auto perFunction = perFunction_;
  std::vector<uint32_t> latencies = latencies_;
  auto workers = supervisor_.workers();
  auto list = out.initWorkers(unsigned(workers.size()));
  static const char* names[] = {"free", "starting", "idle", "busy"};
  for (unsigned i = 0; i < workers.size(); i++) {
    const scoreboard::Slot& slot = table_->slots[workers[i].slot];
    uint32_t state = std::min<uint32_t>(slot.state.load(), scoreboard::kBusy);
    list[i].setPid(workers[i].pid);
    list[i].setState(workers[i].state ? workers[i].state : names[state == 0 ? 1 : state]);
    list[i].setCalls(slot.calls);
    calls += slot.calls;
    failures += slot.failures;
    for (const auto& f : slot.functions) {
      if (f.name[0] == '\0') continue;
      auto& counts = perFunction[bounded(f.name, sizeof f.name)];
      counts.first += f.calls;
      counts.second += f.failures;
    }
    size_t n = std::min<size_t>(slot.latencyNext, scoreboard::kLatencies);
    latencies.insert(latencies.end(), slot.latencyMicros, slot.latencyMicros + n);
  }
  out.setCalls(calls);
  out.setFailures(failures);
  if (!latencies.empty()) {
    std::sort(latencies.begin(), latencies.end());
    size_t n = latencies.size();
    out.setP50Micros(latencies[n / 2]);
    out.setP99Micros(latencies[std::min(n - 1, n * 99 / 100)]);
  }
  auto functions = out.initFunctions(unsigned(perFunction.size()));
  unsigned i = 0;
  for (auto& [name, counts] : perFunction) {
    functions[i].setName(calls::printable(kj::StringPtr(name.c_str()).asBytes()));
    functions[i].setCalls(counts.first);
    functions[i++].setFailures(counts.second);
  }
}

void Pool::taskFailed(kj::Exception&& exception) {
  spdlog::error("pool {}: internal error: {}", config_.name, exception.getDescription().cStr());
}

}  // namespace mtapy::workerd
