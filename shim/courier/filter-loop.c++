// filter-loop.c++ - every message in flight at once, on one thread: submit's side and the pool's
#include "filter-loop.h"

#include "proto/policy.capnp.h"
#include "shim/common/client.h"
#include "submission.h"

#include <kj/debug.h>

#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <vector>

namespace mtapy::courier {
namespace {

// submit writes its request at once; a connection silent this long is not submit's, and it
// must not keep one of the message slots long from the submits waiting in the backlog.
constexpr int64_t kRequestWaitMs = 5000;
// With every message slot taken, this long: silent connections must not keep submit waiting.
constexpr int64_t kRequestWaitFullMs = 500;
// The daemon answers a timed-out call itself, with a better message, if we wait this long more.
constexpr int64_t kDaemonMarginMs = 1000;
// Messages held at once (each holds its connection, and its files until sent); more wait in
// the socket's backlog, as submit's connections always may. Fewer when descriptors are
// short: a message needs kFilesPerMessage (one control file), and kSpareFiles stay free.
constexpr size_t kMaxMessages = 256, kFilesPerMessage = 3, kSpareFiles = 16;

size_t messagesThatFit() {
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) != 0) return kMaxMessages;
  rlim_t want = std::min<rlim_t>(files.rlim_max, kSpareFiles + kMaxMessages * kFilesPerMessage);
  if (files.rlim_cur < want) {  // courierfilter leaves the soft limit; the hard one is ours
    files.rlim_cur = want;
    setrlimit(RLIMIT_NOFILE, &files);
    getrlimit(RLIMIT_NOFILE, &files);
  }
  size_t fit = files.rlim_cur > kSpareFiles ? (files.rlim_cur - kSpareFiles) / kFilesPerMessage : 0;
  return std::clamp<size_t>(fit, 1, kMaxMessages);
}

// epoll tags; a message's connection is tagged with its key, which is also its call's id.
constexpr uint64_t kListening = 0, kStdin = 1, kPool = 2, kFirstKey = 16;

struct Message {
  enum Stage { kReading, kQueued, kSent };
  kj::AutoCloseFd connection;
  bool watched = false;  // the connection is in epoll (its request came in parts)
  Stage stage = kReading;
  std::string text;  // submit's request so far
  std::string id = "(unknown)";
  wire::Deadline accepted = 0;
  wire::Deadline deadline = 0;
  std::unique_ptr<capnp::MallocMessageBuilder> call;  // until sent
  std::vector<kj::AutoCloseFd> files;                 // until sent
};

