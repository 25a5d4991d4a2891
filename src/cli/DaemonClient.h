#pragma once

#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "base/Error.h"
#include "cli/SdBusLibrary.h"

namespace suture {

// The CLI's side of sutured's D-Bus API (data/org.suture.Suture1.xml): one
// connection to the system bus on which sutured owns its name. sd-bus is
// reached through SdBusLibrary, loaded at the first connect().
class DaemonClient {
  public:
    // nullopt when no daemon answers: no system bus (or no libsystemd to
    // reach it), or nobody owns org.suture.Suture1 (the caller then runs
    // the engine in-process).
    static std::optional<DaemonClient> connect();

    // Calls METHOD with arguments of D-Bus signature `types`; returns its
    // document (a method without one returns an empty object). Errors:
    // permission_denied when the daemon refuses the caller (not root, no
    // polkit authorization), bad_format for a reply that is not JSON, io
    // for anything else on the bus.
    Result<nlohmann::json> call(const char* method, bool returns_document, const char* types,
                                ...);

  private:
    struct CloseBus {
        const SdBusLibrary* library;
        void operator()(sd_bus* bus) const { library->flush_close_unref(bus); }
    };
    using Bus = std::unique_ptr<sd_bus, CloseBus>;

    DaemonClient(const SdBusLibrary& library, Bus connection)
        : library_(&library), bus_(std::move(connection)) {}
    const SdBusLibrary* library_;
    Bus bus_;
};

}  // namespace suture
