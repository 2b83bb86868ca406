// python-host.c++ - the embedded CPython of one worker and the calls into mtapy._worker
#include "python-host.h"

#define PY_SSIZE_T_CLEAN
#include <Python.h>

namespace mtapy::worker {
namespace {

// Owning reference; Py_XDECREF on scope exit.
struct Ref {
  PyObject* p;
  explicit Ref(PyObject* o) : p(o) {}
  ~Ref() { Py_XDECREF(p); }
  Ref(const Ref&) = delete;
  Ref& operator=(const Ref&) = delete;
  explicit operator bool() const { return p != nullptr; }
};

std::string utf8(PyObject* s) {
  if (s == nullptr) return "";
  Py_ssize_t size;
  const char* text = PyUnicode_AsUTF8AndSize(s, &size);
  if (text == nullptr) {
    PyErr_Clear();
    return "(unprintable)";
  }
  return std::string(text, size_t(size));
}

// Take the pending Python exception as message and formatted traceback.
PythonError takeError() {
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  Ref t(type), v(value), b(tb);
  PythonError error;
  Ref text(value ? PyObject_Str(value) : nullptr);
  std::string name = type ? ((PyTypeObject*)type)->tp_name : "error";
  std::string detail = utf8(text.p);
  error.message = detail.empty() ? name : name + ": " + detail;
  Ref module(PyImport_ImportModule("traceback"));
  Ref lines(module ? PyObject_CallMethod(module.p, "format_exception", "OOO", type ? type : Py_None,
                                         value ? value : Py_None, tb ? tb : Py_None)
                   : nullptr);
  Ref joined(lines ? PyUnicode_Join(Ref(PyUnicode_FromString("")).p, lines.p) : nullptr);
  error.traceback = utf8(joined.p);
  PyErr_Clear();
  return error;
}

// Holds the GIL for one call; releases it again when the call is done.
class Gil {
 public:
  explicit Gil(PyThreadState*& idle) : idle_(idle) { PyEval_RestoreThread(idle_); }
  ~Gil() { idle_ = PyEval_SaveThread(); }
  Gil(const Gil&) = delete;
  Gil& operator=(const Gil&) = delete;

