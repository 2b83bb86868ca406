// line-protocol-test.c++ - ${readsocket} request lines and replies as Exim writes and reads them
#include "line-protocol.h"

#include <capnp/message.h>
#include <doctest/doctest.h>

using namespace mtapy::worker;

namespace {

LineRequest parse(std::string_view line) {
  std::string error;
  auto parsed = parseReadsocketLine(line, error);
  REQUIRE_MESSAGE(parsed, error);
  return *parsed;
}

}  // namespace

TEST_CASE("words split on blanks; ${quote:} output keeps spaces and quotes") {
  LineRequest r = parse(R"(check a@b.example  "Re: \"hi\" there"	"back\\slash" "")");
  CHECK(r.pool.empty());
  CHECK(r.function == "check");
  CHECK(r.args ==
        std::vector<std::string>{"a@b.example", R"(Re: "hi" there)", R"(back\slash)", ""});
}

TEST_CASE("${quote:} escapes for newline and carriage return are undone") {
  CHECK(parse(R"(f "a\nb\rc")").args == std::vector<std::string>{"a\nb\rc"});
}

TEST_CASE("POOL:FUNCTION names the pool; 8-bit bytes pass unchanged") {
  LineRequest r = parse("exim:limits.check \xff\xfe\r");
  CHECK(r.pool == "exim");
  CHECK(r.function == "limits.check");
  CHECK(r.args == std::vector<std::string>{"\xff\xfe"});
}

TEST_CASE("empty lines and unterminated quotes are refused with a reason") {
  std::string error;
  CHECK(!parseReadsocketLine("   ", error));
  CHECK(error == "empty request: expected FUNCTION ARG...");
  error.clear();
  CHECK(!parseReadsocketLine("f \"open", error));
  CHECK(error == "unterminated quoted argument");
}

TEST_CASE("replies: the value as is, None empty, failures DEFER with the message") {
  capnp::MallocMessageBuilder m;
  auto r = m.initRoot<mtapy::proto::Response>();
  r.setValue(kj::StringPtr("yes").asBytes());
  CHECK(readsocketReply(r) == "yes");
  r.setForcedFail();
  CHECK(readsocketReply(r) == "");
  r.initFailure().setMessage("pool p: f did not answer within 5000 ms");
  CHECK(readsocketReply(r) == "DEFER: pool p: f did not answer within 5000 ms");
}
