// line-socket.c++ - the ${readsocket} front end: one connection, one line, one answer
// DESCRIPTION  Every idle worker of a pool with `readsocket` set waits on that listening
//              socket too; the kernel gives each connection to one of them. The line is read
//              with a short deadline (Exim writes it right after connecting), answered as
//              line-protocol.h says, and the connection is closed: that ends Exim's read.
// SECURITY     The socket's ACL admits only the pool's clients; SO_PEERCRED is checked again.
// SEE ALSO     line-protocol.h, deploy/exim/ (the ACL idiom)
#include "front-end.h"
#include "line-protocol.h"

#include <capnp/message.h>
#include <kj/debug.h>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cerrno>

namespace mtapy::worker {
namespace {

// A client that connected has its line ready at once; one that stalls loses its turn.
constexpr int64_t kLineWaitMs = 2000;

// The request line, up to its newline or the end of the stream; "" with `error` set if none.
std::string readLine(int fd, std::string& error) {
  std::string line;
  wire::Deadline deadline = wire::deadlineIn(kLineWaitMs);
  char buffer[4096];
  for (;;) {
    ssize_t n = recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      if (!wire::ready(fd, POLLIN, deadline)) {
        error = "the request line did not come within 2 s";
        return "";
      }
      continue;
    }
    if (n <= 0) return line;  // end of stream: the request is whatever came
    line.append(buffer, size_t(n));
    auto newline = line.find('\n');
    if (newline != std::string::npos) return line.substr(0, newline);
    if (line.size() > kMaxReadsocketLine) {
      error = "request line over 64 KiB";
      return "";
    }
  }
}

void writeAll(int fd, const std::string& text) {
  wire::Deadline deadline = wire::deadlineIn(kLineWaitMs);
  for (size_t done = 0; done < text.size();) {
    ssize_t n = send(fd, text.data() + done, text.size() - done, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN && wire::ready(fd, POLLOUT, deadline)) continue;
    if (n < 0) return;  // Exim gave up on us
    done += size_t(n);
  }
}

// Build the Request for `parsed`, or say why not.
std::string buildRequest(const PoolFacts& pool, const LineRequest& parsed,
                         proto::Request::Builder request) {
  if (!parsed.pool.empty() && parsed.pool != pool.name) {
    return "this socket serves pool " + pool.name + ", not " + parsed.pool +
           " (use that pool's readsocket)";
  }
  request.setId(1);
  auto expand = request.initExpand();
  expand.setFunction(kj::StringPtr(parsed.function.c_str()).asBytes());
  auto args = expand.initArgs(unsigned(parsed.args.size()));
  for (unsigned i = 0; i < args.size(); i++) {
    args.set(i, kj::arrayPtr(reinterpret_cast<const kj::byte*>(parsed.args[i].data()),
                             parsed.args[i].size()));
  }
  return "";
}

}  // namespace

bool serveLine(Worker& worker, int listener) {
  int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return false;  // another worker took it, or it went away
  kj::AutoCloseFd connection(fd);
  ucred peer{};
  socklen_t length = sizeof peer;
  capnp::MallocMessageBuilder answer;
  auto response = answer.initRoot<proto::Response>();
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &length) < 0 ||
      !worker.pool.allows(peer.uid)) {
    refuse(worker.pool, proto::Failure::Kind::NOT_ALLOWED,
           "uid " + std::to_string(peer.uid) + " may not call pool " + worker.pool.name +
               " (add it to that pool's clients)",
           response);
    writeAll(fd, readsocketReply(response));
    return true;
  }
  std::string error;
  std::string line = readLine(fd, error);
  std::optional<LineRequest> parsed;
  if (error.empty()) parsed = parseReadsocketLine(line, error);
  capnp::MallocMessageBuilder message;
  auto request = message.initRoot<proto::Request>();
  if (parsed) error = buildRequest(worker.pool, *parsed, request);
  if (!error.empty()) {
    refuse(worker.pool, proto::Failure::Kind::BAD_REQUEST, "malformed request: " + error,
           response);
    writeAll(fd, readsocketReply(response));
    return true;
  }
  auto reader = request.asReader();
  worker.slot.begin(0, uint32_t(reader.which()), peer.uid, nullptr, fd,
                    calls::functionName(reader), "", deadlineNs(worker.pool, 0));
  bool failed = dispatch(worker.python, worker.pool, reader, nullptr, peer.uid, response);
  int64_t ended = monotonicNs();
  writeAll(fd, readsocketReply(response));
  worker.slot.end(failed, ended);
  return true;
}

}  // namespace mtapy::worker
