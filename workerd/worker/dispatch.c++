// dispatch.c++ - run one validated request in the policy and build its Response
#include "dispatch.h"

#include <unistd.h>
#include <algorithm>
#include <cstring>
#include <cstdio>

namespace mtapy::worker {
namespace {

using Kind = proto::Failure::Kind;

void logLine(const std::string& line) {
  // Our stderr is a pipe the daemon reads into its log, one event per write.
  std::string text = line + "\n";
  (void)!write(2, text.data(), text.size());
}

bool failed(const PoolFacts& pool, proto::Request::Reader request, const std::string& message,
            const std::string& traceback, proto::Response::Builder response) {
  logLine(calls::failureLine(pool.name, calls::functionName(request), request.getMessageId(),
                             message, traceback));
  calls::answerFailure(response, request.which(), Kind::POLICY_ERROR, message, pool.onError);
  return true;
}

// Functions of mtapy itself (mtapyctl's: "mtapy.filters.ratelimit.show") may reset a pool's
// state; they are root's, not the MTAs'.
constexpr kj::StringPtr kAdminPrefix = "mtapy."_kj;

bool runExpand(PythonHost& python, const PoolFacts& pool, proto::Request::Reader request,
               uid_t caller, proto::Response::Builder response) {
  auto call = request.getExpand();
  auto function = call.getFunction();
  if (caller != 0 && function.size() >= kAdminPrefix.size() &&
      memcmp(function.begin(), kAdminPrefix.begin(), kAdminPrefix.size()) == 0) {
    refuse(pool, Kind::NOT_ALLOWED,
           "functions under mtapy. are for mtapyctl (root) only, not uid " +
               std::to_string(caller),
           response);
    return true;
  }
  Outcome outcome = python.expand(call.getFunction(), call.getArgs());
  switch (outcome.code) {
    case Outcome::kValue:
      response.setValue(kj::arrayPtr(reinterpret_cast<const kj::byte*>(outcome.value.data()),
                                     outcome.value.size()));
      return false;
    case Outcome::kForcedFail:
      response.setForcedFail();
      return false;
    default:
      return failed(pool, request, outcome.value, outcome.traceback, response);
  }
}

bool runLocalScan(PythonHost& python, const PoolFacts& pool, proto::Request::Reader request,
                  int body, proto::Response::Builder response) {
  python.localScan(request, body, response);
  if (!response.isFailure()) return false;
  auto failure = response.getFailure();
  return failed(pool, request, failure.getMessage().cStr(), failure.getTraceback().cStr(),
                response);
}

bool runDoFilter(PythonHost& python, const PoolFacts& pool, proto::Request::Reader request,
                 kj::ArrayPtr<const int> fds, proto::Response::Builder response) {
  Outcome outcome = python.doFilter(request.getDoFilter(), fds);
  if (outcome.code != Outcome::kValue) {
    return failed(pool, request, outcome.value, outcome.traceback, response);
  }
  response.setFilterReply(kj::arrayPtr(reinterpret_cast<const kj::byte*>(outcome.value.data()),
                                       outcome.value.size()));
  return false;
}

}  // namespace

bool PoolFacts::allows(uid_t uid) const {
  return uid == 0 || std::find(clients.begin(), clients.end(), uid) != clients.end();
}

bool dispatch(PythonHost& python, const PoolFacts& pool, proto::Request::Reader request,
              kj::ArrayPtr<const int> fds, uid_t caller, proto::Response::Builder response) {
  response.setId(request.getId());
  switch (request.which()) {
    case proto::Request::EXPAND:
      return runExpand(python, pool, request, caller, response);
    case proto::Request::LOCAL_SCAN:
      return runLocalScan(python, pool, request, fds[0], response);
    case proto::Request::DO_FILTER:
      return runDoFilter(python, pool, request, fds, response);
    default:
      refuse(pool, Kind::BAD_REQUEST, "this worker does not serve that kind of request", response);
      return true;
  }
}

void refuse(const PoolFacts& pool, Kind kind, const std::string& why,
            proto::Response::Builder response) {
  logLine("pool " + pool.name + ": refused a call: " + why);
  auto failure = response.initFailure();
  failure.setKind(kind);
  failure.setMessage(why);
}

}  // namespace mtapy::worker
