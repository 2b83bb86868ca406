// mtapyctl.c++ - talk to a running mtapy-workerd over its admin socket (root only)
// DESCRIPTION  status: pools, generations, workers, counts and latency. reload: new policy
//              code and configuration, reporting failure with the traceback. call and scan: run a policy in a
//              pool exactly as an MTA would, on the pool's own socket with the shim's client
//              code (the socket's path comes from status), to test a policy without an MTA.
// SEE ALSO     proto/admin.capnp, workerd/daemon.c++
#include "message-split.h"
#include "proto/admin.capnp.h"
#include "proto/wire.h"
#include "shim/common/client.h"

#include <kj/debug.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using mtapy::ctl::splitHeaders;

constexpr const char* kUsage =
    "usage: mtapyctl [-s ADMIN_SOCKET] COMMAND\n"
    "\n"
    "Commands:\n"
    "  status                   pools, their generations and workers, per-function\n"
    "                           counts and failures, latency p50/p99 of recent calls\n"
    "  reload [POOL]            re-read workerd.toml and start a new generation of every\n"
    "                           pool (or POOL) with its policy; waits until it serves and\n"
    "                           the old one has exited. Exit status: 0 done, 1 failed (the\n"
    "                           old generation serves on; the error is printed), 3 cannot\n"
    "                           reach the daemon\n"
    "  call POOL FN [ARG...]    run FN from POOL's policy as an Exim expansion would; prints\n"
    "                           the value. Exit status: 0 value, 1 forced failure (None),\n"
    "                           2 failure (the MTA would defer), 3 cannot reach the daemon\n"
    "  ratelimit POOL KEY [--reset] [--name NAME]\n"
    "                           show (or reset) KEY's count in POOL's rate limiter\n"
    "                           (mtapy.filters.ratelimit; NAME if the policy has several)\n"
    "  scan POOL FILE --from ADDR --to ADDR [--to ADDR...] [--host IP]\n"
    "                           run POOL's local_scan on the message in FILE (RFC 5322, as\n"
    "                           received) as Exim would; prints the verdict and changes.\n"
    "                           Exit status: 0 accept, 1 reject, 2 temporary reject or\n"
    "                           failure, 3 cannot reach the daemon\n"
    "\n"
    "  -s ADMIN_SOCKET          default /run/mtapy/admin.sock ([daemon] admin_socket)\n";

constexpr int kTimeoutMs = 60000;
// A reload waits for the new workers (start_timeout) and the old ones' last calls (timeout).
constexpr int kReloadTimeoutMs = 15 * 60000;

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

int printScan(mtapy::proto::Response::Reader response) {
  if (!response.isScan()) return printCall(response);
  auto scan = response.getScan();
  static const char* verdicts[] = {"accept", "reject", "tempreject"};
  std::cout << "verdict: " << verdicts[unsigned(scan.getVerdict())] << "\n";
  auto text = [](capnp::Data::Reader d) { return std::string(d.asChars().begin(), d.size()); };
  if (scan.getMessage().size()) std::cout << "message: " << text(scan.getMessage()) << "\n";
  for (auto a : scan.getAddRecipients()) std::cout << "add recipient: " << text(a) << "\n";
  for (auto a : scan.getRemoveRecipients()) std::cout << "remove recipient: " << text(a) << "\n";
  for (auto h : scan.getAddHeaders()) std::cout << "add header: " << text(h) << "\n";
  for (auto h : scan.getRemoveHeaders()) std::cout << "remove header: " << text(h) << "\n";
  switch (scan.getVerdict()) {
    case mtapy::proto::ScanResult::Verdict::ACCEPT:
      return 0;
    case mtapy::proto::ScanResult::Verdict::REJECT:
      return 1;
    default:
      return 2;
  }
}

// Exim's -D spool files start with "<message id>-D"; the body follows with LF line ends.
constexpr char kSpoolFirstLine[] = "mtapyctl-scan-D\n";

