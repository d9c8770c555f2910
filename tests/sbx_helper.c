/*
 * sbx_helper: a static program that test_sandbox and test_seccomp start through
 * sbx_spawn_worker() to look at the sandbox from the inside. It talks over fd 3 (a
 * SOCK_SEQPACKET socket the test passes) and never trusts that anything else exists: the root
 * is empty, /proc is absent, stdio goes to /dev/null unless the test passes a stderr.
 *
 *   sbx_helper report          sends "key=value" lines (ids, caps, rlimits, fds, root listing,
 *                              parent-death signal), then waits for the test to hang up and
 *                              exits 0
 *   sbx_helper worker-policy   loads the worker policy (kill mode), sends "loaded=<r>", waits
 *                              for one byte, then makes the socket() call the worker policy
 *                              forbids; it should die of SIGSYS
 *   sbx_helper worker-idle     loads the worker policy, sends "loaded=<r>", waits for hang-up
 *   sbx_helper stderr          writes a line to fd 2 and exits
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/capability.h>

#include "seccomp.h"

extern char **environ;

#define CHAN 3

static size_t put(char *buf, size_t len, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static size_t put(char *buf, size_t len, size_t off, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (off >= len)
		return off;
	va_start(ap, fmt);
	n = vsnprintf(buf + off, len - off, fmt, ap);
	va_end(ap);
	return n < 0 ? off : off + (size_t)n;
}

static int root_entries(void)
{
	DIR *d = opendir("/");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -errno;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static int open_errno(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return errno;
	close(fd);
	return 0;
}

static size_t put_rlimit(char *buf, size_t len, size_t off, const char *name, int res)
{
	struct rlimit rl;

	if (getrlimit((__rlimit_resource_t)res, &rl) < 0)
		return put(buf, len, off, "%s=error\n", name);
	return put(buf, len, off, "%s=%llu:%llu\n", name, (unsigned long long)rl.rlim_cur,
		   (unsigned long long)rl.rlim_max);
}

static size_t put_caps(char *buf, size_t len, size_t off)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct d[2];
	int cap, bnd = 0, amb = 0;

	if (syscall(SYS_capget, &hdr, d) < 0)
		return put(buf, len, off, "caps=error\n");
	for (cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++)
		bnd += prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1;
	for (cap = 0; cap < 64; cap++)
		amb += prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0) == 1;
	return put(buf, len, off, "capeff=%x%08x\ncapprm=%x%08x\ncapinh=%x%08x\nbnd=%d\namb=%d\n",
		   d[1].effective, d[0].effective, d[1].permitted, d[0].permitted, d[1].inheritable,
		   d[0].inheritable, bnd, amb);
}

static size_t put_fds(char *buf, size_t len, size_t off)
{
	int fd, flags;

	off = put(buf, len, off, "fds=");
	for (fd = 0; fd < 1024; fd++) {
		flags = fcntl(fd, F_GETFD);
		if (flags >= 0)
			off = put(buf, len, off, "%d%s,", fd, flags & FD_CLOEXEC ? "c" : "");
	}
	return put(buf, len, off, "\n");
}

static int report(void)
{
	static char buf[4096];
	char fd4[32] = "";
	size_t off = 0;
	ssize_t n;
	int env = 0, deathsig = 0;

	while (environ && environ[env])
		env++;
	n = pread(4, fd4, sizeof(fd4) - 1, 0);
	if (n > 0)
		fd4[n] = '\0';
	off = put(buf, sizeof(buf), off, "pid=%d\nppid=%d\nuid=%u\ngid=%u\neuid=%u\negid=%u\n",
		  (int)getpid(), (int)getppid(), getuid(), getgid(), geteuid(), getegid());
	if (prctl(PR_GET_PDEATHSIG, &deathsig, 0, 0, 0) < 0)
		deathsig = -errno;
	off = put(buf, sizeof(buf), off, "ngroups=%d\nnnp=%d\nenv=%d\npdeathsig=%d\n",
		  getgroups(0, NULL), prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), env, deathsig);
	off = put(buf, sizeof(buf), off, "root_entries=%d\npasswd_errno=%d\nproc_errno=%d\n",
		  root_entries(), open_errno("/etc/passwd"), open_errno("/proc/self/status"));
	off = put(buf, sizeof(buf), off, "fd4=%s\n", fd4);
	off = put_caps(buf, sizeof(buf), off);
	off = put_rlimit(buf, sizeof(buf), off, "nofile", RLIMIT_NOFILE);
	off = put_rlimit(buf, sizeof(buf), off, "nproc", RLIMIT_NPROC);
	off = put_rlimit(buf, sizeof(buf), off, "fsize", RLIMIT_FSIZE);
	off = put_rlimit(buf, sizeof(buf), off, "memlock", RLIMIT_MEMLOCK);
	off = put_rlimit(buf, sizeof(buf), off, "core", RLIMIT_CORE);
	off = put_rlimit(buf, sizeof(buf), off, "as", RLIMIT_AS);
	off = put_fds(buf, sizeof(buf), off);
	if (off >= sizeof(buf))
		return 3;
	if (write(CHAN, buf, off) != (ssize_t)off)
		return 4;
	return 0;
}

/* Blocks until the test hangs up (read returns 0) or sends a byte. */
static void wait_peer(void)
{
	char b;

	while (read(CHAN, &b, 1) < 0 && errno == EINTR)
		;
}

static int send_loaded(int r)
{
	char msg[32];
	int n = snprintf(msg, sizeof(msg), "loaded=%d", r);

	return write(CHAN, msg, (size_t)n) == n ? 0 : 4;
}

int main(int argc, char **argv)
{
	int r;

	if (argc < 2)
		return 2;
	if (strcmp(argv[1], "report") == 0) {
		r = report();
		if (r == 0)
			wait_peer();
		return r;
	}
	if (strcmp(argv[1], "worker-policy") == 0 || strcmp(argv[1], "worker-idle") == 0) {
		r = sbx_seccomp_load(SBX_ROLE_WORKER, SBX_SECCOMP_KILL);
		if (send_loaded(r) != 0)
			return 4;
		wait_peer();
		if (strcmp(argv[1], "worker-policy") == 0)
			r = socket(AF_UNIX, SOCK_STREAM, 0);
		return r < 0 ? 5 : 0;
	}
	if (strcmp(argv[1], "stderr") == 0) {
		static const char line[] = "sbx_helper: stderr works\n";

		return write(2, line, sizeof(line) - 1) == sizeof(line) - 1 ? 0 : 4;
	}
	return 2;
}
