// recycle.h - when a worker should leave between two calls: max_use, max_rss_mb, max_open_fds
// DESCRIPTION  Checked after every call, never during one. A policy that leaks memory or
//              descriptors is replaced before it harms its pool; the worker says why on its
//              output, which the daemon logs as one line, and exits 0 to be replaced.
// SEE ALSO     serve.c++, deploy/workerd.toml (the knobs)
#pragma once

#include "dispatch.h"

#include <dirent.h>

#include <string>

namespace mtapy::worker {

class Recycler {
 public:
  explicit Recycler(const PoolFacts& pool);
  ~Recycler();
  Recycler(const Recycler&) = delete;
  Recycler& operator=(const Recycler&) = delete;

  // After call number `served`: why this worker should go now, or "" to stay.
  std::string reasonAfter(unsigned served);

 private:
  const PoolFacts& pool_;
  int statm_ = -1;       // /proc/self/statm, kept open: one pread per call
  DIR* fds_ = nullptr;   // /proc/self/fd, kept open: read again after each call
};

}  // namespace mtapy::worker
