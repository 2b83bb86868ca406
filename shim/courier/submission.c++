// submission.c++ - one message from Courier's submit: its files to the pool, the reply back
#include "submission.h"

#include "filter-socket.h"

#include <kj/debug.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

namespace mtapy::courier {
namespace {

// submit writes its request at once; a connection silent this long is not submit's.
constexpr int64_t kRequestWaitMs = 30000;
constexpr size_t kMaxRequestBytes = 64 * 1024;
constexpr char kTempfail[] = "451 4.3.0 Mail filter temporarily unavailable, try again later";

void log(const std::string& line) {
  std::string text = "mtapy-courierfilter: " + line + "\n";
  (void)!write(2, text.data(), text.size());  // one write: lines from threads never interleave
}

struct Request {
  std::string dataPath;
  std::vector<std::string> controlPaths;
};

// PATH without "." and empty components, ".." taken lexically: the worker's open() matches
// the filters' paths against these exact strings (pylib/mtapy/passed_files.py).
std::string normalized(const std::string& path) {
  std::vector<std::string> parts;
  for (size_t at = 0; at <= path.size();) {
    size_t end = std::min(path.find('/', at), path.size());
    std::string part = path.substr(at, end - at);
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    at = end + 1;
  }
  std::string out;
  for (const std::string& part : parts) out += "/" + part;
  return out.empty() ? "/" : out;
}

// Read submit's lines up to the empty one; false if it hung up first (then nobody waits).
bool readRequest(int fd, Request& out) {
  std::string text;
  wire::Deadline deadline = wire::deadlineIn(kRequestWaitMs);
  size_t end;
  while ((end = text.find("\n\n")) == std::string::npos) {
    if (!text.empty() && text[0] == '\n') wire::fail("submit's request names no data file");
    if (text.size() > kMaxRequestBytes) wire::fail("request over 64 KiB");
    char buffer[4096];
    ssize_t n = recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n > 0) {
      text.append(buffer, size_t(n));
    } else if (n == 0) {
      return false;
    } else if (errno == EAGAIN) {
      if (!wire::ready(fd, POLLIN, deadline)) wire::fail("submit sent no complete request");
    } else if (errno != EINTR) {
      wire::fail(std::string("reading submit's request: ") + strerror(errno));
    }
  }
  text.resize(end + 1);  // each path with its newline
  std::vector<std::string> lines;
  for (size_t at = 0; at < text.size();) {
    size_t next = text.find('\n', at);
    std::string path = text.substr(at, next - at);
    // Courier writes absolute paths; relative ones are under its tmp/ (courierfilter(8)).
    if (path[0] != '/') path = localStateDir() + "/tmp/" + path;
    lines.push_back(normalized(path));
    at = next + 1;
  }
  if (lines.size() < 2) wire::fail("request names no control file");
  out.dataPath = lines[0];
  out.controlPaths.assign(lines.begin() + 1, lines.end());
  return true;
}

kj::AutoCloseFd openFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) wire::fail("cannot open " + path + ": " + strerror(errno));
  return kj::AutoCloseFd(fd);
}

// The message id (the M record of the first control file), for log lines; "" if none.
std::string messageId(int control) {
  char head[4096];
  ssize_t n = pread(control, head, sizeof head, 0);
  std::string text(head, n > 0 ? size_t(n) : 0);
  size_t at = text.rfind("\nM", 0) == 0 ? 0 : text.find("\nM");
  if (at == std::string::npos) return "";
  size_t end = text.find('\n', at + 2);
  return end == std::string::npos ? "" : text.substr(at + 2, end - at - 2);
}

// What submit is told for the pool's answer.
std::string replyFor(const wire::Datagram& answer, const std::string& id) {
  auto reader = answer.reader();
  auto response = reader.getRoot<proto::Response>();
  if (response.isFilterReply()) {
    auto reply = response.getFilterReply();
    std::string text(reinterpret_cast<const char*>(reply.begin()), reply.size());
    return text.empty() ? "200 Ok" : text;  // fail-open, or a chain that passed it
  }
  std::string why = response.isFailure() ? response.getFailure().getMessage().cStr()
                                         : "the pool answered with something other than a "
                                           "filter reply (is its daemon older than this filter?)";
  log("message " + id + ": " + why);
  return kTempfail;
}

void sendAll(int fd, std::string text) {
  if (text.empty() || text.back() != '\n') text += '\n';
  wire::Deadline deadline = wire::deadlineIn(kRequestWaitMs);
  for (size_t done = 0; done < text.size();) {
    ssize_t n = send(fd, text.data() + done, text.size() - done, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
      done += size_t(n);
    } else if (errno == EAGAIN) {
      if (!wire::ready(fd, POLLOUT, deadline)) return;
    } else if (errno != EINTR) {
      return;  // submit went away: nobody to tell
    }
  }
}

}  // namespace

void serveSubmission(int fd, shim::Client& client, const shim::Settings& settings) {
  kj::AutoCloseFd connection(fd);
  Request request;
  std::string id = "(unknown)";
  std::string reply;
  try {
    if (!readRequest(fd, request)) return;
    if (1 + request.controlPaths.size() > wire::kMaxFds) {
      wire::fail(std::to_string(request.controlPaths.size()) +
                 " control files, more than one call can carry (lower Courier's batchsize)");
    }
    std::vector<kj::AutoCloseFd> files;
    files.push_back(openFile(request.dataPath));
    for (const std::string& path : request.controlPaths) files.push_back(openFile(path));
    id = messageId(files[1]);

    capnp::MallocMessageBuilder message;
    auto call = message.initRoot<proto::Request>();
    call.setMessageId(id);
    auto filter = call.initDoFilter();
    filter.setDataPath(request.dataPath);
    auto controls = filter.initControlPaths(unsigned(request.controlPaths.size()));
    for (unsigned i = 0; i < controls.size(); i++) controls.set(i, request.controlPaths[i]);
    std::vector<int> fds;
    for (const kj::AutoCloseFd& file : files) fds.push_back(file.get());
    reply = replyFor(client.call(message, kj::arrayPtr(fds.data(), fds.size()), settings), id);
  } catch (const kj::Exception& e) {
    log("message " + id + ": " + e.getDescription().cStr());
    reply = kTempfail;
  }
  sendAll(fd, reply);
}

}  // namespace mtapy::courier
