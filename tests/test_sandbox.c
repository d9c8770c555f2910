/*
 * test_sandbox: sbx_spawn_worker() (policy/sandbox.c). Each test starts the static sbx_helper
 * through the real sandbox and compares what it reports from the inside (over the socketpair
 * at fd 3) with what the host sees in /proc/<pid>. Runs as root.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/mount.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "base.h"
#include "sandbox.h"
#include "userns_test.h"
#include "test_wait.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define TEST_UID 61000
#define TEST_GID 61001

struct helper {
	pid_t pid;
	int pidfd;
	int chan; /* the test's end of the socketpair whose other end is the helper's fd 3 */
};

struct helper_opts {
	const char *mode;
	const int *extra_fds; /* placed at 4, 5, ... */
	size_t nextra;
	const struct sbx_rlimit *rlimits;
	size_t nrlimits;
	char *const *envp;
	int stderr_fd;
};

static int spawn_helper(const struct helper_opts *o, struct helper *h, struct sbx_spawn_error *e)
{
	char *argv[] = {"sbx_helper", (char *)o->mode, NULL};
	int sv[2], fds[8], r;
	struct sbx_worker_spec spec = {
	    .exe = SBX_HELPER_PATH,
	    .argv = argv,
	    .envp = o->envp,
	    .fds = fds,
	    .nfds = 1 + o->nextra,
	    .stderr_fd = o->stderr_fd,
	    .uid = TEST_UID,
	    .gid = TEST_GID,
	    .rlimits = o->rlimits,
	    .nrlimits = o->nrlimits,
	    .error = e,
	};

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	fds[0] = sv[1];
	for (size_t i = 0; i < o->nextra; i++)
		fds[1 + i] = o->extra_fds[i];
	r = sbx_spawn_worker(&spec, &h->pid, &h->pidfd);
	close(sv[1]);
	if (r < 0) {
		close(sv[0]);
		return r;
	}
	h->chan = sv[0];
	return 0;
}

static int recv_msg(int fd, char *buf, size_t len)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	ssize_t n;

	if (poll(&p, 1, TEST_HANG_MS) != 1)
		return -ETIMEDOUT;
	n = recv(fd, buf, len - 1, 0);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return (int)n;
}

/* Hangs up and reaps; returns the wait status as siginfo. */
static siginfo_t finish(struct helper *h)
{
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	close(h->chan);
	while (waitid((idtype_t)P_PIDFD, (id_t)h->pidfd, &si, WEXITED) < 0 && errno == EINTR)
		;
	close(h->pidfd);
	return si;
}

/* The value of "key=" in a helper report, or of "Key:" in a /proc status file. */
static const char *field(const char *text, const char *key, char *out, size_t len)
{
	size_t k = strlen(key);
	const char *p = text, *e;

	while (p && *p) {
		if (strncmp(p, key, k) == 0) {
			p += k;
			while (*p == '\t' || *p == ' ')
				p++;
			e = strchr(p, '\n');
			if (!e)
				e = p + strlen(p);
			snprintf(out, len, "%.*s", (int)(e - p), p);
			return out;
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return NULL;
}

static void read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	assert_true(fd >= 0);
	n = read(fd, buf, len - 1);
	assert_true(n > 0);
	buf[n] = '\0';
	close(fd);
}

static void host_status(pid_t pid, char *buf, size_t len)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	read_file(path, buf, len);
}

