// line-protocol.c++ - the ${readsocket} line protocol, for Exim builds without ${dlfunc}
#include "line-protocol.h"

namespace mtapy::worker {
namespace {

// One word starting at `i` (past any blanks); false at the end of the line.
bool nextWord(std::string_view line, size_t& i, std::string& word, std::string& error) {
  while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) i++;
  if (i >= line.size()) return false;
  word.clear();
  if (line[i] != '"') {
    while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
      word += line[i++];
    return true;
  }
  for (i++; i < line.size(); i++) {
    char c = line[i];
    if (c == '"') {
      i++;
      return true;
    }
    if (c == '\\' && i + 1 < line.size()) {
      c = line[++i];
      if (c == 'n') c = '\n';  // ${quote:} writes newlines and returns this way
      if (c == 'r') c = '\r';
    }
    word += c;
  }
  error = "unterminated quoted argument";
  return false;
}

}  // namespace

std::optional<LineRequest> parseReadsocketLine(std::string_view line, std::string& error) {
  LineRequest request;
  std::string word;
  size_t i = 0;
  if (!nextWord(line, i, word, error)) {
    if (error.empty()) error = "empty request: expected FUNCTION ARG...";
    return std::nullopt;
  }
  auto colon = word.find(':');
  if (colon != std::string::npos) {
    request.pool = word.substr(0, colon);
    word = word.substr(colon + 1);
  }
  request.function = word;
  while (nextWord(line, i, word, error)) request.args.push_back(word);
  if (!error.empty()) return std::nullopt;
  return request;
}

std::string readsocketReply(proto::Response::Reader response) {
  switch (response.which()) {
    case proto::Response::VALUE: {
      auto value = response.getValue();
      return std::string(value.asChars().begin(), value.size());
    }
    case proto::Response::FORCED_FAIL:
      return "";
    case proto::Response::FAILURE:
      return std::string("DEFER: ") + response.getFailure().getMessage().cStr();
    default:
      return "DEFER: mtapy: a result ${readsocket} cannot carry";
  }
}

}  // namespace mtapy::worker
