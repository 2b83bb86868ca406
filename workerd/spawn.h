// spawn.h - fork+exec one mtapy-worker with the pool's sockets and its own channel
// DESCRIPTION  The worker gets: fd 3 its channel to the daemon (a socketpair), fd 4 the pool's
//              call socket, fd 5 its generation's scoreboard, fd 6 the ${readsocket} listener
//              if any, fd 7 its generation's code snapshot (written by the first worker);
//              its stdout and stderr are a pipe the daemon reads into its log, so policy code
//              cannot write to (or truncate) the daemon's own log.
// SECURITY     The child runs only async-signal-safe calls between fork and exec: the daemon's
//              KJ loop must never continue in a forked child (docs/design.md, "KJ and fork").
//              The worker gets its own session (no controlling terminal), /dev/null as stdin
//              and no other inherited descriptor.
#pragma once

#include "config.h"

#include <kj/io.h>

#include <string>

namespace mtapy::workerd {

struct Spawned {
  pid_t pid;
  kj::AutoCloseFd control;  // the daemon's end of fd 3
  kj::AutoCloseFd output;   // read end of the worker's stdout/stderr
};

struct WorkerSpec {
  uint32_t slot;    // its scoreboard slot
  unsigned maxUse;  // calls before it recycles itself (max_use plus jitter)
  int calls, scoreboard, lines;  // the pool's descriptors (lines: -1 if none)
  int code;                      // the generation's code snapshot
  bool takeCode;                 // the first worker: it writes the snapshot
};

// How a supervisor starts workers; injected so that its tests can start fake ones.
class Spawner {
 public:
  virtual ~Spawner() = default;
  virtual Spawned spawn(const PoolConfig& pool, const WorkerSpec& spec) = 0;
};

// The real one: exec `program` (mtapy-worker) with `pylib` on its Python path.
class ExecSpawner final : public Spawner {
 public:
  ExecSpawner(std::string program, std::string pylib)
      : program_(kj::mv(program)), pylib_(kj::mv(pylib)) {}
  Spawned spawn(const PoolConfig& pool, const WorkerSpec& spec) override;

 private:
  std::string program_, pylib_;
};

}  // namespace mtapy::workerd