static void assert_no_children(void)
{
	siginfo_t si;

	assert_int_equal(waitid(P_ALL, 0, &si, WEXITED | WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
}

static void spawn_report(struct helper *h, char *report, size_t len,
			 const struct helper_opts *extra)
{
	struct helper_opts o = {.mode = "report", .stderr_fd = -1};
	struct sbx_spawn_error e = {0};
	int r;

	if (extra)
		o = *extra;
	r = spawn_helper(&o, h, &e);
	if (r < 0)
		fail_msg("spawn: %s: %s", e.step, strerror(-r));
	assert_true(recv_msg(h->chan, report, len) > 0);
}

static void finish_ok(struct helper *h)
{
	siginfo_t si = finish(h);

	assert_int_equal(si.si_code, CLD_EXITED);
	assert_int_equal(si.si_status, 0);
}

static void test_sandbox_spawn_uid_gid_unprivileged(void **state)
{
	char rep[4096], st[4096], v[128], want[128];
	struct helper h;

	need_userns();

	spawn_report(&h, rep, sizeof(rep), NULL);
	host_status(h.pid, st, sizeof(st));
	snprintf(want, sizeof(want), "%d\t%d\t%d\t%d", TEST_UID, TEST_UID, TEST_UID, TEST_UID);
	assert_string_equal(field(st, "Uid:", v, sizeof(v)), want);
	snprintf(want, sizeof(want), "%d\t%d\t%d\t%d", TEST_GID, TEST_GID, TEST_GID, TEST_GID);
	assert_string_equal(field(st, "Gid:", v, sizeof(v)), want);
	assert_string_equal(field(st, "Groups:", v, sizeof(v)), "");
	assert_int_equal(atoi(field(rep, "uid=", v, sizeof(v))), TEST_UID);
	assert_int_equal(atoi(field(rep, "euid=", v, sizeof(v))), TEST_UID);
	assert_int_equal(atoi(field(rep, "gid=", v, sizeof(v))), TEST_GID);
	assert_string_equal(field(rep, "ngroups=", v, sizeof(v)), "0");
	finish_ok(&h);
}

static void test_sandbox_spawn_caps_none(void **state)
{
	static const char *const sets[] = {"CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"};
	char rep[4096], st[4096], v[128];
	struct helper h;

	need_userns();

	spawn_report(&h, rep, sizeof(rep), NULL);
	host_status(h.pid, st, sizeof(st));
	for (size_t i = 0; i < ARRAY_SIZE(sets); i++)
		assert_string_equal(field(st, sets[i], v, sizeof(v)), "0000000000000000");
	assert_string_equal(field(rep, "capeff=", v, sizeof(v)), "000000000");
	assert_string_equal(field(rep, "capprm=", v, sizeof(v)), "000000000");
	assert_string_equal(field(rep, "capinh=", v, sizeof(v)), "000000000");
	assert_string_equal(field(rep, "bnd=", v, sizeof(v)), "0");
	assert_string_equal(field(rep, "amb=", v, sizeof(v)), "0");
	finish_ok(&h);
}

static void test_sandbox_spawn_no_new_privs(void **state)
{
	char rep[4096], st[4096], v[128];
	struct helper h;

	need_userns();

	spawn_report(&h, rep, sizeof(rep), NULL);
	host_status(h.pid, st, sizeof(st));
	assert_string_equal(field(st, "NoNewPrivs:", v, sizeof(v)), "1");
	assert_string_equal(field(rep, "nnp=", v, sizeof(v)), "1");
	finish_ok(&h);
}

static void test_sandbox_spawn_namespaces_differ(void **state)
{
	static const char *const ns[] = {"user", "pid", "net", "mnt", "ipc", "uts", "cgroup"};
	char rep[4096], path[64];
	struct stat mine, its;
	struct helper h;

	need_userns();

	spawn_report(&h, rep, sizeof(rep), NULL);
	for (size_t i = 0; i < ARRAY_SIZE(ns); i++) {
		snprintf(path, sizeof(path), "/proc/self/ns/%s", ns[i]);
		assert_int_equal(stat(path, &mine), 0);
		snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)h.pid, ns[i]);
		assert_int_equal(stat(path, &its), 0);
		if (mine.st_ino == its.st_ino)
			fail_msg("the worker shares the %s namespace", ns[i]);
	}
	finish_ok(&h);
}

static void test_sandbox_spawn_pid_one(void **state)
{
	char rep[4096], v[128];
	struct helper h;

	need_userns();

	spawn_report(&h, rep, sizeof(rep), NULL);
	assert_string_equal(field(rep, "pid=", v, sizeof(v)), "1");
	assert_string_equal(field(rep, "ppid=", v, sizeof(v)), "0");
	finish_ok(&h);
}

static void test_sandbox_spawn_root_empty(void **state)
{
	char rep[4096], v[128];
	struct helper h;

	need_userns();

	spawn_report(&h, rep, sizeof(rep), NULL);
	assert_string_equal(field(rep, "root_entries=", v, sizeof(v)), "0");
	assert_int_equal(atoi(field(rep, "passwd_errno=", v, sizeof(v))), ENOENT);
	assert_int_equal(atoi(field(rep, "proc_errno=", v, sizeof(v))), ENOENT);
	finish_ok(&h);
}

