// serve.c++ - a worker's loop: wait on its front ends and on the daemon's control channel
#include "serve.h"

#include "recycle.h"

#include <kj/debug.h>

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cerrno>

namespace mtapy::worker {
namespace {

enum class Word { kNone, kGo, kRetire, kDrain };

Word readWord(int control, bool wait) {
  char word = 0;
  for (;;) {
    ssize_t got = recv(control, &word, 1, wait ? 0 : MSG_DONTWAIT);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0 && errno == EAGAIN) return Word::kNone;
    if (got == 1 && word == 'g') return Word::kGo;
    if (got == 1 && word == 'd') return Word::kDrain;
    return Word::kRetire;  // "r", end of file, or a lost channel
  }
}

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

}  // namespace

void serve(Worker& worker, const Sockets& sockets) {
  // A new generation takes calls only once all of its workers are ready (the daemon's go).
  Word first = readWord(sockets.control, true);
  if (first != Word::kGo) _exit(0);
  Recycler recycler(worker.pool);
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
    Word word = Word::kNone;
    for (int i = 0; i < n; i++) {
      if (events[i].data.fd == sockets.control) word = readWord(sockets.control, false);
    }
    if (word == Word::kDrain) drain(worker, sockets);
    // A call that woke us is ours even when we retire: EPOLLEXCLUSIVE woke no other worker
    // for it, and one left in the queue would wait for the next arrival to be noticed.
    std::string leaving;
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      bool took = fd == sockets.calls   ? serveDatagram(worker, fd)
                  : fd == sockets.lines ? serveLine(worker, fd)
                                        : false;
      if (took && leaving.empty()) leaving = recycler.reasonAfter(++served);
    }
    if (word == Word::kRetire) _exit(0);
    if (!leaving.empty()) {
      leaving += "\n";
      (void)!write(2, leaving.data(), leaving.size());
      // The daemon may have asked for a drain meanwhile: then answer what is queued first.
      if (readWord(sockets.control, false) == Word::kDrain) drain(worker, sockets);
      _exit(0);  // the daemon replaces us
    }
  }
}

}  // namespace mtapy::worker
