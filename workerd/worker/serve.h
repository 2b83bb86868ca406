// serve.h - a worker's loop: wait on its front ends and on the daemon's control channel
// DESCRIPTION  Waits in epoll on the pool's call socket and ${readsocket} listener (both
//              EPOLLEXCLUSIVE, so one arriving call wakes one idle worker, not all of them)
//              and on fd 3, the daemon's channel. A busy worker is not waiting, so the kernel
//              gives calls to idle ones: a call blocking for a second delays nobody while a
//              worker is idle. The channel says when to start and when to stop:
//                "g"           go: the first word; until then the worker takes no call
//                "r" or EOF    retire: take no more calls, exit 0 (reload, recycle)
//                "d"           drain: answer every call already queued, then exit 0 (SIGTERM)
//              A worker also leaves on its own between calls (recycle.h) and is replaced.
// SEE ALSO     front-end.h, workerd/supervisor.c++, proto/worker.capnp
#pragma once

#include "front-end.h"

namespace mtapy::worker {

struct Sockets {
  int control = 3;
  int calls = 4;
  int lines = -1;  // the ${readsocket} listener, if the pool has one
};

[[noreturn]] void serve(Worker& worker, const Sockets& sockets);

}  // namespace mtapy::worker
