// wire-test.c++ - the blocking framing round-trips messages and fds and rejects junk
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "wire.h"

#include "proto/policy.capnp.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace mtapy;

REGISTER_EXCEPTION_TRANSLATOR(kj::Exception& e) {
  return doctest::String(e.getDescription().cStr());
}

namespace {

struct Pair {
  kj::AutoCloseFd a, b;
  Pair() {
    int fds[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    a = kj::AutoCloseFd(fds[0]);
    b = kj::AutoCloseFd(fds[1]);
  }
};

}  // namespace

TEST_CASE("a request with 8-bit and empty arguments and an fd arrives intact") {
  Pair pair;
  capnp::MallocMessageBuilder message;
  auto request = message.initRoot<proto::Request>();
  request.setId(42);
  auto expand = request.initExpand();
  expand.setFunction(kj::StringPtr("f").asBytes());
  auto args = expand.initArgs(2);
  const kj::byte raw[] = {0xff, 0x00, 0xc3};
  args.set(0, kj::arrayPtr(raw, 3));
  args.set(1, nullptr);
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  wire::sendMessage(pair.a, message, fd, wire::deadlineIn(1000));
  close(fd);

  auto received = wire::receiveMessage(pair.b, wire::deadlineIn(1000));
  KJ_IF_MAYBE(got, received) {
    auto reader = got->reader();
    auto back = reader.getRoot<proto::Request>();
    CHECK(back.getId() == 42);
    CHECK(back.getExpand().getArgs()[0] == kj::arrayPtr(raw, 3));
    CHECK(back.getExpand().getArgs()[1].size() == 0);
    CHECK(got->fd.get() >= 0);
  } else {
    FAIL("no message");
  }
}

TEST_CASE("messages of several segments arrive whole") {
  for (unsigned count : {2, 3, 100}) {  // odd and even segment tables
    Pair pair;
    // One-word segments: every object lands in a segment of its own.
    capnp::MallocMessageBuilder message(1, capnp::AllocationStrategy::FIXED_SIZE);
    auto args = message.initRoot<proto::Request>().initExpand().initArgs(count);
    for (unsigned i = 0; i < count; i++) args.set(i, kj::StringPtr("0123456789abcdef").asBytes());
    REQUIRE(message.getSegmentsForOutput().size() > 1);
    wire::sendMessage(pair.a, message, -1, wire::deadlineIn(1000));
    KJ_IF_MAYBE(got, wire::receiveMessage(pair.b, wire::deadlineIn(1000))) {
      auto reader = got->reader();
      auto back = reader.getRoot<proto::Request>().getExpand().getArgs();
      REQUIRE(back.size() == count);
      CHECK(back[count - 1] == kj::StringPtr("0123456789abcdef").asBytes());
    } else {
      FAIL("no message");
    }
  }
}

TEST_CASE("two messages at once break the alternation and are refused") {
  Pair pair;
  capnp::MallocMessageBuilder message;
  message.initRoot<proto::Request>().setId(1);
  auto flat = capnp::messageToFlatArray(message);
  auto bytes = flat.asBytes();
  REQUIRE(write(pair.a, bytes.begin(), bytes.size()) == ssize_t(bytes.size()));
  REQUIRE(write(pair.a, bytes.begin(), bytes.size()) == ssize_t(bytes.size()));
  CHECK_THROWS_WITH(wire::receiveMessage(pair.b, wire::deadlineIn(1000)),
                    doctest::Contains("more than one message"));
}

TEST_CASE("a closed connection before a message reads as end of stream") {
  Pair pair;
  pair.a = nullptr;
  CHECK(wire::receiveMessage(pair.b, wire::deadlineIn(1000)) == nullptr);
}

TEST_CASE("a message cut short is an error, not a hang") {
  Pair pair;
  const uint32_t head[2] = {0, 100};  // one segment of 100 words, then nothing
  REQUIRE(write(pair.a, head, sizeof head) == sizeof head);
  pair.a = nullptr;
  CHECK_THROWS(wire::receiveMessage(pair.b, wire::deadlineIn(1000)));
}

TEST_CASE("a silent peer makes the read time out at the deadline") {
  Pair pair;
  CHECK_THROWS_WITH(wire::receiveMessage(pair.b, wire::deadlineIn(50)),
                    doctest::Contains("timed out"));
}

TEST_CASE("absurd segment counts and sizes are refused before allocating") {
  Pair pair;
  const uint32_t head[2] = {100000, 1};
  REQUIRE(write(pair.a, head, sizeof head) == sizeof head);
  CHECK_THROWS_WITH(wire::receiveMessage(pair.b, wire::deadlineIn(1000)),
                    doctest::Contains("too many segments"));
  Pair other;
  const uint32_t huge[2] = {0, 0xffffffff};
  REQUIRE(write(other.a, huge, sizeof huge) == sizeof huge);
  CHECK_THROWS_WITH(wire::receiveMessage(other.b, wire::deadlineIn(1000)),
                    doctest::Contains("message too large"));
}
