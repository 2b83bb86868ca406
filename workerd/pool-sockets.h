// pool-sockets.h - a pool's sockets: the shims' datagram socket and the ${readsocket} listener
// DESCRIPTION  The daemon creates them and every worker of the pool inherits them, so calls
//              reach a worker without passing through the daemon (Postfix master(8)'s model:
//              the master owns the sockets, its children accept). The datagram socket's queue
//              holds at most queue_limit calls waiting for a worker; a caller that finds it
//              full waits for room until its own deadline. Linux sets that length from the
//              sysctl net.unix.max_dgram_qlen when a socket is made; the daemon sets it to
//              queue_limit for that moment and puts the old value back.
// SECURITY     Mode 0600 and an ACL entry per client uid: the kernel refuses a connect() from
//              any other local user, who never reaches a worker. Workers check again.
// SEE ALSO     proto/datagram.h, worker/call-socket.c++, worker/line-socket.c++
#pragma once

#include "config.h"

#include <kj/io.h>

#include <string>

namespace mtapy::workerd {

struct PoolSockets {
  std::string callPath;  // SOCKET_DIR/pools/NAME.sock
  kj::AutoCloseFd calls;
  kj::AutoCloseFd lines;  // the ${readsocket} listener, or none

  // Make both for `pool` under `socketDir`; throws with the reason.
  PoolSockets(const PoolConfig& pool, const std::string& socketDir);
  ~PoolSockets();  // removes the socket files: new callers are refused from then on
  PoolSockets(PoolSockets&&) = default;

  // Remove the socket files now (stopping): connected callers keep their socket until closed.
  void unlink();
  // Let exactly `clients` (and root) connect from now on (a reload changed them).
  void allow(const std::vector<uid_t>& clients);

 private:
  std::string linesPath_;
  bool unlinked_ = false;
};

// Make SOCKET_DIR/uid/UID.sock point at the pool of each uid that is a client of exactly one
// pool, so a shim without `pool =` finds its pool; remove links of other uids.
void linkClientsToPools(const Config& config);

// Refuse to start if a live daemon answers at `path`; remove a stale socket file.
void claimSocketPath(const std::string& path);

}  // namespace mtapy::workerd
