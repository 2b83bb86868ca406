// listener.h - a Unix listening socket on the KJ loop whose connections can carry fds
// DESCRIPTION  kj::ConnectionReceiver yields plain streams; policy calls need
//              AsyncCapabilityStream (SCM_RIGHTS bodies) and the peer's SO_PEERCRED, so this
//              accepts by hand.
// SECURITY     The socket's mode is set before listen(); who may do what is then decided per
//              call from the peer credentials (router.c++), never from the file mode alone.
#pragma once

#include <kj/async-io.h>
#include <kj/async-unix.h>

#include <sys/socket.h>
#include <string>

namespace mtapy::workerd {

struct Accepted {
  kj::Own<kj::AsyncCapabilityStream> stream;
  ucred peer;
};

class Listener {
 public:
  // Bind `path` (refusing if a live daemon already answers there) with `mode`.
  Listener(const std::string& path, mode_t mode, kj::AsyncIoContext& io);
  ~Listener();

  kj::Promise<Accepted> accept();

 private:
  std::string path_;
  kj::AutoCloseFd fd_;
  kj::AsyncIoContext& io_;
  kj::UnixEventPort::FdObserver observer_;
  bool failing_ = false;  // accept() is failing: say so once, not every retry
};

}  // namespace mtapy::workerd
