// spawn.c++ - fork+exec one mtapy-worker with the pool's sockets and its own channel
#include "spawn.h"

#include <kj/debug.h>

#include <fcntl.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <algorithm>
#include <csignal>
#include <cstring>
#include <vector>

namespace mtapy::workerd {
namespace {

std::string joined(const std::vector<uid_t>& uids) {
  std::string out;
  for (uid_t uid : uids) out += (out.empty() ? "" : ",") + std::to_string(uid);
  return out;
}

std::string lines(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += item + "\n";
  return out;
}

// The state's URL goes in the environment, not in argv: it may hold a Redis password, and any
// local user can read a process's argv (/proc/PID/cmdline); its environment only its own user
// (pylib/mtapy/state.py reads MTAPY_STATE). The rest is the daemon's own, less what names root
// or speaks for the daemon to its service manager (a worker could else notify systemd, or
// pick up its sockets, as the daemon).
std::vector<std::string> workerEnvironment(const PoolConfig& pool) {
  const passwd* user = getpwnam(pool.user.c_str());
  std::vector<std::string> environment = {
      "MTAPY_STATE=" + pool.state, "USER=" + pool.user, "LOGNAME=" + pool.user,
      "HOME=" + std::string(user != nullptr && user->pw_dir != nullptr ? user->pw_dir : "/")};
  static const char* const kReplaced[] = {"MTAPY_STATE=", "USER=", "LOGNAME=", "HOME=",
                                          "NOTIFY_SOCKET=", "LISTEN_FDS=", "LISTEN_PID=",
                                          "LISTEN_FDNAMES=", "WATCHDOG_USEC=", "WATCHDOG_PID="};
  for (char** e = environ; *e != nullptr; ++e) {
    bool replaced = std::any_of(std::begin(kReplaced), std::end(kReplaced), [e](const char* name) {
      return strncmp(*e, name, strlen(name)) == 0;
    });
    if (!replaced) environment.push_back(*e);
  }
  return environment;
}

}  // namespace

Spawned ExecSpawner::spawn(const PoolConfig& pool, const WorkerSpec& spec) {
  std::vector<std::string> args = {
      program_, "--pool", pool.name, "--user", pool.user, "--uid", std::to_string(pool.uid),
      "--gid", std::to_string(pool.gid), "--policy", pool.policy, "--pylib", pylib_,
      "--module-name", pool.moduleName, "--memory-limit", std::to_string(pool.memoryLimitBytes),
      "--slot", std::to_string(spec.slot), "--clients", joined(pool.clients), "--timeout-ms",
      std::to_string(pool.timeoutMs), "--max-use", std::to_string(spec.maxUse), "--fail-open",
      pool.onError == OnError::kAccept ? "1" : "0", "--on-error-value", pool.onErrorValue,
      "--lines", spec.lines >= 0 ? "1" : "0", "--code", spec.takeCode ? "take" : "use",
      "--max-rss-mb", std::to_string(pool.maxRssMb), "--max-open-fds",
      std::to_string(pool.maxOpenFds), "--filters", lines(pool.filters),
      "--pythonfilter-conf", pool.pythonfilterConf, "--on-exception", pool.onException};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> environment = workerEnvironment(pool);
  std::vector<char*> envp;
  for (std::string& e : environment) envp.push_back(e.data());
  envp.push_back(nullptr);

  int pair[2], output[2];
  KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair));
  kj::AutoCloseFd ours(pair[0]), theirs(pair[1]);
  KJ_SYSCALL(pipe2(output, O_CLOEXEC));
  kj::AutoCloseFd outRead(output[0]), outWrite(output[1]);
  int devnull;
  KJ_SYSCALL(devnull = open("/dev/null", O_RDONLY | O_CLOEXEC));
  kj::AutoCloseFd nullInput(devnull);
  // The child puts each descriptor in its place; none of the sources may sit on 0-7.
  int sources[] = {devnull, output[1], output[1], pair[1], spec.calls, spec.scoreboard,
                   spec.lines, spec.code};
  constexpr int kPlaced = 8;
  int moved[kPlaced];
  for (int i = 0; i < kPlaced; i++) {
    if (sources[i] < 0) {
      moved[i] = -1;
      continue;
    }
    KJ_SYSCALL(moved[i] = fcntl(sources[i], F_DUPFD_CLOEXEC, kPlaced + 3));
  }
  KJ_DEFER(for (int fd : moved) if (fd >= 0) close(fd));

  pid_t pid;
  KJ_SYSCALL(pid = fork());
  if (pid == 0) {
    // Child: async-signal-safe calls only, then exec. A new session has no controlling
    // terminal (policy code could otherwise push keystrokes into root's with TIOCSTI).
    if (setsid() < 0) _exit(127);
    for (int i = 0; i < kPlaced; i++) {
      if (moved[i] < 0) close(i);  // no listener: the daemon's fd 6 must not leak
      else if (dup2(moved[i], i) < 0) _exit(127);
    }
    close_range(kPlaced, ~0U, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execve(program_.c_str(), argv.data(), envp.data());
    _exit(127);
  }
  return {pid, kj::mv(ours), kj::mv(outRead)};
}

}  // namespace mtapy::workerd
