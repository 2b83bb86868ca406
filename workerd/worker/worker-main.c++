// worker-main.c++ - mtapy-worker: one privilege-separated Python policy process
// DESCRIPTION  Exec'd by mtapy-workerd (spawn.c++) as root with the daemon's channel on fd 3,
//              the pool's call socket on fd 4, its generation's scoreboard on fd 5, the pool's
//              ${readsocket} listener (if any) on fd 6 and its generation's code snapshot on
//              fd 7. Drops to the pool's user, only then starts CPython and loads the policy,
//              says Hello on fd 3, waits for the daemon's go, then takes calls straight from
//              the MTAs (serve.c++) until told to stop.
// SECURITY     No policy byte is read before dropPrivileges(); the daemon never runs policy code.
// DIAGNOSTICS  Exit status is a protocol (proto/worker.capnp): 0 recycled or stopped,
//              kExitBootError, kExitImportError, kExitLostDaemon; anything else is a crash.
// SEE ALSO     privileges.c++, python-host.c++, serve.c++, workerd/supervisor.c++
#include "privileges.h"
#include "proto/wire.h"
#include "proto/worker.capnp.h"
#include "python-host.h"
#include "serve.h"

#include <capnp/message.h>
#include <kj/debug.h>

#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <csignal>
#include <cstdlib>
#include <sstream>
#include <string>

namespace mtapy::worker {
namespace {

constexpr int kControl = 3, kCalls = 4, kScoreboard = 5, kLines = 6, kCode = 7;
constexpr int kExitBootError = 70;
constexpr int kExitImportError = 71;

struct Options {
  std::string user, policy, pylib, moduleName = "__exim__";
  uid_t uid = 0;
  gid_t gid = 0;
  uint64_t memoryLimitBytes = 0;
  uint32_t slot = 0;
  bool lines = false;
  bool takeCode = false;
  // pylib/mtapy/_worker.py reads these from the environment (and state.py MTAPY_STATE, which
  // the daemon puts there itself: it may hold a password, and argv is readable by all).
  std::string filters, pythonfilterConf, onException;
  PoolFacts pool;
};

[[noreturn]] void bootFailed(int status, const std::string& message, const std::string& tb) {
  capnp::MallocMessageBuilder hello;
  auto failure = hello.initRoot<proto::Hello>().initBootError();
  failure.setKind(proto::Failure::Kind::NO_WORKER);
  failure.setMessage(message);
  failure.setTraceback(tb);
  try {
    wire::sendMessage(kControl, hello, -1, wire::deadlineIn(5000));
  } catch (...) {
    // The daemon still learns of it from our exit status.
  }
  _exit(status);
}

// A process that shares our descriptor table (CLONE_FILES, not our memory) and only waits;
// the daemon ends it with our process group. 0 if it cannot be made (then a crash mid-call
// leaves a ${readsocket} caller with an empty answer).
pid_t startKeeper() {
  long pid = syscall(SYS_clone, CLONE_FILES | SIGCHLD, nullptr, nullptr, nullptr, 0);
  if (pid == 0) {
    prctl(PR_SET_NAME, "mtapy-keeper");
    // Until the daemon closes our channel (it is done with us, or gone). Polling for no
    // event reports only the hang-up, and reads nothing the worker is owed.
    pollfd channel{kControl, 0, 0};
    while (poll(&channel, 1, -1) < 0 || !(channel.revents & (POLLHUP | POLLERR | POLLNVAL))) {
    }
    _exit(0);
  }
  return pid > 0 ? pid_t(pid) : 0;
}

int run(Options& options) {
  try {
    dropPrivileges({options.user.c_str(), options.uid, options.gid, options.memoryLimitBytes});
    resetSignals();
  } catch (const kj::Exception& e) {
    bootFailed(kExitBootError,
               "pool " + options.pool.name + ": cannot become user " + options.user + ": " +
                   e.getDescription().cStr(),
               "");
  }
  // A ${readsocket} caller whose worker dies mid-call must still get on_error, not an empty
  // answer that Exim would read as "no": this process shares our descriptor table, so the
  // caller's connection outlives us until the daemon has answered on it (generation.c++).
  pid_t keeper = options.lines ? startKeeper() : 0;
  setenv("MTAPY_POOL", options.pool.name.c_str(), 1);
  setenv("MTAPY_FILTERS", options.filters.c_str(), 1);
  setenv("MTAPY_PYTHONFILTER_CONF", options.pythonfilterConf.c_str(), 1);
  setenv("MTAPY_ON_EXCEPTION", options.onException.c_str(), 1);
  try {
    CallSlot slot(kScoreboard, options.slot);
    slot.setKeeper(keeper);
    PythonHost python(options.pylib.c_str(), options.policy.c_str(), options.moduleName.c_str(),
                      kCode, options.takeCode);
    capnp::MallocMessageBuilder hello;
    auto root = hello.initRoot<proto::Hello>();
    root.setReady();
    auto code = root.initCode();
    code.setSha256(python.code().sha256);
    code.setMtimeNs(python.code().mtimeNs);
    code.setFiles(python.code().files);
    wire::sendMessage(kControl, hello, -1, wire::deadlineIn(5000));
    Worker worker{python, options.pool, slot};
    serve(worker, {kControl, kCalls, options.lines ? kLines : -1});
  } catch (const PythonError& e) {
    bootFailed(kExitImportError,
               "pool " + options.pool.name + ": policy " + options.policy +
                   " failed to load: " + e.message,
               e.traceback);
  } catch (const kj::Exception& e) {
    bootFailed(kExitBootError, "pool " + options.pool.name + ": " + e.getDescription().cStr(),
               "");
  }
}

std::vector<uid_t> uids(const std::string& list) {
  std::vector<uid_t> out;
  std::stringstream in(list);
  for (std::string item; std::getline(in, item, ',');) out.push_back(uid_t(std::stoul(item)));
  return out;
}

}  // namespace
}  // namespace mtapy::worker

