// SPDX-License-Identifier: BSD-2-Clause
//
// libbpf-ts native layer: a thin, synchronous N-API surface over the system
// libbpf 1.x. Policy (typed handles, codecs, error classes) lives in the
// TypeScript layer; this file only turns libbpf and syscall results into
// values or into JS errors carrying errno, the operation and libbpf's own
// messages. Nothing here aborts the process: every failure becomes an error.

#include <napi.h>
#include <uv.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>

#include <algorithm>
#include <cerrno>
#include <fcntl.h>
#include <cstdarg>
#include <cstring>
#include <ctime>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

// ---------------------------------------------------------------------------
// libbpf's messages. libbpf reports details (verifier log, missing BTF, bad
// section) through its print callback rather than through return values, so
// we collect them per operation and attach them to the error we throw.

std::string g_log;

int capture_print(enum libbpf_print_level level, const char *fmt, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  // libbpf prints the whole verifier log as one message, whose reason for a
  // rejection is at its end: format it in full, not into a fixed buffer that
  // would keep only the head.
  va_list again;
  va_copy(again, args);
  char buf[4096];
  int n = vsnprintf(buf, sizeof(buf), fmt, args);
  std::string big;
  if (n >= static_cast<int>(sizeof(buf))) {
    big.resize(static_cast<size_t>(n) + 1);
    vsnprintf(big.data(), big.size(), fmt, again);
    big.resize(static_cast<size_t>(n));
  }
  va_end(again);
  if (n > 0) {
    const char *text = big.empty() ? buf : big.data();
    size_t len = static_cast<size_t>(n);
    // The verifier log of a large program can be long; keep the tail, which
    // holds the reason for the rejection.
    if (len > (1u << 20)) {
      text += len - (1u << 19);
      len = 1u << 19;
    }
    if (g_log.size() + len > (1u << 20)) g_log.erase(0, std::min(g_log.size(), g_log.size() + len - (1u << 19)));
    g_log.append(text, len);
  }
  return 0;
}

struct LogScope {
  LogScope() { g_log.clear(); }
  ~LogScope() { g_log.clear(); }
};

constexpr int kENOTSUPP = 524;

// libbpf's own error numbers (4000 and up, e.g. for a file that is not an
// ELF object) have neither an errno name nor strerror text.
const char *LibbpfErrorName(int err) {
  static const char *const names[] = {
      "LIBBPF_ERRNO__LIBELF", "LIBBPF_ERRNO__FORMAT", "LIBBPF_ERRNO__KVERSION", "LIBBPF_ERRNO__ENDIAN",
      "LIBBPF_ERRNO__INTERNAL", "LIBBPF_ERRNO__RELOC", "LIBBPF_ERRNO__LOAD", "LIBBPF_ERRNO__VERIFY",
      "LIBBPF_ERRNO__PROG2BIG", "LIBBPF_ERRNO__KVER", "LIBBPF_ERRNO__PROGTYPE", "LIBBPF_ERRNO__WRNGPID",
      "LIBBPF_ERRNO__INVSEQ", "LIBBPF_ERRNO__NLPARSE",
  };
  static_assert(sizeof(names) / sizeof(names[0]) == __LIBBPF_ERRNO__END - __LIBBPF_ERRNO__START);
  if (err < __LIBBPF_ERRNO__START || err >= __LIBBPF_ERRNO__END) return nullptr;
  return names[err - __LIBBPF_ERRNO__START];
}

Napi::Error MakeError(Napi::Env env, const char *op, int err, const std::string &detail = "") {
  if (err < 0) err = -err;
  // libbpf_strerror knows libbpf's own codes as well as the errno ones.
  char text[256];
  if (libbpf_strerror(err, text, sizeof(text))) snprintf(text, sizeof(text), "%s", strerror(err));
  // The kernel-internal ENOTSUPP reaches user space from batch operations a
  // map type lacks; libc knows neither its name nor its text.
  if (err == kENOTSUPP) snprintf(text, sizeof(text), "Operation is not supported");
  std::string msg = std::string(op) + ": " + text;
  if (!detail.empty()) msg += " (" + detail + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("errno", Napi::Number::New(env, err));
  const char *name = LibbpfErrorName(err);
  if (!name && err == kENOTSUPP) name = "ENOTSUPP";
  if (!name) name = strerrorname_np(err);
  e.Set("code", Napi::String::New(env, name ? name : "EUNKNOWN"));
  e.Set("op", Napi::String::New(env, op));
  e.Set("log", Napi::String::New(env, g_log));
  return e;
}

#define THROW_ERRNO(env, op, err, ret) \
  do {                                 \
    MakeError(env, op, err).ThrowAsJavaScriptException(); \
    return ret;                        \
  } while (0)

