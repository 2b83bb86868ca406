// spawn.h - fork+exec one mtapy-worker with its end of a socketpair as fd 3
// SECURITY     The child runs only async-signal-safe calls between fork and exec: the daemon's
//              KJ loop must never continue in a forked child (rpc-baseline.md §6c). The worker
//              gets its own session (no controlling terminal), /dev/null as stdin and no
//              inherited descriptor but stdout, stderr and its socket (fd 3).
#pragma once

#include "config.h"

#include <kj/io.h>

#include <string>

namespace mtapy::workerd {

struct Spawned {
  pid_t pid;
  kj::AutoCloseFd socket;  // the daemon's end
};

Spawned spawnWorker(const std::string& program, const PoolConfig& pool, const std::string& pylib);

}  // namespace mtapy::workerd
