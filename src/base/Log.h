#pragma once

#include <string_view>

namespace suture::log {

// Diagnostics go to stderr as "suture: LEVEL: message"; stdout is reserved for
// a command's output (tables, JSON). main() sets the level once from
// --verbose/--quiet; everything else only writes.
enum class Level { error = 0, warning = 1, info = 2, debug = 3 };

void set_level(Level level);
Level level();

void error(std::string_view message);
void warning(std::string_view message);
void info(std::string_view message);
void debug(std::string_view message);

}  // namespace suture::log
