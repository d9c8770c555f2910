/*
 * dma: one VM's DMA mappings on its VFIO container, mediated and accounted.
 *
 * A worker asks, on behalf of its VMM, to map `size` bytes of a memfd at an IOVA. The broker
 * checks the request (memfd only, sealed against shrinking, bounds, alignment to the IOMMU's
 * smallest page, no overflow, no overlap, per-VM quotas) before anything changes, pins the
 * memory with VFIO_IOMMU_MAP_DMA from a view of its own (the memfd mmapped MAP_SHARED: type1
 * takes a vaddr), and records the mapping. Every mapping records its owner (a device handle
 * chosen by the caller) so a device's mappings can be torn down when its worker goes away.
 *
 * Views: one per memfd per VM (the whole file), shared by every mapping of it while any uses it,
 * so its page tables are filled once, not per map. A VM has at most BRK_DMA_VIEWS_MAX views (a
 * process has at most vm.max_map_count mappings, and a VMM must not spend the broker's); past
 * that a map mmaps its range for the call alone. Before the pin the view's cold part of the
 * range is populated (MADV_POPULATE_READ), on up to BRK_DMA_POPULATE_THREADS_MAX threads, one
 * per BRK_DMA_POPULATE_SLICE and CPU: a booting VM's RAM is allocated and zeroed in parallel. The
 * call blocks its caller until the pin is done.
 *
 * F_SEAL_SHRINK is required by default: the size check at map time means nothing if the VMM can
 * truncate the file afterwards, and pinned pages that no longer back the file are pinned memory
 * nobody can see. QEMU's memory-backend-memfd seals by default (seal=on); a VMM that does not can
 * add the seal with one fcntl(F_ADD_SEALS) before sending the fd. BRK_DMA_ALLOW_UNSEALED lifts
 * the requirement for a VM whose VMM cannot.
 *
 * Rejections never change the table or the counters and always fill the `struct vb_err`.
 * Lookups are binary searches in a table sorted by IOVA. Not thread-safe.
 */
#ifndef VB_BROKER_DMA_H
#define VB_BROKER_DMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "journal.h"
#include "sys.h"

/* Same values as vb.DmaProt and VFIO_DMA_MAP_FLAG_READ/_WRITE. */
#define BRK_DMA_PROT_READ  (1u << 0)
#define BRK_DMA_PROT_WRITE (1u << 1)
#define BRK_DMA_PROT_MASK  (BRK_DMA_PROT_READ | BRK_DMA_PROT_WRITE)

/* The kernel's own default (vfio_iommu_type1 dma_entry_limit). */
#define BRK_DMA_DEFAULT_MAX_MAPPINGS 65535u

/* Views (see above). */
#define BRK_DMA_VIEWS_MAX	     64u
#define BRK_DMA_POPULATE_SLICE	     (64ull << 20) /* at least this much per populating thread */
#define BRK_DMA_POPULATE_THREADS_MAX 8u

/* cfg.flags */
#define BRK_DMA_ALLOW_UNSEALED (1u << 0) /* accept memfds without F_SEAL_SHRINK */
#define BRK_DMA_FLAGS_MASK     BRK_DMA_ALLOW_UNSEALED

struct brk_dma_limits {
	uint32_t max_mappings;	   /* 0: BRK_DMA_DEFAULT_MAX_MAPPINGS */
	uint64_t max_pinned_bytes; /* 0: no limit besides the kernel's RLIMIT_MEMLOCK accounting */
};

/* A usable IOVA range, both ends inclusive (the container's brk_iova_range). */
struct brk_dma_range {
	uint64_t start;
	uint64_t end;
};

#define BRK_DMA_MAX_RANGES 16

struct brk_dma_cfg {
	const struct brk_sys *sys; /* NULL: brk_sys_real */
	int container_fd;	   /* borrowed: must outlive the brk_dma (brk_container_fd()) */
	uint64_t pgsize; /* the IOMMU's smallest page (brk_container_info()->min_pgsize) */
	struct brk_dma_limits limits;
	uint32_t flags; /* BRK_DMA_* */
	/* Where the IOMMU can map (brk_container_info()->iova_ranges), copied; 0 ranges: anywhere
	 * (the kernel still refuses what it cannot map). A map must lie within one range. */
	uint32_t n_ranges;
	struct brk_dma_range ranges[BRK_DMA_MAX_RANGES];
	/* Called around every change of the table (journal.h), copied; zero: none. */
	struct brk_journal journal;
};

