#include "cli/DaemonClient.h"

#include <cstdarg>
#include <cstring>

namespace suture {

namespace {

// A whole update may take a while: not D-Bus's default 25 s.
constexpr std::uint64_t call_timeout_us = 10 * 60 * 1000000ULL;

// Does anyone own sutured's name on `connection`?
bool daemon_present(sd_bus* connection) {
    bus::BusError error;
    sd_bus_message* raw_reply = nullptr;
    int result = sd_bus_call_method(connection, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                    "org.freedesktop.DBus", "NameHasOwner", error.get(),
                                    &raw_reply, "s", bus::name);
    bus::Message reply(raw_reply);
    int owned = 0;
    return result >= 0 && sd_bus_message_read(reply.get(), "b", &owned) >= 0 && owned != 0;
}

}  // namespace

std::optional<DaemonClient> DaemonClient::connect() {
    sd_bus* raw = nullptr;
    if (sd_bus_open_system(&raw) < 0) {
        return std::nullopt;  // no system bus: no daemon
    }
    bus::Bus connection(raw);
    if (!daemon_present(connection.get())) {
        return std::nullopt;
    }
    return DaemonClient(std::move(connection));
}

Result<nlohmann::json> DaemonClient::call(const char* method, bool returns_document,
                                          const char* types, ...) {
    std::string subject = std::string("sutured: ") + method;
    sd_bus_message* raw_request = nullptr;
    int result = sd_bus_message_new_method_call(bus_.get(), &raw_request, bus::name, bus::path,
                                                bus::interface, method);
    bus::Message request(raw_request);
    if (result >= 0) {
        // Do not start sutured through bus activation just for this call.
        sd_bus_message_set_auto_start(request.get(), 0);
        va_list arguments;
        va_start(arguments, types);
        result = sd_bus_message_appendv(request.get(), types, arguments);
        va_end(arguments);
    }
    bus::BusError error;
    sd_bus_message* raw_reply = nullptr;
    if (result >= 0) {
        result = sd_bus_call(bus_.get(), request.get(), call_timeout_us, error.get(), &raw_reply);
    }
    bus::Message reply(raw_reply);
    if (result < 0) {
        bool denied = sd_bus_error_has_name(error.get(), SD_BUS_ERROR_ACCESS_DENIED);
        bool locked = sd_bus_error_has_name(error.get(), bus::error_locked);
        std::string message =
            error.get()->message != nullptr ? error.get()->message : std::strerror(-result);
        return fail(denied   ? ErrorCode::permission_denied
                    : locked ? ErrorCode::locked
                             : ErrorCode::io,
                    subject + ": " + message);
    }
    if (!returns_document) {
        return nlohmann::json::object();
    }
    const char* text = nullptr;
    if (sd_bus_message_read(reply.get(), "s", &text) < 0 || text == nullptr) {
        return fail(ErrorCode::bad_format, subject + ": the reply holds no document");
    }
    nlohmann::json document = nlohmann::json::parse(text, nullptr, false);
    if (document.is_discarded()) {
        return fail(ErrorCode::bad_format, subject + ": the reply is not JSON");
    }
    return document;
}

}  // namespace suture
