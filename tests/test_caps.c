/*
 * test_caps: vfio-brokerd's capability drop (broker/caps.c) from each way the broker is started:
 * uid 0 with everything (by hand, or the allow-bind drop-in), the vfio-broker service user as
 * systemd starts it (ambient capabilities, bounding set already cut), that user with a full
 * bounding set, and an unprivileged run holding part of the set. Each case runs in a forked child
 * that sets its credentials up, calls brk_caps_drop() and reports /proc/self/status, and what a
 * program it executes afterwards starts with (a worker must start with nothing).
 *
 * Needs uid 0 to set the starting credentials up (make check runs as root); skipped otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/capability.h>

#include <cmocka.h>

#include "caps.h"

#define NOBODY 65534

struct caps_seen {
	int r;			     /* brk_caps_drop() */
	struct brk_caps_outcome out; /* its report */
	uint64_t eff, prm, inh, bnd, amb;
	uint64_t exec_prm, exec_eff, exec_amb; /* of /bin/cat run afterwards */
	unsigned uid;
	char err[128]; /* set-up failure in the child, if any */
};

/* The Cap* field NAME of a /proc/PID/status text. */
static uint64_t status_field(const char *text, const char *name)
{
	const char *p = strstr(text, name);

	if (!p)
		return UINT64_MAX;
	return strtoull(p + strlen(name) + 2, NULL, 16);
}

static int read_all(int fd, char *buf, size_t len)
{
	size_t got = 0;
	ssize_t n;

	while (got + 1 < len && (n = read(fd, buf + got, len - 1 - got)) > 0)
		got += (size_t)n;
	buf[got] = '\0';
	return (int)got;
}

/* What a program executed now starts with: /bin/cat /proc/self/status in a grandchild. */
static void exec_status(struct caps_seen *s)
{
	char text[8192];
	int p[2], st;
	pid_t pid;

	/* Unreadable (any failure below) reads as all bits set, which no assertion accepts. */
	s->exec_prm = s->exec_eff = s->exec_amb = UINT64_MAX;
	if (pipe(p) < 0)
		return;
	pid = fork();
	if (pid == 0) {
		dup2(p[1], STDOUT_FILENO);
		execl("/bin/cat", "cat", "/proc/self/status", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	read_all(p[0], text, sizeof(text));
	close(p[0]);
	waitpid(pid, &st, 0);
	s->exec_prm = status_field(text, "CapPrm");
	s->exec_eff = status_field(text, "CapEff");
	s->exec_amb = status_field(text, "CapAmb");
}

static int capset_sets(uint64_t eff, uint64_t prm, uint64_t inh)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[2] = {
	    {(uint32_t)eff, (uint32_t)prm, (uint32_t)inh},
	    {(uint32_t)(eff >> 32), (uint32_t)(prm >> 32), (uint32_t)(inh >> 32)},
	};

	return (int)syscall(SYS_capset, &h, d);
}

enum start {
	START_ROOT,	      /* uid 0, every capability */
	START_SERVICE,	      /* vfio-broker.service: nobody, ambient = bounding = kept */
	START_USER_FULL_BSET, /* nobody, ambient = kept, full bounding set */
	START_USER_PARTIAL,   /* nobody holding CAP_CHOWN only */
};

/* Credentials as the start mode describes, from uid 0; "" or what failed. */
static const char *set_up(enum start how)
{
	uint64_t keep = brk_caps_mask(),
		 have = how == START_USER_PARTIAL ? 1ull << CAP_CHOWN : keep;

	if (how == START_ROOT)
		return "";
	if (how == START_SERVICE) {
		for (unsigned long c = 0; c < 64; c++)
			if (!(keep >> c & 1) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 &&
			    errno != EINVAL)
				return "PR_CAPBSET_DROP";
	}
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
		return "PR_SET_KEEPCAPS";
	if (setresgid(NOBODY, NOBODY, NOBODY) < 0 || setresuid(NOBODY, NOBODY, NOBODY) < 0)
		return "setresuid";
	/* systemd's way for a non-root user: permitted, inheritable and ambient. */
	if (capset_sets(have, have, have) < 0)
		return "capset";
	for (unsigned long c = 0; c < 64; c++)
		if ((have >> c & 1) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0)
			return "PR_CAP_AMBIENT_RAISE";
	return "";
}

static struct caps_seen run_drop(enum start how)
{
	struct caps_seen s;
	char text[8192];
	int p[2], st, fd;
	pid_t pid;

	memset(&s, 0, sizeof(s));
	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		const char *fail = set_up(how);

		close(p[0]);
		if (*fail) {
			snprintf(s.err, sizeof(s.err), "%s: %s", fail, strerror(errno));
		} else {
			s.r = brk_caps_drop(&s.out);
			fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
			read_all(fd, text, sizeof(text));
			close(fd);
			s.eff = status_field(text, "CapEff");
			s.prm = status_field(text, "CapPrm");
			s.inh = status_field(text, "CapInh");
			s.bnd = status_field(text, "CapBnd");
			s.amb = status_field(text, "CapAmb");
			s.uid = (unsigned)getuid();
			exec_status(&s);
		}
		_exit(write(p[1], &s, sizeof(s)) == (ssize_t)sizeof(s) ? 0 : 1);
	}
	close(p[1]);
	assert_int_equal(read(p[0], &s, sizeof(s)), (ssize_t)sizeof(s));
	close(p[0]);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	if (s.err[0])
		fail_msg("child set-up: %s", s.err);
	return s;
}

