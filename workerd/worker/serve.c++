// serve.c++ - a worker's loop: wait on its front ends and on the daemon's control channel
#include "serve.h"

#include <kj/debug.h>

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cerrno>

namespace mtapy::worker {
namespace {

void watch(int epoll, int fd, uint32_t events) {
  epoll_event event{};
  event.events = events;
  event.data.fd = fd;
  KJ_SYSCALL(epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event));
}

// Answer everything already queued on the front ends, then stop.
[[noreturn]] void drain(Worker& worker, const Sockets& sockets) {
  bool more = true;
  while (more) {
    more = serveDatagram(worker, sockets.calls);
    if (sockets.lines >= 0) more = serveLine(worker, sockets.lines) || more;
  }
  _exit(0);
}

// Recycled after max_use calls: exit, unless the daemon asked for a drain meanwhile.
[[noreturn]] void retire(Worker& worker, const Sockets& sockets) {
  char word = 0;
  if (recv(sockets.control, &word, 1, MSG_DONTWAIT) == 1 && word == 'd') drain(worker, sockets);
  _exit(0);  // the daemon replaces us
}

}  // namespace

void serve(Worker& worker, const Sockets& sockets) {
  int epoll;
  KJ_SYSCALL(epoll = epoll_create1(EPOLL_CLOEXEC));
  watch(epoll, sockets.control, EPOLLIN);
  watch(epoll, sockets.calls, EPOLLIN | EPOLLEXCLUSIVE);
  if (sockets.lines >= 0) watch(epoll, sockets.lines, EPOLLIN | EPOLLEXCLUSIVE);
  worker.slot.setState(scoreboard::kIdle);
  for (unsigned served = 0;;) {
    epoll_event events[3];
    int n = epoll_wait(epoll, events, 3, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) _exit(72);
    // The daemon's word first: a retiring worker must not take another call.
    for (int i = 0; i < n; i++) {
      if (events[i].data.fd != sockets.control) continue;
      char word = 0;
      ssize_t got = read(sockets.control, &word, 1);
      if (got < 0 && errno == EAGAIN) continue;
      if (got == 1 && word == 'd') drain(worker, sockets);
      _exit(0);
    }
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      bool took = fd == sockets.calls   ? serveDatagram(worker, fd)
                  : fd == sockets.lines ? serveLine(worker, fd)
                                        : false;
      if (took && ++served >= worker.pool.maxUse) retire(worker, sockets);
    }
  }
}

}  // namespace mtapy::worker
