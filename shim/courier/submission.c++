// submission.c++ - one message from Courier's submit: its request, its call to the pool, its reply
#include "submission.h"

#include "filter-socket.h"
#include "proto/policy.capnp.h"

#include <kj/debug.h>

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

namespace mtapy::courier {
namespace {

constexpr size_t kMaxRequestBytes = 64 * 1024;
// A reply is sent in one non-blocking write: this fits an idle connection's send buffer at
// Linux's default size (net.core.wmem_default, 208 KiB).
constexpr size_t kMaxReplyBytes = 32 * 1024;

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

// submit writes every message into Courier's tmp/ folder. Whoever may connect to the filter
// socket (Courier's user and group; on Debian that user, daemon, is shared) could name any
// other file, and its descriptor, opened read-write with Courier's rights, would go to the
// pool's policy: so only regular files beneath tmp/, reached through no symlink, are opened.
kj::AutoCloseFd openFile(const std::string& path) {
  static const std::string spool = normalized(localStateDir() + "/tmp") + "/";
  static int spoolFd = -1;  // kept: one folder for the program's life
  if (path.size() <= spool.size() || path.compare(0, spool.size(), spool) != 0) {
    wire::fail(path + " is not in Courier's " + spool + " (is submit's localstatedir another "
               "one than this filter's?)");
  }
  if (spoolFd < 0) spoolFd = open(spool.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (spoolFd < 0) wire::fail("cannot open " + spool + ": " + strerror(errno));
  open_how how{};
  // O_NONBLOCK: a lease on the file (or a FIFO) fails the open at once, where a blocking open
  // would hold every other message until the lease was broken (45 s).
  how.flags = O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  std::string beneath = path.substr(spool.size());
  int fd = int(syscall(SYS_openat2, spoolFd, beneath.c_str(), &how, sizeof how));
  if (fd < 0) wire::fail("cannot open " + path + ": " + strerror(errno));
  kj::AutoCloseFd file(fd);
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) wire::fail(path + " is not a regular file");
  fcntl(fd, F_SETFL, 0);  // O_NONBLOCK off, its only status flag: a plain file for the policy
  return file;
}

// The message id (the M record of the first control file), for log lines; "" if none.
std::string messageId(int control) {
  char head[4096];
  ssize_t n = pread(control, head, sizeof head, 0);
  std::string text = "\n" + std::string(head, n > 0 ? size_t(n) : 0);  // each record after \n
  size_t at = text.find("\nM");
  if (at == std::string::npos) return "";
  size_t end = text.find('\n', at + 2);
  return end == std::string::npos ? "" : text.substr(at + 2, end - at - 2);
}

}  // namespace

void log(const std::string& line) {
  std::string text = "mtapy-courierfilter: " + line + "\n";
  (void)!write(2, text.data(), text.size());
}

bool parseRequest(const std::string& text, size_t from, Request& out) {
  if (!text.empty() && text[0] == '\n') wire::fail("submit's request names no data file");
  size_t end = text.find("\n\n", from);
  if (end == std::string::npos) {
    if (text.size() > kMaxRequestBytes) wire::fail("request over 64 KiB");
    return false;
  }
  std::vector<std::string> lines;
  for (size_t at = 0; at <= end;) {
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

std::string prepareCall(const Request& request, capnp::MallocMessageBuilder& call,
                        std::vector<kj::AutoCloseFd>& files) {
  if (1 + request.controlPaths.size() > wire::kMaxFds) {
    wire::fail(std::to_string(request.controlPaths.size()) +
               " control files, more than one call can carry (lower Courier's batchsize)");
  }
  files.push_back(openFile(request.dataPath));
  for (const std::string& path : request.controlPaths) files.push_back(openFile(path));
  std::string id = messageId(files[1]);
  auto root = call.initRoot<proto::Request>();
  root.setMessageId(id);
  auto filter = root.initDoFilter();
  filter.setDataPath(request.dataPath);
  auto controls = filter.initControlPaths(unsigned(request.controlPaths.size()));
  for (unsigned i = 0; i < controls.size(); i++) controls.set(i, request.controlPaths[i]);
  return id;
}

std::string replyFor(const wire::Datagram& answer, const std::string& id) {
  auto reader = answer.reader();
  auto response = reader.getRoot<proto::Response>();
  if (response.isFilterReply()) {
    auto reply = response.getFilterReply();
    if (reply.size() > kMaxReplyBytes) {
      log("message " + id + ": the filters' reply is over 32 KiB; it is refused for now");
      return kTempfail;
    }
    std::string text(reinterpret_cast<const char*>(reply.begin()), reply.size());
    return text.empty() ? "200 Ok" : text;  // fail-open, or a chain that passed it
  }
  std::string why = response.isFailure() ? response.getFailure().getMessage().cStr()
                                         : "the pool answered with something other than a "
                                           "filter reply (is its daemon older than this filter?)";
  log("message " + id + ": " + why);
  return kTempfail;
}

void sendReply(kj::AutoCloseFd fd, std::string reply) {
  if (reply.empty() || reply.back() != '\n') reply += '\n';
  // A short write means submit is gone or not reading: then nobody waits for the rest.
  (void)!send(fd.get(), reply.data(), reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

}  // namespace mtapy::courier
