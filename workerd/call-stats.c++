// call-stats.c++ - counts, failures, per-function figures and latencies of a pool's calls
#include "call-stats.h"

#include "call-kinds.h"

#include <algorithm>
#include <cstring>

namespace mtapy::workerd {
namespace {

constexpr size_t kKeptLatencies = 1024;
constexpr size_t kMaxFunctionNames = 1000;  // bounded stats even for junk names

}  // namespace

std::string boundedText(const char* text, size_t size) {
  // Printable: the policy may have written anything there, and it goes into log lines.
  return calls::printable(
      kj::arrayPtr(reinterpret_cast<const kj::byte*>(text), strnlen(text, size)));
}

void CallStats::count(const std::string& name, uint64_t calls, uint64_t failures) {
  auto& counts = perFunction_.size() >= kMaxFunctionNames && !perFunction_.count(name)
                     ? perFunction_["(other)"]
                     : perFunction_[name];
  counts.first += calls;
  counts.second += failures;
}

void CallStats::keepLatest() {
  if (latencies_.size() > kKeptLatencies)
    latencies_.erase(latencies_.begin(), latencies_.end() - kKeptLatencies);
}

void CallStats::add(const scoreboard::Slot& slot) {
  calls_ += slot.calls;
  failures_ += slot.failures;
  for (const auto& f : slot.functions) {
    if (f.name[0] != '\0') count(boundedText(f.name, sizeof f.name), f.calls, f.failures);
  }
  size_t n = std::min<size_t>(slot.latencyNext, scoreboard::kLatencies);
  latencies_.insert(latencies_.end(), slot.latencyMicros, slot.latencyMicros + n);
  keepLatest();
}

void CallStats::add(const CallStats& other) {
  calls_ += other.calls_;
  failures_ += other.failures_;
  for (auto& [name, counts] : other.perFunction_) count(name, counts.first, counts.second);
  latencies_.insert(latencies_.end(), other.latencies_.begin(), other.latencies_.end());
  keepLatest();
}

void CallStats::fill(proto::PoolStatus::Builder out) const {
  out.setCalls(calls_);
  out.setFailures(failures_);
  if (!latencies_.empty()) {
    std::vector<uint32_t> sorted = latencies_;
    std::sort(sorted.begin(), sorted.end());
    size_t n = sorted.size();
    out.setP50Micros(sorted[n / 2]);
    out.setP99Micros(sorted[std::min(n - 1, n * 99 / 100)]);
  }
  auto functions = out.initFunctions(unsigned(perFunction_.size()));
  unsigned i = 0;
  for (auto& [name, counts] : perFunction_) {
    functions[i].setName(calls::printable(kj::StringPtr(name.c_str()).asBytes()));
    functions[i].setCalls(counts.first);
    functions[i++].setFailures(counts.second);
  }
}

}  // namespace mtapy::workerd
