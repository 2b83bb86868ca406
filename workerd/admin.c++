// admin.c++ - the admin front end: mtapyctl's requests on the root-only admin socket
#include "admin.h"

#include "framed-read.h"

#include <capnp/serialize-async.h>
#include <kj/debug.h>
#include <spdlog/spdlog.h>

#include <unistd.h>

namespace mtapy::workerd {
namespace {

constexpr unsigned kMaxConnections = 64;

}  // namespace

Admin::Admin(const std::string& path, std::vector<std::unique_ptr<Pool>>& pools,
             kj::AsyncIoContext& io)
    : listener_(path, 0600, io),
      pools_(pools),
      io_(io),
      started_(io.provider->getTimer().now()),
      connections_(*this) {}

kj::Promise<void> Admin::run() {
  return listener_.accept().then([this](Accepted accepted) {
    if (open_ >= kMaxConnections) return run();  // dropping it closes the connection
    open_++;
    auto& stream = *accepted.stream;
    connections_.add(serve(stream, accepted.peer)
                         .attach(kj::mv(accepted.stream), kj::defer([this]() { open_--; }))
                         .then([]() {}, [](kj::Exception&&) {}));
    return run();
  });
}

kj::Promise<void> Admin::serve(kj::AsyncCapabilityStream& stream, ucred peer) {
  return readFramed(stream, io_.provider->getTimer(), 64 * 1024)
      .then([this, &stream, peer](kj::Maybe<wire::Received> got) -> kj::Promise<void> {
        wire::Received* message;
        KJ_IF_MAYBE(m, got)
          message = m;
        else
          return kj::READY_NOW;
        auto reader = message->reader();
        auto request = reader.getRoot<proto::AdminRequest>();
        auto out = kj::heap<capnp::MallocMessageBuilder>();
        auto response = out->initRoot<proto::AdminResponse>();
        if (peer.uid != 0) {
          response.setError("the admin socket is for root only");
        } else if (request.isStatus()) {
          auto status = response.initStatus();
          status.setPid(getpid());
          status.setUptimeSeconds(
              uint64_t((io_.provider->getTimer().now() - started_) / kj::SECONDS));
          auto pools = status.initPools(unsigned(pools_.size()));
          for (unsigned i = 0; i < pools_.size(); i++) pools_[i]->status(pools[i]);
        } else {
          response.setError("unknown admin request (is mtapyctl newer than mtapy-workerd?)");
        }
        bool keepGoing = peer.uid == 0;
        auto written = capnp::writeMessage(stream, *out);
        return written.attach(kj::mv(out)).then([this, &stream, peer, keepGoing]() {
          return keepGoing ? serve(stream, peer) : kj::Promise<void>(kj::READY_NOW);
        });
      });
}

void Admin::taskFailed(kj::Exception&& exception) {
  spdlog::error("admin: {}", exception.getDescription().cStr());
}

}  // namespace mtapy::workerd
