// python-host.h - the embedded CPython of one worker and the calls into mtapy._worker
// DESCRIPTION  Starts the interpreter (after the privilege drop), loads the policy of the
//              worker's generation through pylib/mtapy/_worker.py (from the generation's code
//              snapshot, taken by the first worker), runs its self_test(), and turns each
//              request into one call of that module.
// DIAGNOSTICS  A Python error at start throws PythonError with the traceback; errors during a
//              call come back inside the Outcome, never as C++ exceptions.
// SEE ALSO     pylib/mtapy/_worker.py, result-codes.h, worker-main.c++
#pragma once

#include "proto/policy.capnp.h"
#include "result-codes.h"

#include <capnp/list.h>
#include <capnp/message.h>

#include <string>

typedef struct _object PyObject;
typedef struct _ts PyThreadState;

namespace mtapy::worker {

struct PythonError {
  std::string message;    // "ExceptionType: text"
  std::string traceback;  // as traceback.format_exc() prints it
};

// What one call produced, as pylib/mtapy/_worker.py reports it.
struct Outcome {
  enum Code { kValue = kExpandValue, kForcedFail = kExpandForcedFail, kFailure = kExpandFailure };
  int code;
  std::string value;  // the value, or the failure message
  std::string traceback;
};

// What a generation runs (proto/worker.capnp CodeIdentity).
struct CodeIdentity {
  std::string sha256;
  int64_t mtimeNs = 0;
  uint32_t files = 0;
};

class PythonHost {
 public:
  // `code`: the generation's snapshot descriptor (closed once read); `takeCode`: this worker
  // is the generation's first and writes the snapshot into it.
  PythonHost(const char* pylib, const char* policy, const char* moduleName, int code,
             bool takeCode);
  ~PythonHost();
  PythonHost(const PythonHost&) = delete;
  PythonHost& operator=(const PythonHost&) = delete;

  Outcome expand(capnp::Data::Reader function, capnp::List<capnp::Data>::Reader args);

  // Run the policy's local_scan(info, headers, fd) for `request` (a localScan) and fill
  // `response` with its ScanResult or a Failure. `fd` is the message's spool data file.
  void localScan(proto::Request::Reader request, int fd, proto::Response::Builder response);

  // Run the pool's Courier filter (its chain, or the policy's do_filter) for `filter`, whose
  // data and control files are `fds`, in that order; the value is the reply for Courier.
  Outcome doFilter(proto::DoFilter::Reader filter, kj::ArrayPtr<const int> fds);

  const CodeIdentity& code() const { return code_; }

 private:
  CodeIdentity code_;
  PyObject* expand_ = nullptr;
  PyObject* localScan_ = nullptr;
  PyObject* doFilter_ = nullptr;
  // Between calls the GIL is released, so a policy's own threads (timers, cache refresh) run
  // while the worker waits for the next request.
  PyThreadState* idle_ = nullptr;
};

}  // namespace mtapy::worker