static void test_sandbox_spawn_rlimits_applied(void **state)
{
	static const struct sbx_rlimit rl[] = {
	    {RLIMIT_NOFILE, 17}, {RLIMIT_NPROC, 1}, {RLIMIT_FSIZE, 0},
	    {RLIMIT_MEMLOCK, 0}, {RLIMIT_CORE, 0},  {RLIMIT_AS, 256ull << 20},
	};
	struct helper_opts o;
	char rep[4096], v[128];
	struct helper h;

	need_userns();
	o = (struct helper_opts){.mode = "report", .stderr_fd = -1, .rlimits = rl, .nrlimits = 6};

	spawn_report(&h, rep, sizeof(rep), &o);
	assert_string_equal(field(rep, "nofile=", v, sizeof(v)), "17:17");
	assert_string_equal(field(rep, "nproc=", v, sizeof(v)), "1:1");
	assert_string_equal(field(rep, "fsize=", v, sizeof(v)), "0:0");
	assert_string_equal(field(rep, "memlock=", v, sizeof(v)), "0:0");
	assert_string_equal(field(rep, "core=", v, sizeof(v)), "0:0");
	assert_string_equal(field(rep, "as=", v, sizeof(v)), "268435456:268435456");
	finish_ok(&h);
}

static void test_sandbox_spawn_default_rlimits_applied(void **state)
{
	char rep[4096], v[128], want[64];
	struct helper h;
	size_t i;

	need_userns();

	spawn_report(&h, rep, sizeof(rep), NULL);
	for (i = 0; i < sbx_worker_rlimits_default_count; i++) {
		if (sbx_worker_rlimits_default[i].resource != RLIMIT_NOFILE)
			continue;
		snprintf(want, sizeof(want), "%llu:%llu",
			 (unsigned long long)sbx_worker_rlimits_default[i].limit,
			 (unsigned long long)sbx_worker_rlimits_default[i].limit);
		assert_string_equal(field(rep, "nofile=", v, sizeof(v)), want);
	}
	assert_true(atoi(field(rep, "nofile=", v, sizeof(v))) <= 256);
	finish_ok(&h);
}

static void test_sandbox_spawn_fds_only_passed(void **state)
{
	char rep[4096], v[128];
	struct helper h;
	int memfd;
	int leak;
	struct helper_opts o;

	need_userns();
	memfd = memfd_create("fd-four", MFD_CLOEXEC);
	/* Not close-on-exec on our side: it must still not reach the worker. */
	leak = open("/dev/null", O_RDONLY);
	o = (struct helper_opts){
	    .mode = "report", .stderr_fd = -1, .extra_fds = &memfd, .nextra = 1};

	assert_true(memfd >= 0 && leak >= 0);
	assert_int_equal(write(memfd, "fd-four", 7), 7);
	spawn_report(&h, rep, sizeof(rep), &o);
	assert_string_equal(field(rep, "fds=", v, sizeof(v)), "0,1,2,3,4,");
	assert_string_equal(field(rep, "fd4=", v, sizeof(v)), "fd-four");
	finish_ok(&h);
	close(memfd);
	close(leak);
}

static void test_sandbox_spawn_env_only_given(void **state)
{
	char *envp[] = {"VB_TEST=1", NULL};
	struct helper_opts o;
	char rep[4096], v[128];
	struct helper h;

	need_userns();
	o = (struct helper_opts){.mode = "report", .stderr_fd = -1, .envp = envp};

	setenv("VB_SANDBOX_SECRET", "must-not-leak", 1);
	spawn_report(&h, rep, sizeof(rep), NULL);
	assert_string_equal(field(rep, "env=", v, sizeof(v)), "0");
	finish_ok(&h);
	spawn_report(&h, rep, sizeof(rep), &o);
	assert_string_equal(field(rep, "env=", v, sizeof(v)), "1");
	finish_ok(&h);
	unsetenv("VB_SANDBOX_SECRET");
}

