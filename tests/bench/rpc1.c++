// rpc1.c++ - the one-hop floor: EzRpcServer with embedded CPython, and EzRpcClient clients
// DESCRIPTION  rpc1 server PATH
//                  serve Policy.call on unix:PATH from one thread; each call looks up `fn` in
//                  the module dict, calls it with the args as str (UTF-8, surrogateescape)
//                  and returns str(result) as UTF-8. The module is `def f(a, b): return a + b`.
//              rpc1 client PATH CLIENTS CALLS WARMUP
//                  CLIENTS processes, each with its own EzRpcClient (made after fork),
//                  synchronous call("f", ["user@example.com", "192.0.2.1"]).wait().
//              The one-hop floor of docs/design.md section 4, with 1 and 16 clients.
#include <Python.h>

#include "bench.capnp.h"

#include <capnp/ez-rpc.h>
#include <kj/debug.h>

#include <string>

extern "C" {
#include "benchlib.h"
}

namespace {

class PolicyImpl final : public Policy::Server {
 public:
  explicit PolicyImpl(PyObject* dict) : dict_(dict) {}

 protected:
  kj::Promise<void> call(CallContext context) override {
    auto params = context.getParams();
    PyObject* fn = PyDict_GetItemString(dict_, params.getFn().cStr());  // borrowed
    KJ_REQUIRE(fn != nullptr, "no such function");
    auto args = params.getArgs();
    PyObject* argv[8];
    unsigned n = std::min(args.size(), 8u);
    for (unsigned i = 0; i < n; i++) {
      auto a = args[i];
      argv[i] = PyUnicode_DecodeUTF8(a.begin(), Py_ssize_t(a.size()), "surrogateescape");
    }
    PyObject* result = PyObject_Vectorcall(fn, argv, n, nullptr);
    for (unsigned i = 0; i < n; i++) Py_XDECREF(argv[i]);
    if (result == nullptr) {
      PyErr_Clear();
      KJ_FAIL_REQUIRE("python raised");
    }
    PyObject* text = PyObject_Str(result);
    Py_ssize_t size = 0;
    const char* utf8 = PyUnicode_AsUTF8AndSize(text, &size);
    context.getResults().setResult(capnp::Text::Reader(utf8, size_t(size)));
    Py_DECREF(text);
    Py_DECREF(result);
    return kj::READY_NOW;
  }

 private:
  PyObject* dict_;
};

const char* path;
capnp::EzRpcClient* client;
Policy::Client* cap;

void setup() {
  client = new capnp::EzRpcClient(std::string("unix:") + path);
  cap = new Policy::Client(client->getMain<Policy>());
}

int callOnce() {
  auto request = cap->callRequest();
  request.setFn("f");
  auto args = request.initArgs(2);
  args.set(0, "user@example.com");
  args.set(1, "192.0.2.1");
  auto response = request.send().wait(client->getWaitScope());
  return response.getResult() == "user@example.com192.0.2.1" ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "server") {
    Py_InitializeEx(0);
    PyObject* module = PyImport_AddModule("__main__");
    PyObject* dict = PyModule_GetDict(module);
    PyObject* ran = PyRun_String("def f(a, b): return a + b\n", Py_file_input, dict, dict);
    if (ran == nullptr) {
      PyErr_Print();
      return 1;
    }
    Py_DECREF(ran);
    unlink(argv[2]);
    capnp::EzRpcServer server(kj::heap<PolicyImpl>(dict), std::string("unix:") + argv[2]);
    kj::NEVER_DONE.wait(server.getWaitScope());
  }
  if (argc == 6 && std::string(argv[1]) == "client") {
    path = argv[2];
    run_load(atoi(argv[3]), atol(argv[4]), atol(argv[5]), setup, callOnce);
    return 0;
  }
  fputs("usage: rpc1 server PATH | client PATH CLIENTS CALLS WARMUP\n", stderr);
  return 2;
}
