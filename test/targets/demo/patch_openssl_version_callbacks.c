/* A test patch with a callback for the system's real libcrypto:
 * OpenSSL_version() returns a marker text, and a pre_apply callback (which
 * only says yes) makes sutured run code in the process before the jumps go
 * in. A callback cannot run inside the dynamic loader, so a new process
 * caught in its loader must get this patch at its entry point instead
 * (daemon-callbacks-new-processes.sh). */
#include <suture/patch.h>

const char* OpenSSL_version_suture_callbacks(int type) {
    (void)type;
    return "OpenSSL patched by suture (test, with a callback)";
}

static int agree_to_apply(void) {
    return 0;
}
SUTURE_PRE_APPLY(agree_to_apply);
