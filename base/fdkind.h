/*
 * fdkind: what a peer's fd must be before it is used for DMA or interrupts, checked the same way
 * wherever one arrives: by the broker for a brokered device, by vfio-worker itself in standalone
 * mode (--device-image), so that a VMM sees the same answers from both.
 *
 * Trusts the kernel's /proc/self/fd links and file flags; a process without /proc gets "not a
 * memfd"/"not an eventfd" for every fd.
 */
#ifndef VB_BASE_FDKIND_H
#define VB_BASE_FDKIND_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "err.h"

/* vb_memfd_check() flags. */
#define VB_MEMFD_WRITE	  (1u << 0) /* the memory will be written (DMA_PROT_WRITE) */
#define VB_MEMFD_UNSEALED (1u << 1) /* accept a memfd without F_SEAL_SHRINK */

/* Whether `fd` may back [offset, offset + size) of DMA: a memfd (memfd_create: shmem or
 * hugetlbfs, named "/memfd:..."), sealed against shrinking (unless VB_MEMFD_UNSEALED), at least
 * that long, and open for reading, and for writing without a write seal when VB_MEMFD_WRITE.
 * 0 with *ret_st filled (may be NULL), or, with a message in `err`:
 *   -EBADF  not an open fd;
 *   -EACCES not a memfd, or not accessible as asked (write-only, read-only for writing,
 *           F_SEAL_WRITE or F_SEAL_FUTURE_WRITE for writing);
 *   -EPERM  no F_SEAL_SHRINK;
 *   -ERANGE offset + size beyond the memfd's size (or wrapping). */
int vb_memfd_check(int fd, uint64_t offset, uint64_t size, unsigned flags, struct stat *ret_st,
		   struct vb_err *err);

/* Whether `fd` is an eventfd: 0 yes, -EACCES no, -EBADF not open. */
int vb_eventfd_check(int fd);

#endif
