#pragma once

#include <systemd/sd-bus.h>

#include <cstdarg>
#include <cstdint>

#include "base/Error.h"

namespace suture {

// libsystemd's sd-bus, loaded when the CLI first looks for sutured rather
// than by the dynamic loader at every start: libsystemd and the libraries
// only it needs (libzstd, liblz4, libgcrypt, libgpg-error, libcap) are six
// of the CLI's shared objects, which `suture --version`, `--help` and
// `--direct` commands never use. The functions DaemonClient calls,
// resolved from "libsystemd.so.0" (Debian's libsystemd0).
struct SdBusLibrary {
    int (*open_system)(sd_bus** bus);
    sd_bus* (*flush_close_unref)(sd_bus* bus);
    int (*call_method)(sd_bus* bus, const char* destination, const char* path,
                       const char* interface, const char* member, sd_bus_error* error,
                       sd_bus_message** reply, const char* types, ...);
    int (*call)(sd_bus* bus, sd_bus_message* message, std::uint64_t timeout_us,
                sd_bus_error* error, sd_bus_message** reply);
    int (*message_new_method_call)(sd_bus* bus, sd_bus_message** message,
                                   const char* destination, const char* path,
                                   const char* interface, const char* member);
    int (*message_set_auto_start)(sd_bus_message* message, int auto_start);
    int (*message_appendv)(sd_bus_message* message, const char* types, va_list arguments);
    int (*message_read)(sd_bus_message* message, const char* types, ...);
    sd_bus_message* (*message_unref)(sd_bus_message* message);
    int (*error_has_name)(const sd_bus_error* error, const char* name);
    void (*error_free)(sd_bus_error* error);
};

// The library, loaded once per process (thread safe); later calls return
// the same table, or the same error (io), naming the library and the
// package to install.
Result<const SdBusLibrary*> sd_bus_library();

}  // namespace suture