bool ArgCheck(const Napi::CallbackInfo &info, size_t n) {
  if (info.Length() < n) {
    Napi::TypeError::New(info.Env(), "expected " + std::to_string(n) + " arguments")
        .ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

int FdArg(const Napi::CallbackInfo &info, size_t i) {
  return info[i].As<Napi::Number>().Int32Value();
}

// ---------------------------------------------------------------------------
// BpfObject: an opened (and later loaded) ELF object.

class BpfObject : public Napi::ObjectWrap<BpfObject> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "BpfObject",
                       {
                           InstanceMethod("maps", &BpfObject::Maps),
                           InstanceMethod("programs", &BpfObject::Programs),
                           InstanceMethod("globals", &BpfObject::Globals),
                           InstanceMethod("setGlobal", &BpfObject::SetGlobal),
                           InstanceMethod("setMaxEntries", &BpfObject::SetMaxEntries),
                           InstanceMethod("setValueSize", &BpfObject::SetValueSize),
                           InstanceMethod("setPinPath", &BpfObject::SetPinPath),
                           InstanceMethod("load", &BpfObject::Load),
                           InstanceMethod("mapFd", &BpfObject::MapFd),
                           InstanceMethod("programFd", &BpfObject::ProgramFd),
                           InstanceMethod("close", &BpfObject::Close),
                       });
  }

  explicit BpfObject(const Napi::CallbackInfo &info) : Napi::ObjectWrap<BpfObject>(info) {
    Napi::Env env = info.Env();
    if (!ArgCheck(info, 1)) return;
    std::string path = info[0].As<Napi::String>();
    LogScope scope;
    obj_ = bpf_object__open_file(path.c_str(), nullptr);
    int err = libbpf_get_error(obj_);
    if (err) {
      obj_ = nullptr;
      MakeError(env, "bpf_object__open_file", err, path).ThrowAsJavaScriptException();
    }
  }

  ~BpfObject() override {
    if (obj_) bpf_object__close(obj_);
  }

 private:
  bpf_object *obj_ = nullptr;
  bool loaded_ = false;

  bool Usable(Napi::Env env) {
    if (!obj_) {
      MakeError(env, "bpf_object", EBADF, "object is closed").ThrowAsJavaScriptException();
      return false;
    }
    return true;
  }

  bool NotLoaded(Napi::Env env, const char *op) {
    if (!Usable(env)) return false;
    if (loaded_) {
      MakeError(env, op, EBUSY, "object is already loaded").ThrowAsJavaScriptException();
      return false;
    }
    return true;
  }

  bpf_map *FindMap(Napi::Env env, const std::string &name, const char *op) {
    bpf_map *m = bpf_object__find_map_by_name(obj_, name.c_str());
    if (!m) MakeError(env, op, ENOENT, "no map named '" + name + "'").ThrowAsJavaScriptException();
    return m;
  }

  Napi::Value Maps(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!Usable(env)) return env.Undefined();
    Napi::Array out = Napi::Array::New(env);
    uint32_t i = 0;
    bpf_map *m;
    bpf_object__for_each_map(m, obj_) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", bpf_map__name(m));
      o.Set("type", static_cast<uint32_t>(bpf_map__type(m)));
      o.Set("keySize", bpf_map__key_size(m));
      o.Set("valueSize", bpf_map__value_size(m));
      o.Set("maxEntries", bpf_map__max_entries(m));
      o.Set("flags", bpf_map__map_flags(m));
      o.Set("internal", bpf_map__is_internal(m));
      o.Set("fd", bpf_map__fd(m));
      out.Set(i++, o);
    }
    return out;
  }

  Napi::Value Programs(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!Usable(env)) return env.Undefined();
    Napi::Array out = Napi::Array::New(env);
    uint32_t i = 0;
    bpf_program *p;
    bpf_object__for_each_program(p, obj_) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", bpf_program__name(p));
      o.Set("section", bpf_program__section_name(p));
      o.Set("type", static_cast<uint32_t>(bpf_program__type(p)));
      o.Set("fd", bpf_program__fd(p));
      out.Set(i++, o);
    }
    return out;
  }

  // Variables of the object's global data sections (.rodata, .data, .bss),
  // read from BTF: name, section, offset and size, so that constants can be
  // set by name before load.
  struct GlobalVar {
    std::string name;
    std::string section;
    bpf_map *map;
    uint32_t offset;
    uint32_t size;
  };

  std::vector<GlobalVar> CollectGlobals() {
    std::vector<GlobalVar> vars;
    const btf *b = bpf_object__btf(obj_);
    if (!b) return vars;
    bpf_map *m;
    bpf_object__for_each_map(m, obj_) {
      if (!bpf_map__is_internal(m)) continue;
      // Internal maps are named "<object prefix>.<section>"; the section name
      // is what BTF's DATASEC uses.
      const char *dot = strchr(bpf_map__name(m), '.');
      if (!dot) continue;
      int id = btf__find_by_name_kind(b, dot, BTF_KIND_DATASEC);
      if (id < 0) continue;
      const btf_type *sec = btf__type_by_id(b, id);
      const btf_var_secinfo *vs = btf_var_secinfos(sec);
      for (unsigned j = 0; j < btf_vlen(sec); j++, vs++) {
        const btf_type *var = btf__type_by_id(b, vs->type);
        if (!var || !btf_is_var(var)) continue;
        vars.push_back({btf__name_by_offset(b, var->name_off), dot, m, vs->offset, vs->size});
      }
    }
    return vars;
  }

  Napi::Value Globals(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!Usable(env)) return env.Undefined();
    Napi::Array out = Napi::Array::New(env);
    uint32_t i = 0;
    for (const GlobalVar &v : CollectGlobals()) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", v.name);
      o.Set("section", v.section);
      o.Set("offset", v.offset);
      o.Set("size", v.size);
      out.Set(i++, o);
    }
    return out;
  }

  // setGlobal(name, bytes): bytes must be exactly the variable's size.
  Napi::Value SetGlobal(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!ArgCheck(info, 2) || !NotLoaded(env, "set global")) return env.Undefined();
    std::string name = info[0].As<Napi::String>();
    Napi::Buffer<uint8_t> val = info[1].As<Napi::Buffer<uint8_t>>();
    for (const GlobalVar &v : CollectGlobals()) {
      if (v.name != name) continue;
      if (val.Length() != v.size)
        THROW_ERRNO(env, "set global", EINVAL, env.Undefined());
      size_t sz = 0;
      const void *init = bpf_map__initial_value(v.map, &sz);
      if (!init || v.offset + v.size > sz) THROW_ERRNO(env, "set global", EINVAL, env.Undefined());
      std::vector<uint8_t> data(static_cast<const uint8_t *>(init), static_cast<const uint8_t *>(init) + sz);
      memcpy(data.data() + v.offset, val.Data(), v.size);
      int err = bpf_map__set_initial_value(v.map, data.data(), sz);
      if (err) THROW_ERRNO(env, "bpf_map__set_initial_value", err, env.Undefined());
      return env.Undefined();
    }
    MakeError(env, "set global", ENOENT, "no global variable named '" + name + "'").ThrowAsJavaScriptException();
    return env.Undefined();
  }

  // A map's size attribute before load, (map name, value): libbpf's setter,
  // then the value as libbpf keeps it (it may round it up).
  Napi::Value SetMapAttr(const Napi::CallbackInfo &info, const char *op, int (*set)(bpf_map *, __u32), __u32 (*get)(const bpf_map *)) {
    Napi::Env env = info.Env();
    if (!ArgCheck(info, 2) || !NotLoaded(env, op)) return env.Undefined();
    bpf_map *m = FindMap(env, info[0].As<Napi::String>(), op);
    if (!m) return env.Undefined();
    int err = set(m, info[1].As<Napi::Number>().Uint32Value());
    if (err) THROW_ERRNO(env, op, err, env.Undefined());
    return Napi::Number::New(env, get(m));
  }

  Napi::Value SetMaxEntries(const Napi::CallbackInfo &info) {
    return SetMapAttr(info, "bpf_map__set_max_entries", bpf_map__set_max_entries, bpf_map__max_entries);
  }

  Napi::Value SetValueSize(const Napi::CallbackInfo &info) {
    return SetMapAttr(info, "bpf_map__set_value_size", bpf_map__set_value_size, bpf_map__value_size);
  }

  // At load, libbpf reuses a compatible map pinned at the path, or creates the
  // map and pins it there.
  Napi::Value SetPinPath(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!ArgCheck(info, 2) || !NotLoaded(env, "bpf_map__set_pin_path")) return env.Undefined();
    bpf_map *m = FindMap(env, info[0].As<Napi::String>(), "bpf_map__set_pin_path");
    if (!m) return env.Undefined();
    std::string path = info[1].As<Napi::String>();
    int err = bpf_map__set_pin_path(m, path.c_str());
    if (err) THROW_ERRNO(env, "bpf_map__set_pin_path", err, env.Undefined());
    return env.Undefined();
  }

  Napi::Value Load(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!NotLoaded(env, "bpf_object__load")) return env.Undefined();
    LogScope scope;
    int err = bpf_object__load(obj_);
    if (err) {
      MakeError(env, "bpf_object__load", err).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    loaded_ = true;
    return env.Undefined();
  }

  Napi::Value MapFd(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!ArgCheck(info, 1) || !Usable(env)) return env.Undefined();
    bpf_map *m = FindMap(env, info[0].As<Napi::String>(), "map fd");
    if (!m) return env.Undefined();
    return Napi::Number::New(env, bpf_map__fd(m));
  }

  Napi::Value ProgramFd(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!ArgCheck(info, 1) || !Usable(env)) return env.Undefined();
    std::string name = info[0].As<Napi::String>();
    bpf_program *p = bpf_object__find_program_by_name(obj_, name.c_str());
    if (!p) THROW_ERRNO(env, "program fd", ENOENT, env.Undefined());
    return Napi::Number::New(env, bpf_program__fd(p));
  }

  Napi::Value Close(const Napi::CallbackInfo &info) {
    if (obj_) bpf_object__close(obj_);
    obj_ = nullptr;
    return info.Env().Undefined();
  }
};

