// message-split.c++ - Exim's reading of a raw message: its header lines and where the body starts
// DESCRIPTION  Follows Exim 4.96's receive_msg(); tests/vectors/message-split.txt lists the rules
//              and the cases, checked against Exim itself.
// SEE ALSO     pylib/mtapy/testing.py split_message() (the same split in Python)
#include "message-split.h"

#include <algorithm>
#include <regex>

namespace mtapy::ctl {
namespace {

// C's isspace in the C locale, which Exim uses around a header's colon.
constexpr std::string_view kWhitespace = " \t\n\v\f\r";

bool isWhitespace(char c) {
  return kWhitespace.find(c) != std::string_view::npos;
}

// The physical line at `at` as Exim stores it (CRLF made LF, a newline at the end); sets `end`.
std::string physicalLine(std::string_view raw, size_t at, size_t& end) {
  size_t newline = raw.find('\n', at);
  end = newline == std::string_view::npos ? raw.size() : newline + 1;
  std::string line(raw.substr(at, end - at));
  if (line.ends_with("\r\n")) line.erase(line.size() - 2, 1);
  if (!line.ends_with('\n')) line += '\n';
  return line;
}

// The line at `at` joined with its continuation lines (those starting with a space or a tab);
// sets `end`. A blank line is never continued.
std::string logicalLine(std::string_view raw, size_t at, size_t& end) {
  std::string line = physicalLine(raw, at, end);
  while (line != "\n" && end < raw.size() && (raw[end] == ' ' || raw[end] == '\t')) {
    size_t next = end;
    line += physicalLine(raw, next, end);
  }
  return line;
}

// Exim's test: a name of any bytes above space except ':' and DEL (8-bit bytes allowed, even no
// name at all), optional white space, then ':'.
bool isHeader(std::string_view line) {
  if (isWhitespace(line[0])) return false;
  size_t at = 0;
  while (at < line.size() && static_cast<unsigned char>(line[at]) > ' ' && line[at] != '\x7f' &&
         line[at] != ':')
    at++;
  while (at < line.size() && isWhitespace(line[at])) at++;
  return at < line.size() && line[at] == ':';
}

// Exim's default uucp_from_pattern: a leading mbox "From " line, which Exim drops.
bool isFromLine(const std::string& line) {
  static const std::regex pattern(
      R"(From\s+(\S+)\s+(?:[a-zA-Z]{3},?\s+)?)"
      R"((?:[a-zA-Z]{3}\s+\d?\d|\d?\d\s+[a-zA-Z]{3}\s+\d\d(?:\d\d)?)\s+\d\d?:\d\d?)");
  return std::regex_search(line, pattern, std::regex_constants::match_continuous);
}

// A header as Exim keeps it: NUL becomes '?', white-space-only continuation lines at the end go.
std::string asEximStores(std::string header) {
  std::replace(header.begin(), header.end(), '\0', '?');
  for (;;) {
    size_t last = header.find_last_not_of(" \t", header.size() - 2);
    if (header[last] != '\n') return header;
    header.erase(last + 1);
  }
}

}  // namespace

size_t splitHeaders(std::string_view raw, std::vector<std::string>& headers) {
  bool sawHeader = false;
  size_t at = 0;
  while (at < raw.size()) {
    size_t end;
    std::string line = logicalLine(raw, at, end);
    if (line == "\n") return end;  // the blank line ends the headers
    if (!sawHeader && isFromLine(line)) {
      // an mbox separator line: Exim drops it
    } else if (!isHeader(line)) {
      return at;  // not a header: the body starts here
    } else {
      headers.push_back(asEximStores(std::move(line)));
      sawHeader = true;
    }
    at = end;
  }
  return raw.size();
}

}  // namespace mtapy::ctl
