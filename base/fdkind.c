/*
 * fdkind: the checks on fds a VMM hands over for DMA (memfds) and interrupts (eventfds). The
 * kind of a file is read from the kernel (seals, file system type, the name /proc gives it),
 * never taken from the peer's word.
 */
#include "fdkind.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <string.h>
#include <sys/statfs.h>
#include <unistd.h>

/* /proc/self/fd/N's target, or "" when it cannot be read. */
static void fd_target(int fd, char *out, size_t len)
{
	char path[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, out, len - 1);
	out[n < 0 ? 0 : n] = '\0';
}

/* memfd_create() files are named "/memfd:<name> (deleted)"; a tmpfs file that was opened by
 * path also supports F_GET_SEALS but is not anonymous memory the VMM owns alone. */
static bool is_memfd(int fd, const struct stat *st)
{
	struct statfs sfs;
	char target[32];

	if (!S_ISREG(st->st_mode) || fstatfs(fd, &sfs) < 0 ||
	    (sfs.f_type != TMPFS_MAGIC && sfs.f_type != HUGETLBFS_MAGIC))
		return false;
	fd_target(fd, target, sizeof(target));
	return strncmp(target, "/memfd:", 7) == 0;
}

static int check_access(int fd, int seals, unsigned flags, struct vb_err *err)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return vb_errf(err, -EBADF, "fd %d is not open", fd);
	if ((fl & O_ACCMODE) == O_WRONLY)
		return vb_errf(err, -EACCES, "the memfd is open write-only: DMA needs to read it");
	if (!(flags & VB_MEMFD_WRITE))
		return 0;
	if ((fl & O_ACCMODE) != O_RDWR)
		return vb_errf(err, -EACCES,
			       "the memfd is open read-only and cannot be mapped for writing");
	if (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE))
		return vb_errf(err, -EACCES,
			       "the memfd is sealed against writing and cannot be mapped for "
			       "writing");
	return 0;
}

int vb_memfd_check(int fd, uint64_t offset, uint64_t size, unsigned flags, struct stat *ret_st,
		   struct vb_err *err)
{
	struct stat st;
	int seals, r;

	if (fd < 0)
		return vb_errf(err, -EBADF, "no memfd given");
	/* F_GET_SEALS only works on files that support sealing: memfds (shmem, hugetlbfs). */
	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 && errno == EBADF)
		return vb_errf(err, -EBADF, "fd %d is not open", fd);
	if (seals < 0 || fstat(fd, &st) < 0 || !is_memfd(fd, &st))
		return vb_errf(err, -EACCES, "DMA memory must be a memfd (memfd_create)");
	if (!(seals & F_SEAL_SHRINK) && !(flags & VB_MEMFD_UNSEALED))
		return vb_errf(err, -EPERM,
			       "memfd is not sealed with F_SEAL_SHRINK: pinned memory could be "
			       "truncated; add the seal before mapping");
	if (st.st_size < 0 || offset > (uint64_t)st.st_size || size > (uint64_t)st.st_size - offset)
		return vb_errf(err, -ERANGE,
			       "offset 0x%llx + size 0x%llx is beyond the memfd's size 0x%llx",
			       (unsigned long long)offset, (unsigned long long)size,
			       (unsigned long long)st.st_size);
	r = check_access(fd, seals, flags, err);
	if (r < 0)
		return r;
	if (ret_st)
		*ret_st = st;
	return 0;
}

int vb_eventfd_check(int fd)
{
	char target[64];

	if (fd < 0 || fcntl(fd, F_GETFD) < 0)
		return -EBADF;
	fd_target(fd, target, sizeof(target));
	return strcmp(target, "anon_inode:[eventfd]") == 0 ? 0 : -EACCES;
}
