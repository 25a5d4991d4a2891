#include "cli/DaemonClient.h"

#include <cstdarg>
#include <cstring>

#include "dbus/Bus.h"  // sutured's names

namespace suture {

namespace {

// A whole update may take a while: not D-Bus's default 25 s.
constexpr std::uint64_t call_timeout_us = 10 * 60 * 1000000ULL;

// An sd_bus_message unref'd on every path.
struct UnrefMessage {
    const SdBusLibrary* library;
    void operator()(sd_bus_message* message) const { library->message_unref(message); }
};
using Message = std::unique_ptr<sd_bus_message, UnrefMessage>;

// An sd_bus_error freed on every path.
class BusError {
  public:
    explicit BusError(const SdBusLibrary& library) : library_(library) {}
    ~BusError() { library_.error_free(&error_); }
    BusError(const BusError&) = delete;
    BusError& operator=(const BusError&) = delete;
    sd_bus_error* get() { return &error_; }

  private:
    const SdBusLibrary& library_;
    sd_bus_error error_ = SD_BUS_ERROR_NULL;
};

// Does anyone own sutured's name on `connection`?
bool daemon_present(const SdBusLibrary& sd, sd_bus* connection) {
    BusError error(sd);
    sd_bus_message* raw_reply = nullptr;
    int result = sd.call_method(connection, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                 "org.freedesktop.DBus", "NameHasOwner", error.get(), &raw_reply,
                                 "s", bus::name);
    Message reply(raw_reply, UnrefMessage{&sd});
    int owned = 0;
    return result >= 0 && sd.message_read(reply.get(), "b", &owned) >= 0 && owned != 0;
}

}  // namespace

std::optional<DaemonClient> DaemonClient::connect() {
    auto library = sd_bus_library();
    if (!library) {
        return std::nullopt;  // no libsystemd: no bus to reach a daemon on
    }
    const SdBusLibrary& sd = **library;
    sd_bus* raw = nullptr;
    if (sd.open_system(&raw) < 0) {
        return std::nullopt;  // no system bus: no daemon
    }
    Bus connection(raw, CloseBus{&sd});
    if (!daemon_present(sd, connection.get())) {
        return std::nullopt;
    }
    return DaemonClient(sd, std::move(connection));
}

Result<nlohmann::json> DaemonClient::call(const char* method, bool returns_document,
                                          const char* types, ...) {
    const SdBusLibrary& sd = *library_;
    std::string subject = std::string("sutured: ") + method;
    sd_bus_message* raw_request = nullptr;
    int result = sd.message_new_method_call(bus_.get(), &raw_request, bus::name, bus::path,
                                             bus::interface, method);
    Message request(raw_request, UnrefMessage{&sd});
    if (result >= 0) {
        // Do not start sutured through bus activation just for this call.
        sd.message_set_auto_start(request.get(), 0);
        va_list arguments;
        va_start(arguments, types);
        result = sd.message_appendv(request.get(), types, arguments);
        va_end(arguments);
    }
    BusError error(sd);
    sd_bus_message* raw_reply = nullptr;
    if (result >= 0) {
        result = sd.call(bus_.get(), request.get(), call_timeout_us, error.get(), &raw_reply);
    }
    Message reply(raw_reply, UnrefMessage{&sd});
    if (result < 0) {
        bool denied = sd.error_has_name(error.get(), SD_BUS_ERROR_ACCESS_DENIED);
        bool locked = sd.error_has_name(error.get(), bus::error_locked);
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
    if (sd.message_read(reply.get(), "s", &text) < 0 || text == nullptr) {
        return fail(ErrorCode::bad_format, subject + ": the reply holds no document");
    }
    nlohmann::json document = nlohmann::json::parse(text, nullptr, false);
    if (document.is_discarded()) {
        return fail(ErrorCode::bad_format, subject + ": the reply is not JSON");
    }
    return document;
}

}  // namespace suture
