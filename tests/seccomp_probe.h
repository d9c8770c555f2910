/*
 * seccomp_probe: the harness shared by the test_seccomp sources. A probe is a function run in a
 * forked child after sbx_seccomp_load(); its exit code says whether the calls it made behaved as
 * expected, and its wait status whether the policy killed it. The sweeps compare the kernel's
 * verdicts with the rule tables policyc generated from the policy text.
 */
#ifndef VB_TEST_SECCOMP_PROBE_H
#define VB_TEST_SECCOMP_PROBE_H

#include <stdint.h>
#include <sys/wait.h>

#include "seccomp.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#define X32_SYSCALL_BIT 0x40000000
#define SWEEP_MAX_NR	480 /* past the last x86_64 syscall of current kernels */

/* The test process: the peer some probes expect on the other end of their sockets. */
extern pid_t test_pid;
/* The test thread's TLS base, so that a swept arch_prctl(ARCH_SET_FS) keeps it. */
extern uint64_t fs_base;

/* Child exit codes: 0 is "worked as expected"; the others say what went wrong. */
enum { PROBE_OK = 0, PROBE_WRONG = 1, PROBE_LOAD_FAILED = 100 };

typedef int (*probe_fn)(void *arg);

#define KILLED_BY_SIGSYS(st) (WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS)
#define WORKED(st)	     (WIFEXITED(st) && WEXITSTATUS(st) == PROBE_OK)

/* A raw call with up to six arguments, passed as the probe argument. */
struct call {
	long nr;
	long a[6];
	int want_errno; /* 0: any result; else the call must fail with it */
};

void child_exit(int code);
int run_under(enum sbx_role role, enum sbx_seccomp_mode mode, probe_fn fn, void *arg);
void assert_killed(int status);
void assert_worked(int status);
int probe_call(void *arg);
int call_status(enum sbx_role role, long nr, long a0, long a1, long a2, long a3);
int make_memfd(void);
int probe_execve(void *arg);	   /* execve("/bin/true") */
int probe_socket_works(void *arg); /* socket(*(int *)arg, SOCK_STREAM) */

/* Sweeps over a role's rule table; each fails the current test with every mismatch found. */
void sweep_allowed(enum sbx_role role);
void sweep_unlisted(enum sbx_role role);
void sweep_conditions(enum sbx_role role);
void sweep_worker_within_broker(void);

/* seccomp_worker_kills.c */
void test_seccomp_worker_execve_killed(void **state);
void test_seccomp_worker_socket_killed(void **state);
void test_seccomp_worker_vfio_ioctl_killed(void **state);
void test_seccomp_worker_every_vfio_ioctl_killed(void **state);
void test_seccomp_worker_ptrace_killed(void **state);
void test_seccomp_worker_mount_killed(void **state);
void test_seccomp_worker_setuid_killed(void **state);
void test_seccomp_worker_bpf_killed(void **state);
void test_seccomp_worker_io_uring_setup_killed(void **state);
void test_seccomp_worker_process_vm_readv_killed(void **state);
void test_seccomp_worker_kill_other_pid_killed(void **state);
void test_seccomp_worker_fork_and_threads_killed(void **state);
void test_seccomp_worker_exec_memory_killed(void **state);
void test_seccomp_worker_ring_page_and_wake_work(void **state);
void test_seccomp_worker_x32_syscall_killed(void **state);
void test_seccomp_worker_i386_syscall_killed(void **state);
void test_seccomp_worker_tsync_covers_threads(void **state);
void test_seccomp_worker_log_mode_not_killed(void **state);
void test_seccomp_worker_every_allowed_syscall_passes(void **state);
void test_seccomp_worker_every_unlisted_syscall_killed(void **state);
void test_seccomp_worker_argument_filters_enforced(void **state);
void test_seccomp_worker_allowed_within_broker(void **state);

/* seccomp_broker_tests.c */
void test_seccomp_broker_vfio_ioctl_allowed(void **state);
void test_seccomp_broker_listed_vfio_ioctls_allowed(void **state);
void test_seccomp_broker_other_ioctls_killed(void **state);
void test_seccomp_broker_execve_killed(void **state);
void test_seccomp_broker_socket_inet_killed(void **state);
void test_seccomp_broker_unix_sockets_work(void **state);
void test_seccomp_broker_memfd_map_works(void **state);
void test_seccomp_broker_state_record_works(void **state);
void test_seccomp_broker_registry_sorted_by_bdf_works(void **state);
void test_seccomp_broker_record_many_owners_adopted(void **state);
void test_seccomp_broker_openat_create_denied(void **state);
void test_seccomp_broker_debug_and_kernel_calls_killed(void **state);
void test_seccomp_broker_kill_killed(void **state);
void test_seccomp_broker_mount_other_flags_killed(void **state);
void test_seccomp_broker_spawn_worker_works(void **state);
void test_seccomp_broker_threads_work(void **state);
void test_seccomp_broker_log_mode_not_killed(void **state);
void test_seccomp_broker_every_allowed_syscall_passes(void **state);
void test_seccomp_broker_every_unlisted_syscall_killed(void **state);
void test_seccomp_broker_argument_filters_enforced(void **state);

#endif
