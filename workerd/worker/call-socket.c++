// call-socket.c++ - the shims' front end: one datagram in, one datagram back to its sender
// DESCRIPTION  Every idle worker of a pool waits on the pool's datagram socket; the kernel
//              gives each request to one of them. The sender's uid comes from the kernel
//              (SCM_CREDENTIALS) and is checked against the pool's clients again, although the
//              socket's ACL already kept everyone else from sending. A request that is not
//              well formed is answered with badRequest and never reaches Python.
// SEE ALSO     proto/datagram.h, shim/common/client.c++ (the other end)
#include "front-end.h"

#include <capnp/message.h>
#include <kj/debug.h>

#include <unistd.h>
#include <vector>

namespace mtapy::worker {
namespace {

using Kind = proto::Failure::Kind;

// Answers go back at once or never: a caller that stopped reading its answers must not stall
// the pool's workers (the answer is dropped; that caller's own deadline tells it).
constexpr int64_t kAnswerWaitMs = 0;

void reply(int sock, const wire::Address& to, capnp::MallocMessageBuilder& answer) {
  try {
    wire::sendDatagram(sock, &to, answer, nullptr, wire::deadlineIn(kAnswerWaitMs));
  } catch (const kj::Exception&) {
    // The caller is gone (its deadline passed, or it exited): nobody to tell.
  }
}

}  // namespace

int64_t deadlineNs(const PoolFacts& pool, uint32_t requestedMs) {
  uint32_t ms = pool.timeoutMs;
  if (requestedMs > 0 && requestedMs < ms) ms = requestedMs;
  return monotonicNs() + int64_t(ms) * 1000000;
}

bool serveDatagram(Worker& worker, int callSocket) {
  kj::Maybe<wire::Datagram> got;
  capnp::MallocMessageBuilder answer;
  auto response = answer.initRoot<proto::Response>();
  try {
    got = wire::receiveDatagram(callSocket, wire::deadlineIn(0));
  } catch (const kj::Exception& e) {
    // Unframed bytes have no id to answer to; the caller's deadline tells it.
    (void)!write(2, "mtapy-worker: dropped a malformed datagram\n", 43);
    return true;
  }
  wire::Datagram* datagram;
  KJ_IF_MAYBE(d, got) datagram = d;
  else return false;

  auto reader = datagram->reader();
  proto::Request::Reader request;
  try {
    request = reader.getRoot<proto::Request>();
    response.setId(request.getId());
    if (!worker.pool.allows(datagram->sender.uid)) {
      refuse(worker.pool, Kind::NOT_ALLOWED,
             "uid " + std::to_string(datagram->sender.uid) + " may not call pool " +
                 worker.pool.name + " (add it to that pool's clients)",
             response);
      reply(callSocket, datagram->from, answer);
      return true;
    }
    calls::validate(request, datagram->fds.size());
  } catch (const kj::Exception& e) {
    refuse(worker.pool, Kind::BAD_REQUEST,
           std::string("malformed request: ") + e.getDescription().cStr(), response);
    reply(callSocket, datagram->from, answer);
    return true;
  }
  std::vector<int> fds;
  for (const kj::AutoCloseFd& fd : datagram->fds) fds.push_back(fd.get());
  worker.slot.begin(request.getId(), uint32_t(request.which()), datagram->sender.uid,
                    &datagram->from, -1, calls::functionName(request), request.getMessageId(),
                    deadlineNs(worker.pool, request.getTimeoutMs()));
  bool failed =
      dispatch(worker.python, worker.pool, request, kj::arrayPtr(fds.data(), fds.size()),
               datagram->sender.uid, response);
  int64_t ended = monotonicNs();
  reply(callSocket, datagram->from, answer);
  worker.slot.end(failed, ended);
  return true;
}

}  // namespace mtapy::worker
