// router.h - which pool serves a call, decided from the caller's SO_PEERCRED uid
// SECURITY     The uid comes from the kernel, never from the request; the admin socket (root
//              only) may name any pool.
#pragma once

#include "config.h"

#include <string>
#include <string_view>
#include <vector>

namespace mtapy::workerd {

struct Route {
  int pool = -1;        // index into Config::pools, or -1 with `refusal` saying why
  std::string refusal;  // for the MTA's log: names the pool, the uid and the fix
};

Route route(const std::vector<PoolConfig>& pools, uid_t caller, std::string_view requested,
            bool admin);

// Whether `caller` is among any pool's clients (strangers get small limits).
bool isClient(const std::vector<PoolConfig>& pools, uid_t caller);

}  // namespace mtapy::workerd
