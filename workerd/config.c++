// config.c++ - mtapy-workerd's configuration: one TOML file, every error reported in one pass
#include "config.h"

#include <toml++/toml.h>

#include <grp.h>
#include <pwd.h>
#include <unistd.h>
#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

namespace mtapy::workerd {
namespace {

// Walks one table, remembering which keys were used so the rest can be reported as unknown.
class Reader {
 public:
  Reader(const toml::table& table, std::string where, const std::string& path,
         std::vector<std::string>& errors)
      : table_(table), where_(std::move(where)), path_(path), errors_(errors) {}

  void error(const toml::source_region& at, const std::string& what) {
    std::ostringstream line;
    line << path_ << ":" << at.begin.line << ": " << what;
    errors_.push_back(line.str());
  }
  void error(const std::string& key, const std::string& what) {
    const toml::node* node = table_.get(key);
    error(node ? node->source() : table_.source(), where_ + "." + key + ": " + what);
  }

  const toml::node* take(const std::string& key) {
    used_.insert(key);
    return table_.get(key);
  }

  void text(const std::string& key, std::string& into) {
    if (const toml::node* node = take(key)) {
      if (auto v = node->value<std::string>())
        into = *v;
      else
        error(key, "expected a string in quotes");
    }
  }

  void count(const std::string& key, unsigned& into, int64_t min, int64_t max) {
    if (const toml::node* node = take(key)) {
      auto v = node->value<int64_t>();
      if (!v || *v < min || *v > max) {
        error(key,
              "expected a whole number from " + std::to_string(min) + " to " + std::to_string(max));
      } else {
        into = unsigned(*v);
      }
    }
  }

  void flag(const std::string& key, bool& into) {
    if (const toml::node* node = take(key)) {
      if (auto v = node->value<bool>())
        into = *v;
      else
        error(key, "expected true or false");
    }
  }

  // "5s", "250ms", "2m" or a bare number of seconds.
  void duration(const std::string& key, unsigned& intoMs) {
    const toml::node* node = take(key);
    if (!node) return;
    int64_t ms = -1;
    if (auto seconds = node->value<int64_t>()) {
      ms = *seconds * 1000;
    } else if (auto s = node->value<std::string>()) {
      size_t end = 0;
      int64_t n = -1;
      try {
        n = std::stoll(*s, &end);
      } catch (...) {
      }
      std::string unit = s->substr(end);
      if (n >= 0 && unit == "ms")
        ms = n;
      else if (n >= 0 && (unit == "s" || unit.empty()))
        ms = n * 1000;
      else if (n >= 0 && unit == "m")
        ms = n * 60000;
    }
    if (ms <= 0 || ms > 24 * 3600 * 1000) {
      error(key, "expected a duration such as \"5s\", \"250ms\" or \"2m\"");
    } else {
      intoMs = unsigned(ms);
    }
  }

  void reportUnknown() {
    for (auto&& [key, node] : table_) {
      if (!used_.count(std::string(key.str()))) {
        error(node.source(), "unknown option " + where_ + "." + std::string(key.str()));
      }
    }
  }