// An unlinked temporary file laid out like Exim's -D file, holding `body`.
kj::AutoCloseFd spoolFile(const std::string& body) {
  int fd = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) throw std::invalid_argument(std::string("temporary file: ") + strerror(errno));
  kj::AutoCloseFd file(fd);
  std::string data = kSpoolFirstLine;
  data.reserve(data.size() + body.size());
  for (size_t i = 0; i < body.size(); i++) {
    if (body[i] == '\r' && i + 1 < body.size() && body[i + 1] == '\n') continue;  // CRLF -> LF
    data += body[i];
  }
  for (size_t done = 0; done < data.size();) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0) throw std::invalid_argument(std::string("temporary file: ") + strerror(errno));
    done += size_t(n);
  }
  return file;
}

// Build a localScan request for FILE; returns the opened file to attach.
kj::AutoCloseFd buildScan(mtapy::proto::Request::Builder call, int argc, char** argv, int i) {
  call.setPool(argv[i]);
  std::string path = argv[i + 1];
  std::string from, host;
  std::vector<std::string> to;
  for (i += 2; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--from")
      from = argv[i + 1];
    else if (flag == "--to")
      to.push_back(argv[i + 1]);
    else if (flag == "--host")
      host = argv[i + 1];
    else
      throw std::invalid_argument("unknown option " + flag);
  }
  if (i != argc || to.empty()) throw std::invalid_argument("scan needs --from ADDR and --to ADDR");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument(path + ": cannot read it");
  std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> headers;
  size_t bodyOffset = splitHeaders(raw, headers);
  kj::AutoCloseFd file = spoolFile(raw.substr(bodyOffset));

  call.setMessageId("mtapyctl-scan");
  auto scan = call.initLocalScan();
  scan.setBodyOffset(sizeof kSpoolFirstLine - 1);
  scan.setSenderAddress(kj::StringPtr(from.c_str()).asBytes());
  auto rcpts = scan.initRecipients(unsigned(to.size()));
  for (unsigned r = 0; r < to.size(); r++) rcpts.set(r, kj::StringPtr(to[r].c_str()).asBytes());
  scan.setSenderHostAddress(kj::StringPtr(host.c_str()).asBytes());
  scan.setReceivedProtocol(kj::StringPtr(host.empty() ? "local" : "esmtp").asBytes());
  scan.setBodyLinecount(int(std::count(raw.begin() + long(bodyOffset), raw.end(), '\n')));
  scan.setSenderHeloName(kj::StringPtr("mtapyctl").asBytes());
  auto out = scan.initHeaders(unsigned(headers.size()));
  for (unsigned h = 0; h < headers.size(); h++) {
    out.set(h,
            kj::arrayPtr(reinterpret_cast<const kj::byte*>(headers[h].data()), headers[h].size()));
  }
  return file;
}

// `text` with every line after the first indented by `indent`.
std::string indented(kj::StringPtr text, const std::string& indent) {
  std::string out;
  for (char c : text) {
    out += c;
    if (c == '\n') out += indent;
  }
  while (!out.empty() && (out.back() == ' ' || out.back() == '\n')) out.pop_back();
  return out;
}

