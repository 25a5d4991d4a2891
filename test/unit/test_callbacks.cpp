#include <link.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include <catch2/catch.hpp>

#include "inject/Callbacks.h"
#include "inject/LoadedObjects.h"
#include "inject/RemoteCall.h"
#include "inject/RemoteSyscall.h"
#include "inject/StackCheck.h"
#include "inject/StoppedProcess.h"
#include "proc/ProcessMaps.h"

using namespace suture;

namespace {

// A child that runs `body`; killed when the test ends.
class Child {
  public:
    template <typename Body>
    explicit Child(Body body) : pid_(::fork()) {
        if (pid_ == 0) {
            body();
            ::_exit(0);
        }
    }
    ~Child() {
        ::kill(pid_, SIGKILL);
        int status = 0;
        ::waitpid(pid_, &status, __WALL);
    }
    int pid() const { return pid_; }

  private:
    int pid_;
};

std::size_t thread_count(int pid) {
    auto tasks = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task");
    return static_cast<std::size_t>(std::distance(begin(tasks), end(tasks)));
}

void* pause_forever(void*) {
    for (;;) {
        ::pause();
    }
}

// The functions a child runs remotely: the same addresses in parent and
// child (fork).
std::atomic<int> calls_seen{0};
extern "C" int return_forty_two() {
    calls_seen.fetch_add(1);
    return 42;
}
extern "C" int clobber_and_fail() {
    // Caller-saved registers and vector state the callee may change.
    __asm__ volatile("pxor %%xmm0, %%xmm0; pcmpeqd %%xmm1, %%xmm1; mov $-1, %%r11; std; cld"
                     :
                     :
                     : "xmm0", "xmm1", "r11", "cc");
    return -3;
}

// The registers a thread of `pid` resumes with, read in its interrupt stop.
user_regs_struct registers_of(int tid) {
    user_regs_struct regs{};
    REQUIRE(::ptrace(PTRACE_GETREGS, tid, nullptr, &regs) == 0);
    return regs;
}

}  // namespace

TEST_CASE("a call frame skips the red zone, leaves the saved registers above the call, and "
          "aligns the call for the ABI") {
    for (std::uint64_t rsp : {0x7ffc12345678ull, 0x7ffc12345680ull, 0x7ffc1234567full}) {
        for (std::size_t xsave : {std::size_t{0}, std::size_t{832}, std::size_t{2696},
                                  std::size_t{11008}}) {
            CallFrame frame = call_frame(rsp, xsave);
            INFO("rsp " << std::hex << rsp << " xsave " << std::dec << xsave);
            CHECK(frame.frame % 64 == 0);  // XSAVE's alignment, so 16 at the call too
            CHECK(frame.save_block >= std::max<std::size_t>(xsave, 512));
            CHECK(frame.frame + frame.save_block + call_save_block_size <= rsp - red_zone);
            CHECK(rsp - red_zone - (frame.frame + frame.save_block + call_save_block_size) < 64);
            CHECK(frame.lowest_used == frame.frame - callee_stack);
        }
    }
}

TEST_CASE("the call trampoline saves the vector state, calls, syncs on rt_sigprocmask and "
          "ends with a jump to where the thread resumes") {
    std::size_t done = 0;
    auto code = call_trampoline(2752, true, 0x1122334455667788ull, done);
    auto byte = [&](std::size_t at) { return std::to_integer<unsigned>(code.at(at)); };
    // xsave64 (%rsp)
    CHECK((byte(0) == 0x48 && byte(1) == 0x0f && byte(2) == 0xae && byte(3) == 0x24));
    // the sync point: `syscall` right before `done`
    CHECK((byte(done - 2) == 0x0f && byte(done - 1) == 0x05));
    // the resume address, last
    std::uint64_t resume = 0;
    std::memcpy(&resume, code.data() + code.size() - 8, 8);
    CHECK(resume == 0x1122334455667788ull);
    CHECK(code.size() <= call_trampoline_room);
    auto fx = call_trampoline(2752, false, 0, done);
    CHECK(std::to_integer<unsigned>(fx.at(3)) == 0x04);  // fxsave64 (%rsp) without XSAVE
}

TEST_CASE("the lock check covers glibc's allocator by name and the whole dynamic loader") {
    auto mappings = read_process_maps(::getpid());
    REQUIRE(mappings);
    auto objects = read_loaded_objects(::getpid(), *mappings);
    REQUIRE(objects);
    auto ranges = lock_holding_code(*objects);
    REQUIRE(ranges);
    auto covering = [&](const void* address) -> std::string {
        for (const CodeRange& range : *ranges) {
            if (range.holds_pc(reinterpret_cast<std::uint64_t>(address))) {
                return range.name;
            }
        }
        return "";
    };
    void* (*volatile malloc_address)(size_t) = &::malloc;
    CHECK(covering(reinterpret_cast<const void*>(malloc_address)).starts_with("malloc (libc.so"));
    CHECK(covering(reinterpret_cast<const void*>(&::malloc_stats))
              .find("the allocator's lock") != std::string::npos);
    CHECK(covering(reinterpret_cast<const void*>(&::dl_iterate_phdr))
              .find("the dynamic loader's lock") != std::string::npos);
    bool loader = std::any_of(ranges->begin(), ranges->end(), [](const CodeRange& range) {
        return range.name.starts_with("ld-linux");
    });
    CHECK(loader);
    CHECK(covering(reinterpret_cast<const void*>(&::strlen)) == "");
}

