/*
 * seccomp_probe: the fork-load-probe harness and the policy sweeps of test_seccomp (see
 * seccomp_probe.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cmocka.h>
#include <asm/prctl.h>
#include <linux/vfio.h>

#include "policy_table.h"
#include "sandbox.h"
#include "seccomp.h"
#include "seccomp_probe.h"
#include "test_wait.h"

pid_t test_pid;
uint64_t fs_base;

/* When >= 0, probe children point their fds 0..2 at it before loading a policy (the sweeps
 * make calls such as fchmod(0, 0) that must not reach the test's terminal). */
static int scratch_fd = -1;

/* Ends a probe child with a raw exit_group: the sanitizers' _exit hook would run leak checks,
 * which need calls (ptrace, clone) that the policies rightly forbid. Deliberately not marked
 * noreturn: ASan precedes calls to noreturn functions with a sigaltstack() probe. */
void child_exit(int code)
{
	for (;;)
		syscall(SYS_exit_group, code);
}

/* Forks, loads the role's policy in `mode` in the child, runs fn there and returns the wait
 * status. Core dumps are off so that SIGSYS kills leave nothing behind. */
int run_under(enum sbx_role role, enum sbx_seccomp_mode mode, probe_fn fn, void *arg)
{
	struct rlimit no_core = {0, 0};
	int status;
	pid_t pid;

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
		setrlimit(RLIMIT_CORE, &no_core);
		alarm(TEST_HANG_MS /
		      1000); /* a probe that blocks dies of SIGALRM, no test accepts it */
		/* cmocka's handlers would turn a crash into more syscalls (and a SIGSYS). */
		signal(SIGILL, SIG_DFL);
		signal(SIGSEGV, SIG_DFL);
		signal(SIGFPE, SIG_DFL);
		signal(SIGBUS, SIG_DFL);
		if (scratch_fd >= 0 &&
		    (dup2(scratch_fd, 0) < 0 || dup2(scratch_fd, 1) < 0 || dup2(scratch_fd, 2) < 0))
			child_exit(PROBE_WRONG);
		if (sbx_seccomp_load(role, mode) < 0)
			child_exit(PROBE_LOAD_FAILED);
		child_exit(fn(arg));
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

void assert_killed(int st)
{
	if (!KILLED_BY_SIGSYS(st))
		fail_msg("expected SIGSYS, got %s %d", WIFSIGNALED(st) ? "signal" : "exit",
			 WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
}

void assert_worked(int st)
{
	if (!WORKED(st))
		fail_msg("expected the probe to work, got %s %d",
			 WIFSIGNALED(st) ? "signal" : "exit",
			 WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
}

int probe_call(void *arg)
{
	const struct call *c = arg;
	long r = syscall(c->nr, c->a[0], c->a[1], c->a[2], c->a[3], c->a[4], c->a[5]);

	if (c->want_errno)
		return r == -1 && errno == c->want_errno ? PROBE_OK : PROBE_WRONG;
	return PROBE_OK;
}

int call_status(enum sbx_role role, long nr, long a0, long a1, long a2, long a3)
{
	struct call c = {.nr = nr, .a = {a0, a1, a2, a3, 0, 0}};

	return run_under(role, SBX_SECCOMP_KILL, probe_call, &c);
}

int make_memfd(void)
{
	int fd = memfd_create("device", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4096), 0);
	return fd;
}
int probe_execve(void *arg)
{
	char *argv[] = {"true", NULL}, *envp[] = {NULL};

	execve("/bin/true", argv, envp);
	return PROBE_WRONG;
}

int probe_socket_works(void *arg)
{
	int fd = socket(*(int *)arg, SOCK_STREAM | SOCK_CLOEXEC, 0);

	return fd >= 0 && close(fd) == 0 ? PROBE_OK : PROBE_WRONG;
}

/* ---- the rule tables against the kernel ----------------------------------------------------- */

enum verdict { V_KILL, V_ALLOW, V_ERRNO };

/* uretprobe (335) and uprobe (336) are let through by the kernel whatever the filter says
 * (seccomp's uprobe exception in recent kernels): they act only when called from the
 * kernel's own uprobe trampoline; anywhere else uprobe fails with ENXIO and uretprobe
 * raises SIGILL. For them, "killed" or "failed harmlessly" are both correct. */
static bool kernel_passthrough(int nr)
{
	return nr == 335 || nr == 336;
}

static bool cond_holds(const struct sbx_rule_cond *c, const uint64_t *a)
{
	uint64_t v = a[c->arg];

	switch (c->op) {
	case SBX_CMP_EQ:
		return v == c->value;
	case SBX_CMP_NE:
		return v != c->value;
	case SBX_CMP_LT:
		return v < c->value;
	case SBX_CMP_LE:
		return v <= c->value;
	case SBX_CMP_GT:
		return v > c->value;
	case SBX_CMP_GE:
		return v >= c->value;
	case SBX_CMP_MASKED_EQ:
		return (v & c->mask) == c->value;
	}
	return false;
}

/* What the policy text says about a call; the test's own reading, independent of libseccomp. */
static enum verdict evaluate(const struct sbx_policy *p, int nr, const uint64_t *a, int *err)
{
	for (size_t i = 0; i < p->nrules; i++) {
		const struct sbx_rule *r = &p->rules[i];
		bool all = r->nr == nr;

		for (unsigned j = 0; all && j < r->nconds; j++)
			all = cond_holds(&r->conds[j], a);
		if (!all)
			continue;
		*err = r->err;
		return r->action == SBX_RULE_ALLOW ? V_ALLOW : V_ERRNO;
	}
	return V_KILL;
}

/* Moves a[c->arg] into (or, with violate, out of) the set the condition accepts. */
static void shape_arg(const struct sbx_rule_cond *c, uint64_t *a, bool violate)
{
	uint64_t *v = &a[c->arg];
	uint64_t low = c->mask & -c->mask;

	switch (c->op) {
	case SBX_CMP_EQ:
		*v = violate ? c->value ^ 1 : c->value;
		break;
	case SBX_CMP_NE:
		*v = violate ? c->value : c->value ^ 1;
		break;
	case SBX_CMP_LT:
	case SBX_CMP_LE:
		*v = violate ? c->value + 1 : 0;
		break;
	case SBX_CMP_GT:
	case SBX_CMP_GE:
		*v = violate ? 0 : c->value + 1;
		break;
	case SBX_CMP_MASKED_EQ:
		*v = (*v & ~c->mask) | (violate ? (c->value ^ low) & c->mask : c->value);
		break;
	}
}

/* Calls that cannot be probed with made-up arguments have their own tests above. */
static bool sweep_skips(int nr)
{
	return nr == SYS_rt_sigreturn;
}

struct sweep_call {
	int nr;
	uint64_t a[6];
	enum verdict want;
	int err;
};

static int probe_sweep(void *arg)
{
	const struct sweep_call *c = arg;
	long r = syscall(c->nr, c->a[0], c->a[1], c->a[2], c->a[3], c->a[4], c->a[5]);

	if (c->want == V_ERRNO)
		return r == -1 && errno == c->err ? PROBE_OK : PROBE_WRONG;
	if (c->want == V_KILL)
		return kernel_passthrough(c->nr) && r == -1 ? PROBE_OK : PROBE_WRONG;
	return PROBE_OK;
}

/* Runs one call under the role's policy, with fds 0..2 pointing at a scratch memfd so that
 * calls such as fchmod(0, 0) or close(0) hurt nobody, and compares with the expectation. */
static bool sweep_one(enum sbx_role role, struct sweep_call *c, char *why, size_t len)
{
	int st;

	/* arch_prctl(ARCH_SET_FS, 0) would pull TLS away from under the probe. */
	if (c->nr == SYS_arch_prctl && c->a[0] == ARCH_SET_FS)
		c->a[1] = fs_base;
	st = run_under(role, SBX_SECCOMP_KILL, probe_sweep, c);
	if (c->want == V_KILL && KILLED_BY_SIGSYS(st))
		return true;
	if (c->want == V_KILL && kernel_passthrough(c->nr) &&
	    (WORKED(st) || (WIFSIGNALED(st) && WTERMSIG(st) == SIGILL)))
		return true;
	if (c->want != V_KILL && !KILLED_BY_SIGSYS(st) && (c->want != V_ERRNO || WORKED(st)))
		return true;
	snprintf(why, len, "syscall %d (%#llx, %#llx, %#llx, %#llx): want %s, got %s %d", c->nr,
		 (unsigned long long)c->a[0], (unsigned long long)c->a[1],
		 (unsigned long long)c->a[2], (unsigned long long)c->a[3],
		 c->want == V_KILL    ? "SIGSYS"
		 : c->want == V_ALLOW ? "allowed"
				      : "errno",
		 WIFSIGNALED(st) ? "signal" : "exit",
		 WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
	return false;
}

static bool rule_exists(const struct sbx_policy *p, int nr)
{
	for (size_t i = 0; i < p->nrules; i++)
		if (p->rules[i].nr == nr)
			return true;
	return false;
}

/* Reports up to a few mismatches at once, so one run shows the whole picture. */
struct sweep_report {
	unsigned failures;
	char text[2048];
	size_t len;
};

static void sweep_note(struct sweep_report *r, const struct sbx_policy *p, unsigned line,
		       const char *why)
{
	r->failures++;
	if (r->len < sizeof(r->text))
		r->len += (size_t)snprintf(r->text + r->len, sizeof(r->text) - r->len,
					   "\n  %s:%u: %s", p->source, line, why);
}

static void sweep_finish(struct sweep_report *r)
{
	if (r->failures)
		fail_msg("%u mismatch(es) between policy and kernel:%s", r->failures, r->text);
}

static void sweep_begin(void)
{
	scratch_fd = memfd_create("sweep-stdio", MFD_CLOEXEC);
	assert_true(scratch_fd >= 0);
}

static void sweep_end(void)
{
	close(scratch_fd);
	scratch_fd = -1;
}

void sweep_allowed(enum sbx_role role)
{
	const struct sbx_policy *p = sbx_policy_get(role);
	struct sweep_report rep = {0};
	char why[256];

	sweep_begin();
	for (size_t i = 0; i < p->nrules; i++) {
		const struct sbx_rule *r = &p->rules[i];
		struct sweep_call c = {.nr = r->nr};

		if (sweep_skips(r->nr))
			continue;
		for (unsigned j = 0; j < r->nconds; j++)
			shape_arg(&r->conds[j], c.a, false);
		c.want = evaluate(p, r->nr, c.a, &c.err);
		if (c.want == V_KILL)
			sweep_note(&rep, p, r->line, "conditions cannot be met together");
		else if (!sweep_one(role, &c, why, sizeof(why)))
			sweep_note(&rep, p, r->line, why);
	}
	sweep_end();
	sweep_finish(&rep);
}

void sweep_unlisted(enum sbx_role role)
{
	static const int beyond[] = {SWEEP_MAX_NR, 1023, 0x3fffffff};
	const struct sbx_policy *p = sbx_policy_get(role);
	struct sweep_report rep = {0};
	unsigned tested = 0;
	char why[256];

	sweep_begin();
	for (int nr = 0; nr < SWEEP_MAX_NR + 3; nr++) {
		struct sweep_call c = {.nr = nr < SWEEP_MAX_NR ? nr : beyond[nr - SWEEP_MAX_NR],
				       .want = V_KILL};

		if (rule_exists(p, c.nr))
			continue;
		tested++;
		if (!sweep_one(role, &c, why, sizeof(why)))
			sweep_note(&rep, p, 0, why);
	}
	sweep_end();
	/* Sanity: most of the syscall table is forbidden to both roles. */
	assert_true(tested > SWEEP_MAX_NR / 2);
	sweep_finish(&rep);
}

void sweep_conditions(enum sbx_role role)
{
	const struct sbx_policy *p = sbx_policy_get(role);
	struct sweep_report rep = {0};
	unsigned tested = 0;
	char why[256];

	sweep_begin();
	for (size_t i = 0; i < p->nrules; i++) {
		const struct sbx_rule *r = &p->rules[i];

		for (unsigned k = 0; k < r->nconds; k++) {
			struct sweep_call c = {.nr = r->nr};

			for (unsigned j = 0; j < r->nconds; j++)
				shape_arg(&r->conds[j], c.a, j == k);
			c.want = evaluate(p, r->nr, c.a, &c.err);
			tested++;
			if (!sweep_one(role, &c, why, sizeof(why)))
				sweep_note(&rep, p, r->line, why);
		}
	}
	sweep_end();
	assert_true(tested > 0);
	sweep_finish(&rep);
}
/* The broker's filter stays loaded under every worker, so each call the worker policy allows
 * must be allowed by the broker's too, and none it denies quietly may be fatal there. */
void sweep_worker_within_broker(void)
{
	const struct sbx_policy *w = sbx_policy_get(SBX_ROLE_WORKER);
	const struct sbx_policy *b = sbx_policy_get(SBX_ROLE_BROKER);
	struct sweep_report rep = {0};

	for (size_t i = 0; i < w->nrules; i++) {
		const struct sbx_rule *r = &w->rules[i];
		uint64_t a[6] = {0};
		enum verdict v;
		int err;

		for (unsigned j = 0; j < r->nconds; j++)
			shape_arg(&r->conds[j], a, false);
		v = evaluate(b, r->nr, a, &err);
		if ((r->action == SBX_RULE_ALLOW && v != V_ALLOW) || v == V_KILL)
			sweep_note(&rep, w, r->line, r->syscall);
	}
	sweep_finish(&rep);
}
