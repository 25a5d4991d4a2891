// The shadow runtime (src/patchrt/shadow.c) over a table in this process,
// laid out by the injector's own header writer (inject/ShadowRegion.h): the
// table logic, races on one key from 8 threads, capacity limits.
#include <atomic>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "inject/ShadowRegion.h"
#include "patch/ShadowLayout.h"
#include "suture/patch.h"

using namespace suture;

namespace {

constexpr std::uint32_t test_slots = 4096;
constexpr std::uint64_t test_arena = 1 << 20;

}  // namespace

// What the injector resolves at apply time; here, memory of the test.
extern "C" {
alignas(4096) char suture_shadow_table[4096 + 4096 * 8 + (1 << 20)];
}

namespace {

// A fresh table of `slots` slots and `arena` bytes of arena.
suture_shadow_header* fresh_table(std::uint32_t slots = test_slots,
                                  std::uint64_t arena = test_arena) {
    REQUIRE(shadow_region_size(slots, arena) <= sizeof suture_shadow_table);
    std::memset(suture_shadow_table, 0, sizeof suture_shadow_table);
    auto header = encode_shadow_header(slots, arena, 1, 2);
    std::memcpy(suture_shadow_table, header.data(), header.size());
    return reinterpret_cast<suture_shadow_header*>(suture_shadow_table);
}

// How many slots hold a record of (object, id), live or freed.
int slots_holding(const void* object, std::uint64_t id) {
    auto* header = reinterpret_cast<suture_shadow_header*>(suture_shadow_table);
    auto* slots = reinterpret_cast<std::uint64_t*>(suture_shadow_table + header->slots_offset);
    int found = 0;
    for (std::uint32_t i = 0; i < header->slot_count; ++i) {
        if (slots[i] == 0) {
            continue;
        }
        auto* record =
            reinterpret_cast<suture_shadow_record*>(suture_shadow_table + (slots[i] & ~1ull));
        found += record->object == reinterpret_cast<std::uint64_t>(object) && record->id == id;
    }
    return found;
}

}  // namespace

TEST_CASE("a shadow is found by (object, id), zeroed when new, and freed") {
    fresh_table();
    int object = 0;
    CHECK(suture_shadow_get(&object, 1) == nullptr);
    auto* shadow = static_cast<long*>(suture_shadow_get_or_alloc(&object, 1, sizeof(long)));
    REQUIRE(shadow != nullptr);
    CHECK(reinterpret_cast<std::uintptr_t>(shadow) % 16 == 0);
    CHECK(*shadow == 0);
    *shadow = 42;
    CHECK(suture_shadow_get(&object, 1) == shadow);
    CHECK(suture_shadow_get_or_alloc(&object, 1, sizeof(long)) == shadow);
    CHECK(suture_shadow_get(&object, 2) == nullptr);
    auto* other = suture_shadow_get_or_alloc(&object, 2, 64);
    CHECK(other != nullptr);
    CHECK(other != shadow);
    suture_shadow_free(&object, 1);
    CHECK(suture_shadow_get(&object, 1) == nullptr);
    CHECK(suture_shadow_get(&object, 2) == other);
    suture_shadow_free(&object, 1);  // twice: nothing
    // A freed shadow's memory serves the same key again, zeroed.
    auto* again = static_cast<long*>(suture_shadow_get_or_alloc(&object, 1, sizeof(long)));
    CHECK(again == shadow);
    CHECK(*again == 0);
    // A bigger one after a free gets new memory, in the same slot.
    suture_shadow_free(&object, 1);
    auto* bigger = static_cast<char*>(suture_shadow_get_or_alloc(&object, 1, 4096));
    REQUIRE(bigger != nullptr);
    CHECK(bigger != reinterpret_cast<char*>(shadow));
    CHECK(bigger[4095] == 0);
    CHECK(slots_holding(&object, 1) == 1);
    auto* header = reinterpret_cast<suture_shadow_header*>(suture_shadow_table);
    CHECK(header->live == 2);
}

TEST_CASE("no table, a damaged table, or a bad size: NULL, never a crash") {
    std::memset(suture_shadow_table, 0, sizeof suture_shadow_table);
    int object = 0;
    CHECK(suture_shadow_get_or_alloc(&object, 1, 8) == nullptr);
    CHECK(suture_shadow_get(&object, 1) == nullptr);
    suture_shadow_free(&object, 1);
    auto* header = fresh_table();
    CHECK(suture_shadow_get_or_alloc(&object, 1, 0) == nullptr);
    CHECK(suture_shadow_get_or_alloc(&object, 1, SUTURE_SHADOW_MAX_SIZE + 1) == nullptr);
    // A slot pointing outside the arena is nobody's key.
    auto* slots = reinterpret_cast<std::uint64_t*>(suture_shadow_table + header->slots_offset);
    for (std::uint32_t i = 0; i < header->slot_count; ++i) {
        slots[i] = 8;
    }
    CHECK(suture_shadow_get(&object, 1) == nullptr);
    CHECK(suture_shadow_get_or_alloc(&object, 1, 8) == nullptr);  // full of garbage
    header->version = 99;
    CHECK(suture_shadow_get(&object, 1) == nullptr);
}

