// mtapyctl.c++ - talk to a running mtapy-workerd over its admin socket (root only)
// DESCRIPTION  status: pools, workers, queue, counts and latency. call: run a policy function
//              in a pool exactly as an MTA would, to test a policy without an MTA.
// SEE ALSO     proto/admin.capnp, workerd/daemon.c++
#include "proto/admin.capnp.h"
#include "proto/wire.h"

#include <kj/debug.h>

#include <cstring>
#include <iostream>
#include <string>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace {

constexpr const char* kUsage =
    "usage: mtapyctl [-s ADMIN_SOCKET] COMMAND\n"
    "\n"
    "Commands:\n"
    "  status                   pools, workers, queue depth, per-function counts and failures,\n"
    "                           latency p50/p99 over the last 1024 calls\n"
    "  call POOL FN [ARG...]    run FN from POOL's policy as an Exim expansion would; prints\n"
    "                           the value. Exit status: 0 value, 1 forced failure (None),\n"
    "                           2 failure (the MTA would defer), 3 cannot reach the daemon\n"
    "\n"
    "  -s ADMIN_SOCKET          default /run/mtapy/admin.sock ([daemon] admin_socket)\n";

constexpr int kTimeoutMs = 60000;

int connectTo(const std::string& path) {
  int fd;
  KJ_SYSCALL(fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  KJ_SYSCALL(connect(fd, (sockaddr*)&address, sizeof address), path,
             "is mtapy-workerd running? (systemctl status mtapy-workerd)");
  return fd;
}

int printCall(mtapy::proto::Response::Reader response) {
  switch (response.which()) {
    case mtapy::proto::Response::VALUE: {
      auto value = response.getValue();
      std::cout.write(reinterpret_cast<const char*>(value.begin()), std::streamsize(value.size()));
      std::cout << "\n";
      return 0;
    }
    case mtapy::proto::Response::FORCED_FAIL:
      std::cerr << "forced failure (the policy returned None)\n";
      return 1;
    case mtapy::proto::Response::FAILURE:
      std::cerr << "failure: " << response.getFailure().getMessage().cStr() << "\n"
                << response.getFailure().getTraceback().cStr();
      return 2;
    default:
      std::cerr << "unexpected answer\n";
      return 2;
  }
}

void printStatus(mtapy::proto::Status::Reader status) {
  std::cout << "mtapy-workerd pid " << status.getPid() << ", up " << status.getUptimeSeconds()
            << " s\n";
  for (auto pool : status.getPools()) {
    std::cout << "\npool " << pool.getName().cStr() << ": user " << pool.getUser().cStr()
              << ", policy " << pool.getPolicy().cStr() << "\n"
              << "  calls " << pool.getCalls() << ", failures " << pool.getFailures()
              << ", queued " << pool.getQueued() << ", latency p50 " << pool.getP50Micros()
              << " us, p99 " << pool.getP99Micros() << " us\n";
    if (pool.getThrottledSeconds() > 0) {
      std::cout << "  THROTTLED for " << pool.getThrottledSeconds()
                << " s: workers fail to start, see the daemon's log\n";
    }
    for (auto w : pool.getWorkers()) {
      std::cout << "  worker pid " << w.getPid() << " " << w.getState().cStr() << ", "
                << w.getCalls() << " calls\n";
    }
    for (auto f : pool.getFunctions()) {
      std::cout << "  function " << f.getName().cStr() << ": " << f.getCalls() << " calls, "
                << f.getFailures() << " failures\n";
    }
  }
}

int run(int argc, char** argv) {
  std::string socketPath = "/run/mtapy/admin.sock";
  int i = 1;
  if (i + 1 < argc && std::string(argv[i]) == "-s") {
    socketPath = argv[i + 1];
    i += 2;
  }
  if (i >= argc || std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
    std::cout << kUsage;
    return i >= argc ? 64 : 0;
  }
  std::string command = argv[i++];
  capnp::MallocMessageBuilder message;
  auto request = message.initRoot<mtapy::proto::AdminRequest>();
  if (command == "status") {
    request.setStatus();
  } else if (command == "call" && argc - i >= 2) {
    auto call = request.initCall();
    call.setId(1);
    call.setPool(argv[i]);
    auto expand = call.initExpand();
    expand.setFunction(kj::StringPtr(argv[i + 1]).asBytes());
    auto args = expand.initArgs(unsigned(argc - i - 2));
    for (unsigned a = 0; a < args.size(); a++) args.set(a, kj::StringPtr(argv[i + 2 + a]).asBytes());
  } else {
    std::cerr << kUsage;
    return 64;
  }

  kj::AutoCloseFd sock(connectTo(socketPath));
  mtapy::wire::sendMessage(sock, message, -1, mtapy::wire::deadlineIn(kTimeoutMs));
  auto got = mtapy::wire::receiveMessage(sock, mtapy::wire::deadlineIn(kTimeoutMs));
  KJ_IF_MAYBE(received, got) {
    auto reader = received->reader();
    auto response = reader.getRoot<mtapy::proto::AdminResponse>();
    if (response.isError()) {
      std::cerr << "mtapyctl: " << response.getError().cStr() << "\n";
      return 3;
    }
    if (response.isStatus()) {
      printStatus(response.getStatus());
      return 0;
    }
    return printCall(response.getCall());
  }
  std::cerr << "mtapyctl: the daemon closed the connection (only root may use it)\n";
  return 3;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const kj::Exception& e) {
    std::cerr << "mtapyctl: " << e.getDescription().cStr() << "\n";
    return 3;
  }
}