static void test_sandbox_spawn_stderr_placed(void **state)
{
	struct helper_opts o = {.mode = "stderr"};
	struct helper h;
	char buf[128];
	int p[2];
	ssize_t n;

	need_userns();

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	o.stderr_fd = p[1];
	assert_int_equal(spawn_helper(&o, &h, NULL), 0);
	close(p[1]);
	n = read(p[0], buf, sizeof(buf) - 1);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_string_equal(buf, "sbx_helper: stderr works\n");
	finish_ok(&h);
	close(p[0]);
}

static void test_sandbox_spawn_worker_policy_kills(void **state)
{
	struct helper_opts o = {.mode = "worker-policy", .stderr_fd = -1};
	char msg[64], st[4096], v[64];
	struct helper h;
	siginfo_t si;

	need_userns();

	assert_int_equal(spawn_helper(&o, &h, NULL), 0);
	assert_true(recv_msg(h.chan, msg, sizeof(msg)) > 0);
	assert_string_equal(msg, "loaded=0");
	host_status(h.pid, st, sizeof(st));
	assert_string_equal(field(st, "Seccomp:", v, sizeof(v)), "2");
	/* Only the worker's own filter: the test process has none to pass on. */
	assert_string_equal(field(st, "Seccomp_filters:", v, sizeof(v)), "1");
	assert_int_equal(send(h.chan, "x", 1, 0), 1);
	si = finish(&h);
	assert_int_equal(si.si_code, CLD_KILLED);
	assert_int_equal(si.si_status, SIGSYS);
}

static void test_sandbox_spawn_pidfd_supervises(void **state)
{
	char rep[4096];
	struct helper h;
	struct pollfd p;
	siginfo_t si;

	need_userns();

	spawn_report(&h, rep, sizeof(rep), NULL);
	p.fd = h.pidfd;
	p.events = POLLIN;
	assert_int_equal(poll(&p, 1, 0), 0); /* alive */
	assert_int_equal(syscall(SYS_pidfd_send_signal, h.pidfd, SIGKILL, NULL, 0), 0);
	assert_int_equal(poll(&p, 1, TEST_HANG_MS), 1);
	si = finish(&h);
	assert_int_equal(si.si_code, CLD_KILLED);
	assert_int_equal(si.si_status, SIGKILL);
}

static void spawn_expect_error(struct sbx_worker_spec *spec, int want, const char *step)
{
	struct sbx_spawn_error e = {0};
	pid_t pid = -1;
	int pidfd = -1;

	spec->error = &e;
	assert_int_equal(sbx_spawn_worker(spec, &pid, &pidfd), want);
	assert_int_equal(e.err, want);
	assert_string_equal(e.step, step);
	assert_int_equal(pid, -1);
	assert_int_equal(pidfd, -1);
	assert_no_children();
}

static void test_sandbox_spawn_bad_exe_no_child(void **state)
{
	char *argv[] = {"worker", NULL};
	struct sbx_worker_spec s = {.exe = "/nonexistent/vfio-worker",
				    .argv = argv,
				    .stderr_fd = -1,
				    .uid = TEST_UID,
				    .gid = TEST_GID};

	spawn_expect_error(&s, -ENOENT, "open exe");
	s.exe = "/tmp";
	spawn_expect_error(&s, -EACCES, "exe is not a regular file");
}

static void test_sandbox_spawn_dynamic_exe_fails_at_execveat(void **state)
{
	char *argv[] = {"true", NULL};
	struct sbx_worker_spec s;

	need_userns();
	/* A dynamic executable needs its loader, which the empty root does not have. */
	s = (struct sbx_worker_spec){
	    .exe = "/bin/true", .argv = argv, .stderr_fd = -1, .uid = TEST_UID, .gid = TEST_GID};

	spawn_expect_error(&s, -ENOENT, "execveat");
}

