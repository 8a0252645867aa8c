/* no-pidfd.c -- runs a command where pidfd_open(2) fails with ENOSYS, as
 * under a container's seccomp profile or an old kernel:
 *
 *     no-pidfd COMMAND [ARG...]
 *
 * A seccomp filter answers pidfd_open with ENOSYS and allows every other
 * call; it holds for the command and everything it starts. Used by
 * tests/integration/test_exec.py. */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define ARCH AUDIT_ARCH_AARCH64
#elif defined(__i386__)
#define ARCH AUDIT_ARCH_I386
#else
#error "no-pidfd: unknown architecture"
#endif

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

static int deny_pidfd_open(void)
{
    struct sock_filter code[] = {
        /* Another architecture's calls have other numbers: allowed. */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pidfd_open, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & 0xffff)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {
        .len = sizeof(code) / sizeof(code[0]),
        .filter = code,
    };

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -1;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: no-pidfd COMMAND [ARG...]\n");
        return 2;
    }
    if (deny_pidfd_open() < 0) {
        fprintf(stderr, "no-pidfd: seccomp: %s\n", strerror(errno));
        return 1;
    }
    execvp(argv[1], argv + 1);
    fprintf(stderr, "no-pidfd: %s: %s\n", argv[1], strerror(errno));
    return 127;
}
