/*
 * ipc_ring: the check both sides make on the ring's memfd (the layout is ipc_ring.h's).
 *
 * Trusts the kernel's answers about the file (its seals, its file system, its size, its open
 * mode), never the peer's word; needs no /proc, so the sandboxed worker can make it.
 */
#include "ipc_ring.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#define RING_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

int ipc_ring_memfd_check(int fd, struct vb_err *err)
{
	struct statfs sfs;
	struct stat st;
	int seals, fl;

	fl = fd < 0 ? -1 : fcntl(fd, F_GETFL);
	if (fl < 0)
		return vb_errf(err, -EBADF, "the ring's fd is not open");
	/* F_GET_SEALS works on shmem and hugetlbfs files only. */
	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || fstatfs(fd, &sfs) < 0 ||
	    sfs.f_type != TMPFS_MAGIC)
		return vb_errf(err, -EACCES, "the ring must be a memfd (memfd_create)");
	/* A tmpfs file opened by path is born with F_SEAL_SEAL alone and can never gain the
	 * others: requiring them keeps the ring memory the VMM's alone. */
	if ((seals & RING_SEALS) != RING_SEALS)
		return vb_errf(err, -EPERM,
			       "the ring's memfd is not sealed with F_SEAL_SHRINK, F_SEAL_GROW and "
			       "F_SEAL_SEAL (seals %#x): its size could change under the mapping",
			       (unsigned)seals);
	if (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE))
		return vb_errf(err, -EACCES, "the ring's memfd is sealed against writing");
	if ((fl & O_ACCMODE) != O_RDWR)
		return vb_errf(err, -EACCES,
			       "the ring's memfd is not open for reading and writing");
	if (st.st_size != VB_RING_SIZE)
		return vb_errf(err, -EINVAL, "the ring's memfd is %lld bytes; the ring is %u",
			       (long long)st.st_size, VB_RING_SIZE);
	return 0;
}
