/*
 * worker_req: the requests a worker sends the broker. Responsible for the request table below
 * (what a worker may ask in which of its states), for confining every request to this worker's
 * device and VM, for answering each rejection with an errno and a message, and for faulting the
 * worker on anything malformed or out of place. Every request is answered before the next is
 * read, in the order read: a worker's SYNC (broker.proto) relies on it, so a handler that ever
 * answers later must keep that order. Trusts nothing the worker sends; trusts the VFIO
 * core (dma.h, irq.h, vfio.h) to enforce the semantic rules (alignment, overlap, quotas, IRQ
 * ranges).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/vfio.h>

#include "base.h"
#include "worker_priv.h"
#include "broker.pb-c.h"
#include "common.pb-c.h"
#include "device_pb.h"
#include "dispatch.h"
#include "ipc.h"
#include "ipc_uv.h"
#include "irq.h"
#include "irq_pb.h"
#include "log.h"
#include "metrics.h"
#include "registry.h"
#include "pool.h"
#include "spawn.h"
#include "supervise.h"

static struct brk_req_stats bw_stats[WKR_TYPES];

typedef int (*bw_handler_fn)(struct brk_worker *w, struct ipc_msg *m);

/* req.when: enum bw_state bits in which the request is allowed. */
struct bw_handler {
	struct vb_req req;
	bw_handler_fn fn;
};

/* ---- answering -------------------------------------------------------------------------- */

static int bw_reply(struct brk_worker *w, struct ipc_msg *m, const ProtobufCMessage *body)
{
	return ipc_chan_reply(ipc_uv_chan(w->u), m, body, NULL, 0);
}

static int bw_reply_empty(struct brk_worker *w, struct ipc_msg *m)
{
	Vb__Empty e = VB__EMPTY__INIT;

	return bw_reply(w, m, &e.base);
}

/* A rejection: the worker asked for something it may not have. Not a fault. */
static int bw_reject(struct brk_worker *w, struct ipc_msg *m, const struct vb_err *err)
{
	int code = err->code < 0 ? err->code : -EINVAL;
	const char *msg = err->msg[0] ? err->msg : strerror(-code);
	int r;

	brk_debug("%s: worker %d: request type %u refused: %s", w->bdf, (int)w->pid, m->type, msg);
	r = ipc_chan_reply_error(ipc_uv_chan(w->u), m, code, "%s", msg);

	return r < 0 ? r : 1;
}

/* ---- requests ------------------------------------------------------------------------------ */

static int bw_dma_map(struct brk_worker *w, struct ipc_msg *m)
{
	const Vb__DmaMap *req = (const Vb__DmaMap *)m->body;
	struct vb_err err = {0};

	if (m->nfds != 1) {
		brk_worker__fault(w, BRK_WORKER_PROTOCOL, "DMA_MAP with %zu fds (needs one memfd)",
				  m->nfds);
		return -EPROTO;
	}
	if (brk_dma_map(w->a.dma, w->a.owner, req->iova, req->size, m->fds[0], req->offset,
			req->prot, &err) < 0)
		return bw_reject(w, m, &err);
	return bw_reply_empty(w, m);
}

static int bw_dma_unmap(struct brk_worker *w, struct ipc_msg *m)
{
	const Vb__DmaUnmap *req = (const Vb__DmaUnmap *)m->body;
	struct vb_err err = {0};

	if (brk_dma_unmap(w->a.dma, w->a.owner, req->iova, req->size, &err) < 0)
		return bw_reject(w, m, &err);
	return bw_reply_empty(w, m);
}

static int bw_dma_unmap_all(struct brk_worker *w, struct ipc_msg *m)
{
	Vb__Brk__DmaUnmapAllReply rep = VB__BRK__DMA_UNMAP_ALL_REPLY__INIT;
	struct vb_err err = {0};
	int r;

	/* Only this worker's own mappings: the VM's other devices keep theirs. */
	r = brk_dma_unmap_owner(w->a.dma, w->a.owner, &rep.unmapped, &rep.bytes);
	if (r < 0) {
		vb_errf(&err, r, "unmapping %s's DMA failed: %s", w->bdf, strerror(-r));
		return bw_reject(w, m, &err);
	}
	return bw_reply(w, m, &rep.base);
}

