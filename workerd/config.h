// config.h - mtapy-workerd's configuration: one TOML file, every error reported in one pass
// DESCRIPTION  deploy/workerd.toml is the reference: every option below is commented there.
//              Knob names follow Postfix master.cf and gunicorn where admins know them.
// DIAGNOSTICS  parseConfig() collects "file:line: what was expected" for every problem found;
//              the daemon refuses to start while any remain.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mtapy::workerd {

enum class OnError { kTempfail, kAccept };

struct PoolConfig {
  std::string name;
  std::vector<uid_t> clients;  // uids allowed to call this pool (SO_PEERCRED)
  std::string user;            // workers run as this user...
  uid_t uid = 0;
  gid_t gid = 0;       // ...and group
  std::string policy;  // the policy file
  std::string moduleName = "__exim__";
  unsigned processLimit = 2;   // workers (Postfix master.cf maxproc)
  unsigned timeoutMs = 10000;  // per call (gunicorn timeout)
  OnError onError = OnError::kTempfail;
  std::string onErrorValue;         // expansion value when onError == kAccept
  unsigned maxUse = 10000;          // recycle a worker after this many calls (Postfix max_use)
  unsigned maxUseJitter = 0;        // plus up to this many (gunicorn max_requests_jitter)
  unsigned throttleTimeMs = 60000;  // wait after a worker fails to start (Postfix throttle_time)
  unsigned startTimeoutMs = 60000;  // a worker must have imported the policy by then
  unsigned queueLimit = 100;        // calls that may wait in the kernel for a free worker
  std::string readsocket;           // "" = no ${readsocket} listener for this pool
  uint64_t memoryLimitBytes = 0;    // RLIMIT_AS per worker; 0 = none
  unsigned maxRssMb = 0;            // recycle a worker whose resident memory passed it; 0 = never
  unsigned maxOpenFds = 0;          // recycle a worker with this many descriptors open; 0 = never
  bool reloadOnChange = false;      // reload when the policy or a .py file beside it changes
  unsigned maxIdleMs = 0;           // retire a worker idle this long, down to minProcesses; 0 = off
  unsigned minProcesses = 1;        // with max_idle: workers kept however idle (Postfix-like)
  // Shared state (pylib/mtapy/state.py): "lmdb://STATE_DIR/NAME" (the embedded default) or
  // a Redis URL ("redis://...", "unix://...").
  std::string state;
  // Courier calls (pylib/mtapy/filter_chain.py): a chain of courier-pythonfilter modules, as
  // pythonfilter.conf lines ("module [for other ...]") from `filters` or from the file named by
  // `pythonfilter_conf`. Neither: the policy's own do_filter() is the one filter.
  std::vector<std::string> filters;
  std::string pythonfilterConf;
  std::string onException = "continue";  // a filter that raises: "continue" (upstream) or "tempfail"
};

struct Config {
  std::string path;
  std::string socketDir = "/run/mtapy";  // pools/NAME.sock, uid/UID.sock
  std::string adminSocket = "/run/mtapy/admin.sock";
  std::string stateDir = "/var/lib/mtapy/state";  // the pools' embedded state, NAME/ each
  std::string pylib = MTAPY_DEFAULT_PYLIB;
  std::string logLevel = "info";
  std::string logTarget = "stderr";
  std::vector<PoolConfig> pools;
};

// What the config is checked against (accounts, files); injected so tests need neither.
struct Host {
  std::function<std::optional<std::pair<uid_t, gid_t>>(const std::string&)> user;
  std::function<std::optional<gid_t>(const std::string&)> group;
  std::function<bool(const std::string&)> fileExists;
  static Host system();
};

// Parse `text` (read from `path`); problems are appended to `errors`, all in one pass.
Config parseConfig(std::string_view text, const std::string& path, const Host& host,
                   std::vector<std::string>& errors);

// Read and parse the file at `path`.
Config loadConfig(const std::string& path, const Host& host, std::vector<std::string>& errors);

}  // namespace mtapy::workerd
