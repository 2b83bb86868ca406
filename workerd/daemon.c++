// daemon.c++ - mtapy-workerd: its pools, the admin socket, signals and a graceful stop
#include "daemon.h"

#include "pool-sockets.h"

#include <capnp/message.h>
#include <kj/debug.h>
#include <spdlog/spdlog.h>

#include <sys/un.h>
#include <unistd.h>
#include <algorithm>
#include <csignal>
#include <cstring>

namespace mtapy::workerd {
namespace {

// Type=notify: tell systemd we are ready (sd_notify without linking libsystemd).
void notifySystemd(const char* state) {
  const char* path = getenv("NOTIFY_SOCKET");
  if (path == nullptr || strlen(path) >= sizeof(sockaddr_un::sun_path)) return;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  strcpy(address.sun_path, path);
  if (address.sun_path[0] == '@') address.sun_path[0] = '\0';  // abstract namespace
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  sendto(fd, state, strlen(state), MSG_NOSIGNAL, (sockaddr*)&address,
         socklen_t(offsetof(sockaddr_un, sun_path) + strlen(path)));
  close(fd);
}

}  // namespace

Daemon::Daemon(Config config, std::string workerProgram, kj::AsyncIoContext& io)
    : config_(kj::mv(config)),
      io_(io),
      spawner_(kj::mv(workerProgram), config_.pylib),
      started_(io.provider->getTimer().now()),
      reloads_(kj::Promise<void>(kj::READY_NOW).fork()),
      tasks_(*this) {
  for (const PoolConfig& pool : config_.pools) {
    pools_.push_back(std::make_unique<Pool>(pool, config_.socketDir, spawner_, io));
  }
  linkClientsToPools(config_);
  admin_ = kj::heap<Admin>(config_.adminSocket, *this, io);
}

Daemon::~Daemon() noexcept = default;

kj::Promise<void> Daemon::run() {
  for (auto& pool : pools_) pool->start();
  spdlog::info("mtapy-workerd ready: {} pool(s), sockets in {}/pools, admin on {}",
               pools_.size(), config_.socketDir, config_.adminSocket);
  notifySystemd("READY=1");
  auto serving = admin_->run().exclusiveJoin(reloadOnHangup());
  auto& port = io_.unixEventPort;
  auto signalled = port.onSignal(SIGTERM).exclusiveJoin(port.onSignal(SIGINT));
  return signalled.exclusiveJoin(serving.then([]() -> siginfo_t { KJ_UNREACHABLE; }))
      .then([this](siginfo_t info) { return stop(info.si_signo); });
}

void Daemon::status(proto::Status::Builder out) {
  out.setPid(getpid());
  out.setUptimeSeconds(uint64_t((io_.provider->getTimer().now() - started_) / kj::SECONDS));
  auto pools = out.initPools(unsigned(pools_.size()));
  for (unsigned i = 0; i < pools_.size(); i++) pools_[i]->status(pools[i]);
}

kj::Promise<void> Daemon::reload(std::string pool, proto::ReloadReport::Builder out) {
  // One at a time: pools are added and removed by comparing with what the last one left.
  auto mine = reloads_.addBranch()
                  .then([this, pool = kj::mv(pool), out]() mutable {
                    return applyReload(kj::mv(pool), out);
                  })
                  .then([]() {}, [out](kj::Exception&& e) mutable {
                    spdlog::error("reload: {}", e.getDescription().cStr());
                    out.setError(e.getDescription().cStr());
                  })
                  .fork();
  reloads_ = mine.addBranch().fork();
  return mine.addBranch();
}

kj::Promise<void> Daemon::applyReload(std::string only, proto::ReloadReport::Builder out) {
  std::vector<std::string> errors;
  Config next = loadConfig(config_.path, Host::system(), errors);
  auto named = [&next](const std::string& name) {
    return std::any_of(next.pools.begin(), next.pools.end(),
                       [&](const PoolConfig& p) { return p.name == name; });
  };
  if (errors.empty() && !only.empty() && find(only) == nullptr && !named(only)) {
    errors.push_back("no pool named " + only + " in " + config_.path + " nor running");
  }
  if (!errors.empty()) {
    std::string all;
    auto list = out.initConfigErrors(unsigned(errors.size()));
    for (unsigned i = 0; i < errors.size(); i++) {
      list.set(i, errors[i]);
      all += "\n" + errors[i];
    }
    spdlog::error("reload: {} problem(s) in {}; nothing changed:{}", errors.size(),
                  config_.path, all);
    return kj::READY_NOW;
  }
  std::vector<std::string> notes;
  noteRestartNeeded(next, notes);
  if (next.logLevel != config_.logLevel) {
    spdlog::set_level(spdlog::level::from_str(next.logLevel));
    config_.logLevel = next.logLevel;
  }
  auto steps = kj::heapArrayBuilder<kj::Promise<ReloadResult>>(next.pools.size() + pools_.size());
  std::vector<std::string> names;
  // Removed pools first: their sockets' paths go at once, and a renamed pool may reuse them.
  std::vector<std::string> gone;
  for (auto& pool : pools_) {
    const std::string& name = pool->config().name;
    if ((only.empty() || name == only) && !named(name)) gone.push_back(name);
  }
  for (const std::string& name : gone) {
    names.push_back(name);
    steps.add(remove(name));
  }
  for (const PoolConfig& pool : next.pools) {
    if (!only.empty() && pool.name != only) continue;
    names.push_back(pool.name);
    if (Pool* running = find(pool.name)) {
      steps.add(running->reload(pool));
      continue;
    }
    try {
      auto added = std::make_unique<Pool>(pool, config_.socketDir, spawner_, io_);
      added->start();
      spdlog::info("reload: pool {} added", pool.name);
      steps.add(added->started());
      pools_.push_back(kj::mv(added));
    } catch (const kj::Exception& e) {
      std::string why = std::string("cannot add pool ") + pool.name + ": " +
                        e.getDescription().cStr();
      spdlog::error("reload: {}", why);
      steps.add(ReloadResult{proto::PoolReload::Outcome::FAILED, 0, "", why, ""});
    }
  }
  relinkClients();  // added and removed pools
  return kj::joinPromises(steps.finish())
      .then([this, out, names = kj::mv(names), notes = kj::mv(notes)](
                kj::Array<ReloadResult> results) mutable {
        relinkClients();  // pools whose clients changed
        auto list = out.initPools(unsigned(results.size()));
        for (unsigned i = 0; i < results.size(); i++) {
          list[i].setName(names[i]);
          list[i].setOutcome(results[i].outcome);
          list[i].setGeneration(results[i].generation);
          list[i].setCode(results[i].code);
          list[i].setMessage(results[i].message);
          list[i].setTraceback(results[i].traceback);
          list[i].setLiveAfterMs(results[i].liveAfterMs);
          list[i].setDrainedAfterMs(results[i].drainedAfterMs);
        }
        auto noteList = out.initNotes(unsigned(notes.size()));
        for (unsigned i = 0; i < notes.size(); i++) noteList.set(i, notes[i]);
      });
}

void Daemon::noteRestartNeeded(const Config& next, std::vector<std::string>& notes) {
  auto note = [&notes](const std::string& what) {
    notes.push_back(what + " changed; that takes effect when mtapy-workerd restarts");
    spdlog::warn("reload: {}", notes.back());
  };
  if (next.socketDir != config_.socketDir) note("[daemon] socket_dir");
  if (next.adminSocket != config_.adminSocket) note("[daemon] admin_socket");
  if (next.pylib != config_.pylib) note("[daemon] pylib");
  if (next.stateDir != config_.stateDir) note("[daemon] state_dir");
  if (next.logTarget != config_.logTarget) note("[daemon] log_target");
  for (const PoolConfig& pool : next.pools) {
    Pool* running = find(pool.name);
    if (running == nullptr) continue;
    if (pool.queueLimit != running->config().queueLimit) note("pool " + pool.name + " queue_limit");
    if (pool.readsocket != running->config().readsocket) note("pool " + pool.name + " readsocket");
  }
}

Pool* Daemon::find(const std::string& name) {
  for (auto& pool : pools_) {
    if (pool->config().name == name) return pool.get();
  }
  return nullptr;
}

kj::Promise<ReloadResult> Daemon::remove(const std::string& name) {
  auto it = std::find_if(pools_.begin(), pools_.end(),
                         [&](auto& p) { return p->config().name == name; });
  Pool* pool = it->get();
  spdlog::info("reload: pool {} removed from {}; its workers answer what is queued, then exit",
               name, config_.path);
  auto stopped = pool->stop()
                     .then([this, pool]() {
                       removed_.erase(std::find_if(removed_.begin(), removed_.end(),
                                                   [pool](auto& p) { return p.pool.get() == pool; }));
                     })
                     .fork();
  removed_.push_back({kj::mv(*it), stopped.addBranch().fork()});
  pools_.erase(it);
  return stopped.addBranch().then([]() {
    return ReloadResult{proto::PoolReload::Outcome::REMOVED, 0, "", "", ""};
  });
}

void Daemon::relinkClients() {
  config_.pools.clear();
  for (auto& pool : pools_) config_.pools.push_back(pool->config());
  try {
    linkClientsToPools(config_);
  } catch (const kj::Exception& e) {
    spdlog::error("reload: cannot update {}/uid: {}", config_.socketDir,
                  e.getDescription().cStr());
  }
}

kj::Promise<void> Daemon::reloadOnHangup() {
  return io_.unixEventPort.onSignal(SIGHUP).then([this](siginfo_t) {
    spdlog::info("SIGHUP: reloading {}", config_.path);
    auto message = kj::heap<capnp::MallocMessageBuilder>();
    auto report = message->initRoot<proto::ReloadReport>();
    tasks_.add(reload("", report).attach(kj::mv(message)));
    return reloadOnHangup();
  });
}

kj::Promise<void> Daemon::stop(int signal) {
  spdlog::info("{}: stopping; calls already queued are answered first", strsignal(signal));
  auto stops = kj::heapArrayBuilder<kj::Promise<void>>(pools_.size() + removed_.size());
  for (auto& pool : pools_) stops.add(pool->stop());
  for (auto& pool : removed_) stops.add(pool.stopped.addBranch());  // a reload removed them
  return kj::joinPromises(stops.finish()).then([this]() {
    admin_ = nullptr;
    spdlog::info("mtapy-workerd stopped");
  });
}

void Daemon::taskFailed(kj::Exception&& exception) {
  spdlog::error("{}", exception.getDescription().cStr());
}

}  // namespace mtapy::workerd
