// line-protocol.h - the ${readsocket} line protocol, for Exim builds without ${dlfunc}
// DESCRIPTION  One request per connection: `FUNCTION ARG ARG...` ending at a newline or at the
//              end of the stream. Words are split on spaces and tabs; a word may be
//              double-quoted with \" \\ \n \r escapes, which is what Exim's ${quote:...} writes.
//              FUNCTION may be POOL:FUNCTION. The reply is the value as is (None: empty), or
//              "DEFER: message" when the call failed; then the worker closes the connection,
//              which is the end of the reply for Exim.
// SEE ALSO     deploy/exim/ (the ACL idiom), line-socket.c++ (the front end)
#pragma once

#include "proto/policy.capnp.h"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mtapy::worker {

constexpr size_t kMaxReadsocketLine = 64 * 1024;

struct LineRequest {
  std::string pool, function;
  std::vector<std::string> args;
};

// Parse one request line (without its newline); nullopt with `error` set when malformed.
std::optional<LineRequest> parseReadsocketLine(std::string_view line, std::string& error);

// What Exim reads back for `response`.
std::string readsocketReply(proto::Response::Reader response);

}  // namespace mtapy::worker
