// admin.c++ - the admin front end: mtapyctl's requests on the root-only admin socket
#include "admin.h"

#include "framed-read.h"

#include <capnp/serialize-async.h>
#include <kj/debug.h>
#include <spdlog/spdlog.h>


namespace mtapy::workerd {
namespace {

constexpr unsigned kMaxConnections = 64;

}  // namespace

Admin::Admin(const std::string& path, AdminActions& actions, kj::AsyncIoContext& io)
    : listener_(path, 0600, io), actions_(actions), io_(io), connections_(*this) {}

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
        kj::Promise<void> answered = kj::READY_NOW;
        if (peer.uid != 0) {
          response.setError("the admin socket is for root only");
        } else if (request.isStatus()) {
          actions_.status(response.initStatus());
        } else if (request.isReload()) {
          answered = actions_.reload(request.getReload(), response.initReload());
        } else {
          response.setError("unknown admin request (is mtapyctl newer than mtapy-workerd?)");
        }
        bool keepGoing = peer.uid == 0;
        return answered.then([this, &stream, peer, keepGoing, out = kj::mv(out)]() mutable {
          auto written = capnp::writeMessage(stream, *out);
          return written.attach(kj::mv(out)).then([this, &stream, peer, keepGoing]() {
            return keepGoing ? serve(stream, peer) : kj::Promise<void>(kj::READY_NOW);
          });
        });
      });
}

void Admin::taskFailed(kj::Exception&& exception) {
  spdlog::error("admin: {}", exception.getDescription().cStr());
}

}  // namespace mtapy::workerd
