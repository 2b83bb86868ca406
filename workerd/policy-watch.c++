// policy-watch.c++ - reload_on_change: notice edits of a policy and the modules beside it
#include "policy-watch.h"

#include <kj/debug.h>
#include <kj/io.h>
#include <spdlog/spdlog.h>

#include <sys/inotify.h>
#include <sys/stat.h>
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
    : folder_(policy.substr(0, policy.rfind('/'))),
      policyName_(policy.substr(policy.rfind('/') + 1)),
      io_(io),
      changed_(kj::mv(changed)),
      lastChange_(io.provider->getTimer().now()) {
  if (folder_.empty()) folder_ = "/";
  int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) KJ_FAIL_SYSCALL("inotify_init1", errno);
  kj::AutoCloseFd owned(fd);
  fd_ = fd;
  if (!watch()) return;
  events_ = io.lowLevelProvider->wrapInputFd(kj::mv(owned));
  reading_ = readEvents().eagerlyEvaluate([](kj::Exception&& e) {
    spdlog::error("reload_on_change stopped: {}", e.getDescription().cStr());
  });
}

// (Re)places every watch and says whether the folder's is in place. inotify resolves symlinks
// when a watch is added, so after a link on the path is made again the old watches see the old
// target.
bool PolicyWatch::watch() {
  if (folderWd_ >= 0) inotify_rm_watch(fd_, folderWd_);
  for (auto& [wd, name] : links_) inotify_rm_watch(fd_, wd);
  links_.clear();
  for (size_t end = folder_.find('/', 1);; end = folder_.find('/', end + 1)) {
    std::string prefix = folder_.substr(0, end);
    struct stat st;
    if (lstat(prefix.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
      size_t slash = prefix.rfind('/');
      std::string parent = slash == 0 ? "/" : prefix.substr(0, slash);
      int wd = inotify_add_watch(fd_, parent.c_str(), IN_CREATE | IN_MOVED_TO);
      if (wd < 0) {
        spdlog::warn("reload_on_change: cannot watch {} for its link {}: {}; after switching "
                     "the link, reload by hand (mtapyctl reload)",
                     parent, prefix, strerror(errno));
      } else {
        links_.emplace_back(wd, prefix.substr(slash + 1));
      }
    }
    if (end == std::string::npos) break;
  }
  // After the links: should the folder be missing for a moment, the next switch tries again.
  folderWd_ = inotify_add_watch(fd_, folder_.c_str(),
                                IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE);
  if (folderWd_ < 0) {
    spdlog::error("reload_on_change: cannot watch {}: {}; reload by hand (mtapyctl reload)",
                  folder_, strerror(errno));
    return false;
  }
  return true;
}

bool PolicyWatch::relevant(int wd, const std::string& name) const {
  if (wd == folderWd_) return name == policyName_ || endsWith(name, ".py");
  for (auto& [linkWd, link] : links_) {
    if (wd == linkWd && name == link) return true;
  }
  return false;
}

kj::Promise<void> PolicyWatch::readEvents() {
  auto buffer = kj::heapArray<kj::byte>(sizeof(inotify_event) + NAME_MAX + 1);
  auto read = events_->tryRead(buffer.begin(), 1, buffer.size());
  return read.then([this, buffer = kj::mv(buffer)](size_t n) mutable -> kj::Promise<void> {
    bool changed = false, relinked = false;
    for (size_t at = 0; at + sizeof(inotify_event) <= n;) {
      auto* event = reinterpret_cast<const inotify_event*>(buffer.begin() + at);
      std::string name = event->len ? event->name : "";
      if (relevant(event->wd, name)) {
        changed = true;
        relinked = relinked || event->wd != folderWd_;
      }
      at += sizeof(inotify_event) + event->len;
    }
    if (relinked) watch();
    if (changed) {
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