class Loop {
 public:
  Loop(int listening, const shim::Settings& settings)
      : epoll_(epoll_create1(EPOLL_CLOEXEC)),
        listening_(listening),
        settings_(settings),
        maxMessages_(messagesThatFit()) {
    if (epoll_.get() < 0) wire::fail(std::string("epoll_create1: ") + strerror(errno));
    if (!watch(listening_, EPOLLIN, kListening)) wire::fail("cannot watch the filter socket");
    // courierfilter gives a pipe; anything else (/dev/null) ends at once, as a pipe's EOF.
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, 0, event(EPOLLIN, kStdin)) < 0) draining_ = true;
  }

  void run(const std::string& path) {
    stat(path.c_str(), &ours_);  // the socket there is the one just made for us
    if (draining_) unlinkOurs(path);
    for (;;) {
      // Done when the backlog is seen empty with every message answered.
      if (draining_ && messages_.empty() && acceptAll() && messages_.empty()) return;
      int timeout = -1;
      if (!deadlines_.empty()) {
        int64_t wait = deadlines_.begin()->first - wire::deadlineIn(0);
        timeout = int(std::clamp<int64_t>(wait, 0, INT_MAX));  // a timeout may be 49 days
      }
      epoll_event events[64];
      int n = epoll_wait(epoll_.get(), events, 64, timeout);
      if (n < 0 && errno != EINTR) wire::fail(std::string("epoll_wait: ") + strerror(errno));
      for (int i = 0; i < n; i++) {
        uint64_t tag = events[i].data.u64;
        if (tag == kListening) {
          acceptAll();
        } else if (tag == kStdin) {
          if (stdinEnded()) {
            epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, 0, nullptr);
            unlinkOurs(path);  // submit connects no more; the backlog is still served
            draining_ = true;
          }
        } else if (tag == kPool) {
          if (events[i].events & EPOLLOUT) sendQueued();
          if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) receiveAnswers();
        } else {
          read(tag);
        }
      }
      if (resend_) {
        resend_ = false;
        sendQueued();
      }
      expire();
    }
  }

 private:
  epoll_event* event(uint32_t events, uint64_t tag) {
    scratch_.events = events;
    scratch_.data.u64 = tag;
    return &scratch_;
  }

  // False (and logged) if epoll refuses, out of memory: the caller gives up what needed it.
  bool watch(int fd, uint32_t events, uint64_t tag, int op = EPOLL_CTL_ADD) {
    if (epoll_ctl(epoll_.get(), op, fd, event(events, tag)) == 0) return true;
    log(std::string("epoll_ctl: ") + strerror(errno));
    return false;
  }

  // Unlink the socket at PATH if it is still ours: a filter started after us may have put its
  // own there (courierfilter restarted), and that one must stay.
  void unlinkOurs(const std::string& path) {
    struct stat there;
    if (stat(path.c_str(), &there) == 0 && there.st_ino == ours_.st_ino &&
        there.st_dev == ours_.st_dev) {
      unlink(path.c_str());
    }
  }

  static bool stdinEnded() {
    char ignored[64];  // courierfilter writes nothing; stdin only ends (EOF, or an error)
    ssize_t n = ::read(0, ignored, sizeof ignored);
    return n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN);
  }

  // Take every pending connection there is room for; true if the backlog was seen empty.
  bool acceptAll() {
    while (messages_.size() < maxMessages_) {
      int fd = accept4(listening_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EAGAIN) return true;
        // Out of descriptors or memory: submit waits in the backlog. Try again when a
        // message ends and frees its descriptors, or, with none in flight, shortly.
        if (!acceptFailing_) log(std::string("accept: ") + strerror(errno) + "; retrying");
        acceptFailing_ = true;
        if (messages_.empty()) {
          usleep(100000);
        } else {
          pauseListening(true);
        }
        return false;
      }
      acceptFailing_ = false;
      uint64_t key = nextKey_++;
      Message& m = messages_[key];
      m.connection = kj::AutoCloseFd(fd);
      m.accepted = wire::deadlineIn(0);
      setDeadline(key, m, m.accepted + kRequestWaitMs);
      read(key);
    }
    pauseListening(true);  // until a message ends
    hurryReaders();
    return false;
  }

  // Full: connections still without a whole request get kRequestWaitFullMs from their accept,
  // so that a few silent ones (not submit's: it writes at once) free their slots soon.
  void hurryReaders() {
    for (auto& [key, m] : messages_) {
      if (m.stage == Message::kReading && m.accepted + kRequestWaitFullMs < m.deadline) {
        setDeadline(key, m, m.accepted + kRequestWaitFullMs);
      }
    }
  }

  void pauseListening(bool pause) {
    if (pause == paused_) return;
    paused_ = pause;
    if (!watch(listening_, pause ? 0u : uint32_t(EPOLLIN), kListening, EPOLL_CTL_MOD)) {
      paused_ = !pause;
    }
  }

  void read(uint64_t key) {
    auto found = messages_.find(key);
    if (found == messages_.end() || found->second.stage != Message::kReading) return;
    Message& m = found->second;
    for (;;) {
      char buffer[4096];
      ssize_t n = recv(m.connection.get(), buffer, sizeof buffer, MSG_DONTWAIT);
      if (n == 0) return forget(key);  // submit hung up: nobody waits for a reply
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) {
        if (!m.watched && !watch(m.connection.get(), EPOLLIN, key)) {
          return finish(key, kTempfail, "cannot wait for the rest of submit's request");
        }
        m.watched = true;
        return;
      }
      if (n < 0) return finish(key, kTempfail, std::string("reading submit's request: ") +
                                                   strerror(errno));
      size_t seen = m.text.size();
      m.text.append(buffer, size_t(n));
      Request request;
      try {
        if (!parseRequest(m.text, seen > 0 ? seen - 1 : 0, request)) continue;
      } catch (const kj::Exception& e) {
        return finish(key, kTempfail, e.getDescription().cStr());
      }
      if (m.watched) epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, m.connection.get(), nullptr);
      return start(key, m, request);
    }
  }

  // The request is whole: the call goes to the pool now, or after those waiting for room.
  void start(uint64_t key, Message& m, const Request& request) {
    try {
      m.call = std::make_unique<capnp::MallocMessageBuilder>();
      m.id = prepareCall(request, *m.call, m.files);
      shim::stamp(m.call->getRoot<proto::Request>(), key, settings_);
    } catch (const kj::Exception& e) {
      return finish(key, kTempfail, e.getDescription().cStr());
    }
    m.stage = Message::kQueued;
    setDeadline(key, m, wire::deadlineIn(int64_t(settings_.timeoutMs) + kDaemonMarginMs));
    if (queued_.empty() && send(key, m)) return;
    queued_.push_back(key);
    waitForRoom(true);
  }

  // Whether the pool's socket is watched for room in its queue (EPOLLOUT).
  void waitForRoom(bool wait) {
    if (pool_ < 0 || wait == waitingForRoom_) return;
    // If epoll refuses, the queued calls get kTempfail at their deadline.
    if (watch(pool_, wait ? EPOLLIN | EPOLLOUT : EPOLLIN, kPool, EPOLL_CTL_MOD)) {
      waitingForRoom_ = wait;
    }
  }

  // Send m's call; false if the pool's queue is full (m stays queued). A failure is m's reply.
  bool send(uint64_t key, Message& m) {
    try {
      std::vector<int> fds;
      for (const kj::AutoCloseFd& file : m.files) fds.push_back(file.get());
      // A kept socket may point at the pool of a daemon that restarted: then send anew, once.
      for (int attempt = 0;; attempt++) {
        bool reused = pool_ >= 0;
        if (!reused) connectPool();
        try {
          wire::sendDatagram(pool_, nullptr, *m.call, kj::arrayPtr(fds.data(), fds.size()), 0);
          break;
        } catch (const kj::Exception& e) {
          if (wire::wasQueueFull(e)) return false;
          if (!wire::wasPeerGone(e)) throw;  // this message's own failure
          dropPool(e.getDescription().cStr());
          if (!reused || attempt > 0) throw;
        }
      }
    } catch (const kj::Exception& e) {
      finish(key, kTempfail, e.getDescription().cStr());
      return true;
    }
    m.stage = Message::kSent;
    m.call.reset();
    m.files.clear();  // the kernel holds them for the worker now
    return true;
  }

  void sendQueued() {
    while (!queued_.empty()) {
      auto found = messages_.find(queued_.front());
      if (found != messages_.end() && found->second.stage == Message::kQueued &&
          !send(found->first, found->second)) {
        return waitForRoom(true);  // still full (perhaps a new socket): wait for EPOLLOUT
      }
      queued_.pop_front();
    }
    waitForRoom(false);
  }

  void receiveAnswers() {
    while (pool_ >= 0) {
      kj::Maybe<wire::Datagram> got;
      try {
        got = wire::receiveDatagram(pool_, 0);
      } catch (const kj::Exception& e) {
        if (e.getDescription().startsWith("recvmsg")) {
          return dropPool(std::string("the pool's socket failed: ") + e.getDescription().cStr());
        }
        log(std::string("an answer from the pool was dropped: ") + e.getDescription().cStr());
        continue;  // that datagram is consumed; its message gets kTempfail at its deadline
      }
      KJ_IF_MAYBE(answer, got) {
        try {
          auto reader = answer->reader();
          auto found = messages_.find(reader.getRoot<proto::Response>().getId());
          // Else the answer to a call that already had its reply (past its deadline).
          if (found != messages_.end() && found->second.stage == Message::kSent) {
            finish(found->first, replyFor(*answer, found->second.id));
          }
        } catch (const kj::Exception& e) {
          log(std::string("an answer from the pool was unreadable: ") + e.getDescription().cStr());
        }
      } else {
        return;
      }
    }
  }

  void expire() {
    wire::Deadline now = wire::deadlineIn(0);
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
      uint64_t key = deadlines_.begin()->second;
      switch (messages_[key].stage) {
        case Message::kReading:
          finish(key, kTempfail, "submit sent no complete request");
          break;
        case Message::kQueued:
          finish(key, kTempfail, "the pool's queue stayed full: every worker is busy and "
                                 "queue_limit calls wait (raise the pool's process_limit?)");
          break;
        case Message::kSent:
          finish(key, kTempfail, "timed out waiting for an answer from mtapy-workerd's pool");
          break;
      }
    }
  }

  void connectPool() {
    pool_ = shim::connectToPool(settings_);  // throws saying what the admin should check
    waitingForRoom_ = false;
    if (!watch(pool_, EPOLLIN, kPool)) {
      close(pool_);
      pool_ = -1;
      wire::fail("cannot watch the pool's socket");
    }
  }

  // The pool's socket is unusable: its calls in flight are lost (their workers are gone).
  void dropPool(const std::string& why) {
    if (pool_ < 0) return;
    close(pool_);
    pool_ = -1;
    resend_ = !queued_.empty();  // the calls waiting for room go on a new socket
    std::vector<uint64_t> lost;
    for (const auto& [key, m] : messages_) {
      if (m.stage == Message::kSent) lost.push_back(key);
    }
    for (uint64_t key : lost) finish(key, kTempfail, why);
  }

  void setDeadline(uint64_t key, Message& m, wire::Deadline deadline) {
    deadlines_.erase({m.deadline, key});
    m.deadline = deadline;
    deadlines_.insert({deadline, key});
  }

  void finish(uint64_t key, const std::string& reply, const std::string& why = "") {
    auto found = messages_.find(key);
    if (found == messages_.end()) return;
    if (!why.empty()) log("message " + found->second.id + ": " + why);
    sendReply(kj::mv(found->second.connection), reply);
    forget(key);
  }

  void forget(uint64_t key) {
    auto found = messages_.find(key);
    if (found == messages_.end()) return;
    deadlines_.erase({found->second.deadline, key});
    messages_.erase(found);  // closing the connection takes it out of epoll
    pauseListening(false);
  }

  kj::AutoCloseFd epoll_;
  int listening_;
  const shim::Settings& settings_;
  const size_t maxMessages_;
  epoll_event scratch_{};
  struct stat ours_{};  // the socket file of ours at the filter's path
  int pool_ = -1;
  bool draining_ = false;
  bool paused_ = false;
  bool waitingForRoom_ = false;
  bool acceptFailing_ = false;  // accept() is failing: logged once until it works again
  bool resend_ = false;
  uint64_t nextKey_ = kFirstKey;
  std::map<uint64_t, Message> messages_;
  std::set<std::pair<wire::Deadline, uint64_t>> deadlines_;
  std::deque<uint64_t> queued_;  // calls waiting for room in the pool's queue, oldest first
};

}  // namespace

void serve(int listening, const std::string& path, const shim::Settings& settings) {
  Loop(listening, settings).run(path);
}

}  // namespace mtapy::courier