static int need_root(void **state)
{
	(void)state;
	if (geteuid() != 0) {
		print_message("# needs uid 0 to set up the starting credentials\n");
		skip();
	}
	return 0;
}

static void assert_reduced(const struct caps_seen *s, uint64_t want)
{
	assert_int_equal(s->r, 0);
	assert_int_equal(s->out.missing, brk_caps_mask() & ~want);
	assert_int_equal(s->eff, want);
	assert_int_equal(s->prm, want);
	assert_int_equal(s->inh, 0);
	assert_int_equal(s->amb, 0);
	/* A worker (any program executed) starts with nothing. */
	assert_int_equal(s->exec_amb, 0);
	if (s->uid != 0) {
		assert_int_equal(s->exec_prm, 0);
		assert_int_equal(s->exec_eff, 0);
	}
}

static void test_caps_root_reduced_to_kept_everywhere(void **state)
{
	struct caps_seen s = run_drop(START_ROOT);

	(void)state;
	assert_reduced(&s, brk_caps_mask());
	assert_int_equal(s.uid, 0);
	assert_int_equal(s.bnd, brk_caps_mask());
	assert_false(s.out.bounding_left);
	/* uid 0 regains its permitted set at exec, but only what the bounding set still holds. */
	assert_int_equal(s.exec_prm, brk_caps_mask());
}

static void test_caps_service_user_ambient_cleared_kept(void **state)
{
	struct caps_seen s = run_drop(START_SERVICE);

	(void)state;
	assert_int_equal(s.uid, NOBODY);
	assert_reduced(&s, brk_caps_mask());
	assert_int_equal(s.bnd, brk_caps_mask());
	assert_false(s.out.bounding_left);
}

static void test_caps_user_full_bounding_set_reported_left(void **state)
{
	struct caps_seen s = run_drop(START_USER_FULL_BSET);

	(void)state;
	assert_reduced(&s, brk_caps_mask());
	assert_true(s.out.bounding_left);
	assert_int_not_equal(s.bnd, brk_caps_mask());
	assert_int_equal(s.bnd & brk_caps_mask(), brk_caps_mask());
}

static void test_caps_user_lacking_some_keeps_what_it_has(void **state)
{
	struct caps_seen s = run_drop(START_USER_PARTIAL);

	(void)state;
	assert_reduced(&s, 1ull << CAP_CHOWN);
	assert_true(s.out.bounding_left);
	assert_int_equal(s.out.missing, brk_caps_mask() & ~(1ull << CAP_CHOWN));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_caps_root_reduced_to_kept_everywhere, need_root),
	    cmocka_unit_test_setup(test_caps_service_user_ambient_cleared_kept, need_root),
	    cmocka_unit_test_setup(test_caps_user_full_bounding_set_reported_left, need_root),
	    cmocka_unit_test_setup(test_caps_user_lacking_some_keeps_what_it_has, need_root),
	};

	return cmocka_run_group_tests_name("caps", tests, NULL, NULL);
}