static bool bw_action_valid(uint32_t action)
{
	return action == VFIO_IRQ_SET_ACTION_TRIGGER || action == VFIO_IRQ_SET_ACTION_MASK ||
	       action == VFIO_IRQ_SET_ACTION_UNMASK;
}

static int bw_set_irqs(struct brk_worker *w, struct ipc_msg *m)
{
	const Vb__Brk__SetIrqs *req = (const Vb__Brk__SetIrqs *)m->body;
	struct brk_irqs *irqs = brk_vfio_dev_irqs(w->a.dev);
	int slot_fds[BRK_IRQ_MAX_SLOTS];
	struct brk_irq_req ir;
	struct vb_err err = {0};
	int r;

	/* A malformed request (slots that name no fd that arrived, a disable with vectors) is a
	 * broken worker, not a refused request. */
	r = brk_irq_req_from_pb(req, m->fds, m->nfds, slot_fds, BRK_IRQ_MAX_SLOTS, &ir, &err);
	if (r < 0) {
		brk_worker__fault(w, BRK_WORKER_PROTOCOL, "SET_IRQS: %s", err.msg);
		return -EPROTO;
	}
	if (req->disable) {
		r = brk_irq_disable(irqs, ir.index, &err);
		return r < 0 ? bw_reject(w, m, &err) : bw_reply_empty(w, m);
	}
	if (!bw_action_valid(req->action)) {
		brk_worker__fault(w, BRK_WORKER_PROTOCOL, "SET_IRQS with action %#x", req->action);
		return -EPROTO;
	}
	/* The kernel takes its own references to the eventfds: the message closes ours. */
	r = brk_irq_set(irqs, &ir, &err);
	brk_debug("%s: SET_IRQS index %u vectors %u+%u action %#x with %zu fd(s): %s", w->bdf,
		  ir.index, ir.start, ir.count, ir.action, m->nfds, r < 0 ? err.msg : "done");
	return r < 0 ? bw_reject(w, m, &err) : bw_reply_empty(w, m);
}

static int bw_reset(struct brk_worker *w, struct ipc_msg *m)
{
	struct vb_err err = {0};

	if (brk_vfio_dev_reset(w->a.dev, &err) < 0)
		return bw_reject(w, m, &err);
	return bw_reply_empty(w, m);
}

static int bw_vmm_state(struct brk_worker *w, struct ipc_msg *m)
{
	const Vb__Brk__VmmState *req = (const Vb__Brk__VmmState *)m->body;
	int r = bw_reply_empty(w, m);

	if (req->connected == w->vmm_connected && w->vmm_state_known)
		return r;
	w->vmm_state_known = true;
	w->vmm_connected = req->connected;
	w->a.hooks->vmm_state(w->a.ctx, req->connected, req->pid, req->uid);
	return r;
}

/* Nothing to do: the answer, in the order requests are read, is the point (broker.proto). */
static int bw_sync(struct brk_worker *w, struct ipc_msg *m)
{
	return bw_reply_empty(w, m);
}

/*
 * A VMM has connected to the worker's socket: only the broker can tell who it is, because the
 * worker's user namespace maps no uid but its own. The connection itself comes along so that
 * its credentials are read here, in the host's namespace, not taken from the worker's word.
 */
