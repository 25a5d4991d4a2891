/* Runs a program under a seccomp filter that allows every system call
 * (SECCOMP_RET_ALLOW): /proc/PID/status then says "Seccomp: 2", and the
 * library-open watch must not hold such a process (its wait's ppoll could
 * be refused), only patch it right after its load. Usage: seccomp-exec
 * PROGRAM ARGS... */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: seccomp-exec PROGRAM ARGS...\n");
        return 2;
    }
    struct sock_filter allow_all[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
    struct sock_fprog program = {.len = 1, .filter = allow_all};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program) != 0) {
        perror("seccomp-exec: filter");
        return 1;
    }
    execvp(argv[1], argv + 1);
    perror("seccomp-exec: exec");
    return 127;
}
