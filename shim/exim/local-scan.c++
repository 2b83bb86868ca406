// local-scan.c++ - Debian's local_scan_path plugin: whole-message policy with the elspy API
// DESCRIPTION  Sends the envelope, the headers and a read-only descriptor of the spool data
//              file to the caller's pool (the body is never copied), then applies the policy's
//              verdict, recipient changes and header changes through Exim's own API.
// SECURITY     The worker gets the message opened read-only through /proc/self/fd, not Exim's
//              read-write descriptor: it can read this message and change nothing in the spool.
// DIAGNOSTICS  Any failure (daemon down, timeout, policy error) is a temporary rejection: the
//              sender keeps the message. The detail goes to Exim's main log; the SMTP client
//              sees only "try again later". A pool with on_error = "accept" is fail-open.
// SEE ALSO     proto/policy.capnp (LocalScan, ScanResult), pylib/mtapy/local_scan.py
#include "exim-api.h"
#include "shim/common/client.h"

#include <fcntl.h>
#include <unistd.h>
#include <algorithm>
#include <cstdio>
#include <cstring>

namespace mtapy::exim {
namespace {

kj::ArrayPtr<const kj::byte> bytes(const uschar* s) {
  if (s == nullptr) return nullptr;
  return kj::arrayPtr(reinterpret_cast<const kj::byte*>(s), strlen((const char*)s));
}

uschar* eximCopy(capnp::Data::Reader data) {
  return string_copyn((const uschar*)data.begin(), int(data.size()));
}

void describeMessage(proto::Request::Builder request) {
  request.setMessageId((const char*)message_id);
  auto scan = request.initLocalScan();
  scan.setBodyOffset(SPOOL_DATA_START_OFFSET);
  scan.setSenderAddress(bytes(sender_address));
  auto recipients = scan.initRecipients(unsigned(recipients_count));
  for (int i = 0; i < recipients_count; i++)
    recipients.set(unsigned(i), bytes(recipients_list[i].address));
  scan.setSenderHostAddress(bytes(sender_host_address));
  scan.setSenderHostName(bytes(sender_host_name));
  scan.setSenderHostPort(sender_host_port);
  scan.setSenderHostAuthenticated(bytes(sender_host_authenticated));
  scan.setInterfaceAddress(bytes(interface_address));
  scan.setInterfacePort(interface_port);
  scan.setReceivedProtocol(bytes(received_protocol));
  // Not among Exim's exported variables: ask the expander.
  scan.setSenderHeloName(bytes(expand_string(US "$sender_helo_name")));
  scan.setBodyLinecount(body_linecount);
  scan.setBodyZerocount(body_zerocount);
  unsigned count = 0;
  for (header_line* h = header_list; h != nullptr; h = h->next) count += h->type != '*';
  auto headers = scan.initHeaders(count);
  unsigned i = 0;
  for (header_line* h = header_list; h != nullptr; h = h->next) {
    if (h->type != '*') headers.set(i++, kj::arrayPtr((const kj::byte*)h->text, size_t(h->slen)));
  }
}

// Exim dies (LOG_PANIC_DIE) on a header line over 32 KiB; an address with a line break or NUL
// would corrupt its spool header file. A policy that asks for either gets a temporary failure.
constexpr size_t kMaxHeaderLine = 30 * 1024;

bool usableAddress(capnp::Data::Reader address) {
  auto bad = [](kj::byte c) { return c == '\r' || c == '\n' || c == '\0'; };
  return address.size() > 0 && std::none_of(address.begin(), address.end(), bad);
}

// Why the policy's changes cannot be applied, or nullptr when they can.
const char* unusable(proto::ScanResult::Reader result) {
  for (auto address : result.getAddRecipients()) {
    if (!usableAddress(address))
      return "the policy added an empty address or one with CR, LF or NUL";
  }
  for (auto line : result.getAddHeaders()) {
    if (line.size() > kMaxHeaderLine) return "the policy added a header line over 30 KiB";
    if (std::find(line.begin(), line.end(), '\0') != line.end())
      return "the policy added a header with NUL";
  }
  return nullptr;
}

int apply(proto::ScanResult::Reader result, uschar** returnText) {
  for (auto address : result.getRemoveRecipients()) receive_remove_recipient(eximCopy(address));
  for (auto address : result.getAddRecipients()) receive_add_recipient(eximCopy(address), -1);
  for (auto name : result.getRemoveHeaders()) header_remove(0, eximCopy(name));
  for (auto line : result.getAddHeaders()) header_add(' ', "%s\n", eximCopy(line));
  *returnText = result.getMessage().size() ? eximCopy(result.getMessage()) : nullptr;
  switch (result.getVerdict()) {
    case proto::ScanResult::Verdict::REJECT:
      if (*returnText == nullptr) *returnText = US "Message rejected by local policy";
      return LOCAL_SCAN_REJECT;
    case proto::ScanResult::Verdict::TEMP_REJECT:
      if (*returnText == nullptr)
        *returnText = US "Temporary local problem - please try again later";
      return LOCAL_SCAN_TEMPREJECT;
    default:
      return LOCAL_SCAN_ACCEPT;
  }
}

int tempReject(uschar** returnText, const char* why) {
  log_write(0, LOG_MAIN, "mtapy local_scan: %.1000s; message temporarily rejected", why);
  *returnText = US "Temporary local problem - please try again later";
  return LOCAL_SCAN_TEMPREJECT;
}

int scan(int fd, uschar** returnText) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  kj::AutoCloseFd readOnly(open(path, O_RDONLY | O_CLOEXEC));
  if (readOnly == nullptr) return tempReject(returnText, "cannot reopen the spool file read-only");

  capnp::MallocMessageBuilder message;
  describeMessage(message.initRoot<proto::Request>());
  wire::Datagram received = shim::call(message, readOnly);
  auto reader = received.reader();
  auto response = reader.getRoot<proto::Response>();
  if (response.isScan()) {
    if (const char* why = unusable(response.getScan())) return tempReject(returnText, why);
    return apply(response.getScan(), returnText);
  }
  if (response.isFailure())
    return tempReject(returnText, response.getFailure().getMessage().cStr());
  return tempReject(returnText, "the daemon sent an answer this shim does not know (upgrade it)");
}

}  // namespace
}  // namespace mtapy::exim

extern "C" {

// Debian's loader (90_localscan_dlopen) requires these two before it calls local_scan().
int local_scan_version_major(void) {
  return LOCAL_SCAN_ABI_VERSION_MAJOR;
}
int local_scan_version_minor(void) {
  return LOCAL_SCAN_ABI_VERSION_MINOR;
}

int local_scan(int fd, uschar** return_text) {
  try {
    return mtapy::exim::scan(fd, return_text);
  } catch (const kj::Exception& e) {
    return mtapy::exim::tempReject(return_text, e.getDescription().cStr());
  } catch (const std::exception& e) {
    return mtapy::exim::tempReject(return_text, e.what());
  } catch (...) {
    return mtapy::exim::tempReject(return_text, "unexpected error in the shim");
  }
}

}  // extern "C"
