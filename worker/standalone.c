/*
 * standalone: the backend of `vfio-worker --device-image`. There is no broker and no IOMMU:
 * DMA requests are validated as the broker would (the same memfd checks, shared in
 * base/fdkind.c: sealed memfd, bounds, prot against the fd's mode and seals; then overlap and
 * quotas with the broker's codes) and recorded (dma_held.c); an unmap names exactly one mapping,
 * as broker/dma.c requires; SET_IRQS requests are checked against the image's IRQ table, their fds
 * must be eventfds (as the broker requires), and they are counted; a reset puts the image's config
 * space back into the memfd. A VMM developed against it sees the answers, and the errors, it would
 * get from a real device.
 *
 * Trusts the image it was built from. Distrusts every request.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/pci_regs.h>

#include "device.pb-c.h"
#include "dma_held.h"
#include "fdkind.h"
#include "ipc.h"
#include "standalone.h"

struct wkr_local {
	const struct wkr_image *img;
	int memfd;
	uint32_t max_maps;
	uint64_t max_bytes;
	struct wkr_held maps;
	uint64_t bytes;
	bool irq_on[WKR_NUM_IRQS];
};

int wkr_local_new(const struct wkr_image *img, int memfd, uint32_t max_maps, uint64_t max_bytes,
		  struct wkr_local **ret)
{
	struct wkr_local *l = calloc(1, sizeof(*l));

	if (!l)
		return -ENOMEM;
	l->img = img;
	l->memfd = memfd;
	l->max_maps = max_maps;
	l->max_bytes = max_bytes;
	*ret = l;
	return 0;
}

void wkr_local_free(struct wkr_local *l)
{
	if (!l)
		return;
	wkr_held_free(&l->maps);
	free(l);
}

static int l_dma_map(void *ctx, uint64_t iova, uint64_t size, uint64_t offset, uint32_t prot,
		     int memfd, struct vb_err *err)
{
	struct wkr_local *l = ctx;
	/* The broker's own check (base/fdkind.c): a sealed memfd, long enough, open and not
	 * sealed for what `prot` asks. */
	int r = vb_memfd_check(memfd, offset, size,
			       prot & VB__DEV__DMA_PROT__DMA_PROT_WRITE ? VB_MEMFD_WRITE : 0, NULL,
			       err);

	if (r < 0)
		return r;
	/* Then broker/dma.c's order and codes: overlap, the mapping quota, the bytes quota. */
	if (wkr_held_overlaps(&l->maps, iova, size))
		return vb_errf(err, -EEXIST, "IOVA range %#llx+%#llx overlaps a mapping",
			       (unsigned long long)iova, (unsigned long long)size);
	if (l->maps.n >= l->max_maps)
		return vb_errf(err, -ENOSPC, "the VMM already has %zu DMA mappings, its quota",
			       l->maps.n);
	if (size > l->max_bytes - l->bytes)
		return vb_errf(err, -EDQUOT,
			       "mapping %#llx bytes would pass the quota of %#llx (%#llx mapped)",
			       (unsigned long long)size, (unsigned long long)l->max_bytes,
			       (unsigned long long)l->bytes);
	if (wkr_held_add(&l->maps, iova, size) < 0)
		return vb_errf(err, -ENOMEM, "out of memory");
	l->bytes += size;
	return 0;
}

/* Exactly one mapping, as the broker unmaps (broker/dma.c: partial unmaps are refused). A
 * vfio-user unmap that covers several was split into exact ones before it got here. */
static int l_dma_unmap(void *ctx, uint64_t iova, uint64_t size, struct vb_err *err)
{
	struct wkr_local *l = ctx;

	if (!wkr_held_remove(&l->maps, iova, size))
		return vb_errf(err, -ENOENT, "no DMA mapping is exactly %#llx+%#llx",
			       (unsigned long long)iova, (unsigned long long)size);
	l->bytes -= size;
	return 0;
}

static int l_dma_unmap_all(void *ctx)
{
	struct wkr_local *l = ctx;

	wkr_held_clear(&l->maps);
	l->bytes = 0;
	return 0;
}

static int l_set_irqs(void *ctx, const struct wkr_irq_set *s)
{
	struct wkr_local *l = ctx;
	uint32_t count;

	if (s->index >= WKR_NUM_IRQS)
		return -EINVAL;
	if (s->disable) {
		l->irq_on[s->index] = false;
		return 0;
	}
	count = wkr_image_info(l->img)->irqs[s->index].count;
	if (s->count == 0 || s->start > count || s->count > count - s->start)
		return -EINVAL;
	if (!s->enable && !l->irq_on[s->index])
		return -EINVAL; /* re-routing vectors of an index that is off */
	/* -1 leaves a vector without a trigger; anything else must be an eventfd, as the broker
	 * requires before VFIO_DEVICE_SET_IRQS. */
	for (uint32_t i = 0; s->fds && i < s->count; i++) {
		int r;

		if (s->fds[i] == -1)
			continue;
		r = vb_eventfd_check(s->fds[i]);
		if (r < 0)
			return r;
	}
	l->irq_on[s->index] = true;
	return 0;
}

/* Like VFIO_DEVICE_RESET: the function loses its state (the image's config space comes back),
 * but the Command register is restored as the kernel's pci_try_reset_function() restores it. */
static int l_reset(void *ctx, struct vb_err *err)
{
	struct wkr_local *l = ctx;
	const struct wkr_region *cfg =
	    &wkr_image_info(l->img)->regions[VFIO_PCI_CONFIG_REGION_INDEX];
	uint8_t cmd[2];
	off_t cmd_off = (off_t)(cfg->offset + PCI_COMMAND);
	ssize_t n;

	if (pread(l->memfd, cmd, sizeof(cmd), cmd_off) != (ssize_t)sizeof(cmd))
		return vb_errf(err, -EIO, "reading the Command register failed");
	n = pwrite(l->memfd, wkr_image_config(l->img), (size_t)cfg->size, (off_t)cfg->offset);
	if (n == (ssize_t)cfg->size)
		n = pwrite(l->memfd, cmd, sizeof(cmd), cmd_off) == (ssize_t)sizeof(cmd) ? n : -1;
	if (n != (ssize_t)cfg->size)
		return vb_errf(err, n < 0 ? -errno : -EIO,
			       "restoring the image's config space failed");
	return 0;
}

static void l_vmm_state(void *ctx, bool connected, pid_t pid, uid_t uid)
{
	(void)ctx;
	(void)connected;
	(void)pid;
	(void)uid;
}

/* Standalone, the worker runs in the caller's own namespaces: SO_PEERCRED is the truth. */
/* The grant is a copy of the image's memfd: all a VMM can map here, and nothing VFIO. */
static int l_vmm_admit(void *ctx, int conn_fd, uid_t owner_uid, struct wkr_admit *ret)
{
	struct wkr_local *l = ctx;
	gid_t gid;
	int r = ipc_peer_cred(conn_fd, &ret->pid, &ret->uid, &gid);

	if (r < 0)
		return r;
	if (ret->uid != owner_uid && ret->uid != 0)
		return -EPERM;
	ret->grant_fd = fcntl(l->memfd, F_DUPFD_CLOEXEC, 0);
	return ret->grant_fd < 0 ? -errno : 0;
}

const struct wkr_backend_ops wkr_local_ops = {
    .dma_map = l_dma_map,
    .dma_unmap = l_dma_unmap,
    .dma_unmap_all = l_dma_unmap_all,
    .set_irqs = l_set_irqs,
    .reset = l_reset,
    .vmm_state = l_vmm_state,
    .vmm_admit = l_vmm_admit,
};
