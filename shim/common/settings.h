// settings.h - the shim's own configuration: where the daemon is, which pool, how long to wait
// DESCRIPTION  Read from $MTAPY_SHIM_CONF or /etc/mtapy/shim.conf ("key = value" lines,
//              # comments; deploy/shim.conf documents every key). A missing file means the
//              defaults; a wrong line is an error on every call, so the MTA defers instead of
//              guessing. Each MTA process uses the file as it was at its first call: settings()
//              read it then, or earlier in a parent (the shim preloaded into Exim's daemon),
//              and a child keeps the parent's copy only if stat() finds the same file unchanged.
#pragma once

#include <string>

namespace mtapy::shim {

struct Settings {
  std::string socketDir = "/run/mtapy";  // [daemon] socket_dir of workerd.toml
  std::string socket;          // a pool socket named outright; "" = found from socketDir
  std::string pool;            // "" = the pool whose clients include this process's uid
  unsigned timeoutMs = 30000;  // the whole call, connect included
  std::string error;           // a problem in the file: "path:line: what"
};

// The settings of this process; the first use in each process checks the file (one stat()).
const Settings& settings();

// The socket of the pool to call: `socket`, else SOCKET_DIR/pools/POOL.sock, else
// SOCKET_DIR/uid/UID.sock (the daemon links it to the one pool that lists this uid).
std::string poolSocket(const Settings& settings);

// Parse `text` read from `path`; exposed for tests.
Settings parseSettings(const std::string& text, const std::string& path);

}  // namespace mtapy::shim