// ---------------------------------------------------------------------------
// Map operations on file descriptors. Lookups of a missing key return
// undefined and deletes of one return false: absence is not an error.

Napi::Value MapLookup(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!ArgCheck(info, 3)) return env.Undefined();
  int fd = FdArg(info, 0);
  Napi::Buffer<uint8_t> key = info[1].As<Napi::Buffer<uint8_t>>();
  uint32_t vsize = info[2].As<Napi::Number>().Uint32Value();
  Napi::Buffer<uint8_t> val = Napi::Buffer<uint8_t>::New(env, vsize);
  if (bpf_map_lookup_elem(fd, key.Data(), val.Data())) {
    if (errno == ENOENT) return env.Undefined();
    THROW_ERRNO(env, "bpf_map_lookup_elem", errno, env.Undefined());
  }
  return val;
}

Napi::Value MapUpdate(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!ArgCheck(info, 4)) return env.Undefined();
  Napi::Buffer<uint8_t> key = info[1].As<Napi::Buffer<uint8_t>>();
  Napi::Buffer<uint8_t> val = info[2].As<Napi::Buffer<uint8_t>>();
  if (bpf_map_update_elem(FdArg(info, 0), key.Data(), val.Data(), info[3].As<Napi::Number>().Int64Value()))
    THROW_ERRNO(env, "bpf_map_update_elem", errno, env.Undefined());
  return env.Undefined();
}

Napi::Value MapDelete(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!ArgCheck(info, 2)) return env.Undefined();
  Napi::Buffer<uint8_t> key = info[1].As<Napi::Buffer<uint8_t>>();
  if (bpf_map_delete_elem(FdArg(info, 0), key.Data())) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    THROW_ERRNO(env, "bpf_map_delete_elem", errno, env.Undefined());
  }
  return Napi::Boolean::New(env, true);
}

// mapNextKey(fd, key | null, keySize) -> next key, or undefined at the end.
Napi::Value MapNextKey(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!ArgCheck(info, 3)) return env.Undefined();
  uint32_t ksize = info[2].As<Napi::Number>().Uint32Value();
  Napi::Buffer<uint8_t> next = Napi::Buffer<uint8_t>::New(env, ksize);
  const void *cur = info[1].IsBuffer() ? info[1].As<Napi::Buffer<uint8_t>>().Data() : nullptr;
  if (bpf_map_get_next_key(FdArg(info, 0), cur, next.Data())) {
    if (errno == ENOENT) return env.Undefined();
    THROW_ERRNO(env, "bpf_map_get_next_key", errno, env.Undefined());
  }
  return next;
}