void printStatus(mtapy::proto::Status::Reader status) {
  std::cout << "mtapy-workerd pid " << status.getPid() << ", up " << status.getUptimeSeconds()
            << " s\n";
  for (auto pool : status.getPools()) {
    std::cout << "\npool " << pool.getName().cStr() << ": user " << pool.getUser().cStr()
              << ", policy " << pool.getPolicy().cStr() << "\n"
              << "  socket " << pool.getSocket().cStr() << "\n"
              << "  calls " << pool.getCalls() << ", failures " << pool.getFailures()
              << ", latency p50 " << pool.getP50Micros() << " us, p99 "
              << pool.getP99Micros() << " us\n";
    if (pool.getThrottledSeconds() > 0) {
      std::cout << "  THROTTLED for " << pool.getThrottledSeconds()
                << " s: workers fail to start, see the daemon's log\n";
    }
    if (pool.hasReloadFailure()) {
      std::cout << "  LAST RELOAD FAILED " << pool.getReloadFailedSecondsAgo()
                << " s ago; the live generation serves on:\n    "
                << indented(pool.getReloadFailure(), "    ") << "\n";
    }
    for (auto g : pool.getGenerations()) {
      std::cout << "  generation " << g.getNumber() << " " << g.getState().cStr() << ": "
                << (g.getCode().size() ? g.getCode().cStr() : "code not loaded yet");
      if (g.getCode().size()) std::cout << ", loaded " << g.getLoadedSecondsAgo() << " s ago";
      std::cout << "\n";
      for (auto w : g.getWorkers()) {
        std::cout << "    worker pid " << w.getPid() << " " << w.getState().cStr() << ", "
                  << w.getCalls() << " calls\n";
      }
    }
    for (auto f : pool.getFunctions()) {
      std::cout << "  function " << f.getName().cStr() << ": " << f.getCalls() << " calls, "
                << f.getFailures() << " failures\n";
    }
  }
}

// Send `request` to the daemon at `admin` and wait `timeoutMs` for its answer.
mtapy::wire::Received ask(const std::string& admin, capnp::MallocMessageBuilder& request,
                          int timeoutMs) {
  kj::AutoCloseFd sock(connectTo(admin));
  mtapy::wire::sendMessage(sock, request, -1, mtapy::wire::deadlineIn(kTimeoutMs));
  KJ_IF_MAYBE(received, mtapy::wire::receiveMessage(sock, mtapy::wire::deadlineIn(timeoutMs))) {
    return kj::mv(*received);
  }
  throw std::runtime_error("the daemon closed the connection (only root may use it)");
}

mtapy::wire::Received askStatus(const std::string& admin) {
  capnp::MallocMessageBuilder message;
  message.initRoot<mtapy::proto::AdminRequest>().setStatus();
  return ask(admin, message, kTimeoutMs);
}

// Print what a reload did; 0 when every pool reloaded, 1 when anything failed.
int printReload(mtapy::proto::ReloadReport::Reader report) {
  for (auto e : report.getConfigErrors()) std::cerr << e.cStr() << "\n";
  if (report.getConfigErrors().size()) {
    std::cerr << "mtapyctl: reload refused: " << report.getConfigErrors().size()
              << " problem(s) in the configuration; nothing was changed\n";
    return 1;
  }
  if (report.hasError()) {
    std::cerr << "mtapyctl: the reload failed: " << report.getError().cStr() << "\n";
    return 1;
  }
  int status = 0;
  using Outcome = mtapy::proto::PoolReload::Outcome;
  for (auto pool : report.getPools()) {
    std::cout << "pool " << pool.getName().cStr() << ": ";
    switch (pool.getOutcome()) {
      case Outcome::RELOADED:
        std::cout << "generation " << pool.getGeneration() << " live after "
                  << pool.getLiveAfterMs() << " ms (" << pool.getCode().cStr()
                  << "); the old one finished its calls after " << pool.getDrainedAfterMs()
                  << " ms\n";
        break;
      case Outcome::ADDED:
        std::cout << "added\n";
        break;
      case Outcome::REMOVED:
        std::cout << "removed\n";
        break;
      case Outcome::FAILED:
        std::cout << (pool.getGeneration() == 1 ? "FAILED to start\n"
                                                : "RELOAD FAILED; the running generation serves on\n");
        {
          // Boot errors already name their pool.
          std::string prefix = "pool " + std::string(pool.getName().cStr()) + ": ";
          std::string message = pool.getMessage().cStr();
          std::cerr << (message.rfind(prefix, 0) == 0 ? "" : prefix) << message << "\n"
                    << pool.getTraceback().cStr();
        }
        status = 1;
        break;
    }
  }
  for (auto note : report.getNotes()) std::cout << "note: " << note.cStr() << "\n";
  return status;
}

