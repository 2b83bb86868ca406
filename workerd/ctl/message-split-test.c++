// message-split-test.c++ - splitHeaders() splits every message of tests/vectors/message-split.txt
// DESCRIPTION  The vectors pin this split and pylib/mtapy/testing.py split_message() alike;
//              tests/exim/test_exim_message_split.py checks them against Exim 4.96 itself.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "message-split.h"

#include <doctest/doctest.h>

#include <fstream>

using mtapy::ctl::splitHeaders;

namespace {

struct Case {
  std::string name, raw, body;
  std::vector<std::string> headers;
};

// The bytes a value stands for: C escapes \n \r \t \\ and \xHH, every other byte as it is.
std::string unescape(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); i++) {
    if (text[i] != '\\' || i + 1 == text.size()) {
      out += text[i];
    } else if (char c = text[++i]; c == 'x' && i + 2 < text.size()) {
      out += char(std::stoi(std::string(text.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += c == 'n' ? '\n' : c == 'r' ? '\r' : c == 't' ? '\t' : c;
    }
  }
  return out;
}

// Every case of the file: blocks of "case NAME", "raw BYTES", "header BYTES"..., "body BYTES".
std::vector<Case> readCases(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in, "cannot read ", path);
  std::vector<Case> cases;
  std::string line;
  for (int number = 1; std::getline(in, line); number++) {
    if (line.empty() || line[0] == '#') continue;
    size_t space = line.find(' ');
    std::string keyword = line.substr(0, space);
    std::string value = space == std::string::npos ? "" : unescape(line.substr(space + 1));
    if (keyword == "case") {
      cases.push_back({value, "", "", {}});
      continue;
    }
    REQUIRE_MESSAGE(!cases.empty(), path, ":", number, ": expected a case line first");
    if (keyword == "raw")
      cases.back().raw = value;
    else if (keyword == "header")
      cases.back().headers.push_back(value);
    else if (keyword == "body")
      cases.back().body = value;
    else
      FAIL(path, ":", number, ": expected case, raw, header or body");
  }
  return cases;
}

}  // namespace

TEST_CASE("mtapyctl scan splits every vector message as Exim 4.96 does") {
  auto cases = readCases(MTAPY_VECTORS "/message-split.txt");
  REQUIRE(cases.size() >= 20);
  for (const Case& c : cases) {
    CAPTURE(c.name);
    std::vector<std::string> headers;
    size_t offset = splitHeaders(c.raw, headers);
    REQUIRE(offset <= c.raw.size());
    CHECK(headers == c.headers);
    CHECK(c.raw.substr(offset) == c.body);
  }
}
