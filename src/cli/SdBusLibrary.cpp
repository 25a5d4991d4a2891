#include "cli/SdBusLibrary.h"

#include "base/LoadedLibrary.h"

#include <dlfcn.h>

#include <string>

namespace suture {

namespace {

constexpr const char* library_name = "libsystemd.so.0";

Result<SdBusLibrary> load() {
    // 1. The library, its symbols kept to itself.
    auto handle = open_library(library_name, "libsystemd0", "talking to sutured needs");
    if (!handle) {
        return tl::unexpected(handle.error());
    }
    // 2. Each function DaemonClient calls.
    SdBusLibrary bus{};
    bool complete =
        resolve_symbol(*handle, "sd_bus_open_system", bus.open_system) &&
        resolve_symbol(*handle, "sd_bus_flush_close_unref", bus.flush_close_unref) &&
        resolve_symbol(*handle, "sd_bus_call_method", bus.call_method) &&
        resolve_symbol(*handle, "sd_bus_call", bus.call) &&
        resolve_symbol(*handle, "sd_bus_message_new_method_call", bus.message_new_method_call) &&
        resolve_symbol(*handle, "sd_bus_message_set_auto_start", bus.message_set_auto_start) &&
        resolve_symbol(*handle, "sd_bus_message_appendv", bus.message_appendv) &&
        resolve_symbol(*handle, "sd_bus_message_read", bus.message_read) &&
        resolve_symbol(*handle, "sd_bus_message_unref", bus.message_unref) &&
        resolve_symbol(*handle, "sd_bus_error_has_name", bus.error_has_name) &&
        resolve_symbol(*handle, "sd_bus_error_free", bus.error_free);
    if (!complete) {
        ::dlclose(*handle);
        return library_too_old(library_name);
    }
    return bus;  // the handle stays open for the life of the process
}

}  // namespace

Result<const SdBusLibrary*> sd_bus_library() {
    return load_once<SdBusLibrary, load>();
}

}  // namespace suture