TEST_CASE("the table holds slot_count keys and the arena its size, then NULL") {
    fresh_table(1024, test_arena);
    static char objects[1025];
    for (int i = 0; i < 1024; ++i) {
        REQUIRE(suture_shadow_get_or_alloc(&objects[i], 7, 8) != nullptr);
    }
    CHECK(suture_shadow_get_or_alloc(&objects[1024], 7, 8) == nullptr);
    for (int i = 0; i < 1024; ++i) {
        REQUIRE(suture_shadow_get(&objects[i], 7) != nullptr);
    }
    // A freed key keeps its slot: still no room for another key.
    suture_shadow_free(&objects[0], 7);
    CHECK(suture_shadow_get_or_alloc(&objects[1024], 7, 8) == nullptr);
    CHECK(suture_shadow_get_or_alloc(&objects[0], 7, 8) != nullptr);

    fresh_table(test_slots, 64 * 1024);
    int object = 0;
    int made = 0;
    while (suture_shadow_get_or_alloc(&object, static_cast<std::uint64_t>(made), 1000) != nullptr) {
        ++made;
    }
    CHECK(made == 64 * 1024 / (1008 + 32));
}

TEST_CASE("8 threads attaching shadows to the same 1000 objects lose and duplicate none") {
    auto* header = fresh_table();
    static long objects[1000];
    constexpr int threads = 8;
    constexpr int rounds = 50;
    std::atomic<int> failed{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
        workers.emplace_back([&, t] {
            while (!go.load()) {
            }
            for (int round = 0; round < rounds; ++round) {
                for (int i = 0; i < 1000; ++i) {
                    // Each thread walks the objects from another start, so
                    // the first allocations of a key race.
                    int at = (i + t * 125) % 1000;
                    auto* count = static_cast<long*>(
                        suture_shadow_get_or_alloc(&objects[at], 0x54874, sizeof(long)));
                    if (count == nullptr) {
                        failed.fetch_add(1);
                        continue;
                    }
                    __atomic_add_fetch(count, 1, __ATOMIC_RELAXED);
                }
            }
        });
    }
    go = true;
    for (auto& worker : workers) {
        worker.join();
    }
    CHECK(failed == 0);
    long sum = 0;
    int wrong = 0;
    int duplicated = 0;
    for (long& object : objects) {
        auto* count = static_cast<long*>(suture_shadow_get(&object, 0x54874));
        REQUIRE(count != nullptr);
        sum += *count;
        wrong += *count != threads * rounds;
        duplicated += slots_holding(&object, 0x54874) != 1;
    }
    CHECK(sum == 1000L * threads * rounds);
    CHECK(wrong == 0);
    CHECK(duplicated == 0);
    CHECK(header->live == 1000);
    // Records a losing racer made and dropped (lost to the arena).
    INFO("records allocated: " << header->allocations);
    CHECK(header->allocations >= 1000);
    CHECK(header->allocations <= 1000 + 1000 * (threads - 1));

    // And freeing from 8 threads at once while others look: each key once.
    std::atomic<int> freed_seen{0};
    workers.clear();
    for (int t = 0; t < threads; ++t) {
        workers.emplace_back([&, t] {
            for (int i = t; i < 1000; i += threads) {
                suture_shadow_free(&objects[i], 0x54874);
                freed_seen += suture_shadow_get(&objects[i], 0x54874) == nullptr;
            }
        });
    }
    for (auto& worker : workers) {
        worker.join();
    }
    CHECK(freed_seen == 1000);
    CHECK(header->live == 0);
}

TEST_CASE("free_all drops one id's shadows of every object and leaves the others") {
    auto* header = fresh_table();
    static char objects[100];
    for (char& object : objects) {
        REQUIRE(suture_shadow_get_or_alloc(&object, 10, 8) != nullptr);
        REQUIRE(suture_shadow_get_or_alloc(&object, 11, 8) != nullptr);
    }
    CHECK(header->live == 200);
    suture_shadow_free_all(10);
    CHECK(header->live == 100);
    int left_10 = 0;
    int left_11 = 0;
    for (char& object : objects) {
        left_10 += suture_shadow_get(&object, 10) != nullptr;
        left_11 += suture_shadow_get(&object, 11) != nullptr;
    }
    CHECK(left_10 == 0);
    CHECK(left_11 == 100);
}

TEST_CASE("a shadow header round-trips and a damaged one is refused") {
    auto bytes =
        encode_shadow_header(SUTURE_SHADOW_DEFAULT_SLOTS, SUTURE_SHADOW_DEFAULT_ARENA, 123, 456);
    auto region = decode_shadow_header(bytes, 0x7f0000000000);
    REQUIRE(region);
    CHECK(region->slot_count == SUTURE_SHADOW_DEFAULT_SLOTS);
    CHECK(region->size ==
          shadow_region_size(SUTURE_SHADOW_DEFAULT_SLOTS, SUTURE_SHADOW_DEFAULT_ARENA));
    CHECK(region->created_at_unix_ns == 123);
    CHECK(region->creator_pid == 456);
    bytes[12] = std::byte{3};  // slot count not a power of two
    CHECK_FALSE(decode_shadow_header(bytes, 0));
}
