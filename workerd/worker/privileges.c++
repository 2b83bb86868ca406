// privileges.c++ - become the pool's user before any policy code can run
#include "privileges.h"

#include <kj/debug.h>

#include <grp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>
#include <csignal>

namespace mtapy::worker {

void dropPrivileges(const Identity& who) {
  KJ_REQUIRE(who.uid != 0, "refusing to run policy code as root");
  KJ_SYSCALL(chdir("/"));
  KJ_SYSCALL(initgroups(who.userName, who.gid), "initgroups", who.userName);
  KJ_SYSCALL(setresgid(who.gid, who.gid, who.gid), "setresgid", who.gid);
  KJ_SYSCALL(setresuid(who.uid, who.uid, who.uid), "setresuid", who.uid);
  KJ_REQUIRE(setuid(0) != 0, "privileges were not dropped: setuid(0) still works");
  KJ_SYSCALL(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS");

  rlimit none{0, 0};
  KJ_SYSCALL(setrlimit(RLIMIT_CORE, &none), "RLIMIT_CORE");  // a core holds mail
  if (who.memoryLimitBytes > 0) {
    rlimit memory{who.memoryLimitBytes, who.memoryLimitBytes};
    KJ_SYSCALL(setrlimit(RLIMIT_AS, &memory), "RLIMIT_AS");
  }
}

void resetSignals() {
  sigset_t all;
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, nullptr);
  for (int sig : {SIGPIPE, SIGCHLD, SIGHUP, SIGTERM, SIGINT, SIGUSR1, SIGUSR2}) {
    signal(sig, SIG_DFL);
  }
}

}  // namespace mtapy::worker