// mapLookupBatch(fd, token | null, keySize, valueSize, max) ->
//   { keys, values, count, token, done }
Napi::Value MapLookupBatch(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!ArgCheck(info, 5)) return env.Undefined();
  int fd = FdArg(info, 0);
  uint32_t ksize = info[2].As<Napi::Number>().Uint32Value();
  uint32_t vsize = info[3].As<Napi::Number>().Uint32Value();
  uint32_t max = info[4].As<Napi::Number>().Uint32Value();
  // The batch token is opaque and map-specific; a key-sized buffer (at least
  // 8 bytes) holds it for every map type that supports batches.
  uint32_t tsize = std::max<uint32_t>(ksize, 8);
  Napi::Buffer<uint8_t> token = Napi::Buffer<uint8_t>::New(env, tsize);
  Napi::Buffer<uint8_t> keys = Napi::Buffer<uint8_t>::New(env, static_cast<size_t>(ksize) * max);
  Napi::Buffer<uint8_t> values = Napi::Buffer<uint8_t>::New(env, static_cast<size_t>(vsize) * max);
  void *in = nullptr;
  if (info[1].IsBuffer()) in = info[1].As<Napi::Buffer<uint8_t>>().Data();
  __u32 count = max;
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  int ret = bpf_map_lookup_batch(fd, in, token.Data(), keys.Data(), values.Data(), &count, &opts);
  bool done = false;
  if (ret) {
    if (errno != ENOENT) THROW_ERRNO(env, "bpf_map_lookup_batch", errno, env.Undefined());
    done = true;
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("keys", keys);
  o.Set("values", values);
  o.Set("count", Napi::Number::New(env, count));
  o.Set("token", token);
  o.Set("done", done);
  return o;
}

// mapUpdateBatch(fd, keys, values, count, flags) -> count applied
Napi::Value MapUpdateBatch(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!ArgCheck(info, 5)) return env.Undefined();
  Napi::Buffer<uint8_t> keys = info[1].As<Napi::Buffer<uint8_t>>();
  Napi::Buffer<uint8_t> values = info[2].As<Napi::Buffer<uint8_t>>();
  __u32 count = info[3].As<Napi::Number>().Uint32Value();
  LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = static_cast<__u64>(info[4].As<Napi::Number>().Int64Value()));
  if (bpf_map_update_batch(FdArg(info, 0), keys.Data(), values.Data(), &count, &opts))
    THROW_ERRNO(env, "bpf_map_update_batch", errno, env.Undefined());
  return Napi::Number::New(env, count);
}

// mapDeleteBatch(fd, keys, count) -> count deleted. The kernel stops at the
// first key that is not in the map (ENOENT) and reports how many keys it
// deleted before it; absence is not an error here either, so that key is
// skipped and the batch goes on with the keys after it.
Napi::Value MapDeleteBatch(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!ArgCheck(info, 3)) return env.Undefined();
  Napi::Buffer<uint8_t> keys = info[1].As<Napi::Buffer<uint8_t>>();
  uint32_t total = info[2].As<Napi::Number>().Uint32Value();
  if (total == 0) return Napi::Number::New(env, 0);
  size_t ksize = keys.Length() / total;
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  uint32_t done = 0, deleted = 0;
  while (done < total) {
    __u32 count = total - done;
    int ret = bpf_map_delete_batch(FdArg(info, 0), keys.Data() + done * ksize, &count, &opts);
    if (ret && errno != ENOENT) THROW_ERRNO(env, "bpf_map_delete_batch", errno, env.Undefined());
    deleted += count;
    if (!ret) break;
    done += count + 1;
  }
  return Napi::Number::New(env, deleted);
}

// ---------------------------------------------------------------------------
// Object info, pinning, descriptors.

Napi::Value MapInfo(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!ArgCheck(info, 1)) return env.Undefined();
  bpf_map_info mi = {};
  __u32 len = sizeof(mi);
  if (bpf_obj_get_info_by_fd(FdArg(info, 0), &mi, &len))
    THROW_ERRNO(env, "bpf_obj_get_info_by_fd", errno, env.Undefined());
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", mi.id);
  o.Set("name", mi.name);
  o.Set("type", mi.type);
  o.Set("keySize", mi.key_size);
  o.Set("valueSize", mi.value_size);
  o.Set("maxEntries", mi.max_entries);
  o.Set("flags", mi.map_flags);
  return o;
}

Napi::Value ProgInfo(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!ArgCheck(info, 1)) return env.Undefined();
  bpf_prog_info pi = {};
  __u32 len = sizeof(pi);
  if (bpf_obj_get_info_by_fd(FdArg(info, 0), &pi, &len))
    THROW_ERRNO(env, "bpf_obj_get_info_by_fd", errno, env.Undefined());
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", pi.id);
  o.Set("name", pi.name);
  o.Set("type", pi.type);
  o.Set("tag", Napi::Buffer<uint8_t>::Copy(env, pi.tag, sizeof(pi.tag)));
  return o;
}

Napi::Value LinkInfo(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!ArgCheck(info, 1)) return env.Undefined();
  bpf_link_info li = {};
  __u32 len = sizeof(li);
  if (bpf_obj_get_info_by_fd(FdArg(info, 0), &li, &len))
    THROW_ERRNO(env, "bpf_obj_get_info_by_fd", errno, env.Undefined());
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", li.id);
  o.Set("type", li.type);
  o.Set("progId", li.prog_id);
  if (li.type == BPF_LINK_TYPE_XDP) o.Set("ifindex", li.xdp.ifindex);
  return o;
}

