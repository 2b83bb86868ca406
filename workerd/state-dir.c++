// state-dir.c++ - the folder of a pool's embedded shared state (pylib/mtapy/state.py, LMDB)
#include "state-dir.h"

#include <kj/debug.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cerrno>

namespace mtapy::workerd {
namespace {

void makeDir(const std::string& path, mode_t mode) {
  if (mkdir(path.c_str(), mode) < 0 && errno != EEXIST) KJ_FAIL_SYSCALL("mkdir", errno, path);
}

}  // namespace

void prepareStateDir(const PoolConfig& pool) {
  const std::string scheme = "lmdb://";
  if (pool.state.rfind(scheme, 0) != 0) return;
  std::string dir = pool.state.substr(scheme.size());
  std::string parent = dir.substr(0, dir.rfind('/'));
  makeDir(parent.substr(0, parent.rfind('/')), 0755);  // /var/lib/mtapy
  makeDir(parent, 0755);
  makeDir(dir, 0700);
  int folder = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (folder < 0) KJ_FAIL_SYSCALL("open", errno, dir);
  KJ_DEFER(close(folder));
  KJ_SYSCALL(fchown(folder, pool.uid, pool.gid), dir);
  KJ_SYSCALL(fchmod(folder, 0700), dir);
  // LMDB's data.mdb and lock.mdb: the pool's user may have changed since they were made.
  int listing = dup(folder);
  DIR* entries = listing < 0 ? nullptr : fdopendir(listing);
  if (entries == nullptr) KJ_FAIL_SYSCALL("opendir", errno, dir);
  KJ_DEFER(closedir(entries));
  while (dirent* e = readdir(entries)) {
    if (e->d_name[0] == '.') continue;
    fchownat(folder, e->d_name, pool.uid, pool.gid, AT_SYMLINK_NOFOLLOW);
  }
}

}  // namespace mtapy::workerd
