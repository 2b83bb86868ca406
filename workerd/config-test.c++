// config-test.c++ - the config reference: good configs parse, bad ones say where and why
#include "config.h"

#include <doctest/doctest.h>

using namespace mtapy::workerd;

namespace {

Host fakeHost() {
  return {[](const std::string& name) -> std::optional<std::pair<uid_t, gid_t>> {
            if (name == "Debian-exim") return {{102, 105}};
            if (name == "mtapy") return {{990, 990}};
            if (name == "root") return {{0, 0}};
            return std::nullopt;
          },
          [](const std::string& name) -> std::optional<gid_t> {
            if (name == "mail") return 8;
            if (name == "root") return 0;
            return std::nullopt;
          },
          [](const std::string& path) { return path == "/etc/mtapy/policy.py"; }};
}

Config parse(const std::string& text, std::vector<std::string>& errors) {
  return parseConfig(text, "/etc/mtapy/workerd.toml", fakeHost(), errors);
}

}  // namespace

TEST_CASE("a complete pool parses with its names resolved") {
  std::vector<std::string> errors;
  Config config = parse(R"(
[daemon]
socket_dir = "/tmp/m"
[pools.exim]
clients = ["Debian-exim", 0]
user = "mtapy"
group = "mail"
policy = "/etc/mtapy/policy.py"
process_limit = 3
timeout = "250ms"
on_error = "accept"
on_error_value = "false"
readsocket = "/tmp/m/exim.readsocket"
)",
                        errors);
  REQUIRE(errors.empty());
  CHECK(config.socketDir == "/tmp/m");
  REQUIRE(config.pools.size() == 1);
  const PoolConfig& pool = config.pools[0];
  CHECK(pool.name == "exim");
  CHECK(pool.clients == std::vector<uid_t>{102, 0});
  CHECK(pool.uid == 990);
  CHECK(pool.gid == 8);
  CHECK(pool.processLimit == 3);
  CHECK(pool.timeoutMs == 250);
  CHECK(pool.onError == OnError::kAccept);
  CHECK(pool.onErrorValue == "false");
  CHECK(pool.readsocket == "/tmp/m/exim.readsocket");
}

TEST_CASE("the daemon-wide sockets of the forwarding design are refused with what replaced them") {
  std::vector<std::string> errors;
  parse(R"([daemon]
socket = "/run/mtapy/mtapy.sock"
readsocket = "/run/mtapy/readsocket.sock"
[pools.a]
clients = ["root"]
user = "mtapy"
policy = "/etc/mtapy/policy.py"
)",
        errors);
  REQUIRE(errors.size() == 2);
  CHECK(errors[0].find(":2: daemon.socket: replaced by socket_dir") != std::string::npos);
  CHECK(errors[1].find(":3: daemon.readsocket: moved into the pool") != std::string::npos);
}

TEST_CASE("defaults are the safe ones: temporary failure on error") {
  std::vector<std::string> errors;
  Config config = parse(R"(
[pools.p]
clients = ["Debian-exim"]
user = "mtapy"
policy = "/etc/mtapy/policy.py"
)",
                        errors);
  REQUIRE(errors.empty());
  CHECK(config.pools[0].onError == OnError::kTempfail);
  CHECK(config.pools[0].gid == 990);
  CHECK(config.pools[0].timeoutMs == 10000);
}

TEST_CASE("every mistake is reported in one pass with its line") {
  std::vector<std::string> errors;
  parse(R"([pools.bad]
clients = ["nosuchuser"]
user = "root"
policy = "relative.py"
timeout = "soon"
on_error = "ignore"
colour = "blue"
)",
        errors);
  REQUIRE(errors.size() == 6);
  CHECK(errors[0] == "/etc/mtapy/workerd.toml:2: pools.bad.clients: no such user nosuchuser");
  CHECK(errors[1].find(":3: pools.bad.user: policy code must not run as root") !=
        std::string::npos);
  CHECK(errors[2].find(":4: pools.bad.policy: expected the absolute path") != std::string::npos);
  CHECK(errors[3].find(":5: pools.bad.timeout: expected a duration") != std::string::npos);
  CHECK(errors[4].find(":6: pools.bad.on_error:") != std::string::npos);
  CHECK(errors[5].find(":7: unknown option pools.bad.colour") != std::string::npos);
}

TEST_CASE("a missing policy file, user or client list is named") {
  std::vector<std::string> errors;
  parse(R"([pools.p]
user = "nobody-here"
policy = "/etc/mtapy/missing.py"
)",
        errors);
  REQUIRE(errors.size() == 3);
  CHECK(errors[0].find("pools.p.clients: expected a list") != std::string::npos);
  CHECK(errors[1].find("no such user nobody-here") != std::string::npos);
  CHECK(errors[2].find("no such file /etc/mtapy/missing.py") != std::string::npos);
}

TEST_CASE("a pool may not run as an MTA's user or with group root") {
  std::vector<std::string> errors;
  parse(R"([pools.a]
clients = ["Debian-exim"]
user = "mtapy"
policy = "/etc/mtapy/policy.py"
[pools.b]
clients = ["mtapy"]
user = "Debian-exim"
group = "root"
policy = "/etc/mtapy/policy.py"
)",
        errors);
  REQUIRE(errors.size() == 3);
  CHECK(errors[0] ==
        "/etc/mtapy/workerd.toml:3: pools.a.user: mtapy is a client of pool b; "
        "policy code must not run as an MTA's user");
  CHECK(errors[1].find(":7: pools.b.user: Debian-exim is a client of pool a") != std::string::npos);
  CHECK(errors[2].find(":8: pools.b.group: policy code must not run with group root") !=
        std::string::npos);
}

TEST_CASE("TOML syntax errors carry the line; no pools is an error") {
  std::vector<std::string> errors;
  parse("[daemon]\nsocket = \n", errors);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].rfind("/etc/mtapy/workerd.toml:2:", 0) == 0);
  errors.clear();
  parse("[daemon]\n", errors);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("no pools") != std::string::npos);
}
