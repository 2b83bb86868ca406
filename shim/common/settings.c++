// settings.c++ - the shim's own configuration: where the daemon is, which pool, how long to wait
#include "settings.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <climits>
#include <cstdlib>

namespace mtapy::shim {
namespace {

std::string trim(const std::string& s) {
  auto begin = s.find_first_not_of(" \t\r");
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(" \t\r") - begin + 1);
}

// "30s", "500ms" or a bare number of seconds; 0 when malformed.
unsigned parseDuration(const std::string& value) {
  size_t end = 0;
  unsigned long n = 0;
  try {
    n = std::stoul(value, &end);
  } catch (...) {
    return 0;
  }
  std::string unit = value.substr(end);
  if (unit == "ms" && n <= UINT_MAX) return unsigned(n);
  if ((unit == "s" || unit.empty()) && n <= UINT_MAX / 1000) return unsigned(n * 1000);
  return 0;  // as a bad value: a timeout that wrapped around would be a short one
}

}  // namespace

Settings parseSettings(const std::string& text, const std::string& path) {
  Settings s;
  size_t at = 0;
  for (int number = 1; at < text.size(); number++) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(at, end - at);
    line = trim(line.substr(0, line.find('#')));
    at = end + 1;
    if (line.empty()) continue;
    auto equals = line.find('=');
    std::string key = trim(line.substr(0, equals));
    std::string value = equals == std::string::npos ? "" : trim(line.substr(equals + 1));
    std::string where = path + ":" + std::to_string(number) + ": ";
    if (equals == std::string::npos || value.empty()) {
      s.error = where + "expected key = value";
    } else if (key == "socket_dir") {
      s.socketDir = value;
    } else if (key == "socket") {
      s.socket = value;
    } else if (key == "pool") {
      s.pool = value;
    } else if (key == "timeout") {
      s.timeoutMs = parseDuration(value);
      if (s.timeoutMs == 0) s.error = where + "timeout: expected e.g. 30s or 500ms";
    } else {
      s.error = where + "unknown key " + key + " (expected socket_dir, pool, timeout or socket)";
    }
    if (!s.error.empty()) break;
  }
  return s;
}

std::string poolSocket(const Settings& s) {
  if (!s.socket.empty()) return s.socket;
  if (!s.pool.empty()) return s.socketDir + "/pools/" + s.pool + ".sock";
  return s.socketDir + "/uid/" + std::to_string(getuid()) + ".sock";
}

namespace {

// What stat() tells of the file a copy was read from; equal means not changed since. The
// timestamps follow the kernel's coarse clock (ticks of some ms), so the size helps catch a
// rewrite in the same tick.
struct Identity {
  bool exists = false;
  dev_t device = 0;
  ino_t inode = 0;
  off_t size = 0;
  timespec modified{}, changed{};

  explicit Identity(const struct stat* st = nullptr) {
    if (st == nullptr) return;
    exists = true;
    device = st->st_dev;
    inode = st->st_ino;
    size = st->st_size;
    modified = st->st_mtim;
    changed = st->st_ctim;
  }
  bool operator==(const Identity& o) const {
    return exists == o.exists && device == o.device && inode == o.inode && size == o.size &&
           modified.tv_sec == o.modified.tv_sec && modified.tv_nsec == o.modified.tv_nsec &&
           changed.tv_sec == o.changed.tv_sec && changed.tv_nsec == o.changed.tv_nsec;
  }
};

struct Loaded {
  std::string path;
  Identity identity;
  Settings settings;
  pid_t checkedBy = 0;  // the process that last made sure this copy is current
};

const char* confPath() {
  // Not from a setuid start (sendmail, exim -bs by any user): they could aim us anywhere.
  const char* env = secure_getenv("MTAPY_SHIM_CONF");
  return env && *env ? env : "/etc/mtapy/shim.conf";
}

Loaded load(const char* path) {
  Loaded loaded;
  loaded.path = path;
  // Plain read(): iostreams would build a std::locale in every new Exim process.
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return loaded;  // no file: the defaults
  struct stat st;
  if (fstat(fd, &st) == 0) loaded.identity = Identity(&st);
  std::string text;
  char buffer[4096];
  for (ssize_t n; (n = read(fd, buffer, sizeof buffer)) > 0;) text.append(buffer, size_t(n));
  close(fd);
  loaded.settings = parseSettings(text, path);
  return loaded;
}

}  // namespace

const Settings& settings() {
  static Loaded loaded;
  pid_t self = getpid();
  if (loaded.checkedBy == self) return loaded.settings;
  const char* path = confPath();
  struct stat st;
  bool exists = stat(path, &st) == 0;
  // A copy from a parent stays only if it came from this very file, unchanged (Exim purges
  // its environment after start, so the child may name another file than the daemon did).
  if (loaded.checkedBy == 0 || loaded.path != path ||
      !(loaded.identity == Identity(exists ? &st : nullptr))) {
    loaded = load(path);
  }
  loaded.checkedBy = self;
  return loaded.settings;
}

}  // namespace mtapy::shim
