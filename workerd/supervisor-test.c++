// supervisor-test.c++ - the supervisor with scripted fake workers (/bin/sh), no Python
#include "supervisor.h"

#include <doctest/doctest.h>
#include <capnp/serialize.h>
#include <kj/async-unix.h>
#include <kj/debug.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <csignal>
#include <fstream>

using namespace mtapy::workerd;

namespace {

// Starts `sh -c script` as each "worker", its channel on fd 3; it says Hello only if the
// script does (helloWords() gives the printf escapes of one).
class ScriptSpawner final : public Spawner {
 public:
  explicit ScriptSpawner(std::string script) : script_(std::move(script)) {}
  Spawned spawn(const PoolConfig&, const WorkerSpec&) override {
    int pair[2], out[2];
    KJ_SYSCALL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair));
    KJ_SYSCALL(pipe2(out, O_CLOEXEC));
    pid_t pid;
    KJ_SYSCALL(pid = fork());
    if (pid == 0) {  // async-signal-safe only, then exec
      dup2(out[1], 1);
      dup2(pair[1], 3);
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      execl("/bin/sh", "sh", "-c", script_.c_str(), nullptr);
      _exit(127);
    }
    close(pair[1]);
    close(out[1]);
    spawned++;
    return {pid, kj::AutoCloseFd(pair[0]), kj::AutoCloseFd(out[0])};
  }
  std::string script_;
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

// A Hello as a worker sends it, as printf(1) escapes: ready, or a boot error saying `why`.
std::string helloWords(const char* why = nullptr) {
  capnp::MallocMessageBuilder message;
  auto hello = message.initRoot<mtapy::proto::Hello>();
  if (why != nullptr) {
    hello.initBootError().setMessage(why);
  } else {
    hello.setReady();
    hello.initCode().setSha256("ab");
  }
  auto words = capnp::messageToFlatArray(message);
  std::string escaped;
  for (kj::byte b : words.asBytes()) {
    char octal[8];
    snprintf(octal, sizeof octal, "\\%03o", b);
    escaped += octal;
  }
  return escaped;
}

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

TEST_CASE("a held generation's workers take no call before go(), then each gets the word") {
  PoolConfig pool = onePool();
  pool.processLimit = 2;
  auto io = kj::setupAsyncIo();
  char folder[] = "/tmp/mtapy-supervisor-test-XXXXXX";
  REQUIRE(mkdtemp(folder) != nullptr);
  // Each fake worker says Hello, then writes the first word it is sent into a file of its own.
  ScriptSpawner spawner("printf '" + helloWords() + "' >&3; head -c1 <&3 > " + folder +
                        "/$$; sleep 5");
  Quiet events;
  Supervisor supervisor(pool, spawner, WorkerSpec{0, 1, -1, -1, -1, -1, false}, 2, true, io,
                        events);
  supervisor.start();
  auto& timer = io.provider->getTimer();
  for (int i = 0; i < 100 && !supervisor.allReady(); i++)
    timer.afterDelay(20 * kj::MILLISECONDS).wait(io.waitScope);
  REQUIRE(supervisor.allReady());
  CHECK(spawner.spawned == 2);  // the first (which snapshots the code) alone, then the other
  auto words = [&]() {
    std::string all;
    for (auto& w : supervisor.workers()) {
      std::ifstream in(std::string(folder) + "/" + std::to_string(w.pid));
      std::string word;
      in >> word;
      all += word.empty() ? "-" : word;
    }
    return all;
  };
  timer.afterDelay(200 * kj::MILLISECONDS).wait(io.waitScope);
  CHECK(words() == "--");
  supervisor.go();
  timer.afterDelay(200 * kj::MILLISECONDS).wait(io.waitScope);
  CHECK(words() == "gg");
  supervisor.end(Supervisor::Ending::kAbandon).wait(io.waitScope);
  std::system((std::string("rm -rf ") + folder).c_str());
}

TEST_CASE("abandoning a generation kills a worker that leads no process group yet") {
  // As a worker is just after fork(), before its setsid(): SIGTERM to the daemon then once
  // left the abandoned worker running and the daemon waiting for it forever.
  PoolConfig pool = onePool();
  auto io = kj::setupAsyncIo();
  ScriptSpawner spawner("exec sleep 600");  // never says Hello, in our process group
  Quiet events;
  Supervisor supervisor(pool, spawner, WorkerSpec{0, 1, -1, -1, -1, -1, false}, 1, true, io,
                        events);
  supervisor.start();
  auto& timer = io.provider->getTimer();
  timer.afterDelay(100 * kj::MILLISECONDS).wait(io.waitScope);
  REQUIRE(spawner.spawned == 1);
  bool ended = supervisor.end(Supervisor::Ending::kAbandon)
                   .then([]() { return true; })
                   .exclusiveJoin(timer.afterDelay(5 * kj::SECONDS).then([]() { return false; }))
                   .wait(io.waitScope);
  CHECK(ended);
}

TEST_CASE("a boot error said just before the worker exits is reported, not lost") {
  PoolConfig pool = onePool();
  auto io = kj::setupAsyncIo();
  ScriptSpawner spawner("printf '" + helloWords("the policy says no") + "' >&3; exit 71");
  Quiet events;
  Supervisor supervisor(pool, spawner, WorkerSpec{0, 1, -1, -1, -1, -1, false}, 1, true, io,
                        events);
  supervisor.start();
  // Let it speak and exit before the daemon looks: its exit and its words are then both
  // waiting, and the exit must not be handled first.
  usleep(300 * 1000);
  io.provider->getTimer().afterDelay(500 * kj::MILLISECONDS).wait(io.waitScope);
  REQUIRE(events.failures.size() == 1);
  CHECK(events.failures[0] == "the policy says no");
  CHECK(spawner.spawned == 1);  // held: reported, not retried or throttled
  CHECK(!supervisor.throttled());
}

TEST_CASE("a worker whose exit is collected is named by no pid while its last words may come") {
  // It exits before its Hello while a child of its own session keeps its channel open: the
  // supervisor waits up to 1 s for its words, and meanwhile the pid may be another process's.
  PoolConfig pool = onePool();
  auto io = kj::setupAsyncIo();
  ScriptSpawner spawner("(setsid sleep 2 &); exit 3");
  Quiet events;
  Supervisor supervisor(pool, spawner, WorkerSpec{0, 1, -1, -1, -1, -1, false}, 1, true, io,
                        events);
  supervisor.start();
  REQUIRE(supervisor.pidIn(0) != 0);  // starting: named
  io.provider->getTimer().afterDelay(300 * kj::MILLISECONDS).wait(io.waitScope);
  CHECK(events.exits == 0);  // still waiting for its words
  CHECK(supervisor.pidIn(0) == 0);
}
