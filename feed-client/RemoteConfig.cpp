#include "feed-client/RemoteConfig.h"

#include <dirent.h>

#include <algorithm>
#include <charconv>
#include <sstream>

#include "base/Files.h"

namespace suture::feed {

namespace {

std::string trimmed(const std::string& text) {
    auto begin = text.find_first_not_of(" \t\r");
    auto end = text.find_last_not_of(" \t\r");
    return begin == std::string::npos ? "" : text.substr(begin, end - begin + 1);
}

template <typename T>
bool parse_number(const std::string& text, T& value) {
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    return error == std::errc{} && end == text.data() + text.size();
}

}  // namespace

Result<Remote> parse_remote(const std::string& text, const std::string& file_name) {
    Remote remote;
    remote.source = file_name;
    std::string base = file_name.substr(file_name.rfind('/') + 1);
    remote.name = base.ends_with(".conf") ? base.substr(0, base.size() - 5) : base;
    std::istringstream lines(text);
    std::string line;
    int number = 0;
    bool in_section = false;
    auto bad = [&](const std::string& why) {
        return fail(ErrorCode::bad_format, file_name + ":" + std::to_string(number) + ": " + why);
    };
    while (std::getline(lines, line)) {
        ++number;
        line = trimmed(line);
        if (line.empty() || line[0] == '#' || line[0] == ';') {
            continue;
        }
        if (line.front() == '[') {
            in_section = line == "[remote]";
            if (!in_section) {
                return bad("unknown section " + line + " (expected [remote])");
            }
            continue;
        }
        auto equals = line.find('=');
        if (!in_section || equals == std::string::npos) {
            return bad("expected key=value inside [remote]");
        }
        std::string key = trimmed(line.substr(0, equals));
        std::string value = trimmed(line.substr(equals + 1));
        bool ok = true;
        if (key == "name") {
            remote.name = value;
        } else if (key == "enabled") {
            ok = value == "true" || value == "false";
            remote.enabled = value == "true";
        } else if (key == "url") {
            remote.url = value;
        } else if (key == "channel") {
            ok = value == "stable" || value == "testing";
            remote.channel = value;
        } else if (key == "root") {
            remote.root_file = value;
        } else if (key == "delay_hours") {
            ok = parse_number(value, remote.delay_hours);
        } else if (key == "pin_level") {
            ok = parse_number(value, remote.pin_level);
        } else if (key == "connect_timeout_seconds") {
            ok = parse_number(value, remote.limits.connect_timeout_seconds);
        } else if (key == "timeout_seconds") {
            ok = parse_number(value, remote.limits.total_timeout_seconds);
        } else if (key == "low_speed_bytes") {
            ok = parse_number(value, remote.limits.low_speed_bytes);
        } else if (key == "low_speed_seconds") {
            ok = parse_number(value, remote.limits.low_speed_seconds);
        } else if (key == "attempts") {
            ok = parse_number(value, remote.limits.attempts) && remote.limits.attempts >= 1;
        } else {
            return bad("unknown key " + key);
        }
        if (!ok) {
            return bad("bad value for " + key + ": " + value);
        }
    }
    if (remote.name.empty() ||
        !std::all_of(remote.name.begin(), remote.name.end(),
                     [](char c) {
                         return std::isalnum(static_cast<unsigned char>(c)) || c == '-' ||
                                c == '_' || c == '.';
                     }) ||
        remote.name[0] == '.') {
        return fail(ErrorCode::bad_format, file_name + ": bad remote name \"" + remote.name + "\"");
    }
    if (!remote.url.starts_with("http://") && !remote.url.starts_with("https://") &&
        !remote.url.starts_with("file://")) {
        return fail(
            ErrorCode::bad_format,
            file_name + ": url must be http://, https:// or file:// (got \"" + remote.url + "\")");
    }
    if (!remote.url.ends_with("/")) {
        remote.url += '/';
    }
    if (remote.root_file.empty()) {
        return fail(ErrorCode::bad_format,
                    file_name + ": needs root= (the pinned root metadata of the feed)");
    }
    return remote;
}

Result<std::vector<Remote>> load_remotes(const std::string& directory) {
    std::vector<Remote> remotes;
    DIR* dir = ::opendir(directory.c_str());
    if (dir == nullptr) {
        if (errno == ENOENT) {
            return remotes;
        }
        return fail_errno(directory, errno);
    }
    std::vector<std::string> files;
    while (dirent* entry = ::readdir(dir)) {
        std::string name = entry->d_name;
        if (name.ends_with(".conf") && name[0] != '.') {
            files.push_back(directory + "/" + name);
        }
    }
    ::closedir(dir);
    std::sort(files.begin(), files.end());
    for (const std::string& file : files) {
        auto text = read_file(file);
        if (!text) {
            return tl::unexpected(text.error());
        }
        auto remote = parse_remote(*text, file);
        if (!remote) {
            return tl::unexpected(remote.error());
        }
        for (const Remote& other : remotes) {
            if (other.name == remote->name) {
                return fail(ErrorCode::bad_format, file + ": remote name " + remote->name +
                                                       " also used by " + other.source);
            }
        }
        remotes.push_back(std::move(*remote));
    }
    return remotes;
}

}  // namespace suture::feed
