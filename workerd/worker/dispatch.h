// dispatch.h - run one validated request in the policy and build its Response
// DESCRIPTION  The handlers of the call kinds (workerd/call-kinds.h): expand, local_scan
//              and do_filter go into Python through PythonHost. A policy failure is logged here, once, with its
//              traceback, and answered with the pool's on_error.
// SEE ALSO     python-host.h, workerd/call-kinds.h, call-socket.c++, line-socket.c++
#pragma once

#include "python-host.h"
#include "workerd/call-kinds.h"

#include <sys/types.h>

#include <string>
#include <vector>

namespace mtapy::worker {

// What a worker knows of its pool (from its command line, written by workerd/spawn.c++).
struct PoolFacts {
  std::string name;
  calls::OnError onError;
  unsigned timeoutMs = 10000;
  unsigned maxUse = 10000;
  uint64_t maxRssBytes = 0;  // recycle after a call that left it bigger; 0 = never
  unsigned maxOpenFds = 0;   // recycle once this many descriptors are open; 0 = never
  std::vector<uid_t> clients;
  bool allows(uid_t uid) const;
};

// Fill `response` (id set) for `request` from uid `caller`; `fds` are the descriptors that came
// with it (validated: as many as its kind needs). Returns true when the call failed, before
// on_error turned it into an answer.
bool dispatch(PythonHost& python, const PoolFacts& pool, proto::Request::Reader request,
              kj::ArrayPtr<const int> fds, uid_t caller, proto::Response::Builder response);

// Answer a request that cannot run (not allowed, malformed): a Failure, logged as such.
void refuse(const PoolFacts& pool, proto::Failure::Kind kind, const std::string& why,
            proto::Response::Builder response);

}  // namespace mtapy::worker
