// policy-watch.c++ - reload_on_change: notice edits of a policy and the modules beside it
#include "policy-watch.h"

#include <kj/debug.h>
#include <kj/io.h>
#include <spdlog/spdlog.h>

#include <sys/inotify.h>
#include <unistd.h>
#include <climits>
#include <cstring>

namespace mtapy::workerd {
namespace {

constexpr auto kQuiet = 300 * kj::MILLISECONDS;

bool endsWith(const std::string& text, const std::string& end) {
  return text.size() >= end.size() && text.compare(text.size() - end.size(), end.size(), end) == 0;
}

}  // namespace

PolicyWatch::PolicyWatch(const std::string& policy, kj::AsyncIoContext& io,
                         kj::Function<void()> changed)
    : policyName_(policy.substr(policy.rfind('/') + 1)),
      io_(io),
      changed_(kj::mv(changed)),
      lastChange_(io.provider->getTimer().now()) {
  int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) KJ_FAIL_SYSCALL("inotify_init1", errno);
  kj::AutoCloseFd owned(fd);
  std::string folder = policy.substr(0, policy.rfind('/'));
  if (inotify_add_watch(fd, folder.empty() ? "/" : folder.c_str(),
                        IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE) < 0) {
    spdlog::error("reload_on_change: cannot watch {}: {}; reload by hand (mtapyctl reload)",
                  folder, strerror(errno));
    return;
  }
  events_ = io.lowLevelProvider->wrapInputFd(kj::mv(owned));
  reading_ = readEvents().eagerlyEvaluate([](kj::Exception&& e) {
    spdlog::error("reload_on_change stopped: {}", e.getDescription().cStr());
  });
}

kj::Promise<void> PolicyWatch::readEvents() {
  auto buffer = kj::heapArray<kj::byte>(sizeof(inotify_event) + NAME_MAX + 1);
  auto read = events_->tryRead(buffer.begin(), 1, buffer.size());
  return read.then([this, buffer = kj::mv(buffer)](size_t n) mutable -> kj::Promise<void> {
    bool relevant = false;
    for (size_t at = 0; at + sizeof(inotify_event) <= n;) {
      auto* event = reinterpret_cast<const inotify_event*>(buffer.begin() + at);
      std::string name = event->len ? event->name : "";
      relevant = relevant || name == policyName_ || endsWith(name, ".py");
      at += sizeof(inotify_event) + event->len;
    }
    if (relevant) {
      lastChange_ = io_.provider->getTimer().now();
      if (!settling_) {
        settling_ = true;
        settled_ = settle().eagerlyEvaluate(nullptr);
      }
    }
    if (n == 0) return kj::READY_NOW;
    return readEvents();
  });
}

kj::Promise<void> PolicyWatch::settle() {
  auto& timer = io_.provider->getTimer();
  return timer.atTime(lastChange_ + kQuiet).then([this, &timer]() -> kj::Promise<void> {
    if (timer.now() < lastChange_ + kQuiet) return settle();
    settling_ = false;
    changed_();
    return kj::READY_NOW;
  });
}

}  // namespace mtapy::workerd