struct brk_dma_stats {
	uint32_t mappings;
	uint64_t pinned_bytes;
	uint64_t maps;		/* successful brk_dma_map() calls, ever */
	uint64_t unmaps;	/* mappings removed, ever */
	uint64_t rejects;	/* brk_dma_map() calls refused before or by the kernel */
	uint64_t ebusy_retries; /* maps that succeeded after the EBUSY unmap-and-retry */
	uint64_t shares;	/* maps that joined another owner's identical mapping */
	uint32_t views;		/* memfd views held (each used by at least one mapping) */
};

/* One mapping as the table holds it: what brk_dma_restore() takes and the state record keeps. */
struct brk_dma_mapping {
	uint64_t iova;
	uint64_t size;
	uint64_t offset;
	uint32_t prot; /* BRK_DMA_PROT_* */
	uint64_t
	    dev; /* the memfd's st_dev and st_ino: an identical request names the same memory */
	uint64_t ino;
	uint64_t owner; /* who asked first */
	uint32_t nalso; /* further owners that joined the identical mapping */
	uint64_t *also;
};
_Static_assert(offsetof(struct brk_dma_mapping, iova) == 0 &&
		   offsetof(struct brk_dma_mapping, size) == sizeof(uint64_t),
	       "the IOVA search (brk_dma_iova_*) reads iova and size first");

/*
 * The IOVA search (dma_iova.c) of a table of mappings kept sorted by IOVA without overlaps: the
 * DMA table's own and the state record's (record_apply.c). `maps` holds `n` entries of `stride`
 * bytes, each beginning with its uint64_t iova and uint64_t size, as struct brk_dma_mapping does
 * (a table of another type asserts the same layout).
 */
/* Index of the first entry whose iova is >= `iova`; n when there is none. */
uint32_t brk_dma_iova_lower(const void *maps, uint32_t n, size_t stride, uint64_t iova);
/* Index of an entry that overlaps [iova, last] (last >= iova), or -1; *pos (NULL allowed) gets
 * the index an entry starting at `iova` is inserted at. */
long brk_dma_iova_overlap(const void *maps, uint32_t n, size_t stride, uint64_t iova, uint64_t last,
			  uint32_t *pos);
/* Whether `owner` holds a mapping whose first owner is `first` and whose further ones are the
 * `nalso` of `also`. */
bool brk_dma_owned_by(uint64_t first, const uint64_t *also, uint32_t nalso, uint64_t owner);
/* Index of the entry that is exactly [iova, iova + size), or -1. */
long brk_dma_iova_find(const void *maps, uint32_t n, size_t stride, uint64_t iova, uint64_t size);

struct brk_dma;

/* Errors: -EINVAL (pgsize not a power of two or below 1 KiB, fd < 0, unknown flags, more than
 * BRK_DMA_MAX_RANGES ranges or one ending before it starts), -ENOMEM. */
int brk_dma_new(const struct brk_dma_cfg *cfg, struct brk_dma **ret);
/* Unmaps everything (brk_dma_unmap_all) and frees. NULL is allowed. */
void brk_dma_free(struct brk_dma *d);
/* Changes the quotas for future maps; existing mappings stay even above the new limits. */
void brk_dma_set_limits(struct brk_dma *d, const struct brk_dma_limits *limits);