TEST_CASE("a stopped thread inside malloc_stats is found, named, by the lock check") {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    Child child([&] {
        // A full pipe on stderr: malloc_stats blocks in its fprintf, with
        // the main arena's lock held.
        ::fcntl(fds[1], F_SETFL, O_NONBLOCK);
        char filler[4096] = {};
        while (::write(fds[1], filler, sizeof filler) > 0) {
        }
        ::fcntl(fds[1], F_SETFL, 0);
        ::dup2(fds[1], 2);
        pthread_t thread;
        pthread_create(&thread, nullptr, [](void*) -> void* {
            ::malloc_stats();
            return nullptr;
        }, nullptr);
        pause_forever(nullptr);
    });
    while (thread_count(child.pid()) < 2) {
        ::usleep(1000);
    }
    ::usleep(50000);  // into the blocked write
    auto blocking = on_tracer_thread([&]() -> Result<std::vector<BlockingThread>> {
        auto stopped = StoppedProcess::stop(child.pid());
        REQUIRE(stopped);
        auto mappings = read_process_maps(child.pid());
        auto objects = read_loaded_objects(child.pid(), *mappings);
        auto memory = RemoteMemory::open(child.pid(), false);
        REQUIRE(memory);
        auto ranges = lock_holding_code(*objects);
        REQUIRE(ranges);
        return find_blocking_threads(*stopped, *ranges, *mappings, *memory);
    });
    REQUIRE(blocking);
    REQUIRE(blocking->size() == 1);
    std::string frames;
    for (const std::string& frame : blocking->front().frames) {
        frames += frame + "\n";
    }
    INFO(frames);
    CHECK(frames.find("malloc_stats (libc.so.6: the allocator's lock)") != std::string::npos);
}

TEST_CASE("a function called in a stopped process returns its value, and the thread resumes "
          "with every register, its vector state and its signal mask as they were") {
    Child child([] {
        pthread_t thread;
        pthread_create(&thread, nullptr, pause_forever, nullptr);
        pause_forever(nullptr);
    });
    while (thread_count(child.pid()) < 2) {
        ::usleep(1000);
    }
    on_tracer_thread([&] {
        auto stopped = StoppedProcess::stop(child.pid());
        REQUIRE(stopped);
        auto mappings = read_process_maps(child.pid());
        REQUIRE(mappings);
        auto objects = read_loaded_objects(child.pid(), *mappings);
        REQUIRE(objects);
        auto memory = RemoteMemory::open(child.pid(), true);
        REQUIRE(memory);
        auto site = RemoteSyscall::find_site(*objects);
        REQUIRE(site);
        auto syscall = RemoteSyscall::install(*stopped, *memory, *mappings, *site);
        REQUIRE(syscall);
        std::vector<user_regs_struct> before;
        std::vector<user_fpregs_struct> fp_before;
        for (const StoppedThread& thread : stopped->threads()) {
            before.push_back(registers_of(thread.tid));
            user_fpregs_struct fp{};
            REQUIRE(::ptrace(PTRACE_GETFPREGS, thread.tid, nullptr, &fp) == 0);
            fp_before.push_back(fp);
        }
        for (auto [function, expected] :
             {std::pair{&return_forty_two, 42}, std::pair{&clobber_and_fail, -3}}) {
            auto result = call_in_target(
                *stopped, *memory, *mappings, *syscall,
                RemoteAddress(reinterpret_cast<std::uint64_t>(function)), {}, RemoteCallBounds{});
            REQUIRE(result);
            CHECK(result->kind == RemoteCallResult::Kind::returned);
            CHECK(result->value == expected);
        }
        for (std::size_t i = 0; i < stopped->threads().size(); ++i) {
            user_regs_struct after = registers_of(stopped->threads()[i].tid);
            CHECK(std::memcmp(&after, &before[i], sizeof after) == 0);
            user_fpregs_struct fp{};
            REQUIRE(::ptrace(PTRACE_GETFPREGS, stopped->threads()[i].tid, nullptr, &fp) == 0);
            CHECK(std::memcmp(fp.xmm_space, fp_before[i].xmm_space, sizeof fp.xmm_space) == 0);
            CHECK(fp.mxcsr == fp_before[i].mxcsr);
        }
        return 0;
    });
    // The child runs on: alive, neither stopped nor traced. Just let go, it
    // may still be running on its way back into its sleep ('R'), so its
    // state is read until it sleeps again ('S'), for up to 2 s.
    CHECK(::kill(child.pid(), 0) == 0);
    char state = 0;
    for (int tries = 0; tries < 200 && state != 'S'; ++tries) {
        std::ifstream stat("/proc/" + std::to_string(child.pid()) + "/stat");
        std::string text((std::istreambuf_iterator<char>(stat)), {});
        state = text.at(text.rfind(')') + 2);
        if (state != 'S') {
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }
    CHECK(state == 'S');
}
