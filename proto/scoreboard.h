// scoreboard.h - what each worker of a pool is doing, in memory shared with mtapy-workerd
// DESCRIPTION  The daemon is off the call path, so it learns what workers do from this table
//              (Apache's and Postfix's scoreboard idea): one Slot per worker, written by that
//              worker around every call and read by the daemon when it checks deadlines
//              (every kScanInterval), when a worker dies (to answer its caller) and for
//              `mtapyctl status`. Writing a slot costs a few stores, no system call.
// SECURITY     Each pool has its own table, mapped only by the daemon and that pool's workers.
//              A worker can write anything into it, so the daemon bounds every string it reads,
//              trusts no pid from it, sends answers only to autobound (abstract) addresses, and
//              seals the table's size; the worst a policy can do is misreport its own pool.
// SEE ALSO     workerd/worker/call-slot.c++ (the writer), workerd/pool.c++ (the reader)
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace mtapy::scoreboard {

constexpr size_t kFunctions = 16;     // per-function counts kept per worker; the rest: "(other)"
constexpr size_t kLatencies = 256;    // latest call latencies per worker, for p50/p99
constexpr size_t kNameBytes = 64;     // function names and message ids are cut to this
constexpr size_t kAddressBytes = 108;  // sockaddr_un.sun_path

enum State : uint32_t { kFree = 0, kStarting = 1, kIdle = 2, kBusy = 3 };

struct FunctionCount {
  char name[kNameBytes];
  uint64_t calls, failures;
};

// The call a busy worker is running: enough for the daemon to answer its caller itself.
struct Call {
  uint64_t number;  // counts calls in this slot; tells "the same call" from "a new one"
  int64_t startedNs, deadlineNs;  // CLOCK_MONOTONIC
  uint64_t requestId;
  uint32_t kind;       // proto::Request::Which
  uint32_t callerUid;
  int32_t connection;  // a line front end's connection descriptor in the worker; -1 otherwise
  uint32_t addressLength;
  char address[kAddressBytes];  // the caller's socket address, for a datagram answer
  char function[kNameBytes];
  char messageId[kNameBytes];
};

struct Slot {
  std::atomic<uint32_t> seq;  // odd while the worker writes `call` (a seqlock)
  std::atomic<uint32_t> state;
  // A process sharing the worker's descriptor table (workers with a ${readsocket} listener):
  // when the worker dies mid-call it still holds the caller's connection, so the daemon can
  // answer it. The daemon checks that it is in the worker's process group.
  int32_t keeperPid;
  Call call;
  uint64_t calls, failures;
  FunctionCount functions[kFunctions];
  uint32_t latencyNext;
  uint32_t latencyMicros[kLatencies];
};

struct Table {
  uint32_t magic;
  uint32_t slotCount;
  Slot slots[1];  // slotCount of them
};

constexpr uint32_t kMagic = 0x6d747062;  // "mtpb"

inline size_t tableBytes(uint32_t slots) {
  return offsetof(Table, slots) + sizeof(Slot) * slots;
}

}  // namespace mtapy::scoreboard
