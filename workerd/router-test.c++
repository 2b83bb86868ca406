// router-test.c++ - calls go to the caller's pool and nowhere else
#include "router.h"

#include <doctest/doctest.h>

using namespace mtapy::workerd;

namespace {

std::vector<PoolConfig> pools() {
  PoolConfig exim, courier;
  exim.name = "exim";
  exim.clients = {102, 0};
  courier.name = "courier";
  courier.clients = {0, 500};
  return {exim, courier};
}

}  // namespace

TEST_CASE("a caller with one pool needs not name it") {
  CHECK(route(pools(), 102, "", false).pool == 0);
  CHECK(route(pools(), 500, "", false).pool == 1);
}

TEST_CASE("a caller of several pools must name one") {
  Route r = route(pools(), 0, "", false);
  CHECK(r.pool == -1);
  CHECK(r.refusal.find("pools exim and courier") != std::string::npos);
  CHECK(route(pools(), 0, "courier", false).pool == 1);
}

TEST_CASE("a uid that is not a client of the pool is refused") {
  Route r = route(pools(), 102, "courier", false);
  CHECK(r.pool == -1);
  CHECK(r.refusal == "uid 102 may not call pool courier (add it to that pool's clients)");
  CHECK(route(pools(), 1234, "", false).pool == -1);
}

TEST_CASE("the admin socket may call any pool, but only by name") {
  CHECK(route(pools(), 0, "exim", true).pool == 0);
  CHECK(route(pools(), 0, "nosuch", true).refusal == "no pool named nosuch");
}
