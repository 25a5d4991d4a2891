#include "proc/ProcessMaps.h"

#include <charconv>
#include <cstdio>

#include "base/Files.h"

namespace suture {

namespace {

constexpr std::string_view deleted_suffix = " (deleted)";

// Reads an unsigned number in `base` from the front of `text` and removes it.
template <typename Number>
bool take_number(std::string_view& text, Number& value, int base) {
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, base);
    if (ec != std::errc{} || end == text.data()) {
        return false;
    }
    text.remove_prefix(static_cast<std::size_t>(end - text.data()));
    return true;
}

bool take_char(std::string_view& text, char expected) {
    if (text.empty() || text.front() != expected) {
        return false;
    }
    text.remove_prefix(1);
    return true;
}

void skip_spaces(std::string_view& text) {
    while (!text.empty() && text.front() == ' ') {
        text.remove_prefix(1);
    }
}

bool parse_line(std::string_view line, Mapping& mapping) {
    std::string_view perms;
    if (!take_number(line, mapping.start, 16) || !take_char(line, '-') ||
        !take_number(line, mapping.end, 16) || !take_char(line, ' ') || line.size() < 5) {
        return false;
    }
    perms = line.substr(0, 4);
    line.remove_prefix(4);
    mapping.readable = perms[0] == 'r';
    mapping.writable = perms[1] == 'w';
    mapping.executable = perms[2] == 'x';
    mapping.shared = perms[3] == 's';
    if (!take_char(line, ' ') || !take_number(line, mapping.offset, 16) || !take_char(line, ' ') ||
        !take_number(line, mapping.dev_major, 16) || !take_char(line, ':') ||
        !take_number(line, mapping.dev_minor, 16) || !take_char(line, ' ') ||
        !take_number(line, mapping.inode, 10)) {
        return false;
    }
    skip_spaces(line);
    // The kernel escapes a newline in a file name as "\012", so the rest of
    // the line is the whole path, spaces included.
    if (line.size() > deleted_suffix.size() && line.ends_with(deleted_suffix) && line[0] == '/') {
        mapping.deleted = true;
        line.remove_suffix(deleted_suffix.size());
    }
    mapping.path.assign(line);
    return mapping.start < mapping.end;
}

}  // namespace

std::string Mapping::map_files_name() const {
    char name[40];
    std::snprintf(name, sizeof name, "%llx-%llx", static_cast<unsigned long long>(start),
                  static_cast<unsigned long long>(end));
    return name;
}

Result<std::vector<Mapping>> parse_maps(std::string_view text) {
    std::vector<Mapping> mappings;
    std::size_t line_number = 0;
    while (!text.empty()) {
        ++line_number;
        std::size_t newline = text.find('\n');
        std::string_view line = text.substr(0, newline);
        text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);
        if (line.empty()) {
            continue;
        }
        Mapping mapping;
        if (!parse_line(line, mapping)) {
            return fail(ErrorCode::bad_format, "maps line " + std::to_string(line_number) +
                                                   ": cannot parse '" + std::string(line) + "'");
        }
        mappings.push_back(std::move(mapping));
    }
    return mappings;
}

const Mapping* find_mapping(const std::vector<Mapping>& mappings, std::uint64_t address) {
    for (const Mapping& mapping : mappings) {
        if (address >= mapping.start && address < mapping.end) {
            return &mapping;
        }
    }
    return nullptr;
}

Result<std::vector<Mapping>> read_process_maps(int pid) {
    std::string subject = "pid " + std::to_string(pid);
    auto text = read_file("/proc/" + std::to_string(pid) + "/maps");
    if (!text) {
        Error error = text.error();
        error.message = subject + ": maps: " + error.message;
        return tl::unexpected(std::move(error));
    }
    auto mappings = parse_maps(*text);
    if (!mappings) {
        return tl::unexpected(with_context(mappings.error(), subject));
    }
    return mappings;
}

}  // namespace suture
