// main.c++ - mtapy-workerd: command line, logging, then the daemon's event loop
// DESCRIPTION  mtapy-workerd [--config FILE] [--check-config]. Stays in the foreground (systemd
//              Type=notify supervises it); logs to stderr (journald) or syslog.
// SEE ALSO     deploy/workerd.toml (every option), deploy/mtapy-workerd.service
#include "config.h"
#include "daemon.h"

#include <kj/async-unix.h>
#include <kj/debug.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>

#include <sys/resource.h>
#include <syslog.h>
#include <unistd.h>
#include <csignal>
#include <cstring>
#include <iostream>

namespace {

constexpr const char* kUsage =
    "usage: mtapy-workerd [--config FILE] [--check-config]\n"
    "\n"
    "Runs Python mail policy for MTAs in privilege-separated worker pools.\n"
    "\n"
    "  --config FILE    the configuration (default /etc/mtapy/workerd.toml; every option is\n"
    "                   described in the sample, /usr/share/doc/mtapy/workerd.toml)\n"
    "  --check-config   report every problem in FILE with its line, then exit:\n"
    "                   0 when it is valid, 1 when not\n"
    "  --help           this text\n"
    "\n"
    "Calls go straight to each pool's workers on SOCKET_DIR/pools/NAME.sock; the daemon\n"
    "supervises them and answers for a worker that dies or overruns its deadline.\n"
    "\n"
    "Signals: TERM or INT refuse new callers and stop after queued calls are answered.\n"
    "HUP re-reads FILE and reloads every pool: a new generation of workers loads the\n"
    "policy and takes the calls once all of it is ready; if it fails, the old one serves\n"
    "on. mtapyctl reload does the same and reports the outcome.\n";

// mtapy-worker is installed beside us; /proc/self/exe resolves a /usr/sbin symlink.
std::string workerProgram() {
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return "/usr/lib/mtapy/mtapy-worker";
  std::string path(self, size_t(n));
  return path.substr(0, path.rfind('/') + 1) + "mtapy-worker";
}

void setUpLogging(const mtapy::workerd::Config& config) {
  std::shared_ptr<spdlog::logger> logger;
  if (config.logTarget == "syslog") {
    logger = spdlog::syslog_logger_mt("mtapy", "mtapy-workerd", LOG_PID, LOG_MAIL);
  } else {
    logger = spdlog::stderr_logger_mt("mtapy");
    logger->set_pattern("%Y-%m-%d %H:%M:%S.%e mtapy-workerd[%P] %l: %v");
  }
  logger->set_level(spdlog::level::from_str(config.logLevel));
  logger->flush_on(spdlog::level::debug);
  spdlog::set_default_logger(logger);
}

}  // namespace

int main(int argc, char** argv) {
  std::string path = "/etc/mtapy/workerd.toml";
  bool checkOnly = false;
  for (int i = 1; i < argc; i++) {
    std::string arg = argv[i];
    if (arg == "--config" && i + 1 < argc)
      path = argv[++i];
    else if (arg == "--check-config")
      checkOnly = true;
    else if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    } else {
      std::cerr << "mtapy-workerd: unknown argument " << arg << "\n" << kUsage;
      return 2;
    }
  }

  std::vector<std::string> errors;
  auto config = mtapy::workerd::loadConfig(path, mtapy::workerd::Host::system(), errors);
  for (const std::string& e : errors) std::cerr << e << "\n";
  if (!errors.empty()) {
    std::cerr << "mtapy-workerd: " << errors.size() << " problem(s) in " << path
              << "; not starting\n";
    return 1;
  }
  if (checkOnly) {
    std::cout << path << ": OK, " << config.pools.size() << " pool(s)\n";
    return 0;
  }
  if (geteuid() != 0) {
    std::cerr << "mtapy-workerd: must run as root to start workers as the pools' users\n";
    return 1;
  }
  setUpLogging(config);
  // Descriptors: take what the hard limit allows (LimitNOFILE in the unit raises that).
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }

  // Before any event loop exists: KJ reads these from a signalfd instead of handlers.
  kj::UnixEventPort::captureChildExit();
  kj::UnixEventPort::captureSignal(SIGTERM);
  kj::UnixEventPort::captureSignal(SIGINT);
  kj::UnixEventPort::captureSignal(SIGHUP);
  try {
    auto io = kj::setupAsyncIo();
    mtapy::workerd::Daemon daemon(std::move(config), workerProgram(), io);
    daemon.run().wait(io.waitScope);
  } catch (const kj::Exception& e) {
    spdlog::critical("{}", e.getDescription().cStr());
    return 1;
  }
  return 0;
}
