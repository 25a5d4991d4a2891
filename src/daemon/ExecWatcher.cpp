#include "daemon/ExecWatcher.h"

#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace suture {

Result<ExecWatcher> ExecWatcher::open() {
    UniqueFD socket(
        ::socket(PF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_CONNECTOR));
    if (!socket.is_valid()) {
        return fail_errno("proc connector socket", errno);
    }
    sockaddr_nl address{};
    address.nl_family = AF_NETLINK;
    address.nl_groups = CN_IDX_PROC;
    address.nl_pid = 0;  // the kernel assigns one
    if (::bind(socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
        return fail_errno("proc connector bind", errno);
    }
    // Subscribe: a netlink message carrying a cn_msg carrying the operation,
    // laid out in one buffer (cn_msg ends in a flexible array).
    alignas(nlmsghdr) char request[NLMSG_SPACE(sizeof(cn_msg) + sizeof(proc_cn_mcast_op))] = {};
    auto* header = reinterpret_cast<nlmsghdr*>(request);
    header->nlmsg_len = NLMSG_LENGTH(sizeof(cn_msg) + sizeof(proc_cn_mcast_op));
    header->nlmsg_type = NLMSG_DONE;
    header->nlmsg_pid = static_cast<__u32>(::getpid());
    auto* message = static_cast<cn_msg*>(NLMSG_DATA(header));
    message->id.idx = CN_IDX_PROC;
    message->id.val = CN_VAL_PROC;
    message->len = sizeof(proc_cn_mcast_op);
    proc_cn_mcast_op operation = PROC_CN_MCAST_LISTEN;
    std::memcpy(message->data, &operation, sizeof operation);
    if (::send(socket.get(), request, header->nlmsg_len, 0) < 0) {
        return fail_errno("proc connector subscribe", errno);
    }
    return ExecWatcher(std::move(socket));
}

ExecEvent ExecWatcher::next_exec() {
    alignas(nlmsghdr) char buffer[4096];
    ssize_t received = ::recv(socket_.get(), buffer, sizeof buffer, 0);
    if (received <= 0) {
        return {};  // nothing waiting (EAGAIN) or an error: the caller polls again
    }
    auto* header = reinterpret_cast<nlmsghdr*>(buffer);
    if (!NLMSG_OK(header, static_cast<unsigned>(received)) || header->nlmsg_type == NLMSG_ERROR) {
        return {.pid = -1};
    }
    auto* message = static_cast<cn_msg*>(NLMSG_DATA(header));
    if (message->id.idx != CN_IDX_PROC || message->len < sizeof(proc_event)) {
        return {.pid = -1};
    }
    auto* event = reinterpret_cast<proc_event*>(message->data);
    if (event->what != proc_event::PROC_EVENT_EXEC) {
        return {.pid = -1};
    }
    return {.pid = event->event_data.exec.process_tgid, .at = event->timestamp_ns};
}

}  // namespace suture
