// settings-test.c++ - shim.conf: defaults, every key, and a wrong line named with its number
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "settings.h"

#include <doctest/doctest.h>
#include <unistd.h>

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
  CHECK(parseSettings("socket\n", "f").error == "f:1: expected key = value");
}