static void test_sandbox_spawn_bad_spec_rejected(void **state)
{
	char *argv[] = {"sbx_helper", "report", NULL};
	int closed_fd = 1000, fds[SBX_FDS_MAX + 1];
	struct sbx_rlimit bad_rl = {RLIMIT_NLIMITS, 1};
	struct sbx_worker_spec s = {
	    .exe = SBX_HELPER_PATH, .argv = argv, .stderr_fd = -1, .uid = 0, .gid = TEST_GID};

	spawn_expect_error(&s, -EINVAL, "check spec"); /* root uid */
	s.uid = TEST_UID;
	s.gid = 0;
	spawn_expect_error(&s, -EINVAL, "check spec"); /* root gid */
	s.gid = TEST_GID;
	s.argv = NULL;
	spawn_expect_error(&s, -EINVAL, "check spec");
	s.argv = argv;
	close(closed_fd);
	s.fds = &closed_fd;
	s.nfds = 1;
	spawn_expect_error(&s, -EBADF, "check spec");
	for (size_t i = 0; i < SBX_FDS_MAX + 1; i++)
		fds[i] = 0;
	s.fds = fds;
	s.nfds = SBX_FDS_MAX + 1;
	spawn_expect_error(&s, -EINVAL, "check spec");
	s.fds = NULL;
	s.nfds = 0;
	s.rlimits = &bad_rl;
	s.nrlimits = 1;
	spawn_expect_error(&s, -EINVAL, "check spec");
}

static void test_sandbox_spawn_failed_step_reported(void **state)
{
	static const struct sbx_rlimit rl[] = {{RLIMIT_NOFILE, 1ull << 40}};
	char *argv[] = {"sbx_helper", "report", NULL};
	struct sbx_worker_spec s;

	need_userns();
	/* Above fs.nr_open: setrlimit fails inside the child, after the namespaces exist. */
	s = (struct sbx_worker_spec){.exe = SBX_HELPER_PATH,
				     .argv = argv,
				     .stderr_fd = -1,
				     .uid = TEST_UID,
				     .gid = TEST_GID,
				     .rlimits = rl,
				     .nrlimits = 1};

	spawn_expect_error(&s, -EPERM, "setrlimit");
}

struct spawn_thread {
	struct helper h;
	int r;
};

static void *spawn_thread_main(void *arg)
{
	struct spawn_thread *t = arg;
	struct helper_opts o = {.mode = "report", .stderr_fd = -1};

	t->r = spawn_helper(&o, &t->h, NULL);
	return NULL;
}

/* No parent-death signal (issue 12): a worker outlives the thread and the process that spawned
 * it, because a broker restart must not end it; it ends when its channel hangs up. The helper
 * is spawned from a thread that has ended before anything is checked: it reports no death signal
 * armed (PR_SET_PDEATHSIG would read 9, deterministically), answers after its spawner is gone,
 * and exits 0 of its own when the test closes the other end of its fd 3, which is seen through
 * the pidfd (no sleep, no timeout: it would only turn a hang into a slower failure). */
static void test_sandbox_spawn_outlives_spawner_ends_on_hangup(void **state)
{
	struct spawn_thread t = {.r = -1};
	char rep[4096], v[32];
	pthread_t th;
	siginfo_t si;
	struct pollfd p;

	need_userns();

	assert_int_equal(pthread_create(&th, NULL, spawn_thread_main, &t), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(t.r, 0);
	assert_true(recv_msg(t.h.chan, rep, sizeof(rep)) > 0);
	assert_non_null(field(rep, "pdeathsig=", v, sizeof(v)));
	assert_string_equal(v, "0");
	p = (struct pollfd){.fd = t.h.pidfd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 0), 0); /* alive, its spawner gone */
	close(t.h.chan);
	t.h.chan = -1;
	while (poll(&p, 1, -1) < 0 && errno == EINTR)
		;
	memset(&si, 0, sizeof(si));
	assert_int_equal(waitid((idtype_t)P_PIDFD, (id_t)t.h.pidfd, &si, WEXITED), 0);
	close(t.h.pidfd);
	assert_int_equal(si.si_code, CLD_EXITED);
	assert_int_equal(si.si_status, 0);
}

/* Issue 14, finding 7: in a chroot the kernel refuses new user namespaces; the probe must find
 * that out by trying, and say so. The chroot is an empty directory with /proc mounted in it, as
 * in a Debian root made with debootstrap, entered in a mount namespace of its own (needs root). */
