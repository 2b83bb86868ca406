// daemon.c++ - mtapy-workerd's single event loop: listeners, pools, signals, graceful stop
#include "daemon.h"

#include "framed-read.h"
#include "readsocket.h"
#include "router.h"

#include <capnp/serialize-async.h>
#include <kj/debug.h>
#include <spdlog/spdlog.h>

#include <sys/un.h>
#include <unistd.h>
#include <algorithm>
#include <csignal>
#include <cstring>

namespace mtapy::workerd {
namespace {

using Kind = proto::Failure::Kind;

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
      started_(io.provider->getTimer().now()),
      connections_(*this) {
  for (const PoolConfig& pool : config_.pools) {
    pools_.push_back(std::make_unique<Pool>(pool, workerProgram, config_.pylib, io));
  }
}

kj::Promise<void> Daemon::run() {
  listeners_.add(kj::heap<Listener>(config_.socket, 0666, io_));
  listeners_.add(kj::heap<Listener>(config_.adminSocket, 0600, io_));
  auto accepting = acceptLoop(*listeners_[0], Protocol::kShim)
                       .exclusiveJoin(acceptLoop(*listeners_[1], Protocol::kAdmin));
  if (!config_.readsocket.empty()) {
    listeners_.add(kj::heap<Listener>(config_.readsocket, 0666, io_));
    accepting = accepting.exclusiveJoin(acceptLoop(*listeners_[2], Protocol::kReadsocket));
  }
  accepting = accepting.exclusiveJoin(ignoreHangups());
  for (auto& pool : pools_) pool->start();
  spdlog::info("mtapy-workerd ready: {} pool(s), policy calls on {}, admin on {}{}{}",
               pools_.size(), config_.socket, config_.adminSocket,
               config_.readsocket.empty() ? "" : ", ${readsocket} on ", config_.readsocket);
  notifySystemd("READY=1");

  auto& port = io_.unixEventPort;
  auto signalled = port.onSignal(SIGTERM).exclusiveJoin(port.onSignal(SIGINT));
  return signalled.exclusiveJoin(accepting.then([]() -> siginfo_t { KJ_UNREACHABLE; }))
      .then([this](siginfo_t info) { return stop(info.si_signo); });
}

kj::Promise<void> Daemon::ignoreHangups() {
  // Its default action would end the daemon, and systemd counts that as a clean exit.
  return io_.unixEventPort.onSignal(SIGHUP).then([this](siginfo_t) {
    spdlog::warn(
        "SIGHUP: reloading is not supported yet; restart mtapy-workerd to load new "
        "policy code");
    return ignoreHangups();
  });
}

kj::Promise<void> Daemon::acceptLoop(Listener& listener, Protocol protocol) {
  return listener.accept().then([this, &listener, protocol](Accepted accepted) {
    uid_t uid = accepted.peer.uid;
    unsigned& open = connectionsByUid_[uid];
    unsigned cap =
        isClient(config_.pools, uid) || uid == 0 ? kClientConnections : kStrangerConnections;
    if (open >= cap) {
      if (crowdedUids_.insert(uid).second) {
        spdlog::warn("uid {} holds {} connections; refusing more until some close", uid, open);
      }
      return acceptLoop(listener, protocol);  // dropping `accepted` closes the connection
    }
    open++;
    auto& stream = *accepted.stream;
    auto served = protocol == Protocol::kShim    ? serveClient(stream, accepted.peer)
                  : protocol == Protocol::kAdmin ? serveAdmin(stream, accepted.peer)
                                                 : serveReadsocket(stream, accepted.peer);
    auto closed = kj::defer([this, uid]() {
      connectionsByUid_[uid]--;
      crowdedUids_.erase(uid);
    });
    connections_.add(served.attach(kj::mv(accepted.stream), kj::mv(closed))
                         .then([]() {},
                               [uid](kj::Exception&& e) {
                                 spdlog::warn("closed a connection from uid {}: {}", uid,
                                              e.getDescription().cStr());
                               }));
    return acceptLoop(listener, protocol);
  });
}

size_t Daemon::limitFor(uid_t uid) const {
  // Strangers get an answer (notAllowed) to a small request, not 16 MiB of our memory.
  return isClient(config_.pools, uid) || uid == 0 ? wire::kMaxMessageWords * 8 : 64 * 1024;
}

kj::Timer& Daemon::timer() {
  return io_.provider->getTimer();
}

kj::Promise<void> Daemon::serveClient(kj::AsyncCapabilityStream& stream, ucred peer) {
  return readFramed(stream, timer(), limitFor(peer.uid))
      .then([this, &stream, peer](kj::Maybe<wire::Received> got) -> kj::Promise<void> {
        KJ_IF_MAYBE(message, got) {
          kj::Maybe<kj::AutoCloseFd> body;
          if (message->fd != nullptr) body = kj::mv(message->fd);
          auto reader = message->reader();
          return answer(reader.getRoot<proto::Request>(), peer.uid, false, kj::mv(body))
              .then([&stream](Reply reply) {
                auto written = capnp::writeMessage(stream, *reply);
                return written.attach(kj::mv(reply));
              })
              .then([this, &stream, peer]() { return serveClient(stream, peer); });
        }
        return kj::READY_NOW;  // the shim closed its connection
      });
}

kj::Promise<Reply> Daemon::answer(proto::Request::Reader request, uid_t caller, bool admin,
                                  kj::Maybe<kj::AutoCloseFd> body) {
  return kj::evalNow([&]() -> kj::Promise<Reply> {
    std::string refusal;
    Kind kind = Kind::NOT_ALLOWED;
    Route chosen = route(config_.pools, caller, request.getPool().cStr(), admin);
    if (request.isDoFilter()) {
      kind = Kind::BAD_REQUEST;
      refusal = "do_filter (Courier) is not served by this mtapy-workerd yet";
    } else if (!request.isExpand() && !request.isLocalScan()) {
      kind = Kind::BAD_REQUEST;
      refusal = "unknown kind of request (is the shim newer than mtapy-workerd?)";
    } else if (chosen.pool < 0) {
      refusal = chosen.refusal;
    } else {
      return pools_[size_t(chosen.pool)]->call(request, kj::mv(body));
    }
    spdlog::warn("refused a call from uid {}: {}", caller, refusal);
    Reply reply = failureReply(kind, refusal);
    reply->getRoot<proto::Response>().setId(request.getId());
    return kj::mv(reply);
  });
}

kj::Promise<void> Daemon::serveAdmin(kj::AsyncCapabilityStream& stream, ucred peer) {
  return readFramed(stream, timer(), limitFor(peer.uid))
      .then([this, &stream, peer](kj::Maybe<wire::Received> got) mutable -> kj::Promise<void> {
        wire::Received* message;
        KJ_IF_MAYBE(m, got)
          message = m;
        else
          return kj::READY_NOW;
        auto reader = message->reader();
        auto request = reader.getRoot<proto::AdminRequest>();
        auto out = kj::heap<capnp::MallocMessageBuilder>();
        auto response = out->initRoot<proto::AdminResponse>();
        kj::Promise<void> ready = kj::READY_NOW;
        if (peer.uid != 0) {
          response.setError("the admin socket is for root only");
        } else if (request.isStatus()) {
          auto status = response.initStatus();
          status.setPid(getpid());
          status.setUptimeSeconds(
              uint64_t((io_.provider->getTimer().now() - started_) / kj::SECONDS));
          auto pools = status.initPools(unsigned(pools_.size()));
          for (unsigned i = 0; i < pools_.size(); i++) pools_[i]->status(pools[i]);
        } else if (request.isCall() && !request.getCall().hasPool()) {
          response.setError("name the pool to call");
        } else if (request.isCall()) {
          kj::Maybe<kj::AutoCloseFd> body;
          if (message->fd != nullptr) body = kj::mv(message->fd);
          ready = answer(request.getCall(), 0, true, kj::mv(body))
                      .then([response](Reply reply) mutable {
                        response.setCall(reply->getRoot<proto::Response>().asReader());
                      });
        } else {
          response.setError("unknown admin request (is mtapyctl newer than mtapy-workerd?)");
        }
        bool keepGoing = peer.uid == 0;
        return ready
            .then([&stream, out = kj::mv(out)]() mutable {
              auto written = capnp::writeMessage(stream, *out);
              return written.attach(kj::mv(out));
            })
            .then([this, &stream, peer, keepGoing]() -> kj::Promise<void> {
              if (!keepGoing) return kj::READY_NOW;
              return serveAdmin(stream, peer);
            });
      });
}

kj::Promise<void> Daemon::serveReadsocket(kj::AsyncCapabilityStream& stream, ucred peer) {
  auto line = readRequestLine(stream).exclusiveJoin(
      timer().afterDelay(kMessageCompletion).then([]() -> std::string {
        KJ_FAIL_REQUIRE("${readsocket} request line not completed within 30 s");
      }));
  return line.then([this, &stream, peer](std::string line) {
    std::string error;
    auto parsed = parseReadsocketLine(line, error);
    kj::Promise<Reply> reply = nullptr;
    if (parsed) {
      capnp::MallocMessageBuilder message;
      auto request = message.initRoot<proto::Request>();
      request.setPool(parsed->pool);
      auto expand = request.initExpand();
      expand.setFunction(kj::StringPtr(parsed->function.c_str()).asBytes());
      auto args = expand.initArgs(unsigned(parsed->args.size()));
      for (unsigned i = 0; i < args.size(); i++) {
        args.set(i, kj::arrayPtr(reinterpret_cast<const kj::byte*>(parsed->args[i].data()),
                                 parsed->args[i].size()));
      }
      reply = answer(request.asReader(), peer.uid, false, nullptr);
    } else {
      spdlog::warn("malformed ${{readsocket}} request from uid {}: {}", peer.uid, error);
      reply = failureReply(Kind::BAD_REQUEST, "mtapy: malformed request: " + error);
    }
    return reply.then([&stream](Reply r) {
      auto text = kj::heapString(readsocketReply(r->getRoot<proto::Response>()).c_str());
      auto written = stream.write(text.begin(), text.size());
      return written.attach(kj::mv(text)).then([&stream]() { stream.shutdownWrite(); });
    });
  });
}

kj::Promise<void> Daemon::stop(int signal) {
  spdlog::info("{}: stopping; calls already accepted finish first", strsignal(signal));
  listeners_.clear();  // new connections are refused from now on
  unsigned longest = 0;
  for (const PoolConfig& pool : config_.pools) longest = std::max(longest, pool.timeoutMs);
  auto stops = kj::heapArrayBuilder<kj::Promise<void>>(pools_.size());
  for (auto& pool : pools_) stops.add(pool->stop());
  auto grace = io_.provider->getTimer().afterDelay((longest + 5000) * kj::MILLISECONDS).then([]() {
    spdlog::warn("workers did not stop in time; killing them");
  });
  return kj::joinPromises(stops.finish()).exclusiveJoin(kj::mv(grace)).then([]() {
    spdlog::info("mtapy-workerd stopped");
  });
}

void Daemon::taskFailed(kj::Exception&& exception) {
  spdlog::error("internal error: {}", exception.getDescription().cStr());
}

}  // namespace mtapy::workerd
