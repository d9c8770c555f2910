/*
 * fake_vfio: a fake VFIO kernel behind struct brk_sys for the broker core's host tests. It
 * answers the container, group, device, DMA and IRQ ioctls from a model the test sets up,
 * records every call, and returns injected errors. The fds it hands out are real eventfds so
 * the code under test can close them.
 */
#ifndef VB_TESTS_FAKE_VFIO_H
#define VB_TESTS_FAKE_VFIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/vfio.h>

#include "sys.h"

#define FAKE_MAX_CALLS	 1024
#define FAKE_MAX_FDS	 128
#define FAKE_MAX_REGIONS 10
#define FAKE_MAX_IRQS	 5
#define FAKE_MAX_ERRS	 8

struct fake_call {
	unsigned long req;
	int fd;
	unsigned long arg; /* CHECK_EXTENSION / SET_IOMMU value, SET_CONTAINER fd */
	uint32_t flags;
	uint64_t iova, size, vaddr;   /* MAP_DMA / UNMAP_DMA */
	uint32_t index, start, count; /* SET_IRQS, region / irq info */
	int32_t fds[8];
	uint8_t bools[8];
	char bdf[16]; /* GET_DEVICE_FD */
};

struct fake_region {
	unsigned char blob[1024]; /* the kernel's full answer: vfio_region_info + capabilities */
	size_t len;
	int err; /* negative errno to answer instead */
};

struct fake_vfio {
	struct brk_sys sys;
	char root[256];

	/* the model */
	int open_err; /* negative errno every open answers */
	int api_version;
	bool has_type1v2, has_type1;
	int set_iommu_v2_err;
	bool group_viable;
	int set_container_err;
	uint64_t iova_pgsizes;
	bool dma_avail_cap;
	uint32_t dma_avail;
	uint32_t n_iova_ranges; /* > 0: an IOVA_RANGE capability with these */
	struct vfio_iova_range iova_ranges[4];
	uint32_t dev_flags, num_regions, num_irqs;
	struct fake_region regions[FAKE_MAX_REGIONS];
	struct vfio_irq_info irqs[FAKE_MAX_IRQS];
	int map_errs[FAKE_MAX_ERRS]; /* answers of successive MAP_DMA calls; 0: success */
	unsigned n_map_errs;
	int unmap_errs[FAKE_MAX_ERRS];
	unsigned n_unmap_errs;
	int set_irqs_err;
	int reset_err;
	int get_device_fd_err; /* negative errno VFIO_GROUP_GET_DEVICE_FD answers */
	int unset_container_err;
	bool container_set; /* a group was attached (GET_STATUS says CONTAINER_SET); any group */
	bool group_busy;    /* opening /dev/vfio/<busy_group> answers EBUSY (someone holds it) */
	uint32_t busy_group;
	/* config space behind pread/pwrite at cfg_offset (the config region's offset) */
	uint64_t cfg_offset;
	uint8_t cfg[256];
	unsigned cfg_writes;

	/* What each fd it handed out is (fd_is), and fake pidfds (pidfd_pid): latest entry per fd
	 * number wins. */
	struct {
		int fd;
		int pid; /* a pidfd's pid, -1 exited; 0: not a pidfd */
		char path[160];
	} fds[FAKE_MAX_FDS];
	unsigned nfds;

	/* the record */
	struct fake_call calls[FAKE_MAX_CALLS];
	unsigned ncalls;
	char last_open[512];
};

/* Defaults: API 0, type1v2 and type1, viable groups, 4 KiB | 2 MiB | 1 GiB pages, DMA_AVAIL
 * 65535, a vfio-pci device with RESET and 9 regions (all EINVAL until set) and 5 IRQ indexes
 * (count 0 until set). root "" unless the test sets it. */
void fake_vfio_init(struct fake_vfio *f);
unsigned fake_vfio_count(const struct fake_vfio *f, unsigned long req);
/* The n-th (0-based) recorded call of `req`, or NULL. */
const struct fake_call *fake_vfio_nth(const struct fake_vfio *f, unsigned long req, unsigned n);

/* A region without capabilities. */
void fake_region_plain(struct fake_vfio *f, uint32_t index, uint32_t flags, uint64_t size,
		       uint64_t offset);
/* A region with a sparse mmap capability of `n` areas and, when msix, an MSIX_MAPPABLE one. */
void fake_region_sparse(struct fake_vfio *f, uint32_t index, uint32_t flags, uint64_t size,
			uint64_t offset, const struct vfio_region_sparse_mmap_area *areas,
			uint32_t n, bool msix);
void fake_irq(struct fake_vfio *f, uint32_t index, uint32_t flags, uint32_t count);
/* Says what fd is from now on: a path (as fd_is compares it: root included for /dev nodes) or,
 * with pid != 0, a pidfd of that pid (-1: it has exited). */
void fake_vfio_fd(struct fake_vfio *f, int fd, const char *path, int pid);

#endif
