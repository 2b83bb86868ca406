// front-end.h - what a worker's front ends share: the policy, the pool's facts, the slot
// DESCRIPTION  A front end takes one call from its socket when the serve loop finds it
//              readable, answers it and returns; each is a module of its own: call-socket.c++
//              (the shims' datagrams) and line-socket.c++ (${readsocket} lines).
// SEE ALSO     serve.c++ (the loop), dispatch.h
#pragma once

#include "call-slot.h"
#include "dispatch.h"

namespace mtapy::worker {

struct Worker {
  PythonHost& python;
  const PoolFacts& pool;
  CallSlot& slot;
};

// Both return false when nothing was waiting (another worker took it).
bool serveDatagram(Worker& worker, int callSocket);
bool serveLine(Worker& worker, int listener);

// The deadline of a call that asked for `requestedMs` (0: the pool's timeout).
int64_t deadlineNs(const PoolFacts& pool, uint32_t requestedMs);

}  // namespace mtapy::worker