 private:
  PyThreadState*& idle_;
};

void check(bool ok) {
  if (!ok) throw takeError();
}

void startInterpreter() {
  PyConfig config;
  PyConfig_InitPythonConfig(&config);
  config.parse_argv = 0;
  // Debian's prefix and dist-packages come from the program path; name the system python.
  PyStatus status = PyConfig_SetString(&config, &config.program_name, L"/usr/bin/python3");
  if (!PyStatus_Exception(status)) status = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  if (PyStatus_Exception(status)) {
    throw PythonError{
        std::string("cannot start Python: ") + (status.err_msg ? status.err_msg : "?"), ""};
  }
}

}  // namespace

PythonHost::PythonHost(const char* pylib, const char* policy, const char* moduleName, int code,
                       bool takeCode) {
  startInterpreter();
  // A stuck call's stack reaches the daemon's log: it sends SIGUSR2 before SIGKILL.
  check(PyRun_SimpleString("import faulthandler, signal\n"
                           "faulthandler.enable()\n"
                           "faulthandler.register(signal.SIGUSR2, all_threads=True)\n") == 0);
  PyObject* path = PySys_GetObject("path");  // borrowed
  Ref dir(PyUnicode_DecodeFSDefault(pylib));
  check(path != nullptr && dir && PyList_Insert(path, 0, dir.p) == 0);
  {  // Every reference made here is dropped before the GIL is released below.
    Ref module(PyImport_ImportModule("mtapy._worker"));
    check(bool(module));
    Ref booted(PyObject_CallMethod(module.p, "boot", "ssii", policy, moduleName, code,
                                   int(takeCode)));
    const char* sha256;
    long long mtimeNs;
    unsigned files;
    check(booted && PyArg_ParseTuple(booted.p, "sLI", &sha256, &mtimeNs, &files));
    code_ = {sha256, mtimeNs, files};
    expand_ = PyObject_GetAttrString(module.p, "expand");
    localScan_ = PyObject_GetAttrString(module.p, "local_scan");
    doFilter_ = PyObject_GetAttrString(module.p, "do_filter");
    check(expand_ != nullptr && localScan_ != nullptr && doFilter_ != nullptr);
  }
  idle_ = PyEval_SaveThread();
}

PythonHost::~PythonHost() {
  PyEval_RestoreThread(idle_);
  Py_XDECREF(expand_);
  Py_XDECREF(localScan_);
  Py_XDECREF(doFilter_);
}

Outcome PythonHost::expand(capnp::Data::Reader function, capnp::List<capnp::Data>::Reader args) {
  Gil gil(idle_);
  Ref name(PyBytes_FromStringAndSize(reinterpret_cast<const char*>(function.begin()),
                                     Py_ssize_t(function.size())));
  Ref list(PyList_New(Py_ssize_t(args.size())));
  for (unsigned i = 0; list && i < args.size(); i++) {
    auto a = args[i];
    PyList_SET_ITEM(
        list.p, i,
        PyBytes_FromStringAndSize(reinterpret_cast<const char*>(a.begin()), Py_ssize_t(a.size())));
  }
  Ref result(name && list ? PyObject_CallFunctionObjArgs(expand_, name.p, list.p, nullptr)
                          : nullptr);
  int code;
  const char* value;
  Py_ssize_t size;
  const char* tb;
  if (!result || !PyArg_ParseTuple(result.p, "iy#s", &code, &value, &size, &tb)) {
    PythonError e = takeError();  // a bug in _worker.py itself, or out of memory
    return {Outcome::kFailure, "mtapy internal error: " + e.message, e.traceback};
  }
  return {code, std::string(value, size_t(size)), tb};
}

namespace {

PyObject* pyBytes(capnp::Data::Reader data) {
  return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(data.begin()),
                                   Py_ssize_t(data.size()));
}

PyObject* pyBytesList(capnp::List<capnp::Data>::Reader list) {
  PyObject* out = PyList_New(Py_ssize_t(list.size()));
  for (unsigned i = 0; out != nullptr && i < list.size(); i++) {
    PyList_SET_ITEM(out, i, pyBytes(list[i]));
  }
  return out;
}

// dict[key] = value, consuming the reference to value.
void put(PyObject* dict, const char* key, PyObject* value) {
  if (value != nullptr) PyDict_SetItemString(dict, key, value);
  Py_XDECREF(value);
}

PyObject* infoDict(proto::LocalScan::Reader scan, capnp::Text::Reader messageId) {
  PyObject* info = PyDict_New();
  if (info == nullptr) return nullptr;
  put(info, "sender_address", pyBytes(scan.getSenderAddress()));
  put(info, "recipients", pyBytesList(scan.getRecipients()));
  put(info, "sender_host_address", pyBytes(scan.getSenderHostAddress()));
  put(info, "sender_host_name", pyBytes(scan.getSenderHostName()));
  put(info, "sender_host_port", PyLong_FromLong(scan.getSenderHostPort()));
  put(info, "sender_host_authenticated", pyBytes(scan.getSenderHostAuthenticated()));
  put(info, "sender_helo_name", pyBytes(scan.getSenderHeloName()));
  put(info, "interface_address", pyBytes(scan.getInterfaceAddress()));
  put(info, "interface_port", PyLong_FromLong(scan.getInterfacePort()));
  put(info, "received_protocol", pyBytes(scan.getReceivedProtocol()));
  put(info, "message_id",
      PyBytes_FromStringAndSize(messageId.begin(), Py_ssize_t(messageId.size())));
  put(info, "body_linecount", PyLong_FromLong(scan.getBodyLinecount()));
  put(info, "body_zerocount", PyLong_FromLong(scan.getBodyZerocount()));
  return info;
}

// Copy a Python list of bytes into a capnp list; false if it is not one.
bool fillList(PyObject* list,
              capnp::List<capnp::Data>::Builder (*init)(proto::ScanResult::Builder, unsigned),
              proto::ScanResult::Builder result) {
  if (!PyList_Check(list)) return false;
  auto out = init(result, unsigned(PyList_GET_SIZE(list)));
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
    char* data;
    Py_ssize_t size;
    if (PyBytes_AsStringAndSize(PyList_GET_ITEM(list, i), &data, &size) < 0) return false;
    out.set(unsigned(i), kj::arrayPtr(reinterpret_cast<const kj::byte*>(data), size_t(size)));
  }
  return true;
}

