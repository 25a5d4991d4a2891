#include "inject/ReturnGate.h"

#include <x86intrin.h>

#include <chrono>
#include <cstring>
#include <thread>

namespace suture {

namespace {

// Appends bytes to a gate under construction and computes rip-relative
// displacements (counted from the end of the instruction being written).
class GateAssembler {
  public:
    explicit GateAssembler(RemoteAddress at) : at_(at) {}

    void bytes(std::initializer_list<unsigned> values) {
        for (unsigned value : values) {
            code_.push_back(static_cast<std::byte>(value));
        }
    }
    // The disp32 of an instruction that ends `tail` bytes after it.
    void rip_displacement(RemoteAddress target, std::size_t tail) {
        std::uint64_t end = at_.raw() + code_.size() + 4 + tail;
        auto displacement = static_cast<std::int32_t>(target.raw() - end);
        for (int shift = 0; shift < 32; shift += 8) {
            code_.push_back(
                static_cast<std::byte>((static_cast<std::uint32_t>(displacement) >> shift) & 0xff));
        }
    }
    std::size_t size() const { return code_.size(); }
    const std::vector<std::byte>& code() const { return code_; }

  private:
    RemoteAddress at_;
    std::vector<std::byte> code_;
};

void put_u32(std::vector<std::byte>& out, std::size_t at, std::uint32_t value) {
    std::memcpy(out.data() + at, &value, sizeof value);
}
void put_u64(std::vector<std::byte>& out, std::size_t at, std::uint64_t value) {
    std::memcpy(out.data() + at, &value, sizeof value);
}

}  // namespace

// The gate, instruction by instruction. It runs right after a `ret`, where
// the stack below rsp is dead (the callee's frame), so it may push; it calls
// nothing, so alignment does not matter. It must be invisible: GCC's
// -fipa-ra lets a caller keep values in call-clobbered registers across a
// call to a function it knows does not touch them, so every register the
// gate uses (rax, rdx) and the flags are saved and restored.
//   0  c6 05 d32 01      mov byte [rip+arrived_k], 1   (no flags touched)
//   7  9c                pushfq
//   8  50                push rax
//   9  52                push rdx
//  10  80 3d d32 00      loop: cmp byte [rip+release], 0
//  17  75 14             jne out
//  19  f3 90             pause
//  21  0f 31             rdtsc                          (edx:eax)
//  23  48 c1 e2 20       shl rdx, 32
//  27  48 09 d0          or rax, rdx
//  30  48 3b 05 d32      cmp rax, [rip+deadline]
//  37  72 e3             jb loop
//  39  5a                out: pop rdx
//  40  58                pop rax
//  41  9d                popfq
//  42  ff 25 d32         jmp [rip+slot_k]               (the original return address)
std::array<std::byte, gate_code_size> encode_gate(RemoteAddress page, std::size_t index) {
    RemoteAddress data = page + gate_data_offset;
    GateAssembler gate(gate_code_address(page, index));
    gate.bytes({0xc6, 0x05});
    gate.rip_displacement(gate_arrived_address(page, index), 1);
    gate.bytes({0x01});
    gate.bytes({0x9c, 0x50, 0x52});
    gate.bytes({0x80, 0x3d});
    gate.rip_displacement(data + gate_release_offset, 1);
    gate.bytes({0x00});
    gate.bytes({0x75, 39 - 19});
    gate.bytes({0xf3, 0x90, 0x0f, 0x31});
    gate.bytes({0x48, 0xc1, 0xe2, 0x20, 0x48, 0x09, 0xd0});
    gate.bytes({0x48, 0x3b, 0x05});
    gate.rip_displacement(data + gate_deadline_offset, 0);
    gate.bytes({0x72, static_cast<unsigned>(static_cast<std::uint8_t>(10 - 39))});
    gate.bytes({0x5a, 0x58, 0x9d});
    gate.bytes({0xff, 0x25});
    gate.rip_displacement(gate_slot_address(page, index), 0);
    std::array<std::byte, gate_code_size> code{};
    std::copy(gate.code().begin(), gate.code().end(), code.begin());
    return code;
}

std::vector<std::byte> encode_gate_page(const GatePageHeader& header, std::uint64_t deadline_tsc) {
    std::vector<std::byte> page(gate_page_size);
    std::memcpy(page.data(), gate_page_magic, sizeof gate_page_magic);
    put_u32(page, 8, gate_page_version);
    put_u32(page, gate_count_offset, header.gates);
    put_u64(page, 16, header.created_at_unix_ns);
    put_u32(page, 24, header.owner_pid);
    put_u64(page, gate_data_offset + gate_deadline_offset, deadline_tsc);
    return page;
}

std::optional<GatePageHeader> decode_gate_page_header(std::span<const std::byte> bytes) {
    if (bytes.size() < gate_header_size ||
        std::memcmp(bytes.data(), gate_page_magic, sizeof gate_page_magic) != 0) {
        return std::nullopt;
    }
    std::uint32_t version = 0;
    GatePageHeader header;
    std::memcpy(&version, bytes.data() + 8, sizeof version);
    std::memcpy(&header.gates, bytes.data() + gate_count_offset, sizeof header.gates);
    std::memcpy(&header.created_at_unix_ns, bytes.data() + 16, sizeof header.created_at_unix_ns);
    std::memcpy(&header.owner_pid, bytes.data() + 24, sizeof header.owner_pid);
    if (version != gate_page_version || header.gates > gate_capacity) {
        return std::nullopt;
    }
    return header;
}

std::uint64_t read_tsc() {
    return __rdtsc();
}

std::uint64_t tsc_ticks_per_ms() {
    static const std::uint64_t ticks = [] {
        auto start = std::chrono::steady_clock::now();
        std::uint64_t first = read_tsc();
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        std::uint64_t last = read_tsc();
        auto elapsed = std::chrono::duration_cast<std::chrono::microseconds>(
                           std::chrono::steady_clock::now() - start)
                           .count();
        std::uint64_t per_ms = elapsed > 0 ? (last - first) * 1000 / elapsed : 0;
        return per_ms > 0 ? per_ms : std::uint64_t{1000000};  // 1 GHz if the TSC stood still
    }();
    return ticks;
}

}  // namespace suture
