#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "base/Error.h"

namespace suture {

// The CLI's side of sutured's D-Bus API (data/org.suture.Suture1.xml).
// Each call returns the daemon's JSON document, nullopt when no daemon
// answers (no system bus, or nobody owns org.suture.Suture1: the caller then
// runs the engine in-process), or an error: permission_denied when the
// daemon refuses the caller (not root, no polkit authorization).
Result<std::optional<nlohmann::json>> daemon_update(bool offline);
Result<std::optional<nlohmann::json>> daemon_apply(int pid, const std::string& patch_path);
Result<std::optional<nlohmann::json>> daemon_revert(int pid, const std::string& patch_id);
Result<std::optional<nlohmann::json>> daemon_history(unsigned limit);
// Returns true when the daemon took it (nullopt: no daemon).
Result<std::optional<bool>> daemon_set_enabled(bool enabled);

}  // namespace suture
