// daemon.h - mtapy-workerd's single event loop: listeners, pools, signals, graceful stop
// DESCRIPTION  Runs as root and never runs policy code. Reads each Request from an MTA shim,
//              routes it by the caller's uid to a pool and writes the Response back; serves
//              mtapyctl on the root-only admin socket and ${readsocket} lines on an optional
//              third socket (readsocket.c++). SIGTERM/SIGINT: stop accepting, let
//              every queued and running call finish, end the workers, exit 0.
// SEE ALSO     pool.c++, router.c++, listener.c++, proto/policy.capnp, proto/admin.capnp
#pragma once

#include "config.h"
#include "listener.h"
#include "pool.h"

#include <kj/async-io.h>
#include <kj/vector.h>

#include <map>
#include <memory>
#include <set>
#include <vector>

namespace mtapy::workerd {

class Daemon final : private kj::TaskSet::ErrorHandler {
 public:
  Daemon(Config config, std::string workerProgram, kj::AsyncIoContext& io);

  // Serve until a stop signal has been handled.
  kj::Promise<void> run();

 private:
  enum class Protocol { kShim, kAdmin, kReadsocket };
  kj::Promise<void> acceptLoop(Listener& listener, Protocol protocol);
  kj::Promise<void> serveClient(kj::AsyncCapabilityStream& stream, ucred peer);
  kj::Promise<void> serveAdmin(kj::AsyncCapabilityStream& stream, ucred peer);
  kj::Promise<void> serveReadsocket(kj::AsyncCapabilityStream& stream, ucred peer);
  kj::Promise<Reply> answer(proto::Request::Reader request, uid_t caller, bool admin,
                            kj::Maybe<kj::AutoCloseFd> body);
  kj::Promise<void> stop(int signal);
  kj::Promise<void> ignoreHangups();
  size_t limitFor(uid_t uid) const;
  kj::Timer& timer();
  void taskFailed(kj::Exception&& exception) override;

  Config config_;
  kj::AsyncIoContext& io_;
  std::vector<std::unique_ptr<Pool>> pools_;
  kj::Vector<kj::Own<Listener>> listeners_;
  kj::TimePoint started_;
  // Open connections per peer uid. Exim opens one per SMTP session and delivery process;
  // uids that are clients of no pool only ever get refusals, so they need few.
  static constexpr unsigned kClientConnections = 4096, kStrangerConnections = 16;
  std::map<uid_t, unsigned> connectionsByUid_;
  std::set<uid_t> crowdedUids_;  // refused for too many connections; warned once
  kj::TaskSet connections_;
};

}  // namespace mtapy::workerd