Napi::Value ObjPin(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!ArgCheck(info, 2)) return env.Undefined();
  std::string path = info[1].As<Napi::String>();
  if (bpf_obj_pin(FdArg(info, 0), path.c_str()))
    MakeError(env, "bpf_obj_pin", errno, path).ThrowAsJavaScriptException();
  return env.Undefined();
}

Napi::Value ObjGet(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!ArgCheck(info, 1)) return env.Undefined();
  std::string path = info[0].As<Napi::String>();
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) {
    MakeError(env, "bpf_obj_get", errno, path).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

Napi::Value CloseFd(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!ArgCheck(info, 1)) return env.Undefined();
  if (close(FdArg(info, 0))) THROW_ERRNO(env, "close", errno, env.Undefined());
  return env.Undefined();
}

Napi::Value DupFd(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!ArgCheck(info, 1)) return env.Undefined();
  int fd = fcntl(FdArg(info, 0), F_DUPFD_CLOEXEC, 3);
  if (fd < 0) THROW_ERRNO(env, "fcntl(F_DUPFD_CLOEXEC)", errno, env.Undefined());
  return Napi::Number::New(env, fd);
}

// ---------------------------------------------------------------------------
// Programs: BPF_PROG_TEST_RUN.

// progTestRun(fd, data, repeat, ctx | null, dataOutSize) -> { retval, durationNs, dataOut, ctxOut }
Napi::Value ProgTestRun(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!ArgCheck(info, 5)) return env.Undefined();
  Napi::Buffer<uint8_t> data = info[1].As<Napi::Buffer<uint8_t>>();
  uint32_t out_size = info[4].As<Napi::Number>().Uint32Value();
  std::vector<uint8_t> out(out_size);
  std::vector<uint8_t> ctx_out;
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = data.Data(), .data_out = out.data(),
              .data_size_in = static_cast<__u32>(data.Length()), .data_size_out = out_size,
              .repeat = info[2].As<Napi::Number>().Int32Value());
  if (info[3].IsBuffer()) {
    Napi::Buffer<uint8_t> ctx = info[3].As<Napi::Buffer<uint8_t>>();
    ctx_out.resize(ctx.Length());
    opts.ctx_in = ctx.Data();
    opts.ctx_size_in = static_cast<__u32>(ctx.Length());
    opts.ctx_out = ctx_out.data();
    opts.ctx_size_out = static_cast<__u32>(ctx_out.size());
  }
  if (bpf_prog_test_run_opts(FdArg(info, 0), &opts))
    THROW_ERRNO(env, "bpf_prog_test_run_opts", errno, env.Undefined());
  Napi::Object o = Napi::Object::New(env);
  o.Set("retval", opts.retval);
  o.Set("durationNs", opts.duration);
  o.Set("dataOut", Napi::Buffer<uint8_t>::Copy(env, out.data(), std::min(opts.data_size_out, out_size)));
  if (!ctx_out.empty())
    o.Set("ctxOut", Napi::Buffer<uint8_t>::Copy(env, ctx_out.data(), opts.ctx_size_out));
  return o;
}

// ---------------------------------------------------------------------------
// XDP.

Napi::Value IfNameToIndex(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!ArgCheck(info, 1)) return env.Undefined();
  std::string name = info[0].As<Napi::String>();
  unsigned idx = if_nametoindex(name.c_str());
  if (!idx) {
    MakeError(env, "if_nametoindex", errno, name).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, idx);
}

Napi::Value IfIndexToName(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!ArgCheck(info, 1)) return env.Undefined();
  char buf[IF_NAMESIZE];
  if (!if_indextoname(info[0].As<Napi::Number>().Uint32Value(), buf)) return env.Undefined();
  return Napi::String::New(env, buf);
}

// linkCreateXdp(progFd, ifindex, xdpFlags) -> link fd
Napi::Value LinkCreateXdp(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!ArgCheck(info, 3)) return env.Undefined();
  LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = info[2].As<Napi::Number>().Uint32Value());
  int fd = bpf_link_create(FdArg(info, 0), FdArg(info, 1), BPF_XDP, &opts);
  if (fd < 0) THROW_ERRNO(env, "bpf_link_create", errno, env.Undefined());
  return Napi::Number::New(env, fd);
}

Napi::Value LinkUpdate(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!ArgCheck(info, 2)) return env.Undefined();
  if (bpf_link_update(FdArg(info, 0), FdArg(info, 1), nullptr))
    THROW_ERRNO(env, "bpf_link_update", errno, env.Undefined());
  return env.Undefined();
}

Napi::Value LinkDetach(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!ArgCheck(info, 1)) return env.Undefined();
  if (bpf_link_detach(FdArg(info, 0))) THROW_ERRNO(env, "bpf_link_detach", errno, env.Undefined());
  return env.Undefined();
}

// xdpQuery(ifindex) -> { attachMode, progId, driverProgId, genericProgId, offloadProgId }
Napi::Value XdpQuery(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!ArgCheck(info, 1)) return env.Undefined();
  LIBBPF_OPTS(bpf_xdp_query_opts, opts);
  LogScope scope;
  int err = bpf_xdp_query(FdArg(info, 0), 0, &opts);
  if (err) THROW_ERRNO(env, "bpf_xdp_query", err, env.Undefined());
  Napi::Object o = Napi::Object::New(env);
  o.Set("attachMode", opts.attach_mode);
  o.Set("progId", opts.prog_id);
  o.Set("driverProgId", opts.drv_prog_id);
  o.Set("genericProgId", opts.skb_prog_id);
  o.Set("offloadProgId", opts.hw_prog_id);
  return o;
}