static void test_sandbox_userns_probe_in_chroot_says_why(void **state)
{
	char dir[] = "/tmp/vb-sbx-chroot-XXXXXX";
	int p[2], st;
	char why[VB_ERR_MAX] = "";
	ssize_t n;
	char proc[64];
	pid_t pid;
	char got[VB_ERR_MAX + 16] = "";

	if (geteuid() != 0) {
		print_message("needs root to make a chroot (unshare, mount, chroot)\n");
		skip();
	}
	assert_non_null(mkdtemp(dir));
	snprintf(proc, sizeof(proc), "%s/proc", dir);
	assert_int_equal(mkdir(proc, 0555), 0);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct vb_err err = {0};
		char out[VB_ERR_MAX + 16];
		int r = -1;

		if (unshare(CLONE_NEWNS) == 0 &&
		    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 &&
		    mount("/proc", proc, NULL, MS_BIND | MS_REC, NULL) == 0 && chroot(dir) == 0 &&
		    chdir("/") == 0) {
			r = sbx_userns_probe(&err);
			snprintf(why, sizeof(why), "%s", err.msg);
		} else {
			snprintf(why, sizeof(why), "setting up the chroot: %s", strerror(errno));
		}
		n = snprintf(out, sizeof(out), "%d %s", r, why);
		_exit(write(p[1], out, (size_t)n) == n ? 0 : 1);
	}
	close(p[1]);
	n = read(p[0], got, sizeof(got) - 1);
	close(p[0]);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	rmdir(proc);
	rmdir(dir);
	assert_true(n > 0);
	if (!strstr(got, "chroot") || strncmp(got, "-1 ", 3) != 0)
		fail_msg("probe in a chroot answered '%s'", got);
}

/* The spawn in two halves (an event loop's): sbx_spawn_begin() returns with the child released
 * and its report pipe; sbx_spawn_end(), called whenever the pipe is readable, says -EAGAIN until
 * something happened, then 0 once the child exec'd, which is then the same sandboxed child as
 * sbx_spawn_worker()'s. */
static int spawn_end_polled(struct sbx_pending *p, struct sbx_spawn_error *e)
{
	int64_t deadline = test_now_ms() + TEST_HANG_MS;
	int r;

	for (;;) {
		struct pollfd pf = {.fd = p->report_fd, .events = POLLIN};

		assert_int_equal(poll(&pf, 1, test_left_ms(deadline)), 1);
		r = sbx_spawn_end(p, e);
		if (r != -EAGAIN)
			return r;
	}
}

/* The helper as TEST_UID with `chan` at fd 3. */
static struct sbx_worker_spec report_spec(char **argv, const int *chan)
{
	return (struct sbx_worker_spec){.exe = SBX_HELPER_PATH,
					.argv = argv,
					.fds = chan,
					.nfds = 1,
					.stderr_fd = -1,
					.uid = TEST_UID,
					.gid = TEST_GID};
}

static void test_sandbox_spawn_begin_end_exec_reported(void **state)
{
	char *argv[] = {"sbx_helper", "report", NULL};
	char rep[4096], v[128];
	struct sbx_spawn_error e = {0};
	struct sbx_pending p;
	struct helper h;
	int sv[2] = {-1, -1};
	struct sbx_worker_spec s = report_spec(argv, &sv[1]);

	need_userns();

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(sbx_spawn_begin(&s, &p), 0);
	close(sv[1]);
	assert_true(p.pid > 0);
	assert_true(p.pidfd >= 0);
	assert_true(p.report_fd >= 0);
	assert_int_equal(fcntl(p.report_fd, F_GETFD), FD_CLOEXEC);
	assert_int_equal(spawn_end_polled(&p, &e), 0);
	assert_int_equal(p.report_fd, -1);
	h = (struct helper){.pid = p.pid, .pidfd = p.pidfd, .chan = sv[0]};
	assert_true(recv_msg(h.chan, rep, sizeof(rep)) > 0);
	assert_int_equal(atoi(field(rep, "uid=", v, sizeof(v))), TEST_UID);
	finish_ok(&h);
	assert_no_children();
}

/* A step that fails in the child comes back from sbx_spawn_end() as sbx_spawn_worker() reports
 * it, with the child reaped and every fd closed. */
static void test_sandbox_spawn_end_failed_step_reaped(void **state)
{
	char *argv[] = {"true", NULL};
	struct sbx_spawn_error e = {0};
	struct sbx_pending p;
	struct sbx_worker_spec s = {
	    .exe = "/bin/true", .argv = argv, .stderr_fd = -1, .uid = TEST_UID, .gid = TEST_GID};

	need_userns();

	assert_int_equal(sbx_spawn_begin(&s, &p), 0);
	assert_int_equal(spawn_end_polled(&p, &e), -ENOENT);
	assert_int_equal(e.err, -ENOENT);
	assert_string_equal(e.step, "execveat");
	assert_int_equal(p.pidfd, -1);
	assert_int_equal(p.report_fd, -1);
	assert_no_children();
}

