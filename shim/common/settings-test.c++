// settings-test.c++ - shim.conf: defaults, every key, and a wrong line named with its number
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "settings.h"

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cstdlib>
#include <fstream>

using mtapy::shim::parseSettings;

TEST_CASE("an empty file keeps the defaults") {
  auto s = parseSettings("# nothing\n\n", "shim.conf");
  CHECK(s.socketDir == "/run/mtapy");
  CHECK(s.socket.empty());
  CHECK(s.pool.empty());
  CHECK(s.timeoutMs == 30000);
  CHECK(s.error.empty());
}

TEST_CASE("every key is read") {
  auto s = parseSettings("socket_dir = /tmp/m  # test\npool=exim\ntimeout = 250ms\n", "f");
  CHECK(s.socketDir == "/tmp/m");
  CHECK(s.pool == "exim");
  CHECK(mtapy::shim::poolSocket(s) == "/tmp/m/pools/exim.sock");
  CHECK(parseSettings("socket = /tmp/x.sock\n", "f").socket == "/tmp/x.sock");
  CHECK(s.timeoutMs == 250);
  CHECK(parseSettings("timeout = 5\n", "f").timeoutMs == 5000);
}

TEST_CASE("without a pool the shim asks for the link to its uid's one pool") {
  auto s = parseSettings("socket_dir = /tmp/m\n", "f");
  CHECK(mtapy::shim::poolSocket(s) == "/tmp/m/uid/" + std::to_string(getuid()) + ".sock");
}

TEST_CASE("a wrong line is an error with its line number") {
  CHECK(parseSettings("pool = a\nsokket = /x\n", "/etc/mtapy/shim.conf").error ==
        "/etc/mtapy/shim.conf:2: unknown key sokket (expected socket_dir, pool, timeout or socket)");
  CHECK(parseSettings("timeout = soon\n", "f").error == "f:1: timeout: expected e.g. 30s or 500ms");
  // 4294968 s is past 2^32 ms: taken, it would wrap around to an 11-minute timeout.
  CHECK(parseSettings("timeout = 4294968s\n", "f").error ==
        "f:1: timeout: expected e.g. 30s or 500ms");
  CHECK(parseSettings("timeout = 4294967296ms\n", "f").error ==
        "f:1: timeout: expected e.g. 30s or 500ms");
  CHECK(parseSettings("socket\n", "f").error == "f:1: expected key = value");
}

namespace {

std::string scratchFile(const char* name, const std::string& text) {
  std::string path = std::string(P_tmpdir) + "/mtapy-settings-test-" +
                     std::to_string(getpid()) + "-" + name;
  std::ofstream(path) << text;
  return path;
}

// Runs `check` in a forked child; true if it returned true there.
template <typename Check>
bool inChild(Check check) {
  pid_t pid = fork();
  if (pid == 0) _exit(check() ? 0 : 1);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace

// The shim preloaded into Exim's daemon reads shim.conf before the daemon forks.
TEST_CASE("a forked child uses shim.conf as it is at the child's first call") {
  std::string first = scratchFile("first", "pool = one\n");
  std::string second = scratchFile("second", "pool = two\n");
  setenv("MTAPY_SHIM_CONF", first.c_str(), 1);
  CHECK(mtapy::shim::settings().pool == "one");

  CHECK(inChild([] { return mtapy::shim::settings().pool == "one"; }));  // unchanged
  std::ofstream(first) << "pool = changed\n";
  CHECK(inChild([] { return mtapy::shim::settings().pool == "changed"; }));
  // Exim purges its environment after start: a child may name another file than its parent.
  CHECK(inChild([&] {
    setenv("MTAPY_SHIM_CONF", second.c_str(), 1);
    return mtapy::shim::settings().pool == "two";
  }));
  unlink(first.c_str());
  CHECK(inChild([] { return mtapy::shim::settings().pool.empty(); }));  // gone: the defaults
  // A process keeps what it read at its first call.
  CHECK(mtapy::shim::settings().pool == "one");
  unlink(second.c_str());
  unsetenv("MTAPY_SHIM_CONF");
}
