// worker-main.c++ - mtapy-worker: one privilege-separated Python policy process
// DESCRIPTION  Exec'd by mtapy-workerd (spawn.c++) as root with its socket on fd 3. Drops to the
//              pool's user, only then starts CPython and imports the policy, says Hello, and
//              serves one Request at a time until the daemon closes the socket.
// SECURITY     No policy byte is read before dropPrivileges(); the daemon never runs policy code.
// DIAGNOSTICS  Exit status is a protocol (proto/worker.capnp): 0 recycled, kExitBootError,
//              kExitImportError, kExitLostDaemon; anything else is a crash.
// SEE ALSO     privileges.c++, python-host.c++, workerd/pool.c++
#include "privileges.h"
#include "proto/policy.capnp.h"
#include "proto/wire.h"
#include "proto/worker.capnp.h"
#include "python-host.h"

#include <capnp/message.h>
#include <kj/debug.h>
#include <kj/main.h>

#include <unistd.h>
#include <cstdlib>
#include <string>

namespace mtapy::worker {
namespace {

constexpr int kSocket = 3;
constexpr int kExitBootError = 70;
constexpr int kExitImportError = 71;
constexpr int kExitLostDaemon = 72;

struct Options {
  std::string pool, user, policy, pylib, moduleName = "__exim__";
  uid_t uid = 0;
  gid_t gid = 0;
  uint64_t memoryLimitBytes = 0;
};

[[noreturn]] void bootFailed(int status, const std::string& message, const std::string& tb) {
  capnp::MallocMessageBuilder hello;
  auto failure = hello.initRoot<proto::Hello>().initBootError();
  failure.setKind(proto::Failure::Kind::NO_WORKER);
  failure.setMessage(message);
  failure.setTraceback(tb);
  try {
    wire::sendMessage(kSocket, hello, -1, wire::deadlineIn(5000));
  } catch (...) {
    // The daemon still learns of it from our exit status.
  }
  _exit(status);
}

void answer(capnp::MallocMessageBuilder& message) {
  try {
    wire::sendMessage(kSocket, message, -1, wire::kForever);
  } catch (const kj::Exception&) {
    _exit(kExitLostDaemon);
  }
}

void runExpand(PythonHost& python, uint64_t id, proto::Expand::Reader call) {
  Outcome outcome = python.expand(call.getFunction(), call.getArgs());
  capnp::MallocMessageBuilder message;
  auto response = message.initRoot<proto::Response>();
  response.setId(id);
  switch (outcome.code) {
    case Outcome::kValue:
      response.setValue(kj::arrayPtr(reinterpret_cast<const kj::byte*>(outcome.value.data()),
                                     outcome.value.size()));
      break;
    case Outcome::kForcedFail:
      response.setForcedFail();
      break;
    default: {
      auto failure = response.initFailure();
      failure.setKind(proto::Failure::Kind::POLICY_ERROR);
      failure.setMessage(outcome.value);
      failure.setTraceback(outcome.traceback);
    }
  }
  answer(message);
}

void runLocalScan(PythonHost& python, proto::Request::Reader request, int fd) {
  capnp::MallocMessageBuilder message;
  auto response = message.initRoot<proto::Response>();
  response.setId(request.getId());
  python.localScan(request, fd, response);
  answer(message);
}

void badRequest(uint64_t id, const char* why) {
  capnp::MallocMessageBuilder message;
  auto response = message.initRoot<proto::Response>();
  response.setId(id);
  auto failure = response.initFailure();
  failure.setKind(proto::Failure::Kind::BAD_REQUEST);
  failure.setMessage(why);
  answer(message);
}

void dispatch(PythonHost& python, const wire::Received& received) {
  auto reader = received.reader();
  auto request = reader.getRoot<proto::Request>();
  switch (request.which()) {
    case proto::Request::EXPAND:
      runExpand(python, request.getId(), request.getExpand());
      break;
    case proto::Request::LOCAL_SCAN:
      if (received.fd.get() < 0) {
        badRequest(request.getId(), "local_scan needs the message's file descriptor");
      } else {
        runLocalScan(python, request, received.fd);
      }
      break;
    default:
      badRequest(request.getId(), "this worker does not serve that kind of request");
  }
}

[[noreturn]] void serve(PythonHost& python) {
  for (;;) {
    try {
      KJ_IF_MAYBE(received, wire::receiveMessage(kSocket, wire::kForever)) {
        dispatch(python, *received);
      } else {
        _exit(0);  // the daemon closed our socket: recycled or stopping
      }
    } catch (const kj::Exception& e) {
      // Our conversation with the daemon is out of step; it replaces us on exit.
      fprintf(stderr, "mtapy-worker: unreadable request: %s\n", e.getDescription().cStr());
      _exit(kExitLostDaemon);
    }
  }
}

int run(const Options& options) {
  try {
    dropPrivileges({options.user.c_str(), options.uid, options.gid, options.memoryLimitBytes});
    resetSignals();
  } catch (const kj::Exception& e) {
    bootFailed(kExitBootError,
               "pool " + options.pool + ": cannot become user " + options.user + ": " +
                   e.getDescription().cStr(),
               "");
  }
  try {
    PythonHost python(options.pylib.c_str(), options.policy.c_str(), options.moduleName.c_str());
    capnp::MallocMessageBuilder hello;
    hello.initRoot<proto::Hello>().setReady();
    answer(hello);
    serve(python);
  } catch (const PythonError& e) {
    bootFailed(
        kExitImportError,
        "pool " + options.pool + ": policy " + options.policy + " failed to load: " + e.message,
        e.traceback);
  }
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
      options.pool = value;
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
  }
  if (options.policy.empty() || options.user.empty()) {
    fprintf(stderr, "mtapy-worker is started by mtapy-workerd, not by hand\n");
    return 64;
  }
  return mtapy::worker::run(options);
}
