/*
 * sys: the real kernel behind struct brk_sys, and the path helper.
 *
 * Trusts nothing it is given: it only forwards open(2), ioctl(2), pread(2) and pwrite(2) and
 * converts -1/errno into negative errno values, adding O_CLOEXEC to every open.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sys.h"

static int real_open(void *ctx, const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

static int real_ioctl(void *ctx, int fd, unsigned long req, void *arg)
{
	int r;

	/* VFIO ioctls that pin or reset can be interrupted; they are safe to reissue. */
	do
		r = ioctl(fd, req, arg);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

static long real_pread(void *ctx, int fd, void *buf, size_t len, long long off)
{
	ssize_t n;

	do
		n = pread(fd, buf, len, (off_t)off);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : (long)n;
}

static long real_pwrite(void *ctx, int fd, const void *buf, size_t len, long long off)
{
	ssize_t n;

	do
		n = pwrite(fd, buf, len, (off_t)off);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : (long)n;
}

static int real_fd_is(void *ctx, int fd, const char *path)
{
	static const char anon[] = "anon_inode:";
	char proc[64], link[128];
	struct stat a, b;
	ssize_t n;

	if (strncmp(path, anon, sizeof(anon) - 1) == 0) {
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		n = readlink(proc, link, sizeof(link) - 1);
		if (n < 0)
			return -errno;
		link[n] = '\0';
		return strcmp(link, path) == 0;
	}
	if (fstat(fd, &a) < 0 || stat(path, &b) < 0)
		return -errno;
	return S_ISCHR(a.st_mode) && S_ISCHR(b.st_mode) && a.st_rdev == b.st_rdev;
}

static int real_pidfd_pid(void *ctx, int fd)
{
	char path[64], buf[1024], *p;
	int pfd, pid;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	pfd = open(path, O_RDONLY | O_CLOEXEC);
	if (pfd < 0)
		return -errno;
	n = read(pfd, buf, sizeof(buf) - 1);
	close(pfd);
	if (n < 0)
		return -EIO;
	buf[n] = '\0';
	p = strstr(buf, "\nPid:\t");
	if (!p || sscanf(p + 6, "%d", &pid) != 1)
		return -EBADF;
	/* -1: the process has exited (and been reaped or not); 0: not in our pid namespace. */
	return pid > 0 ? pid : -ESRCH;
}

const struct brk_sys brk_sys_real = {
    .open = real_open,
    .ioctl = real_ioctl,
    .pread = real_pread,
    .pwrite = real_pwrite,
    .fd_is = real_fd_is,
    .pidfd_pid = real_pidfd_pid,
    .ctx = NULL,
    .root = "",
};

int brk_sys_path(const struct brk_sys *sys, char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	int n, m;

	n = snprintf(buf, len, "%s", sys->root);
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	va_start(ap, fmt);
	m = vsnprintf(buf + n, len - (size_t)n, fmt, ap);
	va_end(ap);
	if (m < 0 || (size_t)m >= len - (size_t)n)
		return -ENAMETOOLONG;
	return 0;
}