// The socket of pool `name`, from the daemon's status.
std::string poolSocketOf(const std::string& admin, const std::string& name) {
  auto got = askStatus(admin);
  auto reader = got.reader();
  auto response = reader.getRoot<mtapy::proto::AdminResponse>();
  if (response.isError()) throw std::runtime_error(response.getError().cStr());
  for (auto pool : response.getStatus().getPools()) {
    if (pool.getName() == name) return pool.getSocket();
  }
  throw std::runtime_error("no pool named " + name);
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
  if (command == "reload" && argc - i <= 1) {
    capnp::MallocMessageBuilder message;
    message.initRoot<mtapy::proto::AdminRequest>().setReload(i < argc ? argv[i] : "");
    auto got = ask(socketPath, message, kReloadTimeoutMs);
    auto reader = got.reader();
    auto response = reader.getRoot<mtapy::proto::AdminResponse>();
    if (response.isError()) {
      std::cerr << "mtapyctl: " << response.getError().cStr() << "\n";
      return 3;
    }
    return printReload(response.getReload());
  }
  if (command == "status") {
    auto got = askStatus(socketPath);
    auto reader = got.reader();
    auto response = reader.getRoot<mtapy::proto::AdminResponse>();
    if (response.isError()) {
      std::cerr << "mtapyctl: " << response.getError().cStr() << "\n";
      return 3;
    }
    printStatus(response.getStatus());
    return 0;
  }
  capnp::MallocMessageBuilder message;
  auto call = message.initRoot<mtapy::proto::Request>();
  kj::AutoCloseFd attached;
  if (command == "call" && argc - i >= 2) {
    call.setPool(argv[i]);
    auto expand = call.initExpand();
    expand.setFunction(kj::StringPtr(argv[i + 1]).asBytes());
    auto args = expand.initArgs(unsigned(argc - i - 2));
    for (unsigned a = 0; a < args.size(); a++)
      args.set(a, kj::StringPtr(argv[i + 2 + a]).asBytes());
  } else if (command == "ratelimit" && argc - i >= 2) {
    // The rate limiter's own functions, which the worker lets only root call.
    std::vector<std::string> args = {argv[i + 1]};
    std::string function = "mtapy.filters.ratelimit.show";
    for (int a = i + 2; a < argc; a++) {
      std::string flag = argv[a];
      if (flag == "--reset") {
        function = "mtapy.filters.ratelimit.reset";
      } else if (flag == "--name" && a + 1 < argc) {
        args.push_back(argv[++a]);
      } else {
        std::cerr << kUsage;
        return 64;
      }
    }
    call.setPool(argv[i]);
    auto expand = call.initExpand();
    expand.setFunction(kj::StringPtr(function.c_str()).asBytes());
    auto list = expand.initArgs(unsigned(args.size()));
    for (unsigned a = 0; a < args.size(); a++) list.set(a, kj::StringPtr(args[a].c_str()).asBytes());
  } else if (command == "scan" && argc - i >= 2) {
    try {
      attached = buildScan(call, argc, argv, i);
    } catch (const std::invalid_argument& e) {
      std::cerr << "mtapyctl: " << e.what() << "\n" << kUsage;
      return 64;
    }
  } else {
    std::cerr << kUsage;
    return 64;
  }
  mtapy::shim::Settings settings;
  settings.pool = argv[i];
  settings.timeoutMs = kTimeoutMs;
  try {
    settings.socket = poolSocketOf(socketPath, argv[i]);
  } catch (const std::runtime_error& e) {
    std::cerr << "mtapyctl: " << e.what() << "\n";
    return 3;
  }
  auto got = mtapy::shim::call(message, attached == nullptr ? -1 : attached.get(), settings);
  auto reader = got.reader();
  auto response = reader.getRoot<mtapy::proto::Response>();
  return command == "scan" ? printScan(response) : printCall(response);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const kj::Exception& e) {
    std::cerr << "mtapyctl: " << e.getDescription().cStr() << "\n";
    return 3;
  } catch (const std::runtime_error& e) {  // the daemon went away mid-answer
    std::cerr << "mtapyctl: " << e.what() << "\n";
    return 3;
  }
}