/* A caller that gives up (its timeout, its shutdown) is left no child, even one that had not
 * exec'd yet, and even with a pidfd an event loop made non-blocking. */
static void test_sandbox_spawn_abort_reaps(void **state)
{
	char *argv[] = {"sbx_helper", "report", NULL};
	struct sbx_pending p;
	int sv[2] = {-1, -1};
	struct sbx_worker_spec s = report_spec(argv, &sv[1]);

	need_userns();

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(sbx_spawn_begin(&s, &p), 0);
	close(sv[1]);
	assert_int_equal(fcntl(p.pidfd, F_SETFL, O_NONBLOCK), 0);
	sbx_spawn_abort(&p);
	assert_int_equal(p.pidfd, -1);
	assert_int_equal(p.report_fd, -1);
	assert_no_children();
	close(sv[0]);
}

/* When sbx_spawn_begin() returns, the child holds no copy of the spawner's other files: the
 * spawner closing one (the broker a VFIO group's) really closes it, before the child's exec. */
static void test_sandbox_spawn_begin_child_holds_no_other_fd(void **state)
{
	char *argv[] = {"sbx_helper", "report", NULL};
	struct sbx_spawn_error e = {0};
	struct sbx_pending p;
	struct helper h;
	int sv[2] = {-1, -1}, pp[2];
	struct sbx_worker_spec s = report_spec(argv, &sv[1]);
	struct pollfd pf;
	char rep[4096];

	need_userns();

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(pipe2(pp, O_CLOEXEC), 0);
	assert_int_equal(sbx_spawn_begin(&s, &p), 0);
	close(sv[1]);
	close(pp[1]);
	pf = (struct pollfd){.fd = pp[0], .events = POLLIN};
	assert_int_equal(poll(&pf, 1, 0), 1);
	assert_true(pf.revents & POLLHUP);
	close(pp[0]);
	assert_int_equal(spawn_end_polled(&p, &e), 0);
	h = (struct helper){.pid = p.pid, .pidfd = p.pidfd, .chan = sv[0]};
	assert_true(recv_msg(h.chan, rep, sizeof(rep)) > 0);
	finish_ok(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sandbox_spawn_uid_gid_unprivileged),
	    cmocka_unit_test(test_sandbox_spawn_caps_none),
	    cmocka_unit_test(test_sandbox_spawn_no_new_privs),
	    cmocka_unit_test(test_sandbox_spawn_namespaces_differ),
	    cmocka_unit_test(test_sandbox_spawn_pid_one),
	    cmocka_unit_test(test_sandbox_spawn_root_empty),
	    cmocka_unit_test(test_sandbox_spawn_rlimits_applied),
	    cmocka_unit_test(test_sandbox_spawn_default_rlimits_applied),
	    cmocka_unit_test(test_sandbox_spawn_fds_only_passed),
	    cmocka_unit_test(test_sandbox_spawn_env_only_given),
	    cmocka_unit_test(test_sandbox_spawn_stderr_placed),
	    cmocka_unit_test(test_sandbox_spawn_worker_policy_kills),
	    cmocka_unit_test(test_sandbox_spawn_pidfd_supervises),
	    cmocka_unit_test(test_sandbox_spawn_bad_exe_no_child),
	    cmocka_unit_test(test_sandbox_spawn_dynamic_exe_fails_at_execveat),
	    cmocka_unit_test(test_sandbox_spawn_bad_spec_rejected),
	    cmocka_unit_test(test_sandbox_spawn_failed_step_reported),
	    cmocka_unit_test(test_sandbox_spawn_outlives_spawner_ends_on_hangup),
	    cmocka_unit_test(test_sandbox_userns_probe_in_chroot_says_why),
	    cmocka_unit_test(test_sandbox_spawn_begin_end_exec_reported),
	    cmocka_unit_test(test_sandbox_spawn_end_failed_step_reaped),
	    cmocka_unit_test(test_sandbox_spawn_abort_reaps),
	    cmocka_unit_test(test_sandbox_spawn_begin_child_holds_no_other_fd),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
