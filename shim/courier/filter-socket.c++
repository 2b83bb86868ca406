// filter-socket.c++ - a Courier global filter's listening socket, made the way courierfilter(8) says
#include "filter-socket.h"

#include "proto/wire.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace mtapy::courier {
namespace {

std::string fromEnvironment(const char* name, const char* fallback) {
  const char* value = getenv(name);
  return value != nullptr && *value == '/' ? value : fallback;
}

// Whether NAME-mode asks for filters/ (skipped for whitelisted mail) over allfilters/.
bool optional(const std::string& name) {
  std::ifstream mode(sysconfDir() + "/filters/" + name + "-mode");
  std::string word;
  if (!(mode >> word)) return false;
  return word != "all";
}

void removeIfThere(const std::string& path) {
  if (unlink(path.c_str()) < 0 && errno != ENOENT) {
    wire::fail("cannot remove " + path + ": " + strerror(errno));
  }
}

}  // namespace

std::string localStateDir() { return fromEnvironment("localstatedir", "/var/lib/courier"); }

std::string sysconfDir() { return fromEnvironment("sysconfdir", "/etc/courier"); }

FilterSocket listenAs(const std::string& name) {
  std::string dir = localStateDir();
  std::string mine = dir + (optional(name) ? "/filters/" : "/allfilters/");
  std::string other = dir + (optional(name) ? "/allfilters/" : "/filters/");
  std::string temporary = mine + "." + name;
  FilterSocket out{-1, mine + name};
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (temporary.size() >= sizeof address.sun_path) wire::fail("socket path too long: " + temporary);
  strcpy(address.sun_path, temporary.c_str());

  removeIfThere(other + name);
  removeIfThere(temporary);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) wire::fail(std::string("socket: ") + strerror(errno));
  if (bind(fd, (sockaddr*)&address, sizeof address) < 0 ||
      chmod(temporary.c_str(), 0660) < 0 || listen(fd, SOMAXCONN) < 0 ||
      rename(temporary.c_str(), out.path.c_str()) < 0) {
    int error = errno;
    close(fd);
    unlink(temporary.c_str());
    wire::fail("cannot listen on " + out.path + ": " + strerror(error) + " (run by courierfilter "
               "as Courier's user, who owns " + mine + ")");
  }
  out.fd = fd;
  return out;
}

}  // namespace mtapy::courier
