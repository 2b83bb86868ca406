// courierfilter.c++ - mtapy-courierfilter: Courier's global filter in front of an mtapy pool
// SYNOPSIS     installed as /usr/lib/courier/filters/mtapy; enabled with `filterctl start mtapy`
// DESCRIPTION  courierfilter(8) starts each active filter with a pipe on stdin and fd 3, as
//              Courier's user. We listen on the filter socket (filter-socket.h), close fd 3 to
//              say we are ready, and serve one connection per message (submission.h) until
//              stdin reaches EOF; then the socket goes away, the messages in progress and
//              already queued finish, and we exit. The pool, the daemon's socket and the wait
//              come from shim.conf ($MTAPY_SHIM_CONF or /etc/mtapy/shim.conf), as for Exim.
//              Every message in flight is served by one event loop (filter-loop.h).
// DIAGNOSTICS  Lines go to stderr, which courierfilter sends to syslog. A filter that cannot
//              start exits non-zero; Courier then passes mail WITHOUT it (courierfilter(8)), so
//              a bad shim.conf is reported and the socket is never made.
// SEE ALSO     docs/courier.md, deploy/courier/, proto/policy.capnp (DoFilter)
#include "filter-loop.h"
#include "filter-socket.h"

#include <kj/debug.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <csignal>
#include <cstdio>
#include <string>

namespace mtapy::courier {
namespace {

int run(const std::string& name) {
  // Looked at first: started without fd 3 (by hand), a descriptor of ours would get number 3.
  struct stat ready;
  bool courierWaits = fstat(3, &ready) == 0;
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
  fcntl(socket.fd, F_SETFL, fcntl(socket.fd, F_GETFL) | O_NONBLOCK);
  if (courierWaits) close(3);  // courierfilter start waits for this
  fprintf(stderr, "mtapy-courierfilter: %s ready on %s\n", name.c_str(), socket.path.c_str());

  try {
    serve(socket.fd, socket.path, settings);
  } catch (const kj::Exception& e) {
    // The socket stays: without it, Courier would pass mail unfiltered.
    fprintf(stderr, "mtapy-courierfilter: %s; stopped\n", e.getDescription().cStr());
    return 1;
  }
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
