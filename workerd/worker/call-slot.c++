// call-slot.c++ - this worker's slot in its pool's scoreboard: what it is doing, and its counts
#include "call-slot.h"

#include <kj/debug.h>

#include <sys/mman.h>
#include <algorithm>
#include <cstring>
#include <ctime>

namespace mtapy::worker {
namespace {

void copyName(char (&into)[scoreboard::kNameBytes], const char* from, size_t size) {
  size = std::min(size, sizeof into - 1);
  memcpy(into, from, size);
  into[size] = '\0';
}

}  // namespace

int64_t monotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

CallSlot::CallSlot(int fd, uint32_t index) {
  void* table = mmap(nullptr, scoreboard::tableBytes(index + 1), PROT_READ | PROT_WRITE,
                     MAP_SHARED, fd, 0);
  if (table == MAP_FAILED) KJ_FAIL_SYSCALL("mmap scoreboard", errno);
  auto* t = static_cast<scoreboard::Table*>(table);
  KJ_REQUIRE(t->magic == scoreboard::kMagic && index < t->slotCount, "bad scoreboard slot");
  slot_ = &t->slots[index];
}

void CallSlot::setKeeper(pid_t keeper) {
  slot_->keeperPid = keeper;
}

void CallSlot::setState(scoreboard::State state) {
  slot_->state.store(state, std::memory_order_release);
}

void CallSlot::begin(uint64_t requestId, uint32_t kind, uid_t uid, const wire::Address* caller,
                     int connection, const std::string& function, kj::StringPtr messageId,
                     int64_t deadlineNs) {
  scoreboard::Call& call = slot_->call;
  slot_->seq.fetch_add(1, std::memory_order_acq_rel);  // odd: being written
  call.number++;
  call.startedNs = monotonicNs();
  call.deadlineNs = deadlineNs;
  call.requestId = requestId;
  call.kind = kind;
  call.callerUid = uid;
  call.connection = connection;
  call.addressLength = 0;
  if (caller != nullptr) {
    size_t path = caller->length > sizeof(sa_family_t) ? caller->length - sizeof(sa_family_t) : 0;
    call.addressLength = uint32_t(std::min(path, sizeof call.address));
    memcpy(call.address, caller->address.sun_path, call.addressLength);
  }
  copyName(call.function, function.data(), function.size());
  copyName(call.messageId, messageId.cStr(), messageId.size());
  slot_->state.store(scoreboard::kBusy, std::memory_order_release);
  slot_->seq.fetch_add(1, std::memory_order_release);
}

void CallSlot::end(bool failed, int64_t endedNs) {
  const scoreboard::Call& call = slot_->call;
  slot_->seq.fetch_add(1, std::memory_order_acq_rel);
  slot_->state.store(scoreboard::kIdle, std::memory_order_release);
  slot_->seq.fetch_add(1, std::memory_order_release);
  int64_t micros = (endedNs - call.startedNs) / 1000;
  slot_->latencyMicros[slot_->latencyNext++ % scoreboard::kLatencies] =
      uint32_t(std::clamp<int64_t>(micros, 1, UINT32_MAX));
  slot_->calls++;
  slot_->failures += failed;
  // Per-function counts: its own entry or a free one; the last entry is "(other)".
  scoreboard::FunctionCount* entry = &slot_->functions[scoreboard::kFunctions - 1];
  for (size_t i = 0; i + 1 < scoreboard::kFunctions; i++) {
    auto& f = slot_->functions[i];
    if (f.name[0] == '\0') copyName(f.name, call.function, strlen(call.function));
    if (strcmp(f.name, call.function) == 0) {
      entry = &f;
      break;
    }
  }
  if (entry->name[0] == '\0') copyName(entry->name, "(other)", 7);
  entry->calls++;
  entry->failures += failed;
}

}  // namespace mtapy::worker
