#include "cli/DaemonClient.h"

#include <systemd/sd-bus.h>

#include <cstdarg>
#include <cstring>

namespace suture {

namespace {

constexpr const char* name = "org.suture.Suture1";
constexpr const char* path = "/org/suture/Suture1";
constexpr const char* interface = "org.suture.Suture1";

// Errors that mean "no daemon here", not "the daemon said no".
bool means_no_daemon(const sd_bus_error& error) {
    return sd_bus_error_has_name(&error, SD_BUS_ERROR_SERVICE_UNKNOWN) ||
           sd_bus_error_has_name(&error, SD_BUS_ERROR_NAME_HAS_NO_OWNER) ||
           sd_bus_error_has_name(&error, SD_BUS_ERROR_UNKNOWN_OBJECT);
}

// Calls METHOD; `reply_type` "s" (a document) or "" (nothing).
Result<std::optional<nlohmann::json>> call(const char* method, const char* reply_type,
                                           const char* types, ...) {
    sd_bus* bus = nullptr;
    if (sd_bus_open_system(&bus) < 0) {
        return std::optional<nlohmann::json>{};  // no system bus: no daemon
    }
    // Do not start sutured through bus activation just for this call.
    sd_bus_message* request = nullptr;
    sd_bus_message* reply = nullptr;
    sd_bus_error error = SD_BUS_ERROR_NULL;
    int result = sd_bus_message_new_method_call(bus, &request, name, path, interface, method);
    if (result >= 0) {
        sd_bus_message_set_auto_start(request, 0);
        va_list arguments;
        va_start(arguments, types);
        result = sd_bus_message_appendv(request, types, arguments);
        va_end(arguments);
    }
    if (result >= 0) {
        // A whole update may take a while: no D-Bus default 25 s timeout.
        result = sd_bus_call(bus, request, 10 * 60 * 1000000ULL, &error, &reply);
    }
    Result<std::optional<nlohmann::json>> outcome = std::optional<nlohmann::json>{};
    if (result < 0) {
        if (!means_no_daemon(error)) {
            bool denied = sd_bus_error_has_name(&error, SD_BUS_ERROR_ACCESS_DENIED);
            std::string message = error.message != nullptr ? error.message : std::strerror(-result);
            outcome = fail(denied ? ErrorCode::permission_denied : ErrorCode::io,
                           std::string("sutured: ") + method + ": " + message);
        }
    } else if (std::strcmp(reply_type, "s") == 0) {
        const char* document = nullptr;
        if (sd_bus_message_read(reply, "s", &document) >= 0 && document != nullptr) {
            outcome =
                std::optional<nlohmann::json>(nlohmann::json::parse(document, nullptr, false));
        } else {
            outcome =
                fail(ErrorCode::bad_format, std::string("sutured: ") + method + ": bad reply");
        }
    } else {
        outcome = std::optional<nlohmann::json>(nlohmann::json::object());
    }
    sd_bus_error_free(&error);
    sd_bus_message_unref(reply);
    sd_bus_message_unref(request);
    sd_bus_flush_close_unref(bus);
    return outcome;
}

}  // namespace

Result<std::optional<nlohmann::json>> daemon_update(bool offline) {
    return call("Update", "s", "b", static_cast<int>(offline));
}

Result<std::optional<nlohmann::json>> daemon_apply(int pid, const std::string& patch_path) {
    return call("Apply", "s", "is", pid, patch_path.c_str());
}

Result<std::optional<nlohmann::json>> daemon_revert(int pid, const std::string& patch_id) {
    return call("Revert", "s", "is", pid, patch_id.c_str());
}

Result<std::optional<nlohmann::json>> daemon_history(unsigned limit) {
    return call("History", "s", "u", limit);
}

Result<std::optional<bool>> daemon_set_enabled(bool enabled) {
    auto result = call("SetEnabled", "", "b", static_cast<int>(enabled));
    if (!result) {
        return tl::unexpected(result.error());
    }
    return result->has_value() ? std::optional<bool>(true) : std::optional<bool>{};
}

}  // namespace suture
