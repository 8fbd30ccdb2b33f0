/* The one source of randomness (api/random.c): hex of the right length, different each time,
 * and a failure of the kernel's getrandom() is reported, never papered over with a constant
 * (the controller once fell back to 0x5a bytes: every instance the same MAC). */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "random.h"
#include "tap.h"

/* In a child: getrandom(2) fails with ENOSYS; exits 0 when random_hex() says so and leaves no
 * digits behind. */
static int child_without_getrandom(void) {
        struct sock_filter filter[] = {
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getrandom, 0, 1),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = { .len = sizeof filter / sizeof filter[0], .filter = filter };
        char out[33] = "";

        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
                return 2;
        return random_hex(out, 16) == -ENOSYS ? 0 : 1;
}

int main(void) {
        char a[33], b[33], big[2 * 200 + 1];
        int status = -1;
        pid_t pid;

        is_int(random_hex(a, 16), 0, "16 random bytes as hex");
        is_int(strlen(a), 32, "32 digits");
        is_int(strspn(a, "0123456789abcdef"), 32, "all lowercase hex");
        random_hex(b, 16);
        ok(strcmp(a, b) != 0, "two draws differ");
        is_int(random_hex(big, 200), 0, "more than one chunk (200 bytes)");
        is_int(strlen(big), 400, "400 digits");
        ok(strspn(big + 128, "0") < 64, "the later chunks are random too");

        pid = fork();
        if (pid == 0)
                _exit(child_without_getrandom());
        waitpid(pid, &status, 0);
        ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "without getrandom() the helper fails with -ENOSYS instead of falling back (status %d)", status);
        return tap_done();
}
