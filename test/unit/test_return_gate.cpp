#include <sys/mman.h>

#include <atomic>
#include <cstring>
#include <thread>

#include <catch2/catch.hpp>

#include "inject/ReturnGate.h"

using namespace suture;

namespace {

// A gate page mapped in this process, its code page made read+exec as the
// injector leaves it, and a `ret` as the "original return address": a call
// into the gate then comes back here through it.
class LocalGatePage {
  public:
    explicit LocalGatePage(std::uint64_t deadline) {
        void* mapped = ::mmap(nullptr, gate_page_size, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        REQUIRE(mapped != MAP_FAILED);
        base_ = static_cast<unsigned char*>(mapped);
        RemoteAddress page(reinterpret_cast<std::uint64_t>(base_));
        auto image = encode_gate_page(GatePageHeader{1, 0, 0}, deadline);
        std::memcpy(base_, image.data(), image.size());
        auto code = encode_gate(page, 0);
        std::memcpy(base_ + gate_code_offset, code.data(), code.size());
        base_[ret_offset] = 0xc3;  // ret
        std::uint64_t landing = page.raw() + ret_offset;
        std::memcpy(base_ + gate_slots_offset, &landing, sizeof landing);
        REQUIRE(::mprotect(base_, 4096, PROT_READ | PROT_EXEC) == 0);
    }
    ~LocalGatePage() { ::munmap(base_, gate_page_size); }

    std::uint64_t gate() const { return reinterpret_cast<std::uint64_t>(base_ + gate_code_offset); }
    volatile unsigned char& release() { return base_[gate_data_offset + gate_release_offset]; }
    unsigned char arrived() const { return base_[gate_data_offset + gate_arrived_offset]; }

  private:
    static constexpr std::size_t ret_offset = 900;  // free bytes between the slots and the gates
    unsigned char* base_ = nullptr;
};

struct Observed {
    std::uint64_t rax = 0;
    std::uint64_t rdx = 0;
    unsigned char carry = 0;
};

// Calls the gate the way a return reaches it (one return address on the
// stack, below the red zone), with rax, rdx and the carry flag set, and
// reads them back afterwards.
Observed call_gate(std::uint64_t gate) {
    Observed seen;
    std::uint64_t rax_in = 0x1111222233334444, rdx_in = 0x5555666677778888;
    asm volatile(
        "mov %[rax_in], %%rax\n\t"
        "mov %[rdx_in], %%rdx\n\t"
        "lea -128(%%rsp), %%rsp\n\t"  // lea touches no flags; skip the red zone
        "stc\n\t"
        "call *%[gate]\n\t"
        "setc %[carry]\n\t"
        "lea 128(%%rsp), %%rsp\n\t"
        "mov %%rax, %[rax_out]\n\t"
        "mov %%rdx, %[rdx_out]\n\t"
        : [carry] "=&r"(seen.carry), [rax_out] "=&r"(seen.rax), [rdx_out] "=&r"(seen.rdx)
        : [gate] "r"(gate), [rax_in] "r"(rax_in), [rdx_in] "r"(rdx_in)
        : "rax", "rdx", "cc", "memory");
    return seen;
}

}  // namespace

TEST_CASE("a gate's code is 48 bytes that address its own page") {
    RemoteAddress page(0x7f0000000000);
    auto gate = encode_gate(page, 3);
    CHECK(gate.size() == gate_code_size);
    CHECK(gate[0] == std::byte{0xc6});  // mov byte [rip+arrived], 1
    std::int32_t arrived = 0;
    std::memcpy(&arrived, gate.data() + 2, sizeof arrived);
    CHECK(gate_code_address(page, 3).raw() + 7 + arrived == gate_arrived_address(page, 3).raw());
    CHECK(gate[42] == std::byte{0xff});  // jmp [rip+slot]
    std::int32_t slot = 0;
    std::memcpy(&slot, gate.data() + 44, sizeof slot);
    CHECK(gate_code_address(page, 3).raw() + 48 + slot == gate_slot_address(page, 3).raw());
}

TEST_CASE("a released gate says it arrived and goes on, registers and flags untouched") {
    LocalGatePage page(0);
    page.release() = 1;
    Observed seen = call_gate(page.gate());
    CHECK(page.arrived() == 1);
    CHECK(seen.rax == 0x1111222233334444);
    CHECK(seen.rdx == 0x5555666677778888);
    CHECK(seen.carry == 1);
}

TEST_CASE("an unreleased gate holds its thread until the deadline, then lets it go") {
    std::uint64_t deadline = read_tsc() + 20 * tsc_ticks_per_ms();
    LocalGatePage page(deadline);
    Observed seen = call_gate(page.gate());
    CHECK(read_tsc() >= deadline);
    CHECK(page.arrived() == 1);
    CHECK(seen.rax == 0x1111222233334444);
    CHECK(seen.carry == 1);
}

TEST_CASE("a held thread goes on once release is set") {
    std::uint64_t deadline = read_tsc() + 60000 * tsc_ticks_per_ms();  // a minute
    LocalGatePage page(deadline);
    std::thread releaser([&] {
        while (page.arrived() == 0) {
            std::this_thread::yield();
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        page.release() = 1;
    });
    Observed seen = call_gate(page.gate());
    releaser.join();
    CHECK(read_tsc() < deadline);
    CHECK(seen.rdx == 0x5555666677778888);
    CHECK(seen.carry == 1);
}

TEST_CASE("a gate page header decodes; damaged ones are refused") {
    auto image = encode_gate_page(GatePageHeader{5, 1234, 99}, 0);
    auto header = decode_gate_page_header(image);
    REQUIRE(header);
    CHECK(header->gates == 5);
    CHECK(header->created_at_unix_ns == 1234);
    CHECK(header->owner_pid == 99);
    image[gate_count_offset] = std::byte{200};
    CHECK_FALSE(decode_gate_page_header(image));
    image[0] = std::byte{'X'};
    CHECK_FALSE(decode_gate_page_header(image));
}
