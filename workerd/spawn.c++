// spawn.c++ - fork+exec one mtapy-worker with its end of a socketpair as fd 3
#include "spawn.h"

#include <kj/debug.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <csignal>
#include <vector>

namespace mtapy::workerd {

Spawned spawnWorker(const std::string& program, const PoolConfig& pool, const std::string& pylib) {
  std::vector<std::string> args = {program,
                                   "--pool",
                                   pool.name,
                                   "--user",
                                   pool.user,
                                   "--uid",
                                   std::to_string(pool.uid),
                                   "--gid",
                                   std::to_string(pool.gid),
                                   "--policy",
                                   pool.policy,
                                   "--pylib",
                                   pylib,
                                   "--module-name",
                                   pool.moduleName,
                                   "--memory-limit",
                                   std::to_string(pool.memoryLimitBytes)};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int pair[2];
  KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair));
  kj::AutoCloseFd ours(pair[0]), theirs(pair[1]);
  int devnull;
  KJ_SYSCALL(devnull = open("/dev/null", O_RDONLY | O_CLOEXEC));
  kj::AutoCloseFd nullInput(devnull);

  pid_t pid;
  KJ_SYSCALL(pid = fork());
  if (pid == 0) {
    // Child: async-signal-safe calls only, then exec. A new session has no controlling
    // terminal (policy code could otherwise push keystrokes into root's with TIOCSTI), stdin
    // is /dev/null, and nothing the daemon inherited reaches the worker but stderr.
    if (setsid() < 0 || dup2(devnull, 0) < 0) _exit(127);
    if (pair[1] == 3)
      fcntl(3, F_SETFD, 0);
    else if (dup2(pair[1], 3) < 0)
      _exit(127);
    close_range(4, ~0U, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execv(program.c_str(), argv.data());
    _exit(127);
  }
  return {pid, kj::mv(ours)};
}

}  // namespace mtapy::workerd
