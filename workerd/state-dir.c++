// state-dir.c++ - the folder of a pool's embedded shared state (pylib/mtapy/state.py, LMDB)
#include "state-dir.h"

#include <kj/debug.h>

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
  // LMDB's files, made by the pool's previous user if it changed. Only those two names, only
  // regular files with one link and not root's: the folder is the pool user's, who could
  // plant a symlink or a hard link to any file there for us to give away.
  for (const char* name : {"data.mdb", "lock.mdb"}) {
    int file = openat(folder, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (file < 0) continue;
    struct stat st;
    if (fstat(file, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1 && st.st_uid != 0 &&
        (st.st_uid != pool.uid || st.st_gid != pool.gid)) {
      (void)!fchown(file, pool.uid, pool.gid);
    }
    close(file);
  }
}

}  // namespace mtapy::workerd
