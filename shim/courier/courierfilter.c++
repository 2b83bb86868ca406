// courierfilter.c++ - mtapy-courierfilter: Courier's global filter in front of an mtapy pool
// SYNOPSIS     installed as /usr/lib/courier/filters/mtapy; enabled with `filterctl start mtapy`
// DESCRIPTION  courierfilter(8) starts each active filter with a pipe on stdin and fd 3, as
//              Courier's user. We listen on the filter socket (filter-socket.h), close fd 3 to
//              say we are ready, and serve one connection per message (submission.h) until
//              stdin reaches EOF; then the socket goes away, the messages in progress and
//              already queued finish, and we exit. The pool, the daemon's socket and the wait
//              come from shim.conf ($MTAPY_SHIM_CONF or /etc/mtapy/shim.conf), as for Exim.
//              Several messages are in flight at once: kThreads threads each take the next
//              connection (the kernel wakes one per connection) with a Client of their own.
// DIAGNOSTICS  Lines go to stderr, which courierfilter sends to syslog. A filter that cannot
//              start exits non-zero; Courier then passes mail WITHOUT it (courierfilter(8)), so
//              a bad shim.conf is reported and the socket is never made.
// SEE ALSO     docs/courier.md, deploy/courier/, proto/policy.capnp (DoFilter)
#include "filter-socket.h"
#include "submission.h"

#include <kj/debug.h>

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace mtapy::courier {
namespace {

// Messages in flight at once; more wait in the socket's backlog. A pool serves at most its
// process_limit at a time anyway, and each thread costs only its touched stack.
constexpr unsigned kThreads = 64;

std::atomic<bool> stopping{false};

void acceptLoop(int listening, const shim::Settings* settings) {
  shim::Client client;
  for (;;) {
    int fd = accept4(listening, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) {
      serveSubmission(fd, client, *settings);
    } else if (stopping.load() || errno == EINVAL || errno == EBADF) {
      return;  // shut down
    } else if (errno != EINTR && errno != ECONNABORTED) {
      // Out of descriptors or memory: submit waits in the backlog; try again shortly rather
      // than lose this thread for good.
      fprintf(stderr, "mtapy-courierfilter: accept: %s\n", strerror(errno));
      usleep(100000);
    }
  }
}

// Until submit's pending connections have been taken (the name is gone, so no new ones come).
void drainBacklog(int listening, unsigned patienceMs) {
  for (unsigned waited = 0; waited < patienceMs; waited += 10) {
    pollfd pending{listening, POLLIN, 0};
    if (poll(&pending, 1, 0) <= 0) return;
    usleep(10000);
  }
}

int run(const std::string& name) {
  const shim::Settings& settings = shim::settings();
  if (!settings.error.empty()) {
    fprintf(stderr, "mtapy-courierfilter: %s; not started, so Courier passes mail unfiltered\n",
            settings.error.c_str());
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);  // our own process: a vanished submit is an EPIPE, not our death
  FilterSocket socket;
  try {
    socket = listenAs(name);
  } catch (const kj::Exception& e) {
    fprintf(stderr, "mtapy-courierfilter: %s\n", e.getDescription().cStr());
    return 1;
  }
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < kThreads; i++) threads.emplace_back(acceptLoop, socket.fd, &settings);
  struct stat ready;
  if (fstat(3, &ready) == 0) close(3);  // courierfilter start waits for this
  fprintf(stderr, "mtapy-courierfilter: %s ready on %s\n", name.c_str(), socket.path.c_str());

  char ignored[64];  // courierfilter writes nothing; stdin only ends (EOF, or an error)
  for (;;) {
    ssize_t n = read(0, ignored, sizeof ignored);
    if (n > 0 || (n < 0 && errno == EINTR)) continue;
    break;
  }
  unlink(socket.path.c_str());
  drainBacklog(socket.fd, settings.timeoutMs + 2000);
  stopping = true;
  shutdown(socket.fd, SHUT_RDWR);  // wakes every thread blocked in accept()
  for (std::thread& thread : threads) thread.join();
  fprintf(stderr, "mtapy-courierfilter: %s stopped\n", name.c_str());
  return 0;
}

}  // namespace
}  // namespace mtapy::courier

int main(int, char** argv) {
  std::string name = argv[0] ? argv[0] : "mtapy";
  name = name.substr(name.rfind('/') + 1);  // courierfilter runs us as the active/ entry's name
  return mtapy::courier::run(name);
}
