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

const struct brk_sys brk_sys_real = {
    .open = real_open,
    .ioctl = real_ioctl,
    .pread = real_pread,
    .pwrite = real_pwrite,
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
