// call-slot.h - this worker's slot in its pool's scoreboard: what it is doing, and its counts
// DESCRIPTION  Written around every call so that mtapy-workerd, off the call path, can enforce
//              the deadline, answer the caller if this process dies mid-call, and show counts,
//              failures and latency in `mtapyctl status`. A few stores per call, no syscall.
// SEE ALSO     proto/scoreboard.h (the layout), workerd/pool.c++ (the reader)
#pragma once

#include "proto/datagram.h"
#include "proto/scoreboard.h"

#include <string>

namespace mtapy::worker {

class CallSlot {
 public:
  // Map slot `index` of the table in descriptor `fd`.
  CallSlot(int fd, uint32_t index);

  void setState(scoreboard::State state);
  void setKeeper(pid_t keeper);

  // A call starts: from `caller` (datagram calls; null for a line connection `connection`).
  void begin(uint64_t requestId, uint32_t kind, uid_t uid, const wire::Address* caller,
             int connection, const std::string& function, kj::StringPtr messageId,
             int64_t deadlineNs);
  // It ended at `endedNs` (its answer built, not yet sent: the caller's own time to read it
  // is not the policy's); `failed` if it ended in a Failure (before on_error).
  void end(bool failed, int64_t endedNs);

 private:
  scoreboard::Slot* slot_;
};

int64_t monotonicNs();

}  // namespace mtapy::worker
