/*
 * backend: what the VMM server needs from whoever holds the real privileges. In broker mode the
 * broker (broker_link.c, requests on the broker channel); in standalone mode a local stand-in
 * that validates and accounts (standalone.c). Every operation returns 0 or a negative errno and
 * may explain a failure in `err` (base/err.h), for the VMM's error reply.
 *
 * A backend may be asynchronous (the broker): between wkr_defer_begin() and wkr_defer_end()
 * (defer.h) its `collect` op has the defer its calls are counted into; such an op returns 0
 * once the request is sent, and the outcome comes later through the defer (defer.h says how).
 * Ops called with no defer collecting (a VMM's teardown, the link's own re-sends) are sent and
 * their outcome is the backend's business. A synchronous backend (standalone) leaves
 * `collect` and `forget` NULL and returns each outcome from the op itself.
 */
#ifndef VB_WKR_BACKEND_H
#define VB_WKR_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "defer.h"
#include "err.h"
#include "wkr.h"

/* Who a VMM is, as the backend's vmm_admit decided; filled when the admission completes. */
struct wkr_admit {
	pid_t pid;
	uid_t uid;
	int grant_fd; /* the VMM's mmap grant, the caller's once filled; -1: nothing to map */
};

struct wkr_backend_ops {
	/* `memfd` stays the caller's. */
	int (*dma_map)(void *ctx, uint64_t iova, uint64_t size, uint64_t offset, uint32_t prot,
		       int memfd, struct vb_err *err);
	int (*dma_unmap)(void *ctx, uint64_t iova, uint64_t size, struct vb_err *err);
	/* The VMM went away: drop every mapping this device made. */
	int (*dma_unmap_all)(void *ctx);
	int (*set_irqs)(void *ctx, const struct wkr_irq_set *set);
	/* Reset the device (VFIO_DEVICE_RESET, or the image's initial state). */
	int (*reset)(void *ctx, struct vb_err *err);
	void (*vmm_state)(void *ctx, bool connected, pid_t pid, uid_t uid);
	/* Decides whether the VMM on the just-accepted `conn_fd` may use the device, by its
	 * credentials as the host sees them, and fills `ret` (which must stay valid until the
	 * decision completes or the defer is cancelled). `owner_uid` is what the worker was told;
	 * a broker decides by its own record instead. -EPERM: refused. `conn_fd` stays the
	 * caller's. On success ret->grant_fd is this VMM's mmap grant, which the caller then owns
	 * (passes on with REGION_INFO, closes when the VMM goes), or -1: nothing to map. */
	int (*vmm_admit)(void *ctx, int conn_fd, uid_t owner_uid, struct wkr_admit *ret);
	/* Calls made from now on are counted into `d` (defer.h); NULL: into none. */
	void (*collect)(void *ctx, struct wkr_defer *d);
	/* `d` goes away: the calls counted into it complete into nothing. */
	void (*forget)(void *ctx, struct wkr_defer *d);
};

struct wkr_backend {
	const struct wkr_backend_ops *ops;
	void *ctx;
};

#endif
