// settings.h - the shim's own configuration: where the daemon is, which pool, how long to wait
// DESCRIPTION  Read once per MTA process from $MTAPY_SHIM_CONF or /etc/mtapy/shim.conf
//              ("key = value" lines, # comments; deploy/shim.conf documents every key). A
//              missing file means the defaults; a wrong line is an error on every call, so the
//              MTA defers instead of guessing.
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

const Settings& settings();

// The socket of the pool to call: `socket`, else SOCKET_DIR/pools/POOL.sock, else
// SOCKET_DIR/uid/UID.sock (the daemon links it to the one pool that lists this uid).
std::string poolSocket(const Settings& settings);

// Parse `text` read from `path`; exposed for tests.
Settings parseSettings(const std::string& text, const std::string& path);

}  // namespace mtapy::shim