 private:
  const toml::table& table_;
  std::string where_;
  const std::string& path_;
  std::vector<std::string>& errors_;
  std::set<std::string> used_;
};

void readClients(Reader& in, const Host& host, PoolConfig& pool) {
  const toml::node* node = in.take("clients");
  const toml::array* list = node ? node->as_array() : nullptr;
  if (!list || list->empty()) {
    in.error("clients",
             "expected a list of the users allowed to call this pool, "
             "e.g. clients = [\"Debian-exim\"]");
    return;
  }
  for (const toml::node& item : *list) {
    if (auto id = item.value<int64_t>()) {
      pool.clients.push_back(uid_t(*id));
    } else if (auto name = item.value<std::string>()) {
      if (auto found = host.user(*name))
        pool.clients.push_back(found->first);
      else
        in.error(item.source(), "pools." + pool.name + ".clients: no such user " + *name);
    } else {
      in.error(item.source(), "pools." + pool.name + ".clients: expected a user name or uid");
    }
  }
}

void readIdentity(Reader& in, const Host& host, PoolConfig& pool) {
  in.text("user", pool.user);
  std::string group;
  in.text("group", group);
  if (pool.user.empty()) {
    in.error("user", "missing: the unprivileged user this pool's workers run as");
    return;
  }
  auto user = host.user(pool.user);
  if (!user) {
    in.error("user",
             "no such user " + pool.user + " (create it, e.g. adduser --system " + pool.user + ")");
    return;
  }
  if (user->first == 0) in.error("user", "policy code must not run as root; name another user");
  pool.uid = user->first;
  pool.gid = user->second;
  if (!group.empty()) {
    if (auto gid = host.group(group))
      pool.gid = *gid;
    else
      in.error("group", "no such group " + group);
  }
}

void readOnError(Reader& in, PoolConfig& pool) {
  std::string onError = "tempfail";
  in.text("on_error", onError);
  if (onError == "tempfail")
    pool.onError = OnError::kTempfail;
  else if (onError == "accept")
    pool.onError = OnError::kAccept;
  else
    in.error("on_error", "expected \"tempfail\" (the default) or \"accept\" (fail open)");
  in.text("on_error_value", pool.onErrorValue);
}

void readFilters(Reader& in, const Host& host, PoolConfig& pool) {
  if (const toml::node* node = in.take("filters")) {
    const toml::array* list = node->as_array();
    for (size_t i = 0; list && i < list->size(); i++) {
      auto line = (*list)[i].value<std::string>();
      if (!line || line->empty() || line->find('\n') != std::string::npos) list = nullptr;
      else pool.filters.push_back(*line);
    }
    if (!list) {
      in.error("filters", "expected a list of filter modules in order, as pythonfilter.conf "
                          "lines: [\"whitelist_relayclients for greylist\", \"greylist\"]");
    }
  }
  in.text("pythonfilter_conf", pool.pythonfilterConf);
  if (!pool.pythonfilterConf.empty()) {
    if (!pool.filters.empty()) {
      in.error("pythonfilter_conf", "give either filters or pythonfilter_conf, not both");
    } else if (pool.pythonfilterConf[0] != '/') {
      in.error("pythonfilter_conf", "expected the absolute path of a pythonfilter.conf");
    } else if (!host.fileExists(pool.pythonfilterConf)) {
      in.error("pythonfilter_conf", "no such file " + pool.pythonfilterConf);
    }
  }
  in.text("on_exception", pool.onException);
  if (pool.onException != "continue" && pool.onException != "tempfail") {
    in.error("on_exception", "expected \"continue\" (the default: a filter that raises counts "
                             "as having passed the message, as in courier-pythonfilter) or "
                             "\"tempfail\" (the message gets a 451)");
  }
}

PoolConfig readPool(const std::string& name, const toml::table& table, const std::string& path,
                    const Host& host, std::vector<std::string>& errors) {
  PoolConfig pool;
  pool.name = name;
  Reader in(table, "pools." + name, path, errors);
  readClients(in, host, pool);
  readIdentity(in, host, pool);
  in.text("policy", pool.policy);
  if (pool.policy.empty() || pool.policy[0] != '/') {
    in.error("policy", "expected the absolute path of the policy file");
  } else if (!host.fileExists(pool.policy)) {
    in.error("policy", "no such file " + pool.policy);
  }
  in.text("module_name", pool.moduleName);
  in.count("process_limit", pool.processLimit, 1, 1024);
  in.duration("timeout", pool.timeoutMs);
  readOnError(in, pool);
  in.count("max_use", pool.maxUse, 1, 1 << 30);
  in.count("max_use_jitter", pool.maxUseJitter, 0, 1 << 30);
  in.duration("throttle_time", pool.throttleTimeMs);
  in.duration("start_timeout", pool.startTimeoutMs);
  in.count("queue_limit", pool.queueLimit, 0, 1 << 16);
  in.text("readsocket", pool.readsocket);
  if (!pool.readsocket.empty() && pool.readsocket[0] != '/')
    in.error("readsocket", "expected the absolute path of the ${readsocket} socket");
  unsigned memoryMb = 0;
  in.count("memory_limit_mb", memoryMb, 0, 1 << 20);
  pool.memoryLimitBytes = uint64_t(memoryMb) << 20;
  in.count("max_rss_mb", pool.maxRssMb, 0, 1 << 20);
  in.count("max_open_fds", pool.maxOpenFds, 0, 1 << 20);
  in.flag("reload_on_change", pool.reloadOnChange);
  in.duration("max_idle", pool.maxIdleMs);
  in.count("min_processes", pool.minProcesses, 1, 1024);
  if (pool.minProcesses > pool.processLimit) {
    in.error("min_processes", "must not be more than process_limit (" +
                                  std::to_string(pool.processLimit) + ")");
  }
  in.text("state", pool.state);
  if (!pool.state.empty() && pool.state != "embedded" && pool.state.rfind("redis://", 0) != 0 &&
      pool.state.rfind("rediss://", 0) != 0 && pool.state.rfind("unix://", 0) != 0) {
    in.error("state", "expected \"embedded\" (the default) or a Redis URL: "
                      "\"redis://HOST:PORT/DB\" or \"unix:///PATH?db=N\"");
  }
  readFilters(in, host, pool);
  in.reportUnknown();
  return pool;
}

void readDaemon(const toml::table& table, const std::string& path, Config& config,
                std::vector<std::string>& errors) {
  Reader in(table, "daemon", path, errors);
  in.text("socket_dir", config.socketDir);
  in.text("admin_socket", config.adminSocket);
  // Moved: calls go straight to a pool's workers now, each pool on its own sockets.
  if (in.take("socket")) {
    in.error("socket", "replaced by socket_dir: each pool now listens on "
                       "SOCKET_DIR/pools/NAME.sock (see deploy/workerd.toml)");
  }
  if (in.take("readsocket")) {
    in.error("readsocket", "moved into the pool: readsocket = \"...\" in [pools.NAME]");
  }
  in.text("pylib", config.pylib);
  in.text("state_dir", config.stateDir);
  in.text("log_level", config.logLevel);
  in.text("log_target", config.logTarget);
  static const std::set<std::string> levels = {"debug", "info", "warn", "error"};
  if (!levels.count(config.logLevel)) {
    in.error("log_level", "expected \"debug\", \"info\", \"warn\" or \"error\"");
  }
  if (config.logTarget != "stderr" && config.logTarget != "syslog") {
    in.error("log_target", "expected \"stderr\" or \"syslog\"");
  }
  in.reportUnknown();
}

// Policy code never runs as an MTA's user (it could then read and change the whole spool)
// nor with group root.
void checkSeparation(const toml::table& pools, const std::string& path,
                     const std::vector<PoolConfig>& parsed, std::vector<std::string>& errors) {
  for (const PoolConfig& pool : parsed) {
    if (pool.user.empty() || pool.uid == 0) continue;  // already reported
    const toml::table* table = pools.get(pool.name)->as_table();
    Reader in(*table, "pools." + pool.name, path, errors);
    for (const PoolConfig& other : parsed) {
      if (std::count(other.clients.begin(), other.clients.end(), pool.uid)) {
        in.error("user", pool.user + " is a client of pool " + other.name +
                             "; policy code must not run as an MTA's user");
      }
    }
    if (pool.gid == 0)
      in.error(table->get("group") ? "group" : "user", "policy code must not run with group root");
  }
}

}  // namespace

Host Host::system() {
  return {[](const std::string& name) -> std::optional<std::pair<uid_t, gid_t>> {
            if (const struct passwd* pw = getpwnam(name.c_str())) return {{pw->pw_uid, pw->pw_gid}};
            return std::nullopt;
          },
          [](const std::string& name) -> std::optional<gid_t> {
            if (const struct group* gr = getgrnam(name.c_str())) return gr->gr_gid;
            return std::nullopt;
          },
          [](const std::string& path) { return access(path.c_str(), F_OK) == 0; }};
}

Config parseConfig(std::string_view text, const std::string& path, const Host& host,
                   std::vector<std::string>& errors) {
  Config config;
  config.path = path;
  toml::table root;
  try {
    root = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    errors.push_back(path + ":" + std::to_string(e.source().begin.line) + ": " +
                     std::string(e.description()));
    return config;
  }
  Reader top(root, "", path, errors);
  if (const toml::node* daemon = top.take("daemon")) {
    if (auto* table = daemon->as_table())
      readDaemon(*table, path, config, errors);
    else
      top.error(daemon->source(), "[daemon] must be a table");
  }
  const toml::node* pools = top.take("pools");
  const toml::table* poolTable = pools ? pools->as_table() : nullptr;
  if (poolTable == nullptr || poolTable->empty()) {
    errors.push_back(path + ":1: no pools: add at least one [pools.NAME] table");
  } else {
    for (auto&& [name, node] : *poolTable) {
      if (auto* table = node.as_table()) {
        config.pools.push_back(readPool(std::string(name.str()), *table, path, host, errors));
      } else {
        top.error(node.source(), "pools." + std::string(name.str()) + " must be a table");
      }
    }
  }
  if (poolTable != nullptr) checkSeparation(*poolTable, path, config.pools, errors);
  for (PoolConfig& pool : config.pools) {
    if (pool.state.empty() || pool.state == "embedded")
      pool.state = "lmdb://" + config.stateDir + "/" + pool.name;
  }
  for (auto&& [key, node] : root) {
    if (key != "daemon" && key != "pools") {
      top.error(node.source(), "unknown section " + std::string(key.str()) +
                                   " (expected [daemon] and [pools.NAME])");
    }
  }
  return config;
}

Config loadConfig(const std::string& path, const Host& host, std::vector<std::string>& errors) {
  std::ifstream file(path);
  if (!file) {
    errors.push_back(path + ": cannot read the configuration file");
    return {};
  }
  std::stringstream text;
  text << file.rdbuf();
  return parseConfig(text.str(), path, host, errors);
}

}  // namespace mtapy::workerd
