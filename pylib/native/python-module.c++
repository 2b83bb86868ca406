// python-module.c++ - _mtapy_lmdb: mtapy.state's embedded store for Python
// DESCRIPTION  One type, Store(folder, map_bytes, error), with the backend methods
//              mtapy.state calls (the same as its Redis backend's):
//                get(key) -> tag+payload | None      set(key, body, ttl, only_new) -> bool
//                delete(key) -> bool                 incr(key, by, ttl) -> int
//                hit(key, window, now) -> (started, count)
//                peek_hit(key, now) -> (started, count) | None
//              Keys and bodies are bytes, ttl seconds or None (never). Failures raise
//              `error` (mtapy.state.StateError) with LmdbStore's message.
//              It is C++ because the rate limiter's every call is one hit(): in a worker,
//              whose caches the kernel's work between calls has emptied, the same transaction
//              through python3-lmdb and Python frames cost about twice as much (README.md
//              "Shared state"). The GIL is held throughout: a call takes microseconds, and a
//              worker runs one call at a time.
// SEE ALSO     lmdb-store.h, pylib/mtapy/state.py
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "pylib/native/lmdb-store.h"

#include <time.h>

#include <exception>
#include <filesystem>
#include <map>
#include <memory>

#include <new>

namespace {

using mtapy::state::LmdbStore;
using mtapy::state::StoreError;
using mtapy::state::Window;

struct StoreObject {
  PyObject_HEAD
  std::shared_ptr<LmdbStore>* store;  // null until __init__ opened it
  PyObject* error;
};

// The folder's store in this process, shared by every Store of it: LMDB allows one
// environment per file and process (closing a second would free the first one's reader
// slot). A forked child's inherited one is not its own: it opens another.
std::shared_ptr<LmdbStore> storeFor(const std::string& folder, size_t mapBytes) {
  static std::map<std::string, std::weak_ptr<LmdbStore>> open;
  auto path = std::filesystem::absolute(folder).lexically_normal();
  if (!path.has_filename()) path = path.parent_path();  // "state/" is "state"
  auto& slot = open[path.string()];
  auto store = slot.lock();
  if (!store || !store->ownedHere()) {
    store = std::make_shared<LmdbStore>(folder, mapBytes);
    slot = store;
  }
  return store;
}

double wallClock() {
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return static_cast<double>(now.tv_sec) + now.tv_nsec * 1e-9;
}

std::string_view bytesArg(PyObject* arg, const char* what) {
  if (!PyBytes_Check(arg)) {
    PyErr_Format(PyExc_TypeError, "%s must be bytes, not %s", what, Py_TYPE(arg)->tp_name);
    return {nullptr, 0};
  }
  return {PyBytes_AS_STRING(arg), static_cast<size_t>(PyBytes_GET_SIZE(arg))};
}

// Seconds from a float, an int or None (0: never).
bool secondsArg(PyObject* arg, double& out) {
  out = arg == Py_None ? 0 : PyFloat_AsDouble(arg);
  return !(out == -1 && PyErr_Occurred());
}

bool arity(Py_ssize_t given, Py_ssize_t wanted, const char* name) {
  if (given == wanted) return true;
  PyErr_Format(PyExc_TypeError, "Store.%s takes %zd arguments (%zd given)", name, wanted, given);
  return false;
}

PyObject* windowTuple(Window w) { return Py_BuildValue("(dL)", w.started, (long long)w.count); }

// Runs `body` on an open store, turning a C++ exception into a Python one: StoreError into
// the store's `error`. Nothing C++ may unwind through CPython.
template <typename Body>
PyObject* guarded(StoreObject* self, Body body) {
  if (!self->store) {
    PyErr_SetString(PyExc_ValueError, "this Store did not open: make a new one");
    return nullptr;
  }
  try {
    return body(**self->store);
  } catch (const StoreError& e) {
    PyErr_SetString(self->error, e.what());
  } catch (const std::bad_alloc&) {
    PyErr_NoMemory();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return nullptr;
}

PyObject* storeGet(StoreObject* self, PyObject* const* args, Py_ssize_t n) {
  if (!arity(n, 1, "get")) return nullptr;
  auto key = bytesArg(args[0], "key");
  if (!key.data()) return nullptr;
  return guarded(self, [&](LmdbStore& store) -> PyObject* {
    auto body = store.get(key, wallClock());
    if (!body) Py_RETURN_NONE;
    return PyBytes_FromStringAndSize(body->data(), body->size());
  });
}

PyObject* storeSet(StoreObject* self, PyObject* const* args, Py_ssize_t n) {
  if (!arity(n, 4, "set")) return nullptr;
  auto key = bytesArg(args[0], "key"), body = bytesArg(args[1], "body");
  double ttl;
  if (!key.data() || !body.data() || !secondsArg(args[2], ttl)) return nullptr;
  int onlyNew = PyObject_IsTrue(args[3]);
  if (onlyNew < 0) return nullptr;
  return guarded(self, [&](LmdbStore& store) {
    return PyBool_FromLong(store.put(key, body, ttl, onlyNew, wallClock()));
  });
}

PyObject* storeDelete(StoreObject* self, PyObject* const* args, Py_ssize_t n) {
  if (!arity(n, 1, "delete")) return nullptr;
  auto key = bytesArg(args[0], "key");
  if (!key.data()) return nullptr;
  return guarded(self, [&](LmdbStore& store) { return PyBool_FromLong(store.erase(key, wallClock())); });
}

PyObject* storeIncr(StoreObject* self, PyObject* const* args, Py_ssize_t n) {
  if (!arity(n, 3, "incr")) return nullptr;
  auto key = bytesArg(args[0], "key");
  if (!key.data()) return nullptr;
  long long by = PyLong_AsLongLong(args[1]);
  double ttl;
  if ((by == -1 && PyErr_Occurred()) || !secondsArg(args[2], ttl)) return nullptr;
  return guarded(self, [&](LmdbStore& store) {
    return PyLong_FromLongLong(store.incr(key, by, ttl, wallClock()));
  });
}

PyObject* storeHit(StoreObject* self, PyObject* const* args, Py_ssize_t n) {
  if (!arity(n, 3, "hit")) return nullptr;
  auto key = bytesArg(args[0], "key");
  double window, now;
  if (!key.data() || !secondsArg(args[1], window) || !secondsArg(args[2], now)) return nullptr;
  return guarded(self, [&](LmdbStore& store) { return windowTuple(store.hit(key, window, now)); });
}

PyObject* storePeekHit(StoreObject* self, PyObject* const* args, Py_ssize_t n) {
  if (!arity(n, 2, "peek_hit")) return nullptr;
  auto key = bytesArg(args[0], "key");
  double now;
  if (!key.data() || !secondsArg(args[1], now)) return nullptr;
  return guarded(self, [&](LmdbStore& store) -> PyObject* {
    auto window = store.peekHit(key, now);
    if (!window) Py_RETURN_NONE;
    return windowTuple(*window);
  });
}

int storeInit(StoreObject* self, PyObject* args, PyObject* kwargs) {
  const char* folder;
  unsigned long long mapBytes;
  PyObject* error;
  if (kwargs && PyDict_GET_SIZE(kwargs) > 0) {
    PyErr_SetString(PyExc_TypeError, "Store takes no keyword arguments");
    return -1;
  }
  if (!PyArg_ParseTuple(args, "sKO:Store", &folder, &mapBytes, &error)) return -1;
  if (!PyExceptionClass_Check(error)) {
    PyErr_SetString(PyExc_TypeError, "Store's error must be an exception class");
    return -1;
  }
  if (self->store) {
    PyErr_SetString(PyExc_RuntimeError, "Store is open already");
    return -1;
  }
  Py_XSETREF(self->error, Py_NewRef(error));
  try {
    self->store = new std::shared_ptr<LmdbStore>(storeFor(folder, mapBytes));
    return 0;
  } catch (const StoreError& e) {
    PyErr_SetString(error, e.what());
  } catch (const std::bad_alloc&) {
    PyErr_NoMemory();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return -1;
}

void storeDealloc(StoreObject* self) {
  delete self->store;
  Py_XDECREF(self->error);
  PyTypeObject* type = Py_TYPE(self);
  type->tp_free(reinterpret_cast<PyObject*>(self));
  Py_DECREF(type);  // a heap type: each instance holds a reference
}

#define FASTCALL(f) reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(f)), METH_FASTCALL

PyMethodDef storeMethods[] = {
    {"get", FASTCALL(storeGet), "get(key) -> the record's tag and payload, or None"},
    {"set", FASTCALL(storeSet), "set(key, body, ttl, only_new) -> whether it stored"},
    {"delete", FASTCALL(storeDelete), "delete(key) -> whether a live record was there"},
    {"incr", FASTCALL(storeIncr), "incr(key, by, ttl) -> the counter's new value"},
    {"hit", FASTCALL(storeHit), "hit(key, window, now) -> (started, count)"},
    {"peek_hit", FASTCALL(storePeekHit), "peek_hit(key, now) -> (started, count) or None"},
    {nullptr, nullptr, 0, nullptr}};

PyType_Slot storeSlots[] = {
    {Py_tp_doc, const_cast<char*>("Store(folder, map_bytes, error): a pool's LMDB state")},
    {Py_tp_methods, storeMethods},
    {Py_tp_init, reinterpret_cast<void*>(storeInit)},
    {Py_tp_new, reinterpret_cast<void*>(PyType_GenericNew)},
    {Py_tp_dealloc, reinterpret_cast<void*>(storeDealloc)},
    {0, nullptr}};

PyType_Spec storeSpec = {"_mtapy_lmdb.Store", sizeof(StoreObject), 0, Py_TPFLAGS_DEFAULT,
                         storeSlots};

PyModuleDef moduleDef = {PyModuleDef_HEAD_INIT, "_mtapy_lmdb",
                         "mtapy.state's embedded store (LMDB)", -1, nullptr,
                         nullptr, nullptr, nullptr, nullptr};

}  // namespace

PyMODINIT_FUNC PyInit__mtapy_lmdb() {
  PyObject* module = PyModule_Create(&moduleDef);
  if (!module) return nullptr;
  PyObject* type = PyType_FromSpec(&storeSpec);
  if (!type || PyModule_AddObject(module, "Store", type) < 0) {
    Py_XDECREF(type);
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
