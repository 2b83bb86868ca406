// privileges.h - become the pool's user before any policy code can run
// SECURITY     Called in the freshly exec'd worker while it is still root; after it returns the
//              process cannot regain root (checked), has no_new_privs and no core dumps.
// DIAGNOSTICS  Throws kj::Exception with the failing step; worker-main.c++ reports it as a
//              boot error and exits with kExitBootError.
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace mtapy::worker {

struct Identity {
  const char* userName;  // for the supplementary groups (initgroups)
  uid_t uid;
  gid_t gid;
  uint64_t memoryLimitBytes;  // RLIMIT_AS; 0 = no limit
};

void dropPrivileges(const Identity& who);

// Undo what the daemon's event loop left in our mask and dispositions (KJ blocks SIGCHLD
// and ignores SIGPIPE, both inherited through exec), so policy code sees a normal process.
void resetSignals();

}  // namespace mtapy::worker