// ---------------------------------------------------------------------------
// Clocks and machine facts.

// clock_gettime or clock_getres of the clock id in info[0], as BigInt nanoseconds.
Napi::Value ClockCall(const Napi::CallbackInfo &info, int (*fn)(clockid_t, timespec *), const char *op) {
  Napi::Env env = info.Env();
  if (!ArgCheck(info, 1)) return env.Undefined();
  timespec ts;
  if (fn(info[0].As<Napi::Number>().Int32Value(), &ts)) THROW_ERRNO(env, op, errno, env.Undefined());
  return Napi::BigInt::New(env, static_cast<uint64_t>(static_cast<unsigned long>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec)));
}

Napi::Value ClockNs(const Napi::CallbackInfo &info) { return ClockCall(info, clock_gettime, "clock_gettime"); }

Napi::Value ClockResolutionNs(const Napi::CallbackInfo &info) { return ClockCall(info, clock_getres, "clock_getres"); }

Napi::Value PossibleCpus(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int n = libbpf_num_possible_cpus();
  if (n < 0) THROW_ERRNO(env, "libbpf_num_possible_cpus", n, env.Undefined());
  return Napi::Number::New(env, n);
}

// ---------------------------------------------------------------------------
// RingBuffer: libbpf's ring_buffer driven by libuv. The ring buffer's epoll fd
// is watched by uv_poll on the event loop (no thread, no busy polling); when
// it becomes readable every available record is consumed and handed to one
// JS callback as a single Buffer. With a fixed record size the records are
// packed back to back; otherwise each is prefixed by its u32 length and
// padded to 8 bytes.
//
// Coalescing (start(coalesceMs) with coalesceMs > 0): after a wake-up that
// delivered records, the reader stops watching the fd and drains the ring
// again coalesceMs later, as long as records keep coming; once a drain finds
// the ring empty it watches the fd again. An idle reader still wakes at the
// first record (a lone SYN is not held back), while a steady stream costs one
// wake-up and one JS call per interval instead of one per few records: every
// record the kernel commits to an empty ring raises a wake-up (an irq_work,
// several microseconds on a VM), and a reader that keeps up empties the ring
// every time.
//
// Sink (setSink(buffer, capacity, cursor), fixed record size only): records
// read by the event loop are written straight into a circular array of
// `capacity` records that JS owns (a queue), from record cursor[0] (mod
// capacity), at most cursor[1] of them; records beyond that are consumed and
// counted as dropped. The callback then gets (null, null, written, dropped):
// no Buffer is made per wake-up and the records are copied once, from the
// ring to their place in the queue. consume() still returns a copy.

