// policy-watch.c++ - reload_on_change: notice edits of a policy and the modules beside it
#include "policy-watch.h"

#include <kj/debug.h>
#include <kj/io.h>
#include <spdlog/spdlog.h>

#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

namespace mtapy::workerd {
namespace {

constexpr auto kQuiet = 300 * kj::MILLISECONDS;
constexpr int kMaxLinks = 40;  // as the kernel's path walk (ELOOP)

// The names of PATH's components, "." and empty ones left out.
std::vector<std::string> components(const std::string& path) {
  std::vector<std::string> out;
  for (size_t at = 0; at <= path.size();) {
    size_t end = std::min(path.find('/', at), path.size());
    if (end > at && path.compare(at, end - at, ".") != 0) out.push_back(path.substr(at, end - at));
    at = end + 1;
  }
  return out;
}

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
  watch();
  events_ = io.lowLevelProvider->wrapInputFd(kj::mv(owned));
  reading_ = readEvents().eagerlyEvaluate([](kj::Exception&& e) {
    spdlog::error("reload_on_change stopped: {}", e.getDescription().cStr());
  });
}

// (Re)places every watch. inotify resolves symlinks when a watch is added, so the folder's
// watch sees the old target once a link on the way to it is made again, and sees nothing while
// the folder does not exist. So each folder on the way, links followed (a link's target may hold
// links too), is watched for the next name on the way being made anew: a link switched, a
// folder put in place of another, a release that now exists. Any of those re-places them all.
void PolicyWatch::watch() {
  if (folderWd_ >= 0) inotify_rm_watch(fd_, folderWd_);
  for (auto& [wd, name] : steps_) inotify_rm_watch(fd_, wd);
  steps_.clear();
  std::vector<std::string> ahead = components(folder_);
  std::reverse(ahead.begin(), ahead.end());  // the next name last
  std::string at = "/";  // where the walk is, with every link on the way resolved
  for (int links = 0; !ahead.empty();) {
    std::string name = ahead.back();
    ahead.pop_back();
    if (name == "..") {
      at = at.substr(0, std::max<size_t>(1, at.rfind('/')));
      continue;
    }
    int wd = inotify_add_watch(fd_, at.c_str(), IN_CREATE | IN_MOVED_TO | IN_ONLYDIR);
    if (wd >= 0) steps_.emplace_back(wd, name);
    std::string next = (at == "/" ? "" : at) + "/" + name;
    char target[PATH_MAX];
    ssize_t n = readlink(next.c_str(), target, sizeof target - 1);
    if (n < 0) {
      if (errno != EINVAL) break;  // missing: its folder's watch sees it arrive
      at = next;
      continue;
    }
    if (++links > kMaxLinks) break;
    target[n] = '\0';
    std::vector<std::string> parts = components(target);
    ahead.insert(ahead.end(), parts.rbegin(), parts.rend());  // the link's target comes next
    if (target[0] == '/') at = "/";
  }
  folderWd_ = inotify_add_watch(fd_, folder_.c_str(),
                                IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE);
  if (folderWd_ < 0) {
    spdlog::warn("reload_on_change: cannot watch {} yet: {}; it is watched for as it appears",
                 folder_, strerror(errno));
  }
}

bool PolicyWatch::relevant(int wd, const std::string& name) const {
  if (wd == folderWd_) return name == policyName_ || endsWith(name, ".py");
  for (auto& [stepWd, step] : steps_) {
    if (wd == stepWd && name == step) return true;
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
      if (event->mask & IN_Q_OVERFLOW) {  // events were lost: any of them may have been
        changed = relinked = true;
      } else if (relevant(event->wd, name)) {
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