int main(int argc, char** argv) {
  using mtapy::worker::Options;
  Options options;
  // Flags are written by workerd/spawn.c++ only; this is not a user-facing command.
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--pool")
      options.pool.name = value;
    else if (flag == "--user")
      options.user = value;
    else if (flag == "--uid")
      options.uid = uid_t(std::stoul(value));
    else if (flag == "--gid")
      options.gid = gid_t(std::stoul(value));
    else if (flag == "--policy")
      options.policy = value;
    else if (flag == "--pylib")
      options.pylib = value;
    else if (flag == "--module-name")
      options.moduleName = value;
    else if (flag == "--memory-limit")
      options.memoryLimitBytes = std::stoull(value);
    else if (flag == "--slot")
      options.slot = uint32_t(std::stoul(value));
    else if (flag == "--clients")
      options.pool.clients = mtapy::worker::uids(value);
    else if (flag == "--timeout-ms")
      options.pool.timeoutMs = unsigned(std::stoul(value));
    else if (flag == "--max-use")
      options.pool.maxUse = unsigned(std::stoul(value));
    else if (flag == "--fail-open")
      options.pool.onError.failOpen = value == "1";
    else if (flag == "--on-error-value")
      options.pool.onError.value = value;
    else if (flag == "--lines")
      options.lines = value == "1";
    else if (flag == "--code")
      options.takeCode = value == "take";
    else if (flag == "--max-rss-mb")
      options.pool.maxRssBytes = uint64_t(std::stoull(value)) << 20;
    else if (flag == "--max-open-fds")
      options.pool.maxOpenFds = unsigned(std::stoul(value));
    else if (flag == "--filters")
      options.filters = value;
    else if (flag == "--pythonfilter-conf")
      options.pythonfilterConf = value;
    else if (flag == "--on-exception")
      options.onException = value;
  }
  if (options.policy.empty() || options.user.empty()) {
    fprintf(stderr, "mtapy-worker is started by mtapy-workerd, not by hand\n");
    return 64;
  }
  return mtapy::worker::run(options);
}
