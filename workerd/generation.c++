// generation.c++ - one generation of a pool: its code, its scoreboard, its workers
#include "generation.h"

#include "proto/datagram.h"
#include "state-dir.h"

#include <capnp/message.h>
#include <kj/debug.h>
#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <algorithm>
#include <cctype>
#include <cstring>

namespace mtapy::workerd {
namespace {

using Kind = proto::Failure::Kind;

constexpr auto kScanInterval = 100 * kj::MILLISECONDS;  // deadline precision

int64_t monotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
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

kj::AutoCloseFd newMemfd(const char* name, unsigned flags, size_t bytes) {
  int fd = memfd_create(name, MFD_CLOEXEC | flags);
  if (fd < 0) KJ_FAIL_SYSCALL("memfd_create", errno);
  kj::AutoCloseFd owned(fd);
  KJ_SYSCALL(ftruncate(fd, off_t(bytes)));
  return owned;
}

bool isAutobound(const char* address, uint32_t length) {
  constexpr uint32_t kAutobindLength = 6;  // '\0' and "%05x" (Linux's unix_autobind)
  if (length != kAutobindLength || address[0] != '\0') return false;
  return std::all_of(address + 1, address + length, [](char c) { return isxdigit(c) != 0; });
}

scoreboard::Table* mapTable(int fd, uint32_t slots) {
  // The workers map it read-write too: its size is sealed, or a policy that shrank it would
  // crash the daemon (SIGBUS) on its next read of a slot.
  KJ_SYSCALL(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL));
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

// Whether `pid` is in process group `group` (a worker's: it leads its own). A worker writes
// its keeper's pid into its slot, and a policy could write any pid there.
bool inGroupOf(pid_t group, pid_t pid) {
  if (pid <= 0) return false;
  char path[64], text[512];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = read(fd, text, sizeof text - 1);
  close(fd);
  if (n <= 0) return false;
  text[n] = '\0';
  const char* after = strrchr(text, ')');  // the command name may hold anything
  int ppid = 0, pgrp = 0;
  char state;
  return after != nullptr && sscanf(after + 1, " %c %d %d", &state, &ppid, &pgrp) == 3 &&
         pgrp == group;
}

std::string describeCode(proto::CodeIdentity::Reader code) {
  time_t seconds = time_t(code.getMtimeNs() / 1000000000);
  char when[32] = "?";
  tm utc;
  if (gmtime_r(&seconds, &utc) != nullptr) strftime(when, sizeof when, "%F %T UTC", &utc);
  std::string hash = code.getSha256();
  return "sha256 " + hash.substr(0, 12) + ", mtime " + when + ", " +
         std::to_string(code.getFiles()) + (code.getFiles() == 1 ? " file" : " files");
}

}  // namespace

Generation::Generation(uint32_t number, const PoolConfig& config, const PoolSockets& sockets,
                       bool held, Spawner& spawner, kj::AsyncIoContext& io, Owner& owner)
    : number_(number),
      config_(config),
      onError_{config.onError == OnError::kAccept, config.onErrorValue},
      sockets_(sockets),
      io_(io),
      owner_(owner),
      codeFd_(newMemfd("mtapy-code", MFD_ALLOW_SEALING, 0)),
      slots_(config.processLimit),
      tableFd_(newMemfd("mtapy-scoreboard", MFD_ALLOW_SEALING, scoreboard::tableBytes(slots_))),
      table_(mapTable(tableFd_, slots_)),
      answered_(slots_, 0),
      lastActive_(slots_, 0),
      lastCall_(slots_, 0),
      supervisor_(config_, spawner,
                  WorkerSpec{0, 0, sockets.calls.get(), tableFd_.get(),
                             sockets.lines.get(), codeFd_.get(),
                             false},
                  slots_, held, io, *this),
      tasks_(*this) {}

Generation::~Generation() noexcept {
  munmap(table_, scoreboard::tableBytes(slots_));
}

void Generation::start() {
  try {
    prepareStateDir(config_);
  } catch (const kj::Exception& e) {
    spdlog::error("pool {}: cannot prepare its shared state: {}; calls using mtapy.state "
                  "will fail", config_.name, e.getDescription().cStr());
  }
  supervisor_.start();
  tasks_.add(scanDeadlines());
}

void Generation::go() {
  supervisor_.go();
}

kj::Promise<void> Generation::end(Supervisor::Ending how) {
  return supervisor_.end(how);
}

bool Generation::codeLoaded(proto::CodeIdentity::Reader code) {
  // Sealed, the snapshot can never change: every later worker of this generation reads it.
  constexpr int kSeals = F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
  if (fcntl(codeFd_, F_ADD_SEALS, kSeals) < 0) {
    spdlog::error("pool {}: cannot seal generation {}'s code: {}", config_.name, number_,
                  strerror(errno));
    return false;
  }
  code_ = describeCode(code);
  loadedAt_ = time(nullptr);
  return true;
}

void Generation::startFailed(const std::string& why, const std::string& traceback) {
  owner_.startFailed(*this, why, traceback);
}

void Generation::readinessChanged() {
  owner_.readinessChanged();
}

kj::Promise<void> Generation::scanDeadlines() {
  return io_.provider->getTimer().afterDelay(kScanInterval).then([this]() {
    int64_t now = monotonicNs();
    for (uint32_t i = 0; i < slots_; i++) {
      scoreboard::Slot& slot = table_->slots[i];
      scoreboard::Call call;
      if (slot.state.load(std::memory_order_acquire) != scoreboard::kBusy) continue;
      if (!readCall(slot, call) || call.deadlineNs > now || answered_[i] == call.number) continue;
      pid_t pid = supervisor_.pidIn(i);
      if (pid == 0) continue;
      std::string function = boundedText(call.function, sizeof call.function);
      spdlog::warn("pool {}: {} overran its deadline in worker pid {}; its Python stack "
                   "follows, then it is killed",
                   config_.name, function, pid);
      answerLost(i, Kind::TIMEOUT,
                 function + " did not answer within " +
                     std::to_string((call.deadlineNs - call.startedNs + 500000) / 1000000) + " ms",
                 pid);
      supervisor_.killOverrun(pid);
    }
    if (config_.maxIdleMs > 0) fitToLoad(now);
    return scanDeadlines();
  });
}

void Generation::fitToLoad(int64_t now) {
  // Postfix master(8)'s way, from the scoreboard: one worker more when none is idle, and a
  // worker idle past max_idle goes (not below min_processes). One change per scan.
  if (!supervisor_.takingCalls() || supervisor_.throttled()) return;
  bool anyIdle = false;
  pid_t longestIdle = 0;
  int64_t longest = 0;
  for (const auto& w : supervisor_.workers()) {
    // One that is starting is capacity on its way: growing more for the same load would
    // start process_limit workers behind every slow import.
    if (w.state != nullptr && strcmp(w.state, "starting") == 0) return;
    if (w.state != nullptr) continue;  // stopping
    const scoreboard::Slot& slot = table_->slots[w.slot];
    uint64_t number = slot.call.number;
    if (slot.state.load(std::memory_order_relaxed) != scoreboard::kIdle ||
        number != lastCall_[w.slot] || lastActive_[w.slot] == 0) {
      lastActive_[w.slot] = now;
      lastCall_[w.slot] = number;
    }
    if (slot.state.load(std::memory_order_relaxed) != scoreboard::kIdle) continue;
    anyIdle = true;
    if (now - lastActive_[w.slot] > longest) {
      longest = now - lastActive_[w.slot];
      longestIdle = w.pid;
    }
  }
  if (!anyIdle) {
    supervisor_.grow();
  } else if (longest > int64_t(config_.maxIdleMs) * 1000000 && supervisor_.retireIdle(longestIdle)) {
    for (const auto& w : supervisor_.workers()) {
      if (w.pid == longestIdle) lastActive_[w.slot] = 0;
    }
  }
}

void Generation::answerLost(uint32_t index, Kind kind, const std::string& message,
                            pid_t alive) {
  scoreboard::Call call;
  if (!readCall(table_->slots[index], call)) return;
  answered_[index] = call.number;
  spdlog::error("{}", calls::failureLine(
                          config_.name, boundedText(call.function, sizeof call.function).c_str(),
                          boundedText(call.messageId, sizeof call.messageId).c_str(),
                          message.c_str(), ""));
  auto which = proto::Request::Which(call.kind);
  if (call.connection >= 0) {
    if (alive) {
      writeToConnectionOf(alive, call.connection,
                          calls::answerFailureLine(which, kind, message, onError_));
    }
    return;
  }
  // Callers' sockets are autobound: an abstract name of five hex digits. The slot is the
  // policy's to scribble on, and the daemon, as root, must not send to any other address
  // (journald's socket, /dev/log, another service's).
  if (!isAutobound(call.address, call.addressLength)) return;
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

void Generation::workerExited(uint32_t index, pid_t pid, const std::string& why, bool) {
  scoreboard::Slot& slot = table_->slots[index];
  scoreboard::Call call;
  if (slot.state.load(std::memory_order_acquire) == scoreboard::kBusy && readCall(slot, call) &&
      answered_[index] != call.number) {
    // A line caller's connection is still open in the worker's keeper, if it has one.
    pid_t keeper = inGroupOf(pid, slot.keeperPid) ? slot.keeperPid : 0;
    answerLost(index, Kind::WORKER_CRASHED,
               "worker pid " + std::to_string(pid) + " " + why + " during the call", keeper);
  }
  gone_.add(slot);
  memset(static_cast<void*>(&slot), 0, sizeof slot);
  answered_[index] = 0;
  lastActive_[index] = 0;
}

CallStats Generation::stats() const {
  CallStats all = gone_;
  for (auto& w : supervisor_.workers()) all.add(table_->slots[w.slot]);
  return all;
}

void Generation::status(proto::GenerationStatus::Builder out, const char* state) const {
  out.setNumber(number_);
  out.setState(state);
  out.setCode(code_);
  out.setLoadedSecondsAgo(loadedAt_ ? uint64_t(time(nullptr) - loadedAt_) : 0);
  auto workers = supervisor_.workers();
  auto list = out.initWorkers(unsigned(workers.size()));
  static const char* names[] = {"free", "starting", "idle", "busy"};
  for (unsigned i = 0; i < workers.size(); i++) {
    const scoreboard::Slot& slot = table_->slots[workers[i].slot];
    uint32_t slotState = std::min<uint32_t>(slot.state.load(), scoreboard::kBusy);
    list[i].setPid(workers[i].pid);
    list[i].setState(workers[i].state ? workers[i].state
                                      : names[slotState == 0 ? 1 : slotState]);
    list[i].setCalls(slot.calls);
  }
}

void Generation::taskFailed(kj::Exception&& exception) {
  spdlog::error("pool {}: internal error: {}", config_.name, exception.getDescription().cStr());
}

}  // namespace mtapy::workerd