void fail(proto::Response::Builder response, const std::string& message, const std::string& tb) {
  auto failure = response.initFailure();
  failure.setKind(proto::Failure::Kind::POLICY_ERROR);
  failure.setMessage(message);
  failure.setTraceback(tb);
}

}  // namespace

void PythonHost::localScan(proto::Request::Reader request, int fd,
                           proto::Response::Builder response) {
  Gil gil(idle_);
  auto scan = request.getLocalScan();
  Ref info(infoDict(scan, request.getMessageId()));
  Ref headers(pyBytesList(scan.getHeaders()));
  Ref result(info && headers ? PyObject_CallFunction(localScan_, "OOiK", info.p, headers.p, fd,
                                                     (unsigned long long)scan.getBodyOffset())
                             : nullptr);
  int verdict;
  const char* text;
  Py_ssize_t size;
  PyObject *add, *remove, *addHeaders, *removeHeaders;
  const char* tb;
  if (!result || !PyArg_ParseTuple(result.p, "iy#OOOOs", &verdict, &text, &size, &add, &remove,
                                   &addHeaders, &removeHeaders, &tb)) {
    PythonError e = takeError();
    return fail(response, "mtapy internal error: " + e.message, e.traceback);
  }
  if (verdict == kScanFailure) return fail(response, std::string(text, size_t(size)), tb);
  auto out = response.initScan();
  out.setVerdict(verdict == kScanReject       ? proto::ScanResult::Verdict::REJECT
                 : verdict == kScanTempReject ? proto::ScanResult::Verdict::TEMP_REJECT
                                              : proto::ScanResult::Verdict::ACCEPT);
  out.setMessage(kj::arrayPtr(reinterpret_cast<const kj::byte*>(text), size_t(size)));
  bool ok = fillList(
                add, [](auto r, unsigned n) { return r.initAddRecipients(n); }, out) &&
            fillList(
                remove, [](auto r, unsigned n) { return r.initRemoveRecipients(n); }, out) &&
            fillList(
                addHeaders, [](auto r, unsigned n) { return r.initAddHeaders(n); }, out) &&
            fillList(
                removeHeaders, [](auto r, unsigned n) { return r.initRemoveHeaders(n); }, out);
  if (!ok) {
    PythonError e = takeError();
    fail(response, "mtapy internal error: local_scan result is not lists of bytes " + e.message,
         "");
  }
}

Outcome PythonHost::doFilter(proto::DoFilter::Reader filter, kj::ArrayPtr<const int> fds) {
  Gil gil(idle_);
  auto path = [](capnp::Text::Reader text) {
    return PyUnicode_DecodeFSDefaultAndSize(text.begin(), Py_ssize_t(text.size()));
  };
  auto controls = filter.getControlPaths();
  Ref data(path(filter.getDataPath()));
  Ref controlList(PyList_New(Py_ssize_t(controls.size())));
  Ref fdList(PyList_New(Py_ssize_t(fds.size())));
  for (unsigned i = 0; controlList && i < controls.size(); i++) {
    PyList_SET_ITEM(controlList.p, i, path(controls[i]));
  }
  for (unsigned i = 0; fdList && i < fds.size(); i++) {
    PyList_SET_ITEM(fdList.p, i, PyLong_FromLong(fds[i]));
  }
  Ref result(data && controlList && fdList
                 ? PyObject_CallFunctionObjArgs(doFilter_, data.p, controlList.p, fdList.p,
                                                nullptr)
                 : nullptr);
  int code;
  const char* value;
  Py_ssize_t size;
  const char* tb;
  if (!result || !PyArg_ParseTuple(result.p, "iy#s", &code, &value, &size, &tb)) {
    PythonError e = takeError();
    return {Outcome::kFailure, "mtapy internal error: " + e.message, e.traceback};
  }
  return {code, std::string(value, size_t(size)), tb};
}

}  // namespace mtapy::worker
