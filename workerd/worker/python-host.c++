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
    throw PythonError{std::string("cannot start Python: ") + (status.err_msg ? status.err_msg : "?"),
                      ""};
  }
}

}  // namespace

PythonHost::PythonHost(const char* pylib, const char* policy, const char* moduleName) {
  startInterpreter();
  // A stuck call's stack reaches the daemon's log: it sends SIGUSR2 before SIGKILL.
  check(PyRun_SimpleString("import faulthandler, signal\n"
                           "faulthandler.enable()\n"
                           "faulthandler.register(signal.SIGUSR2, all_threads=True)\n") == 0);
  PyObject* path = PySys_GetObject("path");  // borrowed
  Ref dir(PyUnicode_DecodeFSDefault(pylib));
  check(path != nullptr && dir && PyList_Insert(path, 0, dir.p) == 0);
  Ref module(PyImport_ImportModule("mtapy._worker"));
  check(bool(module));
  Ref booted(PyObject_CallMethod(module.p, "boot", "ss", policy, moduleName));
  check(bool(booted));
  expand_ = PyObject_GetAttrString(module.p, "expand");
  check(expand_ != nullptr);
}

PythonHost::~PythonHost() { Py_XDECREF(expand_); }

Outcome PythonHost::expand(capnp::Data::Reader function, capnp::List<capnp::Data>::Reader args) {
  Ref name(PyBytes_FromStringAndSize(reinterpret_cast<const char*>(function.begin()),
                                     Py_ssize_t(function.size())));
  Ref list(PyList_New(Py_ssize_t(args.size())));
  for (unsigned i = 0; list && i < args.size(); i++) {
    auto a = args[i];
    PyList_SET_ITEM(list.p, i, PyBytes_FromStringAndSize(reinterpret_cast<const char*>(a.begin()),
                                                         Py_ssize_t(a.size())));
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

}  // namespace mtapy::worker
