// submission.h - one message from Courier's submit: its request, its call to the pool, its reply
// DESCRIPTION  submit connects once per message and writes the data file's path, each control
//              file's path and an empty line; it then reads one SMTP-style reply, possibly
//              multi-line, until we close. The files are opened here, as Courier's user, and
//              their descriptors go to the pool with a doFilter call, so a pool user who cannot
//              read Courier's spool still reads and edits exactly this message; the body never
//              passes through the daemon. filter-loop.h runs many of these at once.
// DIAGNOSTICS  Whatever keeps the pool from answering (the daemon down, a hung or crashed
//              filter, an overloaded pool, a malformed request) gives submit kTempfail, so
//              the sender keeps the message and tries again; the reason goes to stderr,
//              which courierfilter sends to syslog.
// SEE ALSO     proto/policy.capnp (DoFilter), pylib/mtapy/_worker.py (do_filter), docs/courier.md
#pragma once

#include "proto/datagram.h"

#include <capnp/message.h>
#include <kj/io.h>

#include <string>
#include <vector>

namespace mtapy::courier {

constexpr char kTempfail[] = "451 4.3.0 Mail filter temporarily unavailable, try again later";

// One line to stderr (one write: lines never interleave).
void log(const std::string& line);

struct Request {
  std::string dataPath;
  std::vector<std::string> controlPaths;  // absolute and normalized, as the files are
};

// Whether `text`, what submit has sent so far, is a whole request; then `out` has it. The
// request's end is looked for from `from` on: what was not whole before the last part came
// (searching all of it again for each part of a trickled request would be quadratic).
// Throws on a request that can never be whole or valid (no data file, over 64 KiB).
bool parseRequest(const std::string& text, size_t from, Request& out);

// A doFilter call for `request` in `call` (id, pool and timeout still to stamp), with the
// message's files opened into `files`, data file first. Returns the message id for logs.
// Throws when a file cannot be opened or the call could not carry them all.
std::string prepareCall(const Request& request, capnp::MallocMessageBuilder& call,
                        std::vector<kj::AutoCloseFd>& files);

// What submit is told for the pool's answer (logged when it is not the filters' own reply).
std::string replyFor(const wire::Datagram& answer, const std::string& id);

// Tell submit `reply` on the connection `fd` (non-blocking) and close it.
void sendReply(kj::AutoCloseFd fd, std::string reply);

}  // namespace mtapy::courier
