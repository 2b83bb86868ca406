// call-kinds.c++ - the table of call kinds: what each Request kind needs and what on_error means
#include "call-kinds.h"

#include "worker/line-protocol.h"

#include <kj/debug.h>

#include <algorithm>
#include <cstdio>

namespace mtapy::calls {
namespace {

using Which = proto::Request::Which;

void expandFailOpen(proto::Response::Builder response, const OnError& onError) {
  response.setValue(kj::StringPtr(onError.value.c_str()).asBytes());
}

void scanFailOpen(proto::Response::Builder response, const OnError&) {
  response.initScan().setVerdict(proto::ScanResult::Verdict::ACCEPT);
}

// Courier reads "" as "the next filter runs" (mtapy-courierfilter answers 200 Ok).
void filterFailOpen(proto::Response::Builder response, const OnError&) {
  response.setFilterReply(nullptr);
}

const Kind kKinds[] = {
    {Which::EXPAND, "expand", false, expandFailOpen},
    {Which::LOCAL_SCAN, "local_scan", true, scanFailOpen},
    {Which::DO_FILTER, "do_filter", true, filterFailOpen},
};

// Touch each element so that a bad pointer throws now.
void touch(capnp::List<capnp::Data>::Reader list) {
  for (auto item : list) (void)item.size();
}

// Length of the valid UTF-8 sequence at `at`, or 0.
size_t utf8Length(kj::ArrayPtr<const kj::byte> bytes, size_t at) {
  kj::byte c = bytes[at];
  size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (n == 0 || at + n > bytes.size()) return 0;
  for (size_t i = 1; i < n; i++) {
    if ((bytes[at + i] & 0xC0) != 0x80) return 0;
  }
  return n;
}

}  // namespace

const Kind* find(Which which) {
  for (const Kind& kind : kKinds) {
    if (kind.which == which) return &kind;
  }
  return nullptr;
}

void validate(proto::Request::Reader request, size_t fds) {
  const Kind* kind = find(request.which());
  KJ_REQUIRE(kind != nullptr, "unknown kind of request (is the shim newer than the daemon?)");
  (void)request.getPool().size();
  (void)request.getMessageId().size();
  switch (request.which()) {
    case Which::EXPAND: {
      auto expand = request.getExpand();
      KJ_REQUIRE(expand.getFunction().size() > 0, "expand names no function");
      touch(expand.getArgs());
      break;
    }
    case Which::LOCAL_SCAN: {
      auto scan = request.getLocalScan();
      touch(scan.getRecipients());
      touch(scan.getHeaders());
      for (auto field : {scan.getSenderAddress(), scan.getSenderHostAddress(),
                         scan.getSenderHostName(), scan.getSenderHostAuthenticated(),
                         scan.getInterfaceAddress(), scan.getReceivedProtocol(),
                         scan.getSenderHeloName()}) {
        (void)field.size();
      }
      break;
    }
    case Which::DO_FILTER: {
      auto filter = request.getDoFilter();
      KJ_REQUIRE(filter.getDataPath().size() > 0, "do_filter names no data file");
      KJ_REQUIRE(filter.getControlPaths().size() > 0, "do_filter names no control file");
      for (auto path : filter.getControlPaths()) KJ_REQUIRE(path.size() > 0, "empty control path");
      KJ_REQUIRE(fds == 1 + filter.getControlPaths().size(),
                 "do_filter needs the data file's and each control file's descriptor");
      return;
    }
    default:
      break;
  }
  KJ_REQUIRE(fds == (kind->needsBody ? 1u : 0u),
             kind->needsBody ? "this call needs the message's descriptor"
                             : "this call takes no descriptor");
}

std::string functionName(proto::Request::Reader request) {
  if (request.isExpand()) return printable(request.getExpand().getFunction());
  const Kind* kind = find(request.which());
  return kind ? kind->name : "(unknown)";
}

void answerFailure(proto::Response::Builder response, Which which, proto::Failure::Kind kind,
                   kj::StringPtr message, const OnError& onError) {
  const Kind* entry = find(which);
  if (onError.failOpen && entry != nullptr) return entry->failOpen(response, onError);
  auto failure = response.initFailure();
  failure.setKind(kind);
  failure.setMessage(message);
}

std::string answerFailureLine(Which which, proto::Failure::Kind kind, kj::StringPtr message,
                              const OnError& onError) {
  capnp::MallocMessageBuilder answer;
  auto response = answer.initRoot<proto::Response>();
  answerFailure(response, which, kind, message, onError);
  return worker::readsocketReply(response);
}

std::string failureLine(kj::StringPtr pool, kj::StringPtr function, kj::StringPtr messageId,
                        kj::StringPtr message, kj::StringPtr traceback) {
  std::string line = "pool " + std::string(pool.cStr()) + ": " + function.cStr();
  if (messageId.size()) line += " (message " + std::string(messageId.cStr()) + ")";
  line += " failed: " + std::string(message.cStr());
  if (traceback.size()) line += "\n" + std::string(traceback.cStr());
  while (!line.empty() && line.back() == '\n') line.pop_back();
  return line;
}

std::string printable(kj::ArrayPtr<const kj::byte> bytes) {
  std::string out;
  for (size_t i = 0; i < bytes.size();) {
    size_t n = utf8Length(bytes, i);
    if (n > 0 && bytes[i] >= 0x20 && bytes[i] != 0x7F) {
      out.append(reinterpret_cast<const char*>(bytes.begin() + i), n);
      i += n;
      continue;
    }
    char escaped[5];
    snprintf(escaped, sizeof escaped, "\\x%02x", bytes[i]);
    out += escaped;
    i++;
  }
  return out;
}

std::string printableLines(const std::string& text, const char* joint) {
  std::string out;
  for (size_t at = 0;;) {
    size_t end = std::min(text.find('\n', at), text.size());
    if (at > 0) out += joint;
    out += printable(kj::arrayPtr(reinterpret_cast<const kj::byte*>(text.data()) + at, end - at));
    if (end == text.size()) return out;
    at = end + 1;
  }
}

}  // namespace mtapy::calls
