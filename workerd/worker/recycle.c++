// recycle.c++ - when a worker should leave between two calls: max_use, max_rss_mb, max_open_fds
#include "recycle.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>
#include <cstdlib>

namespace mtapy::worker {
namespace {

uint64_t residentBytes(int statm) {
  char text[128];
  ssize_t n = pread(statm, text, sizeof text - 1, 0);
  if (n <= 0) return 0;
  text[n] = '\0';
  char* end;
  strtoull(text, &end, 10);  // total size; resident pages come second
  return strtoull(end, nullptr, 10) * uint64_t(sysconf(_SC_PAGESIZE));
}

// Whether at least `limit` descriptors are open. When the lowest free number is `limit` or
// more, all below it are open: two calls. Otherwise count them (a policy may leak one file
// while it closes another, leaving low numbers free).
bool openFdsReach(DIR* fds, unsigned limit) {
  int probe = fcntl(0, F_DUPFD_CLOEXEC, 0);
  if (probe < 0) return true;  // EMFILE: the table is full
  close(probe);
  if (unsigned(probe) >= limit) return true;
  if (fds == nullptr) return false;
  rewinddir(fds);
  unsigned open = 0;
  while (dirent* entry = readdir(fds)) {
    if (entry->d_name[0] != '.') open++;
  }
  return open - 1 >= limit;  // not counting the directory's own descriptor
}

}  // namespace

Recycler::Recycler(const PoolFacts& pool) : pool_(pool) {
  if (pool.maxRssBytes > 0) statm_ = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (pool.maxOpenFds > 0) fds_ = opendir("/proc/self/fd");
}

Recycler::~Recycler() {
  if (statm_ >= 0) close(statm_);
  if (fds_ != nullptr) closedir(fds_);
}

std::string Recycler::reasonAfter(unsigned served) {
  if (served >= pool_.maxUse) {
    return "recycling after " + std::to_string(served) + " calls (max_use)";
  }
  if (statm_ >= 0) {
    uint64_t resident = residentBytes(statm_);
    if (resident > pool_.maxRssBytes) {
      return "recycling: resident memory " + std::to_string(resident >> 20) +
             " MB passed max_rss_mb = " + std::to_string(pool_.maxRssBytes >> 20);
    }
  }
  if (pool_.maxOpenFds > 0 && openFdsReach(fds_, pool_.maxOpenFds)) {
    return "recycling: " + std::to_string(pool_.maxOpenFds) +
           " descriptors or more are open (max_open_fds); does the policy close its files?";
  }
  return "";
}

}  // namespace mtapy::worker
