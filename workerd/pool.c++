// pool.c++ - one pool: its sockets, its generations of workers, reloads, and its stand-in
#include "pool.h"

#include "call-kinds.h"
#include "proto/datagram.h"

#include <capnp/message.h>
#include <kj/debug.h>
#include <spdlog/spdlog.h>

#include <sys/socket.h>
#include <unistd.h>
#include <algorithm>

namespace mtapy::workerd {
namespace {

using Kind = proto::Failure::Kind;
using Outcome = proto::PoolReload::Outcome;

uint32_t msSince(kj::Timer& timer, kj::TimePoint then) {
  return uint32_t((timer.now() - then) / kj::MILLISECONDS);
}

}  // namespace

Pool::Pool(const PoolConfig& config, const std::string& socketDir, Spawner& spawner,
           kj::AsyncIoContext& io)
    : config_(config),
      onError_{config.onError == OnError::kAccept, config.onErrorValue},
      spawner_(spawner),
      io_(io),
      sockets_(config_, socketDir),
      live_(std::make_unique<Generation>(++generations_, config_, sockets_, false, spawner, io,
                                         static_cast<Generation::Owner&>(*this))),
      reloads_(kj::Promise<void>(kj::READY_NOW).fork()),
      tasks_(*this) {}

Pool::~Pool() noexcept = default;

void Pool::start() {
  live_->start();
  watchPolicy();
}

void Pool::watchPolicy() {
  watch_ = nullptr;
  if (!config_.reloadOnChange || stopping_) return;
  watch_ = std::make_unique<PolicyWatch>(config_.policy, io_, [this]() {
    spdlog::info("pool {}: {} or a module beside it changed (reload_on_change); reloading",
                 config_.name, config_.policy);
    tasks_.add(reload(config_).ignoreResult());
  });
}

kj::Promise<ReloadResult> Pool::reload(const PoolConfig& config) {
  // After the reload before it: the files may have changed again since that one read them.
  auto result = reloads_.addBranch()
                    .then([this, config]() { return startGeneration(config); })
                    .catch_([this](kj::Exception&& e) {
                      // E.g. out of descriptors: this reload fails, the next may work.
                      std::string why = std::string("internal error: ") +
                                        e.getDescription().cStr();
                      spdlog::error("pool {}: reload failed: {}", config_.name, why);
                      reloadFailure_ = why;
                      reloadFailedAt_ = time(nullptr);
                      return ReloadResult{Outcome::FAILED, 0, "", why, ""};
                    })
                    .fork();
  reloads_ = result.addBranch().ignoreResult().fork();
  return result.addBranch();
}

kj::Promise<ReloadResult> Pool::startGeneration(PoolConfig config) {
  if (stopping_) return ReloadResult{Outcome::FAILED, 0, "", "mtapy-workerd is stopping", ""};
  kj::TimePoint asked = io_.provider->getTimer().now();
  starting_ =
      std::make_unique<Generation>(++generations_, config, sockets_, true, spawner_, io_,
                                   static_cast<Generation::Owner&>(*this));
  startError_.clear();
  startTraceback_.clear();
  auto settled = kj::newPromiseAndFulfiller<void>();
  startingSettled_ = kj::mv(settled.fulfiller);
  starting_->start();
  // A generation that neither starts nor fails (its workers killed from outside again and
  // again) must not hold up every later reload.
  auto limit = config.startTimeoutMs * kj::MILLISECONDS * 3 + 10 * kj::SECONDS;
  Generation* g = starting_.get();
  tasks_.add(io_.provider->getTimer().afterDelay(limit).then([this, g, limit]() {
    if (starting_.get() == g) {
      startFailed(*g, "the new generation was not ready after " +
                          std::to_string(limit / kj::SECONDS) + " s", "");
    }
  }));
  return settled.promise.then([this, config = kj::mv(config), asked]() mutable {
    return promote(kj::mv(config), asked);
  });
}

kj::Promise<ReloadResult> Pool::promote(PoolConfig config, kj::TimePoint asked) {
  ReloadResult result{Outcome::RELOADED, starting_->number(), starting_->code(), "", ""};
  if (!startError_.empty()) {
    result.outcome = Outcome::FAILED;
    result.message = startError_;
    result.traceback = startTraceback_;
    reloadFailure_ = startTraceback_.empty() ? startError_ : startError_ + "\n" + startTraceback_;
    reloadFailedAt_ = time(nullptr);
    spdlog::error("pool {}: reload failed{}: {}", config_.name,
                  live_ ? ", generation " + std::to_string(live_->number()) + " serves on" : "",
                  calls::printableLines(reloadFailure_, calls::kLogContinuation));
    return end(kj::mv(starting_), Supervisor::Ending::kAbandon).then([result]() {
      return result;
    });
  }
  // What can fail comes before the swap: after it, the old generation must drain, not die.
  if (config.clients != config_.clients) sockets_.allow(config.clients);
  bool watchChanged = config.reloadOnChange != config_.reloadOnChange ||
                      config.policy != config_.policy;
  config_ = kj::mv(config);
  if (watchChanged) {
    try {
      watchPolicy();
    } catch (const kj::Exception& e) {
      spdlog::error("pool {}: reload_on_change: {}; reload by hand (mtapyctl reload)",
                    config_.name, e.getDescription().cStr());
    }
  }
  onError_ = {config_.onError == OnError::kAccept, config_.onErrorValue};
  starting_->go();
  std::unique_ptr<Generation> old = kj::mv(live_);
  live_ = kj::mv(starting_);
  reloadFailure_.clear();
  result.liveAfterMs = msSince(io_.provider->getTimer(), asked);
  spdlog::info("pool {}: generation {} is live after {} ms ({}); generation {} finishes its "
               "calls and exits",
               config_.name, live_->number(), result.liveAfterMs, live_->code(), old->number());
  readinessChanged();
  return end(kj::mv(old), Supervisor::Ending::kRetire).then([this, result, asked]() mutable {
    result.drainedAfterMs = msSince(io_.provider->getTimer(), asked);
    return result;
  });
}

kj::Promise<void> Pool::end(std::unique_ptr<Generation> generation, Supervisor::Ending how) {
  Generation* g = generation.get();
  ending_.push_back(kj::mv(generation));
  return g->end(how).then([this, g]() {
    auto it = std::find_if(ending_.begin(), ending_.end(), [g](auto& e) { return e.get() == g; });
    gone_.add(g->stats());
    ending_.erase(it);
    if (ending_.empty()) {
      KJ_IF_MAYBE(f, allEnded_) (*f)->fulfill();
      allEnded_ = nullptr;
    }
  });
}

void Pool::startFailed(Generation& g, const std::string& why, const std::string& tb) {
  if (&g != starting_.get() || !startError_.empty()) return;
  startError_ = why;
  startTraceback_ = tb;
  KJ_IF_MAYBE(f, startingSettled_) (*f)->fulfill();
  startingSettled_ = nullptr;
}

void Pool::readinessChanged() {
  if (starting_ && starting_->supervisor().allReady()) {
    KJ_IF_MAYBE(f, startingSettled_) (*f)->fulfill();
    startingSettled_ = nullptr;
  }
  const Supervisor* live = live_ ? &live_->supervisor() : nullptr;
  bool needed = (live == nullptr || !live->live()) && ((live && live->throttled()) || stopping_);
  if (needed == standingIn_) return;
  standingIn_ = needed;
  if (needed) tasks_.add(standIn());
}

kj::Promise<void> Pool::standIn() {
  if (!standingIn_) return kj::READY_NOW;
  if (stopping_) {
    answerWaiting(Kind::SHUTTING_DOWN, "mtapy-workerd is stopping");
  } else {
    answerWaiting(Kind::NO_WORKER, "pool " + config_.name +
                                       " has no worker: its workers fail to start (see "
                                       "mtapy-workerd's log)");
  }
  // Poll rather than watch the socket: a watch would wake the daemon for every call that
  // workers take once they are back.
  return io_.provider->getTimer().afterDelay(20 * kj::MILLISECONDS).then([this]() {
    return standIn();
  });
}

void Pool::answerWaiting(Kind kind, const std::string& message) {
  for (int i = 0; i < 1000; i++) {
    kj::Maybe<wire::Datagram> got;
    try {
      got = wire::receiveDatagram(sockets_.calls, wire::deadlineIn(0));
    } catch (const kj::Exception&) {
      continue;  // malformed: nothing to answer
    }
    wire::Datagram* d;
    KJ_IF_MAYBE(received, got) d = received;
    else break;
    capnp::MallocMessageBuilder answer;
    auto response = answer.initRoot<proto::Response>();
    proto::Request::Which which = proto::Request::EXPAND;
    try {
      auto reader = d->reader();
      auto request = reader.getRoot<proto::Request>();
      response.setId(request.getId());
      which = request.which();
    } catch (const kj::Exception&) {
    }
    calls::answerFailure(response, which, kind, message, onError_);
    try {
      wire::sendDatagram(sockets_.calls, &d->from, answer, nullptr, wire::deadlineIn(0));
    } catch (const kj::Exception&) {
    }
  }
  if (sockets_.lines == nullptr) return;
  for (int fd; (fd = accept4(sockets_.lines, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0;) {
    std::string text = calls::answerFailureLine(proto::Request::EXPAND, kind, message, onError_);
    (void)!send(fd, text.data(), text.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    close(fd);
  }
}

kj::Promise<void> Pool::stop() {
  stopping_ = true;
  watch_ = nullptr;
  sockets_.unlink();  // new callers are refused; connected ones are still answered
  if (starting_) startFailed(*starting_, "mtapy-workerd is stopping", "");
  auto drained = live_ ? end(kj::mv(live_), Supervisor::Ending::kDrain)
                       : kj::Promise<void>(kj::READY_NOW);
  // Then the reload under way, which abandons its new generation, and whatever still ends.
  return drained.then([this]() { return reloads_.addBranch(); })
      .then([this]() -> kj::Promise<void> {
        if (ending_.empty()) return kj::READY_NOW;
        auto paf = kj::newPromiseAndFulfiller<void>();
        allEnded_ = kj::mv(paf.fulfiller);
        return kj::mv(paf.promise);
      })
      .then([this]() {
        readinessChanged();
        answerWaiting(Kind::SHUTTING_DOWN, "mtapy-workerd is stopping");
      });
}

kj::Promise<ReloadResult> Pool::started() {
  if (!live_) return ReloadResult{Outcome::FAILED, 0, "", "mtapy-workerd is stopping", ""};
  if (live_->supervisor().allReady()) return ReloadResult{Outcome::ADDED, 1, live_->code()};
  if (live_->supervisor().throttled()) {
    return ReloadResult{Outcome::FAILED, 1, "",
                        "its workers fail to start (see mtapy-workerd's log for why)", ""};
  }
  return io_.provider->getTimer().afterDelay(20 * kj::MILLISECONDS).then([this]() {
    return started();
  });
}

void Pool::status(proto::PoolStatus::Builder out) {
  out.setName(config_.name);
  out.setUser(config_.user);
  out.setPolicy(config_.policy);
  out.setSocket(sockets_.callPath);
  const Supervisor* live = live_ ? &live_->supervisor() : nullptr;
  out.setThrottledSeconds(live == nullptr || live->live() ? 0 : live->throttledSeconds());
  CallStats all = gone_;
  std::vector<std::pair<const Generation*, const char*>> shown;
  if (live_) shown.push_back({live_.get(), "live"});
  if (starting_) shown.push_back({starting_.get(), "starting"});
  for (auto& g : ending_) shown.push_back({g.get(), "draining"});
  auto list = out.initGenerations(unsigned(shown.size()));
  for (unsigned i = 0; i < shown.size(); i++) {
    shown[i].first->status(list[i], shown[i].second);
    all.add(shown[i].first->stats());
  }
  all.fill(out);
  if (!reloadFailure_.empty()) {
    out.setReloadFailure(reloadFailure_);
    out.setReloadFailedSecondsAgo(uint64_t(time(nullptr) - reloadFailedAt_));
  }
}

void Pool::taskFailed(kj::Exception&& exception) {
  spdlog::error("pool {}: internal error: {}", config_.name, exception.getDescription().cStr());
}

}  // namespace mtapy::workerd
