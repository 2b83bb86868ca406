// pool-sockets.c++ - a pool's sockets: the shims' datagram socket and the ${readsocket} listener
#include "pool-sockets.h"

#include <kj/debug.h>
#include <spdlog/spdlog.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>

namespace mtapy::workerd {
namespace {

sockaddr_un addressOf(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  KJ_REQUIRE(path.size() < sizeof address.sun_path, "socket path too long", path);
  memcpy(address.sun_path, path.c_str(), path.size() + 1);
  return address;
}

void makeDir(const std::string& dir) {
  if (mkdir(dir.c_str(), 0755) < 0 && errno != EEXIST) KJ_FAIL_SYSCALL("mkdir", errno, dir);
}

// A socket's folder: whoever may write in it could put a link in the socket's place, and the
// daemon, as root, sets the socket's permissions by its path.
void requireRootsFolder(const std::string& socketPath) {
  size_t slash = socketPath.rfind('/');
  std::string folder = slash == 0 ? "/" : socketPath.substr(0, slash);
  struct stat st;
  if (stat(folder.c_str(), &st) < 0) KJ_FAIL_SYSCALL("stat", errno, folder);
  bool othersWrite = (st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (st.st_mode & S_ISVTX) == 0;
  KJ_REQUIRE(st.st_uid == 0 && !othersWrite,
             "a socket's folder must be root's, and writable by root alone (or sticky, as "
             "/tmp): chown root and chmod go-w it, or put the socket elsewhere",
             socketPath, folder);
}

// A datagram socket whose queue holds `queueLength` calls. Linux reads that length from a
// sysctl when the socket is created, so set it for that moment and put it back. (A private
// network namespace would leave the host's value alone, but abstract addresses, to which
// answers go back, are per namespace.)
int datagramSocket(unsigned queueLength) {
  const char* path = "/proc/sys/net/unix/max_dgram_qlen";
  char old[32] = {};
  int sysctl = open(path, O_RDWR | O_CLOEXEC);
  bool set = false;
  if (sysctl >= 0 && read(sysctl, old, sizeof old - 1) > 0) {
    std::string value = std::to_string(queueLength);
    set = pwrite(sysctl, value.data(), value.size(), 0) > 0;
  }
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  int error = errno;
  if (set) (void)!pwrite(sysctl, old, strlen(old), 0);
  if (sysctl >= 0) close(sysctl);
  if (fd < 0) KJ_FAIL_SYSCALL("socket", error);
  if (!set) {
    spdlog::warn("cannot set a pool's queue length ({}); the system's "
                 "net.unix.max_dgram_qlen applies instead of queue_limit", path);
  }
  return fd;
}

// ACL: the owner (root) and each client uid may connect; nobody else. Format: linux/posix_acl_xattr.h.
void allowOnly(const std::string& path, std::vector<uid_t> clients) {
  struct Entry {
    uint16_t tag, perm;
    uint32_t id;
  };
  constexpr uint16_t kUserObj = 1, kUser = 2, kGroupObj = 4, kMask = 0x10, kOther = 0x20;
  std::sort(clients.begin(), clients.end());
  clients.erase(std::unique(clients.begin(), clients.end()), clients.end());
  std::vector<Entry> acl = {{kUserObj, 6, ~0u}};
  for (uid_t uid : clients) {
    if (uid != 0) acl.push_back({kUser, 6, uid});
  }
  acl.push_back({kGroupObj, 0, ~0u});
  acl.push_back({kMask, 6, ~0u});
  acl.push_back({kOther, 0, ~0u});
  std::string value(4, '\0');
  uint32_t version = 2;
  memcpy(value.data(), &version, 4);
  value.append(reinterpret_cast<const char*>(acl.data()), acl.size() * sizeof(Entry));
  // lsetxattr: at a reload the path is set anew, and a link put in the socket's place must
  // not carry the ACL to the file it names.
  if (lsetxattr(path.c_str(), "system.posix_acl_access", value.data(), value.size(), 0) < 0) {
    KJ_FAIL_SYSCALL("setting the socket's ACL (does the filesystem support POSIX ACLs?)", errno,
                    path);
  }
}

void bindTo(int fd, const std::string& path) {
  requireRootsFolder(path);
  claimSocketPath(path);
  sockaddr_un address = addressOf(path);
  mode_t old = umask(0177);  // no window in which the socket is open to all
  int bound = bind(fd, (sockaddr*)&address, sizeof address);
  umask(old);
  KJ_SYSCALL(bound, "bind", path);
}

}  // namespace

void claimSocketPath(const std::string& path) {
  sockaddr_un address = addressOf(path);
  for (int type : {SOCK_STREAM, SOCK_DGRAM}) {
    int probe = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    bool live = probe >= 0 && connect(probe, (sockaddr*)&address, sizeof address) == 0;
    if (probe >= 0) close(probe);
    KJ_REQUIRE(!live, "another mtapy-workerd is already listening; stop it first", path);
  }
  unlink(path.c_str());  // a stale socket from a daemon that died
}

PoolSockets::PoolSockets(const PoolConfig& pool, const std::string& socketDir)
    : callPath(socketDir + "/pools/" + pool.name + ".sock"), linesPath_(pool.readsocket) {
  makeDir(socketDir);
  makeDir(socketDir + "/pools");
  calls = kj::AutoCloseFd(datagramSocket(std::max(pool.queueLimit, 1u) - 1));
  int on = 1;
  KJ_SYSCALL(setsockopt(calls, SOL_SOCKET, SO_PASSCRED, &on, sizeof on));
  // Answers to callers that are slow to read are charged here; room for many.
  int buffer = 4 << 20;
  setsockopt(calls, SOL_SOCKET, SO_SNDBUFFORCE, &buffer, sizeof buffer);
  bindTo(calls, callPath);
  allowOnly(callPath, pool.clients);
  if (!linesPath_.empty()) {
    int fd;
    // Non-blocking: a worker woken with others must not block in accept() when one of them
    // took the connection.
    KJ_SYSCALL(fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    lines = kj::AutoCloseFd(fd);
    bindTo(lines, linesPath_);
    allowOnly(linesPath_, pool.clients);
    KJ_SYSCALL(listen(lines, int(std::max(pool.queueLimit, 16u))));
  }
}

PoolSockets::~PoolSockets() {
  if (calls != nullptr) unlink();
}

void PoolSockets::unlink() {
  // Once: a pool made since (a renamed one) may have bound the same paths anew.
  if (unlinked_) return;
  unlinked_ = true;
  ::unlink(callPath.c_str());
  if (!linesPath_.empty()) ::unlink(linesPath_.c_str());
}

void PoolSockets::allow(const std::vector<uid_t>& clients) {
  allowOnly(callPath, clients);
  if (!linesPath_.empty()) allowOnly(linesPath_, clients);
}

void linkClientsToPools(const Config& config) {
  std::string dir = config.socketDir + "/uid";
  makeDir(config.socketDir);
  makeDir(dir);
  std::map<uid_t, std::vector<std::string>> pools;
  for (const PoolConfig& pool : config.pools) {
    for (uid_t uid : pool.clients) pools[uid].push_back(pool.name);
  }
  std::set<std::string> wanted;
  for (auto& [uid, names] : pools) {
    if (names.size() != 1) continue;  // such a uid must name its pool (shim.conf: pool =)
    std::string name = std::to_string(uid) + ".sock";
    std::string link = dir + "/" + name, fresh = link + ".new";
    // Replaced in one step: a shim looking its pool up during a reload always finds one.
    ::unlink(fresh.c_str());
    KJ_SYSCALL(symlink(("../pools/" + names[0] + ".sock").c_str(), fresh.c_str()), fresh);
    KJ_SYSCALL(rename(fresh.c_str(), link.c_str()), link);
    wanted.insert(name);
  }
  if (DIR* d = opendir(dir.c_str())) {  // links of a previous configuration
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] != '.' && !wanted.count(e->d_name)) unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
  }
}

}  // namespace mtapy::workerd
