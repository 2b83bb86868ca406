// expand.c++ - ${dlfunc{/usr/lib/mtapy/mtapy_exim.so}{python}{FUNCTION}{ARG}...}
// DESCRIPTION  Sends the expansion to the caller's pool and maps the answer to Exim's dlfunc
//              results: a value is OK, None is a forced failure, and every failure - a policy
//              error (the traceback is in mtapy's log) or anything that kept the policy from
//              answering (daemon down, timeout, crash) - is FAIL, which makes an ACL answer 451.
//              Not DEFER: Exim treats DEFER exactly as FAIL but also writes each one to the
//              panic log (docs/design.md section 3.1), which Debian mails to root daily.
// SECURITY     No C++ exception crosses into Exim; no Python runs in this process.
// SEE ALSO     proto/policy.capnp (Expand), pylib/mtapy/_worker.py (the return-value rules)
#include "exim-api.h"
#include "shim/common/client.h"

#include <kj/debug.h>

#include <cstring>

namespace mtapy::exim {
namespace {

// Texts we format are cut to 1000 bytes: Exim dies (LOG_PANIC_DIE) when string_sprintf()
// output passes 32 KiB, and a policy's exception text may quote anything.
// Exim 4.96 crashes on 8 dlfunc arguments and refuses 9 or more, so FUNCTION + 6 is all we get.
// Exim's process dies (421) on a value of some megabytes; keep far from that.
constexpr size_t kMaxValue = 64 * 1024;

void describe(capnp::MallocMessageBuilder& message, int argc, const uschar* const argv[]) {
  auto call = message.initRoot<proto::Request>().initExpand();
  auto bytes = [](const uschar* s) {
    return kj::arrayPtr(reinterpret_cast<const kj::byte*>(s), strlen((const char*)s));
  };
  call.setFunction(bytes(argv[0]));
  auto args = call.initArgs(unsigned(argc - 1));
  for (int i = 1; i < argc; i++) args.set(unsigned(i - 1), bytes(argv[i]));
}

int expand(uschar** yield, int argc, uschar* argv[]) {
  if (argc < 1) {
    *yield = US "mtapy: usage ${dlfunc{mtapy_exim.so}{python}{FUNCTION}{ARG}...}";
    return kFail;
  }
  capnp::MallocMessageBuilder message;
  describe(message, argc, argv);

  wire::Datagram received = shim::call(message, -1);
  auto reader = received.reader();
  auto response = reader.getRoot<proto::Response>();
  switch (response.which()) {
    case proto::Response::VALUE: {
      auto value = response.getValue();
      if (value.size() > kMaxValue) {
        *yield = string_sprintf(
            "mtapy: %s returned %d bytes, more than an Exim expansion can safely hold (64 KiB)",
            string_copyn(argv[0], 200), int(value.size()));
        log_write(0, LOG_MAIN, "%s", *yield);
        return kFail;
      }
      *yield = string_copyn((const uschar*)value.begin(), int(value.size()));
      return kOk;
    }
    case proto::Response::FORCED_FAIL:
      *yield = nullptr;
      return kFailForced;
    case proto::Response::FAILURE: {
      auto failure = response.getFailure();
      *yield = string_sprintf("mtapy: %.1000s", failure.getMessage().cStr());
      return kFail;
    }
    default:
      *yield = US "mtapy: the daemon sent an answer this shim does not know (upgrade the shim)";
      return kFail;
  }
}

// Runs when the library is loaded. Preloaded into Exim's daemon (README, "The fast first
// call"), that is once, before the daemon forks a process per SMTP session, and each
// session's first ${dlfunc} finds the work done. Exim's store does not exist yet: no Exim
// function may be called here.
__attribute__((constructor)) void warmUp() {
  // Exim's exported symbols bind only inside Exim: elsewhere (the shells and tools of Exim's
  // init script, which inherit the preload) stay idle.
  if (&expand_string == nullptr) return;
  static const uschar* const typical[] = {US "function", US "sender@example.org", US "192.0.2.1"};
  try {
    capnp::MallocMessageBuilder message;
    describe(message, 3, typical);
    shim::prepare(message);
  } catch (...) {
    // Nothing is lost: the first call does the work itself.
  }
}

}  // namespace
}  // namespace mtapy::exim

extern "C" int python(uschar** yield, int argc, uschar* argv[]) {
  try {
    return mtapy::exim::expand(yield, argc, argv);
  } catch (const kj::Exception& e) {
    *yield = string_sprintf("mtapy: %.1000s", e.getDescription().cStr());
  } catch (const std::exception& e) {
    *yield = string_sprintf("mtapy: %.1000s", e.what());
  } catch (...) {
    *yield = US "mtapy: unexpected error in the shim";
  }
  return mtapy::exim::kFail;
}
