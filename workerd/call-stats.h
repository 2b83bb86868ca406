// call-stats.h - counts, failures, per-function figures and latencies of a pool's calls
// DESCRIPTION  Workers count their own calls in their scoreboard slots. What a worker counted
//              is kept here when it is gone, and a generation's figures are kept by its pool
//              when the generation is gone, so `mtapyctl status` covers the pool's whole life.
// SECURITY     Slots are written by policy processes: names are bounded, and at most
//              kMaxFunctionNames distinct names are kept (the rest count as "(other)").
// SEE ALSO     proto/scoreboard.h, proto/admin.capnp PoolStatus
#pragma once

#include "proto/admin.capnp.h"
#include "proto/scoreboard.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace mtapy::workerd {

class CallStats {
 public:
  void add(const scoreboard::Slot& slot);
  void add(const CallStats& other);
  // calls, failures, p50/p99 and functions of `out`.
  void fill(proto::PoolStatus::Builder out) const;

 private:
  void count(const std::string& name, uint64_t calls, uint64_t failures);
  void keepLatest();

  uint64_t calls_ = 0, failures_ = 0;
  std::map<std::string, std::pair<uint64_t, uint64_t>> perFunction_;
  std::vector<uint32_t> latencies_;  // the latest, oldest first
};

// A string a worker wrote into a fixed field of its slot, read with a bound, made printable.
std::string boundedText(const char* text, size_t size);

}  // namespace mtapy::workerd
