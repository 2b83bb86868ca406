// router.c++ - which pool serves a call, decided from the caller's SO_PEERCRED uid
#include "router.h"

#include <algorithm>

namespace mtapy::workerd {
namespace {

bool allows(const PoolConfig& pool, uid_t caller) {
  return std::find(pool.clients.begin(), pool.clients.end(), caller) != pool.clients.end();
}

}  // namespace

bool isClient(const std::vector<PoolConfig>& pools, uid_t caller) {
  return std::any_of(pools.begin(), pools.end(), [caller](auto& p) { return allows(p, caller); });
}

Route route(const std::vector<PoolConfig>& pools, uid_t caller, std::string_view requested,
            bool admin) {
  std::string uid = std::to_string(caller);
  if (!requested.empty()) {
    for (size_t i = 0; i < pools.size(); i++) {
      if (pools[i].name != requested) continue;
      if (admin || allows(pools[i], caller)) return {int(i), ""};
      return {-1, "uid " + uid + " may not call pool " + pools[i].name +
                      " (add it to that pool's clients)"};
    }
    return {-1, "no pool named " + std::string(requested)};
  }
  Route found{-1, "uid " + uid + " is not a client of any pool (add it to a pool's clients)"};
  for (size_t i = 0; i < pools.size(); i++) {
    if (!allows(pools[i], caller)) continue;
    if (found.pool >= 0) {
      return {-1, "uid " + uid + " is a client of pools " + pools[size_t(found.pool)].name +
                      " and " + pools[i].name + "; the caller must name one (shim.conf: pool =)"};
    }
    found = {int(i), ""};
  }
  return found;
}

}  // namespace mtapy::workerd