class RingBuffer : public Napi::ObjectWrap<RingBuffer> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "RingBuffer",
                       {
                           InstanceMethod("start", &RingBuffer::Start),
                           InstanceMethod("stop", &RingBuffer::Stop),
                           InstanceMethod("consume", &RingBuffer::Consume),
                           InstanceMethod("ref", &RingBuffer::Ref_),
                           InstanceMethod("unref", &RingBuffer::Unref_),
                           InstanceMethod("stats", &RingBuffer::Stats),
                           InstanceMethod("close", &RingBuffer::Close),
                           InstanceMethod("setSink", &RingBuffer::SetSink),
                       });
  }

  // new RingBuffer(mapFd, recordSize, onBatch(buffer, count))
  explicit RingBuffer(const Napi::CallbackInfo &info) : Napi::ObjectWrap<RingBuffer>(info) {
    Napi::Env env = info.Env();
    if (!ArgCheck(info, 3)) return;
    record_size_ = info[1].As<Napi::Number>().Uint32Value();
    callback_ = Napi::Persistent(info[2].As<Napi::Function>());
    LogScope scope;
    rb_ = ring_buffer__new(FdArg(info, 0), &RingBuffer::OnSample, this, nullptr);
    if (!rb_) {
      MakeError(env, "ring_buffer__new", errno).ThrowAsJavaScriptException();
      return;
    }
    napi_get_uv_event_loop(env, &loop_);
  }

  ~RingBuffer() override { Release(); }

 private:
  ring_buffer *rb_ = nullptr;
  uv_loop_t *loop_ = nullptr;
  uv_poll_t *poll_ = nullptr;
  uv_timer_t *timer_ = nullptr;
  uint64_t coalesce_ms_ = 0;
  bool referenced_ = true;
  uint32_t record_size_ = 0;
  std::vector<uint8_t> batch_;
  uint64_t batch_count_ = 0;
  uint64_t records_ = 0;
  uint64_t batches_ = 0;
  uint64_t wrong_size_ = 0;
  Napi::FunctionReference callback_;
  // The sink (see above): its buffer and cursor stay referenced while set.
  Napi::ObjectReference sink_buffer_;
  Napi::ObjectReference sink_cursor_;
  uint8_t *sink_data_ = nullptr;
  uint32_t sink_capacity_ = 0;
  uint32_t *sink_cursor_data_ = nullptr;
  // Set while the event loop drains into the sink: where this drain writes.
  bool into_sink_ = false;
  uint32_t sink_tail_ = 0;
  uint32_t sink_free_ = 0;
  uint32_t sink_written_ = 0;
  uint32_t sink_dropped_ = 0;

  static int OnSample(void *ctx, void *data, size_t size) {
    RingBuffer *self = static_cast<RingBuffer *>(ctx);
    if (self->into_sink_) {
      if (size != self->record_size_) {
        self->wrong_size_++;
        return 0;
      }
      if (self->sink_written_ < self->sink_free_) {
        uint64_t slot = (static_cast<uint64_t>(self->sink_tail_) + self->sink_written_) % self->sink_capacity_;
        memcpy(self->sink_data_ + slot * self->record_size_, data, size);
        self->sink_written_++;
      } else {
        self->sink_dropped_++;
      }
      self->batch_count_++;
      return 0;
    }
    if (self->record_size_) {
      if (size != self->record_size_) {
        self->wrong_size_++;
        return 0;
      }
      const uint8_t *p = static_cast<const uint8_t *>(data);
      self->batch_.insert(self->batch_.end(), p, p + size);
    } else {
      uint32_t len = static_cast<uint32_t>(size);
      size_t at = self->batch_.size();
      size_t padded = (sizeof(len) + size + 7) & ~static_cast<size_t>(7);
      self->batch_.resize(at + padded, 0);
      memcpy(self->batch_.data() + at, &len, sizeof(len));
      memcpy(self->batch_.data() + at + sizeof(len), data, size);
    }
    self->batch_count_++;
    return 0;
  }

  // Drains the ring into batch_; returns the number of records or -errno.
  int Drain() {
    batch_.clear();
    batch_count_ = 0;
    int n = ring_buffer__consume(rb_);
    if (n < 0) return n;
    records_ += batch_count_;
    if (batch_count_) batches_++;
    return static_cast<int>(batch_count_);
  }

  // Drains the ring and hands what was there to JS; returns the number of records (0 on an error, reported to JS).
  int DrainAndDeliver() {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (sink_data_) {
      into_sink_ = true;
      sink_tail_ = sink_cursor_data_[0];
      sink_free_ = std::min(sink_cursor_data_[1], sink_capacity_);
      sink_written_ = 0;
      sink_dropped_ = 0;
    }
    int n = Drain();
    into_sink_ = false;
    if (n < 0) {
      Napi::Error e = MakeError(env, "ring_buffer__consume", n);
      callback_.MakeCallback(Value(), {e.Value(), env.Null(), Napi::Number::New(env, 0)});
      return 0;
    }
    if (n == 0) return 0;
    if (sink_data_) {
      callback_.MakeCallback(Value(), {env.Null(), env.Null(), Napi::Number::New(env, sink_written_),
                                       Napi::Number::New(env, sink_dropped_)});
      return n;
    }
    Napi::Buffer<uint8_t> buf = Napi::Buffer<uint8_t>::Copy(env, batch_.data(), batch_.size());
    callback_.MakeCallback(Value(), {env.Null(), buf, Napi::Number::New(env, n)});
    return n;
  }

  static void OnReadable(uv_poll_t *handle, int status, int events) {
    RingBuffer *self = static_cast<RingBuffer *>(handle->data);
    if (status < 0) {
      Napi::Env env = self->Env();
      Napi::HandleScope scope(env);
      Napi::Error e = MakeError(env, "uv_poll", -status);
      self->callback_.MakeCallback(self->Value(), {e.Value(), env.Null(), Napi::Number::New(env, 0)});
      return;
    }
    int n = self->DrainAndDeliver();
    // The callback may have stopped or closed the reader.
    if (n > 0 && self->coalesce_ms_ > 0 && self->poll_ && self->timer_) {
      uv_poll_stop(self->poll_);
      uv_timer_start(self->timer_, &RingBuffer::OnCoalesced, self->coalesce_ms_, 0);
    }
  }

  static void OnCoalesced(uv_timer_t *handle) {
    RingBuffer *self = static_cast<RingBuffer *>(handle->data);
    int n = self->DrainAndDeliver();
    if (!self->poll_ || !self->timer_) return;
    if (n > 0) {
      uv_timer_start(self->timer_, &RingBuffer::OnCoalesced, self->coalesce_ms_, 0);
    } else {
      // Idle again: the next record wakes the reader at once. Records that
      // came in between keep the fd readable, so this fires right away.
      uv_poll_start(self->poll_, UV_READABLE, &RingBuffer::OnReadable);
    }
  }

  // start(coalesceMs = 0)
  Napi::Value Start(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!rb_) THROW_ERRNO(env, "ring buffer start", EBADF, env.Undefined());
    if (poll_) return env.Undefined();
    coalesce_ms_ = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Uint32Value() : 0;
    if (coalesce_ms_ > 0) {
      timer_ = new uv_timer_t;
      uv_timer_init(loop_, timer_);
      timer_->data = this;
      if (!referenced_) uv_unref(reinterpret_cast<uv_handle_t *>(timer_));
    }
    poll_ = new uv_poll_t;
    int err = uv_poll_init(loop_, poll_, ring_buffer__epoll_fd(rb_));
    if (err) {
      delete poll_;
      poll_ = nullptr;
      ClosePoll();  // the timer
      THROW_ERRNO(env, "uv_poll_init", err, env.Undefined());
    }
    poll_->data = this;
    err = uv_poll_start(poll_, UV_READABLE, &RingBuffer::OnReadable);
    if (err) {
      ClosePoll();
      THROW_ERRNO(env, "uv_poll_start", err, env.Undefined());
    }
    if (!referenced_) uv_unref(reinterpret_cast<uv_handle_t *>(poll_));
    // While polling, the JS object must outlive the handle that points to it.
    Ref();
    return env.Undefined();
  }

  void ClosePoll() {
    if (timer_) {
      uv_timer_stop(timer_);
      uv_close(reinterpret_cast<uv_handle_t *>(timer_), [](uv_handle_t *h) { delete reinterpret_cast<uv_timer_t *>(h); });
      timer_ = nullptr;
    }
    if (!poll_) return;
    uv_poll_stop(poll_);
    uv_close(reinterpret_cast<uv_handle_t *>(poll_), [](uv_handle_t *h) { delete reinterpret_cast<uv_poll_t *>(h); });
    poll_ = nullptr;
  }

  Napi::Value Stop(const Napi::CallbackInfo &info) {
    if (poll_) {
      ClosePoll();
      Unref();
    }
    return info.Env().Undefined();
  }

  // Synchronous drain: returns { buffer, count } (buffer empty when count is 0).
  Napi::Value Consume(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!rb_) THROW_ERRNO(env, "ring_buffer__consume", EBADF, env.Undefined());
    int n = Drain();
    if (n < 0) THROW_ERRNO(env, "ring_buffer__consume", n, env.Undefined());
    Napi::Object o = Napi::Object::New(env);
    o.Set("buffer", Napi::Buffer<uint8_t>::Copy(env, batch_.data(), batch_.size()));
    o.Set("count", n);
    return o;
  }

  Napi::Value Ref_(const Napi::CallbackInfo &info) {
    referenced_ = true;
    if (poll_) uv_ref(reinterpret_cast<uv_handle_t *>(poll_));
    if (timer_) uv_ref(reinterpret_cast<uv_handle_t *>(timer_));
    return info.Env().Undefined();
  }

  Napi::Value Unref_(const Napi::CallbackInfo &info) {
    referenced_ = false;
    if (poll_) uv_unref(reinterpret_cast<uv_handle_t *>(poll_));
    if (timer_) uv_unref(reinterpret_cast<uv_handle_t *>(timer_));
    return info.Env().Undefined();
  }

  // setSink(buffer, capacity, cursor: Uint32Array [tail, free]); setSink(null) goes back to a Buffer per wake-up.
  Napi::Value SetSink(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!rb_) THROW_ERRNO(env, "ring buffer sink", EBADF, env.Undefined());
    sink_buffer_.Reset();
    sink_cursor_.Reset();
    sink_data_ = nullptr;
    sink_cursor_data_ = nullptr;
    sink_capacity_ = 0;
    if (info.Length() < 1 || info[0].IsNull() || info[0].IsUndefined()) return env.Undefined();
    if (!record_size_) {
      Napi::TypeError::New(env, "a sink needs a fixed record size").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (info.Length() < 3 || !info[0].IsBuffer() || !info[1].IsNumber() || !info[2].IsTypedArray() ||
        info[2].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) {
      Napi::TypeError::New(env, "setSink(buffer, capacity, cursor: Uint32Array)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Buffer<uint8_t> buf = info[0].As<Napi::Buffer<uint8_t>>();
    uint32_t capacity = info[1].As<Napi::Number>().Uint32Value();
    Napi::Uint32Array cursor = info[2].As<Napi::Uint32Array>();
    if (capacity == 0 || buf.Length() / record_size_ < capacity || cursor.ElementLength() < 2) {
      Napi::RangeError::New(env, "sink: capacity must be 1.. buffer length / record size, cursor 2 elements").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    sink_buffer_ = Napi::Persistent(buf.As<Napi::Object>());
    sink_cursor_ = Napi::Persistent(cursor.As<Napi::Object>());
    sink_data_ = buf.Data();
    sink_capacity_ = capacity;
    sink_cursor_data_ = cursor.Data();
    return env.Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("records", Napi::Number::New(env, static_cast<double>(records_)));
    o.Set("batches", Napi::Number::New(env, static_cast<double>(batches_)));
    o.Set("wrongSize", Napi::Number::New(env, static_cast<double>(wrong_size_)));
    return o;
  }

  void Release() {
    ClosePoll();
    if (rb_) ring_buffer__free(rb_);
    rb_ = nullptr;
  }

  Napi::Value Close(const Napi::CallbackInfo &info) {
    bool was_polling = poll_ != nullptr;
    Release();
    if (was_polling) Unref();
    return info.Env().Undefined();
  }
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  libbpf_set_print(capture_print);
  libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
  exports.Set("BpfObject", BpfObject::Init(env));
  exports.Set("RingBuffer", RingBuffer::Init(env));
  exports.Set("mapLookup", Napi::Function::New(env, MapLookup));
  exports.Set("mapUpdate", Napi::Function::New(env, MapUpdate));
  exports.Set("mapDelete", Napi::Function::New(env, MapDelete));
  exports.Set("mapNextKey", Napi::Function::New(env, MapNextKey));
  exports.Set("mapLookupBatch", Napi::Function::New(env, MapLookupBatch));
  exports.Set("mapUpdateBatch", Napi::Function::New(env, MapUpdateBatch));
  exports.Set("mapDeleteBatch", Napi::Function::New(env, MapDeleteBatch));
  exports.Set("mapInfo", Napi::Function::New(env, MapInfo));
  exports.Set("progInfo", Napi::Function::New(env, ProgInfo));
  exports.Set("linkInfo", Napi::Function::New(env, LinkInfo));
  exports.Set("objPin", Napi::Function::New(env, ObjPin));
  exports.Set("objGet", Napi::Function::New(env, ObjGet));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  exports.Set("dupFd", Napi::Function::New(env, DupFd));
  exports.Set("progTestRun", Napi::Function::New(env, ProgTestRun));
  exports.Set("ifNameToIndex", Napi::Function::New(env, IfNameToIndex));
  exports.Set("ifIndexToName", Napi::Function::New(env, IfIndexToName));
  exports.Set("linkCreateXdp", Napi::Function::New(env, LinkCreateXdp));
  exports.Set("linkUpdate", Napi::Function::New(env, LinkUpdate));
  exports.Set("linkDetach", Napi::Function::New(env, LinkDetach));
  exports.Set("xdpQuery", Napi::Function::New(env, XdpQuery));
  exports.Set("clockNs", Napi::Function::New(env, ClockNs));
  exports.Set("clockResolutionNs", Napi::Function::New(env, ClockResolutionNs));
  exports.Set("possibleCpus", Napi::Function::New(env, PossibleCpus));
  return exports;
}

}  // namespace

NODE_API_MODULE(bpf_ts, Init)
