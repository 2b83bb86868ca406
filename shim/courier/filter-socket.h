// filter-socket.h - a Courier global filter's listening socket, made the way courierfilter(8) says
// DESCRIPTION  The socket is LOCALSTATEDIR/allfilters/NAME, or LOCALSTATEDIR/filters/NAME when
//              SYSCONFDIR/filters/NAME-mode says so (any content but "all"): filters/ sockets
//              are skipped for mail every recipient whitelisted, allfilters/ ones never. With no
//              mode file it is allfilters/, as courier-pythonfilter's was. NAME must be the
//              name of the filters/active/ entry: courierfilter removes sockets of other names.
//              The socket is bound as .NAME and renamed into place, so submit never connects
//              to a socket that is not listening yet; one of the same name in the other folder
//              is removed.
// SEE ALSO     courierfilter.c++, docs/courier.md
#pragma once

#include <string>

namespace mtapy::courier {

struct FilterSocket {
  int fd = -1;        // listening, blocking, close-on-exec
  std::string path;   // where it is, to be unlinked at shutdown
};

// Courier's folders: $localstatedir or /var/lib/courier, $sysconfdir or /etc/courier (the
// environment courierfilter gives its filters carries sysconfdir).
std::string localStateDir();
std::string sysconfDir();

// Create NAME's socket, mode 0660 (Courier's submit runs as the courier user or group).
// Throws kj::Exception saying what failed.
FilterSocket listenAs(const std::string& name);

}  // namespace mtapy::courier
