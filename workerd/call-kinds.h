// call-kinds.h - the table of call kinds: what each Request kind needs and what on_error means
// DESCRIPTION  One place for the facts both sides of a pool need about a kind of call: its name
//              in logs and status, whether a message descriptor must come with it, how to check
//              a request from a client before any Python sees it, and the answer a fail-open
//              pool gives when the call fails. The worker answers policy failures with it; the
//              daemon answers with it for a worker that died or overran its deadline.
//              A new kind of call is one entry here plus its handler in worker/dispatch.c++.
// SEE ALSO     proto/policy.capnp, worker/dispatch.c++, pool.c++
#pragma once

#include "proto/policy.capnp.h"

#include <capnp/message.h>

#include <string>

namespace mtapy::calls {

// A pool's on_error, as the worker and the daemon both apply it.
struct OnError {
  bool failOpen = false;  // on_error = "accept"
  std::string value;      // on_error_value: what a failed expansion returns when failOpen
};

struct Kind {
  proto::Request::Which which;
  const char* name;  // "expand", "local_scan", "do_filter"
  bool needsBody;    // descriptors of the message's files come with the request
  // The answer of a fail-open pool in place of a Failure.
  void (*failOpen)(proto::Response::Builder response, const OnError& onError);
};

// The entry for `which`; null for a kind this build does not serve.
const Kind* find(proto::Request::Which which);

// Read every field of a client's request so that a malformed one fails here, with a reason,
// and not inside a handler; throws kj::Exception. `fds` is how many descriptors came with it.
void validate(proto::Request::Reader request, size_t fds);

// The name a call goes by in logs and status: the expansion's function (bytes as UTF-8
// escapes where they are not), or the kind's name.
std::string functionName(proto::Request::Reader request);

// Fill `response` for a failed call of kind `which`: the Failure, or a fail-open pool's answer.
void answerFailure(proto::Response::Builder response, proto::Request::Which which,
                   proto::Failure::Kind kind, kj::StringPtr message, const OnError& onError);

// The same, as the ${readsocket} reply line a caller of the line front end reads.
std::string answerFailureLine(proto::Request::Which which, proto::Failure::Kind kind,
                              kj::StringPtr message, const OnError& onError);

// The one log line for a failed call: "pool P: FN (message ID) failed: MESSAGE", and the
// traceback on the following lines when there is one.
std::string failureLine(kj::StringPtr pool, kj::StringPtr function, kj::StringPtr messageId,
                        kj::StringPtr message, kj::StringPtr traceback);

// `bytes` as printable UTF-8: invalid sequences and control characters become \xNN.
std::string printable(kj::ArrayPtr<const kj::byte> bytes);

// What a worker wrote (a policy's output, its exception), line by line as printable(), the
// lines joined by `joint`. In the log, kLogContinuation: no line of it passes for one of the
// daemon's own.
constexpr char kLogContinuation[] = "\n    | ";
std::string printableLines(const std::string& text, const char* joint = "\n");

}  // namespace mtapy::calls