/* Maps [offset, offset + size) of `memfd` at [iova, iova + size) with `prot` (BRK_DMA_PROT_*),
 * on behalf of `owner` (any value; it is only compared). The VM's devices share one container,
 * so a request identical to an existing mapping of another owner (same iova, size, offset,
 * prot and memfd inode) joins it: no kernel call, no extra quota; it is unmapped in the kernel
 * when its last owner lets go. `memfd` is borrowed: the pinned pages
 * keep the memory alive, and the caller may close the fd right after. On the
 * kernel's EBUSY (a stale mapping in the range) the range is unmapped and the map retried once.
 * Errors, each with a message in `err`:
 *   -EINVAL  size 0, prot 0 or unknown prot bits, iova/size/offset not aligned to the IOMMU
 *            page, iova + size or offset + size wraps, the range is not inside one of the
 *            IOMMU's usable IOVA ranges;
 *   -EBADF   memfd is not an open fd;
 *   -EACCES  fd is not a memfd (no seals, not a regular shmem/hugetlbfs file), or it cannot be
 *            mapped with `prot` (read-only fd, F_SEAL_WRITE with PROT_WRITE);
 *   -EPERM   the memfd lacks F_SEAL_SHRINK (unless BRK_DMA_ALLOW_UNSEALED);
 *   -ERANGE  offset + size beyond the memfd's size;
 *   -EEXIST  overlaps an existing mapping (other than an identical one of another owner), or
 *            this owner already has this mapping;
 *   -ENOSPC  the VM's mapping quota, or the kernel's mapping limit, is reached;
 *   -EDQUOT  the VM's pinned-bytes quota would be exceeded;
 *   -ENOMEM  out of memory, or the kernel could not pin (RLIMIT_MEMLOCK);
 *   or the kernel's VFIO_IOMMU_MAP_DMA error. */
int brk_dma_map(struct brk_dma *d, uint64_t owner, uint64_t iova, uint64_t size, int memfd,
		uint64_t offset, uint32_t prot, struct vb_err *err);

/* Unmaps exactly one mapping, [iova, iova + size) as it was mapped, that `owner` made (or
 * joined; a mapping other owners still hold only loses this owner). Errors: -ENOENT (no mapping
 * starts at iova with that size; partial unmaps are refused), -EPERM (the mapping belongs to
 * another owner), or the kernel's VFIO_IOMMU_UNMAP_DMA error (the mapping then stays in the table:
 * its pages are still pinned). */
int brk_dma_unmap(struct brk_dma *d, uint64_t owner, uint64_t iova, uint64_t size,
		  struct vb_err *err);
/* Unmaps every mapping of `owner`; *ret_count / *ret_bytes (NULL allowed) receive the owner's
 * share released (mappings other owners still hold count here but stay mapped). Returns 0, or the
 * first kernel error (the mappings that failed stay in the table, the others are gone). */
int brk_dma_unmap_owner(struct brk_dma *d, uint64_t owner, uint32_t *ret_count,
			uint64_t *ret_bytes);
/* Same for every mapping of the VM. */
int brk_dma_unmap_all(struct brk_dma *d, uint32_t *ret_count, uint64_t *ret_bytes);

/* Drops every record without asking the kernel, for when the kernel already dropped the
 * mappings itself: the VM's last group left the container (brk_group_detach/unref), which tears
 * its IOMMU down. *ret_count / *ret_bytes (NULL allowed) receive what was forgotten. Using it
 * while a group is still attached would leave pinned mappings nobody accounts for. */
void brk_dma_forget_all(struct brk_dma *d, uint32_t *ret_count, uint64_t *ret_bytes);

/* Rebuilds the table of a new, empty `d` from `n` mappings (a loaded state record), without a
 * kernel call: the kernel still holds them (the broker restarted with its container fd). Owners,
 * sharing and pinned bytes are as given; the counters maps, unmaps and shares are taken from
 * `counters` (NULL: 0), rejects and ebusy_retries start at 0. Quotas are the cfg's: mappings
 * above them stay, as after brk_dma_set_limits(). The journal is not called. Errors, with a
 * message: -EBUSY (the table is not empty), -EINVAL (a mapping with size 0, prot 0 or unknown
 * bits, not aligned to the IOMMU page, wrapping, out of order or overlapping, an owner listed
 * twice), -ENOMEM; the table stays empty on error. */
int brk_dma_restore(struct brk_dma *d, const struct brk_dma_mapping *maps, uint32_t n,
		    const struct brk_dma_stats *counters, struct vb_err *err);

void brk_dma_stats(const struct brk_dma *d, struct brk_dma_stats *out);
/* Mappings and pinned bytes of one owner (a device's share, for status). */
void brk_dma_owner_usage(const struct brk_dma *d, uint64_t owner, uint32_t *ret_count,
			 uint64_t *ret_bytes);

#endif
