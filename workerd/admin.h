// admin.h - the admin front end: mtapyctl's requests on the root-only admin socket
// DESCRIPTION  Serves `status` (pools, generations, workers, counts, latencies) and `reload`
//              (answered when the reload is done, so mtapyctl and systemd's ExecReload can
//              tell success from failure). Connections are served side by side: status answers
//              while a reload waits for its workers. Policy calls from mtapyctl go to the
//              pool's own socket, like any MTA's.
// SECURITY     Mode 0600, and callers whose SO_PEERCRED uid is not 0 get only a refusal.
// SEE ALSO     proto/admin.capnp, ctl/mtapyctl.c++, daemon.h (the actions)
#pragma once

#include "listener.h"
#include "proto/admin.capnp.h"

#include <kj/async-io.h>

#include <string>

namespace mtapy::workerd {

// What the admin socket can ask of the daemon.
class AdminActions {
 public:
  virtual ~AdminActions() = default;
  virtual void status(proto::Status::Builder out) = 0;
  // `pool` "" for all; `out` lives until the promise resolves.
  virtual kj::Promise<void> reload(std::string pool, proto::ReloadReport::Builder out) = 0;
};

class Admin final : private kj::TaskSet::ErrorHandler {
 public:
  Admin(const std::string& path, AdminActions& actions, kj::AsyncIoContext& io);
  kj::Promise<void> run();

 private:
  kj::Promise<void> serve(kj::AsyncCapabilityStream& stream, ucred peer);
  void taskFailed(kj::Exception&& exception) override;

  Listener listener_;
  AdminActions& actions_;
  kj::AsyncIoContext& io_;
  unsigned open_ = 0;  // connections; a bounded number, so the daemon keeps descriptors
  kj::TaskSet connections_;
};

}  // namespace mtapy::workerd
