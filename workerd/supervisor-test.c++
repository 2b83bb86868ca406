// supervisor-test.c++ - the supervisor with scripted fake workers (/bin/sh), no Python
#include "supervisor.h"

#include <doctest/doctest.h>
#include <kj/async-unix.h>
#include <kj/debug.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <csignal>

using namespace mtapy::workerd;

namespace {

// Starts `sh -c script` as each "worker"; it never says Hello unless the script does.
class ScriptSpawner final : public Spawner {
 public:
  explicit ScriptSpawner(const char* script) : script_(script) {}
  Spawned spawn(const PoolConfig&, const WorkerSpec&) override {
    int pair[2], out[2];
    KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair));
    KJ_SYSCALL(pipe2(out, O_CLOEXEC));
    pid_t pid;
    KJ_SYSCALL(pid = fork());
    if (pid == 0) {  // async-signal-safe only, then exec
      dup2(out[1], 1);
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      execl("/bin/sh", "sh", "-c", script_, nullptr);
      _exit(127);
    }
    close(pair[1]);
    close(out[1]);
    spawned++;
    return {pid, kj::AutoCloseFd(pair[0]), kj::AutoCloseFd(out[0])};
  }
  const char* script_;
  int spawned = 0;
};

struct Quiet final : public Supervisor::Events {
  void workerExited(uint32_t, pid_t, const std::string&, bool) override { exits++; }
  void readinessChanged() override {}
  bool codeLoaded(mtapy::proto::CodeIdentity::Reader) override { return true; }
  void startFailed(const std::string& why, const std::string&) override { failures.push_back(why); }
  int exits = 0;
  std::vector<std::string> failures;
};

PoolConfig onePool() {
  // Before any event loop: KJ reads child exits from a signalfd (once per process).
  static bool captured = (kj::UnixEventPort::captureChildExit(), true);
  (void)captured;
  PoolConfig pool;
  pool.name = "t";
  pool.processLimit = 1;
  pool.throttleTimeMs = 60000;
  return pool;
}

}  // namespace

TEST_CASE("supervisor throttles a pool whose workers fail to start, from a 1 s backoff") {
  PoolConfig pool = onePool();
  auto io = kj::setupAsyncIo();
  ScriptSpawner spawner("exit 71");  // "the policy failed to import"
  Quiet events;
  Supervisor supervisor(pool, spawner, WorkerSpec{0, 1, -1, -1, -1, -1, false}, 1, false, io, events);
  supervisor.start();
  io.provider->getTimer().afterDelay(500 * kj::MILLISECONDS).wait(io.waitScope);
  CHECK(events.exits == 1);
  CHECK(supervisor.throttled());
  CHECK(supervisor.throttledSeconds() == 1);  // not throttle_time's 60 s at once
  CHECK(spawner.spawned == 1);
  io.provider->getTimer().afterDelay(1000 * kj::MILLISECONDS).wait(io.waitScope);
  CHECK(spawner.spawned == 2);  // retried after the backoff, which now doubles
  CHECK(supervisor.throttledSeconds() == 2);
}

TEST_CASE("supervisor replaces a starting worker killed from outside without throttling") {
  PoolConfig pool = onePool();
  auto io = kj::setupAsyncIo();
  ScriptSpawner spawner("kill -9 $$");
  Quiet events;
  Supervisor supervisor(pool, spawner, WorkerSpec{0, 1, -1, -1, -1, -1, false}, 1, false, io, events);
  supervisor.start();
  io.provider->getTimer().afterDelay(400 * kj::MILLISECONDS).wait(io.waitScope);
  CHECK(!supervisor.throttled());
  CHECK(spawner.spawned >= 2);  // replaced after 100 ms each time
}
