#include "base/Log.h"

#include <atomic>
#include <cstdio>
#include <string>

namespace suture::log {

namespace {

// The one piece of process-wide state in base/: a logger that had to be
// passed through every call would add noise to every signature for no gain.
std::atomic<Level> current_level{Level::warning};

void write(Level message_level, const char* label, std::string_view message) {
    if (message_level > current_level.load(std::memory_order_relaxed)) {
        return;
    }
    std::string line = "suture: ";
    line += label;
    line += ": ";
    line += message;
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace

void set_level(Level level) {
    current_level.store(level, std::memory_order_relaxed);
}
Level level() {
    return current_level.load(std::memory_order_relaxed);
}

void error(std::string_view message) {
    write(Level::error, "error", message);
}
void warning(std::string_view message) {
    write(Level::warning, "warning", message);
}
void info(std::string_view message) {
    write(Level::info, "info", message);
}
void debug(std::string_view message) {
    write(Level::debug, "debug", message);
}

}  // namespace suture::log
