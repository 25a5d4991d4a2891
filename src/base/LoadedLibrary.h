// A shared library loaded when a command first needs it rather than by the
// dynamic loader at every start (libcurl for downloads, libsystemd for the
// daemon's bus): the table of its functions is resolved once.
#pragma once

#include <dlfcn.h>

#include <mutex>
#include <optional>
#include <string>

#include "base/Error.h"

namespace suture {

// dlopen()s `name` with its symbols kept to itself; an io error says what
// needs it (`needed_for`, e.g. "downloads need"), the library and the
// Debian package that has it.
inline Result<void*> open_library(const char* name, const char* package, const char* needed_for) {
    void* handle = ::dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
        const char* why = ::dlerror();
        return fail(ErrorCode::io, std::string(needed_for) + " " + name + " (package " +
                                       package + "): " + (why != nullptr ? why : "cannot be loaded"));
    }
    return handle;
}

// `symbol` from `handle` into `slot`; false if it is missing.
template <typename Function>
bool resolve_symbol(void* handle, const char* symbol, Function*& slot) {
    slot = reinterpret_cast<Function*>(::dlsym(handle, symbol));
    return slot != nullptr;
}

// The io error for a library that lacks one of the functions suture calls.
inline tl::unexpected<Error> library_too_old(const char* name) {
    return fail(ErrorCode::io, std::string(name) + " lacks a function suture needs (too old?)");
}

// The table `Load` makes, made once per process (thread safe): later calls
// return the same table, or the same error.
template <typename Table, Result<Table> (*Load)()>
Result<const Table*> load_once() {
    static std::once_flag once;
    static std::optional<Result<Table>> loaded;
    std::call_once(once, [] { loaded = Load(); });
    if (!*loaded) {
        return tl::unexpected(loaded->error());
    }
    return &**loaded;
}

}  // namespace suture
