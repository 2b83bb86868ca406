// client.h - a shim's socket to its pool: one per MTA process
// DESCRIPTION  A datagram socket connected to the pool's call socket: each call is one datagram
//              to the pool, taken by whichever worker is idle, and one answer back, straight
//              from that worker (or from the daemon, when the worker died or overran). Made
//              lazily and kept (an Exim process serves a whole SMTP session), made anew in a
//              forked child (getpid() differs) without touching the parent's. No threads, no
//              signal handlers, no change to signal dispositions: non-blocking I/O with
//              MSG_NOSIGNAL, every wait bounded by the settings' timeout.
//              A Client is one conversation, one call at a time; a program with many calls in
//              flight (mtapy-courierfilter) keeps its own socket from connectToPool() and
//              matches answers to calls by their id.
// DIAGNOSTICS  Transport problems throw kj::Exception with a message fit for the MTA's log.
// SEE ALSO     settings.h, proto/datagram.h, proto/policy.capnp
#pragma once

#include "proto/datagram.h"
#include "proto/policy.capnp.h"
#include "settings.h"

#include <capnp/message.h>

#include <sys/types.h>

namespace mtapy::shim {

class Client {
 public:
  Client() = default;
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Send `request` (a proto::Request; id, pool and timeout are filled in here) with `fds`
  // attached, and return the pool's Response. Not for two threads at once.
  wire::Datagram call(capnp::MallocMessageBuilder& request, kj::ArrayPtr<const int> fds,
                      const Settings& settings);

 private:
  void connect(const Settings& settings);
  void disconnect();

  int fd_ = -1;
  pid_t owner_ = 0;  // the process that connected
  uint64_t nextId_ = 1;
};

// A new datagram socket connected to the settings' pool (non-blocking, close-on-exec).
// Throws with what the admin should check: the daemon down, no such pool, uid not a client.
int connectToPool(const Settings& settings);

// What every call puts into its request besides the call itself: its id, pool and timeout.
void stamp(proto::Request::Builder request, uint64_t id, const Settings& settings);

// The MTA process's own Client, with shim.conf's settings: send `request` with `fd` attached
// unless it is -1, and return the pool's Response.
wire::Datagram call(capnp::MallocMessageBuilder& request, int fd);
// The same with `settings` in place of shim.conf's (mtapyctl).
wire::Datagram call(capnp::MallocMessageBuilder& request, int fd, const Settings& settings);

// Do now, in a process that will fork the MTA's processes, what the first call of each of
// them would otherwise do again: read shim.conf, and rehearse a call over a socketpair, with
// `typical` as the request and a value as the answer. The rehearsal allocates the receive
// buffer, grows the heap, and binds the libstdc++ functions a call reaches that the dynamic
// linker binds lazily (libcapnp and libkj are bound at load). No pool is contacted; nothing is
// printed or left open, and a failure only leaves the work to the first call.
void prepare(capnp::MallocMessageBuilder& typical) noexcept;

}  // namespace mtapy::shim