static int bw_vmm_admit(struct brk_worker *w, struct ipc_msg *m)
{
	Vb__Brk__VmmAdmitReply rep = VB__BRK__VMM_ADMIT_REPLY__INIT;
	struct vb_err err;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	int r, gfd;

	if (m->nfds != 1) {
		vb_errf(&err, -EINVAL, "VMM_ADMIT carries the connection, %zu fds came", m->nfds);
		return bw_reject(w, m, &err);
	}
	r = ipc_peer_cred(m->fds[0], &pid, &uid, &gid);
	if (r < 0) {
		vb_errf(&err, -EINVAL, "not a connected unix socket: %s", strerror(-r));
		return bw_reject(w, m, &err);
	}
	if (uid != w->a.owner_uid && uid != 0) {
		brk_info("%s: VMM pid %d uid %u refused: the device's owner is uid %u", w->bdf,
			 (int)pid, (unsigned)uid, (unsigned)w->a.owner_uid);
		vb_errf(&err, -EPERM, "uid %u is not the device's owner", (unsigned)uid);
		return bw_reject(w, m, &err);
	}
	rep.pid = (uint32_t)pid;
	rep.uid = (uint32_t)uid;
	rep.gid = (uint32_t)gid;
	if (!w->a.allow_mmap)
		return bw_reply(w, m, &rep.base);
	/* The VMM's mmap grant: a file of the device of its own, recorded as this VMM's. Without
	 * one the VMM is admitted all the same; its BAR accesses are then trapped. */
	r = brk_vfio_dev_grant(w->a.dev, pid, uid, &gfd, &err);
	if (r < 0) {
		brk_warn("%s: no mmap grant for VMM pid %d: %s", w->bdf, (int)pid, err.msg);
		return bw_reply(w, m, &rep.base);
	}
	brk_info("%s: mmap grant %u to VMM pid %d uid %u", w->bdf,
		 brk_vfio_dev_grants(w->a.dev)->issued, (int)pid, (unsigned)uid);
	r = ipc_chan_reply(ipc_uv_chan(w->u), m, &rep.base, &gfd, 1);
	close(gfd);
	return r;
}

#define SERVING (W_ACTIVE | W_REMOVING)

/* What a worker may ask, and when. HANDOFF, HEARTBEAT and REMOVAL are the broker's requests: a
 * worker sending them, or anything before its HANDOFF is acknowledged, is faulted. While the
 * device is being removed only teardown is served; a new mapping then gets ESHUTDOWN. */
static const struct bw_handler bw_table[] = {
    {{VB__BRK__TYPE__DMA_MAP, W_ACTIVE, "dma_map"}, bw_dma_map},
    {{VB__BRK__TYPE__DMA_UNMAP, SERVING, "dma_unmap"}, bw_dma_unmap},
    {{VB__BRK__TYPE__DMA_UNMAP_ALL, SERVING, "dma_unmap_all"}, bw_dma_unmap_all},
    {{VB__BRK__TYPE__SET_IRQS, SERVING, "set_irqs"}, bw_set_irqs},
    {{VB__BRK__TYPE__RESET, W_ACTIVE, "reset"}, bw_reset},
    {{VB__BRK__TYPE__VMM_STATE, SERVING, "vmm_state"}, bw_vmm_state},
    {{VB__BRK__TYPE__VMM_ADMIT, W_ACTIVE, "vmm_admit"}, bw_vmm_admit},
    {{VB__BRK__TYPE__SYNC, SERVING, "sync"}, bw_sync},
};

void brk_worker__dispatch(struct brk_worker *w, struct ipc_msg *m)
{
	enum vb_req_check check;
	const struct bw_handler *h = VB_REQ_LOOKUP(bw_table, m->type, w->state, &check);
	uint64_t t0 = uv_hrtime();
	int r;

	if (check == VB_REQ_UNKNOWN) {
		brk_worker__fault(w, BRK_WORKER_PROTOCOL, "request type %u is not a worker request",
				  m->type);
		return;
	}
	if (check == VB_REQ_NOT_NOW) {
		if (w->state == W_REMOVING) {
			ipc_chan_reply_error(ipc_uv_chan(w->u), m, -ESHUTDOWN,
					     "%s: the device is being removed", h->req.name);
			return;
		}
		brk_worker__fault(w, BRK_WORKER_PROTOCOL, "%s before the handoff was acknowledged",
				  h->req.name);
		return;
	}
	r = h->fn(w, m);
	if (r == -EPROTO)
		return; /* faulted already */
	if (r < 0 && !w->freeing && w->state != W_DEAD) {
		/* The answer could not be sent: the channel is broken. */
		brk_worker__fault(w, BRK_WORKER_CRASHED, "cannot answer %s: %s", h->req.name,
				  strerror(-r));
		return;
	}
	if (m->type < WKR_TYPES)
		brk_req_stats_observe(&bw_stats[m->type], r == 0, uv_hrtime() - t0);
}

void brk_worker__req_metrics(FILE *f)
{
	brk_req_stats_print(f, "worker", "Worker", bw_table, ARRAY_SIZE(bw_table),
			    sizeof(bw_table[0]), bw_stats);
}
