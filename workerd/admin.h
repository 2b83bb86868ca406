// admin.h - the admin front end: mtapyctl's requests on the root-only admin socket
// DESCRIPTION  Serves `status` (pools, workers, counts, latencies, from the pools' scoreboards).
//              Policy calls from mtapyctl go to the pool's own socket, like any MTA's.
// SECURITY     Mode 0600, and callers whose SO_PEERCRED uid is not 0 get only a refusal.
// SEE ALSO     proto/admin.capnp, ctl/mtapyctl.c++
#pragma once

#include "listener.h"
#include "pool.h"

#include <kj/async-io.h>

#include <memory>
#include <vector>

namespace mtapy::workerd {

class Admin final : private kj::TaskSet::ErrorHandler {
 public:
  Admin(const std::string& path, std::vector<std::unique_ptr<Pool>>& pools, kj::AsyncIoContext& io);
  kj::Promise<void> run();

 private:
  kj::Promise<void> serve(kj::AsyncCapabilityStream& stream, ucred peer);
  void taskFailed(kj::Exception&& exception) override;

  Listener listener_;
  std::vector<std::unique_ptr<Pool>>& pools_;
  kj::AsyncIoContext& io_;
  kj::TimePoint started_;
  unsigned open_ = 0;  // connections; a bounded number, so the daemon keeps descriptors
  kj::TaskSet connections_;
};

}  // namespace mtapy::workerd
