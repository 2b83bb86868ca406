// settings.c++ - the shim's own configuration: where the daemon is, which pool, how long to wait
#include "settings.h"

#include <fcntl.h>
#include <unistd.h>
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
  if (unit == "ms") return unsigned(n);
  if (unit == "s" || unit.empty()) return unsigned(n * 1000);
  return 0;
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

const Settings& settings() {
  static const Settings loaded = [] {
    // Not from a setuid start (sendmail, exim -bs by any user): they could aim us anywhere.
    const char* env = secure_getenv("MTAPY_SHIM_CONF");
    std::string path = env && *env ? env : "/etc/mtapy/shim.conf";
    // Plain read(): iostreams would build a std::locale in every new Exim process.
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Settings{};  // no file: the defaults
    std::string text;
    char buffer[4096];
    for (ssize_t n; (n = read(fd, buffer, sizeof buffer)) > 0;) text.append(buffer, size_t(n));
    close(fd);
    return parseSettings(text, path);
  }();
  return loaded;
}

}  // namespace mtapy::shim
