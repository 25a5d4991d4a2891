// sutured's D-Bus API (data/org.suture.Suture1.xml): its names, shared by
// the daemon and the CLI's client, and owning handles for sd-bus objects so
// every path unrefs them.
#pragma once

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include <memory>

namespace suture::bus {

inline constexpr const char* name = "org.suture.Suture1";
inline constexpr const char* path = "/org/suture/Suture1";
inline constexpr const char* interface = "org.suture.Suture1";
inline constexpr const char* polkit_action = "org.suture.manage";
// The D-Bus error of a method without a reply document (SetEnabled) that
// found the operation lock held (docs/state.md).
inline constexpr const char* error_locked = "org.suture.Suture1.Error.Locked";

struct CloseBus {
    void operator()(sd_bus* bus) const { sd_bus_flush_close_unref(bus); }
};
struct UnrefMessage {
    void operator()(sd_bus_message* message) const { sd_bus_message_unref(message); }
};
struct UnrefSlot {
    void operator()(sd_bus_slot* slot) const { sd_bus_slot_unref(slot); }
};
struct UnrefCreds {
    void operator()(sd_bus_creds* creds) const { sd_bus_creds_unref(creds); }
};
struct UnrefEvent {
    void operator()(sd_event* event) const { sd_event_unref(event); }
};
using Bus = std::unique_ptr<sd_bus, CloseBus>;
using Message = std::unique_ptr<sd_bus_message, UnrefMessage>;
using Slot = std::unique_ptr<sd_bus_slot, UnrefSlot>;
using Creds = std::unique_ptr<sd_bus_creds, UnrefCreds>;
using Event = std::unique_ptr<sd_event, UnrefEvent>;

// An sd_bus_error freed on every path.
class BusError {
  public:
    BusError() = default;
    ~BusError() { sd_bus_error_free(&error_); }
    BusError(const BusError&) = delete;
    BusError& operator=(const BusError&) = delete;
    sd_bus_error* get() { return &error_; }
    const sd_bus_error* get() const { return &error_; }

  private:
    sd_bus_error error_ = SD_BUS_ERROR_NULL;
};

}  // namespace suture::bus
