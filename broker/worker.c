/*
 * worker: one worker's channel, handoff, answers to the broker's own requests (HANDOFF,
 * HEARTBEAT, REMOVAL), supervision hooks and lifecycle (start, adopt, removal, kill, free).
 * Responsible for declaring the worker faulted, once, on anything malformed, on a hang or a
 * crash. Trusts nothing the worker sends; what the worker asks is worker_req.c's (the request
 * table), what the two share worker_priv.h.
 */
#include "worker.h"

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

/* How long past its own timeout the broker waits for the answer to a REMOVAL. */
#define WKR_REMOVAL_GRACE_MS 1000
/* How long a worker that hung up its channel has to exit before that counts as its fault. */
#define WKR_EOF_GRACE_MS 500

/* Random enough that two broker instances never pick the same (epochs, request ids). */
static uint64_t bw_random64(void)
{
	uint64_t v;

	if (getrandom(&v, sizeof(v), 0) != sizeof(v))
		v = uv_hrtime() ^ ((uint64_t)getpid() << 40);
	return v;
}
static uint64_t bw_faults[3], bw_heartbeats;

/* Every interrupt vector of the device, each of which the worker may route. */
static uint32_t bw_vectors(const struct brk_vfio_dev *dev)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < brk_vfio_dev_info(dev)->num_irqs; i++) {
		const struct brk_irq_info *ii = brk_vfio_dev_irq(dev, i);

		n += ii ? ii->count : 0;
	}
	return n;
}

/* ---- answers to the broker's own requests -------------------------------------------------- */

static void bw_answer(struct brk_worker *w, struct ipc_msg *m)
{
	const Vb__Error *e = m->kind == IPC_KIND_ERROR ? (const Vb__Error *)m->body : NULL;

	if (m->type == VB__BRK__TYPE__HANDOFF && m->id == w->handoff_id && w->state == W_HANDOFF) {
		if (e) {
			brk_worker__fault(w, BRK_WORKER_CRASHED, "worker refused its handoff: %s",
					  e->message);
			return;
		}
		w->state = W_ACTIVE;
		w->a.hooks->ready(w->a.ctx);
	} else if (m->type == VB__BRK__TYPE__HEARTBEAT && m->id == w->heartbeat_id) {
		const Vb__Brk__HeartbeatReply *hr =
		    e ? NULL : (const Vb__Brk__HeartbeatReply *)m->body;

		/* The sequence number too: an id can repeat across broker instances. */
		if (!hr || hr->seq != w->heartbeat_seq)
			return;
		brk_sup_heartbeat_answered(w->sup, w->heartbeat_seq);
		if (w->adopting && w->state != W_DEAD) {
			w->adopting = false;
			w->a.hooks->ready(w->a.ctx);
		}
	} else if (m->type == VB__BRK__TYPE__REMOVAL && m->id == w->removal_id &&
		   w->removal_pending) {
		const Vb__Brk__RemovalReply *rr = e ? NULL : (const Vb__Brk__RemovalReply *)m->body;

		w->removal_pending = false;
		uv_timer_stop(&w->removal_timer);
		w->a.hooks->removal_done(w->a.ctx, rr && rr->vmm_acknowledged);
	}
}

static void bw_eof_expired(uv_timer_t *t)
{
	struct brk_worker *w = t->data;

	brk_worker__fault(w, BRK_WORKER_CRASHED,
			  "worker closed its broker channel and kept running");
}

static void bw_on_msg(struct ipc_uv *u, struct ipc_msg *m, int err, void *data)
{
	struct brk_worker *w = data;

	if (!m) {
		if (w->state == W_DEAD)
			return;
		if (err != -EPIPE && err != -ECONNRESET) {
			brk_worker__fault(w, BRK_WORKER_PROTOCOL, "broker channel: %s",
					  strerror(-err));
			return;
		}
		/* A hang-up is usually a worker that died: wait briefly for its exit status, which
		 * says why (a signal, a seccomp kill), before calling it a fault of its own. */
		w->removal_pending = false;
		brk_sup_stop_heartbeats(w->sup);
		uv_timer_start(&w->removal_timer, bw_eof_expired, WKR_EOF_GRACE_MS, 0);
		return;
	}
	if (w->state == W_DEAD) {
		ipc_msg_free(m);
		return;
	}
	if (m->kind == IPC_KIND_REQUEST)
		brk_worker__dispatch(w, m);
	else if (m->kind == IPC_KIND_REPLY || m->kind == IPC_KIND_ERROR)
		bw_answer(w, m);
	else
		brk_worker__fault(w, BRK_WORKER_PROTOCOL, "unsolicited event type %u", m->type);
	ipc_msg_free(m);
}

/* ---- supervision hooks ----------------------------------------------------------------------- */

static int bw_send_heartbeat(void *ctx, uint64_t seq)
{
	struct brk_worker *w = ctx;
	Vb__Brk__Heartbeat hb = VB__BRK__HEARTBEAT__INIT;
	int r;

	if (w->state == W_DEAD)
		return -ESHUTDOWN;
	hb.seq = seq;
	hb.epoch = brk_worker_epoch();
	hb.answers_sync = true;
	r = ipc_chan_request(ipc_uv_chan(w->u), VB__BRK__TYPE__HEARTBEAT, &hb.base, NULL, 0,
			     &w->heartbeat_id);
	if (r < 0)
		return r; /* a full socket is a worker not reading: the timeout will tell */
	w->heartbeat_seq = seq;
	bw_heartbeats++;
	return 0;
}

static void bw_hung(void *ctx, uint64_t seq, uint64_t waited_ms)
{
	struct brk_worker *w = ctx;

	brk_worker__fault(w, BRK_WORKER_HUNG, "heartbeat %llu unanswered for %llu ms",
			  (unsigned long long)seq, (unsigned long long)waited_ms);
}

static void bw_exited(void *ctx, int code, int status)
{
	struct brk_worker *w = ctx;

	if (w->state != W_DEAD) {
		/* It died on its own. */
		if (code == CLD_EXITED)
			brk_worker__fault(w, BRK_WORKER_CRASHED, "worker exited with status %d",
					  status);
		else if (code == 0)
			brk_worker__fault(
			    w, BRK_WORKER_CRASHED,
			    "worker ended (adopted, not our child: its exit status went to "
			    "its parent)");
		else
			brk_worker__fault(
			    w, BRK_WORKER_CRASHED, "worker killed by signal %d (%s)%s", status,
			    strsignal(status), code == CLD_DUMPED ? ", core dumped" : "");
	}
	if (!w->freeing)
		w->a.hooks->exited(w->a.ctx, code, status);
}

static const struct brk_sup_hooks bw_sup_hooks = {
    .send_heartbeat = bw_send_heartbeat,
    .hung = bw_hung,
    .exited = bw_exited,
};

/* Stops serving: no more requests are answered, the channel closes, the process is killed. */
static void bw_stop(struct brk_worker *w)
{
	if (w->state == W_DEAD)
		return;
	w->state = W_DEAD;
	w->removal_pending = false;
	uv_timer_stop(&w->removal_timer);
	brk_sup_stop_heartbeats(w->sup);
	brk_sup_kill(w->sup);
}

void brk_worker__fault(struct brk_worker *w, enum brk_worker_fault kind, const char *fmt, ...)
{
	char reason[256];
	va_list ap;

	if (w->state == W_DEAD || w->fault_reported)
		return;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	w->fault_reported = true;
	bw_faults[kind]++;
	bw_stop(w);
	if (!w->freeing)
		w->a.hooks->fault(w->a.ctx, kind, reason);
}

/* ---- lifecycle --------------------------------------------------------------------------------
 */

static int bw_send_handoff(struct brk_worker *w)
{
	Vb__Brk__Handoff h = VB__BRK__HANDOFF__INIT;
	Vb__Limits lim = VB__LIMITS__INIT;
	struct brk_vfio_dev_pb pb = {0};
	int fds[3] = {brk_vfio_dev_fd(w->a.dev)}, r;
	size_t nfds = 1;

	r = brk_vfio_dev_pb_fill(w->a.dev, &pb);
	if (r < 0)
		return r;
	h.version = VB__BRK__VERSION__VERSION_CURRENT;
	h.bdf = w->bdf;
	h.vm = w->vm;
	h.device_flags = brk_vfio_dev_info(w->a.dev)->flags;
	h.regions = pb.regions;
	h.n_regions = pb.n_regions;
	h.irqs = pb.irqs;
	h.n_irqs = pb.n_irqs;
	lim.max_dma_mappings = w->a.max_dma_mappings;
	lim.max_pinned_bytes = w->a.max_pinned_bytes;
	h.limits = &lim;
	h.allow_mmap = w->a.allow_mmap;
	h.iommu_pgsize = w->a.iommu_pgsize;
	h.owner_uid = w->a.owner_uid;
	h.owner_gid = w->a.owner_gid;
	h.generation = w->a.generation;
	h.epoch = brk_worker_epoch();
	/* What a worker spawned for this device was given; a pre-started one lowers its ceiling
	 * to it. */
	h.rlimit_nofile = brk_spawn_worker_nofile(bw_vectors(w->a.dev));
	/* The device, then the listening socket of each protocol served, native first. */
	h.protocols = w->a.protocols;
	if (w->a.protocols & BRK_PROTO_NATIVE)
		fds[nfds++] = w->a.vmm_listen_fd;
	if (w->a.protocols & BRK_PROTO_VFIO_USER)
		fds[nfds++] = w->a.vfu_listen_fd;
	/* SCM_RIGHTS gives the worker its own descriptions of the fds; ours stay ours. */
	r = ipc_chan_request(ipc_uv_chan(w->u), VB__BRK__TYPE__HANDOFF, &h.base, fds, nfds,
			     &w->handoff_id);
	brk_vfio_dev_pb_release(&pb);
	return r;
}

static void bw_closed_one(struct brk_worker *w)
{
	if (--w->open == 0)
		free(w);
}

static void bw_chan_closed(void *data)
{
	bw_closed_one(data);
}

static void bw_timer_closed(uv_handle_t *h)
{
	bw_closed_one(h->data);
}

static void bw_removal_expired(uv_timer_t *t)
{
	struct brk_worker *w = t->data;

	if (!w->removal_pending)
		return;
	w->removal_pending = false;
	w->a.hooks->removal_done(w->a.ctx, false);
}

/* The worker record of `args`, in `state`, with its own copies of the names `args` points to
 * (the caller's may not outlive the call). NULL when out of memory. */
static struct brk_worker *bw_alloc(const struct brk_worker_args *args, enum bw_state state)
{
	struct brk_worker *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->a = *args;
	snprintf(w->bdf, sizeof(w->bdf), "%s", args->bdf);
	snprintf(w->vm, sizeof(w->vm), "%s", args->vm);
	w->a.bdf = w->bdf;
	w->a.vm = w->vm;
	w->state = state;
	return w;
}

/* Ends a pre-started worker that will not be used: killed and reaped (it has exec'd and waits
 * for its HANDOFF, so it dies at once), its fds closed. NULL allowed. */
static void bw_pre_end(const struct brk_pool_proc *pre)
{
	struct pollfd p;

	if (!pre)
		return;
	syscall(SYS_pidfd_send_signal, pre->pidfd, SIGKILL, NULL, 0);
	/* The pool's loop made its pidfd O_NONBLOCK: waitid() says EAGAIN until it has exited. */
	for (;;) {
		p = (struct pollfd){.fd = pre->pidfd, .events = POLLIN};
		if (waitid((idtype_t)3 /* P_PIDFD */, (id_t)pre->pidfd, &(siginfo_t){0}, WEXITED) ==
		    0)
			break;
		if (errno == EAGAIN)
			poll(&p, 1, -1);
		else if (errno != EINTR)
			break;
	}
	close(pre->pidfd);
	close(pre->chan_fd);
}

/* The pre-started worker becomes this device's: it was started with the configured ceiling of
 * open files, which the device's own need must fit under as with a spawn of its own. */
static int bw_pre_take(struct brk_worker *w, const struct brk_config *cfg, int *ret_pidfd,
		       int *ret_chan_fd, struct vb_err *err)
{
	const struct brk_pool_proc *pre = w->a.pre;
	uint64_t nofile = brk_spawn_worker_nofile(bw_vectors(w->a.dev));

	if (nofile > cfg->rlimits.nofile) {
		bw_pre_end(pre);
		return vb_errf(err, -EMFILE,
			       "the device needs a worker with %llu open files (2 per interrupt "
			       "vector); [worker] rlimit_nofile allows %llu",
			       (unsigned long long)nofile, (unsigned long long)cfg->rlimits.nofile);
	}
	w->pid = pre->pid;
	*ret_pidfd = pre->pidfd;
	*ret_chan_fd = pre->chan_fd;
	w->a.pre = NULL;
	return 0;
}

int brk_worker_start(uv_loop_t *loop, const struct brk_worker_args *args, struct brk_worker **ret,
		     struct vb_err *err)
{
	const struct brk_config *cfg = args->cfg;
	struct brk_sup_cfg scfg = {.interval_ms = cfg->heartbeat_interval_ms,
				   .timeout_ms = cfg->heartbeat_timeout_ms,
				   .hooks = &bw_sup_hooks};
	struct ipc_chan *chan = NULL;
	struct brk_worker *w;
	int pidfd = -1, cfd = -1, r;

	w = bw_alloc(args, W_HANDOFF);
	if (!w) {
		bw_pre_end(args->pre);
		return vb_errf(err, -ENOMEM, "out of memory");
	}
	if (args->pre)
		r = bw_pre_take(w, cfg, &pidfd, &cfd, err);
	else
		r = brk_spawn_worker(cfg, args->uid, args->gid,
				     brk_spawn_worker_nofile(bw_vectors(args->dev)), &w->pid,
				     &pidfd, &cfd, err);
	if (r < 0) {
		free(w);
		return r;
	}
	scfg.ctx = w;
	w->pidfd = pidfd;
	r = brk_sup_start(loop, w->pid, pidfd, &scfg, &w->sup);
	if (r < 0) {
		/* Without a supervisor nobody would reap it: end it here. */
		syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
		waitid((idtype_t)3 /* P_PIDFD */, (id_t)pidfd, &(siginfo_t){0}, WEXITED);
		close(pidfd);
		close(cfd);
		free(w);
		vb_errf(err, r, "cannot supervise worker: %s", strerror(-r));
		return r;
	}
	r = ipc_chan_new(cfd, &ipc_proto_broker, NULL, &chan);
	if (r == 0)
		r = ipc_uv_start(loop, chan, bw_on_msg, w, &w->u);
	if (r < 0) {
		if (chan)
			ipc_chan_free(chan);
		else
			close(cfd);
		vb_errf(err, r, "cannot open the worker channel: %s", strerror(-r));
		goto fail_sup;
	}
	uv_timer_init(loop, &w->removal_timer);
	w->removal_timer.data = w;
	w->open = 2;
	r = bw_send_handoff(w);
	if (r < 0) {
		vb_errf(err, r, "cannot send the handoff: %s", strerror(-r));
		brk_worker_free(w);
		return r;
	}
	*ret = w;
	return 0;
fail_sup:
	w->freeing = true;
	brk_sup_free(w->sup);
	free(w);
	return r;
}

int brk_worker_adopt(uv_loop_t *loop, const struct brk_worker_args *args, pid_t pid, int pidfd,
		     int chan_fd, struct brk_worker **ret, struct vb_err *err)
{
	const struct brk_config *cfg = args->cfg;
	struct brk_sup_cfg scfg = {.interval_ms = cfg->heartbeat_interval_ms,
				   .timeout_ms = cfg->heartbeat_timeout_ms,
				   .heartbeat_now = true,
				   .hooks = &bw_sup_hooks};
	struct ipc_chan *chan = NULL;
	struct brk_worker *w;
	uint32_t first_id = 0;
	int cfd, r;

	if (pid <= 0 || pidfd < 0 || chan_fd < 0)
		return vb_errf(err, -EINVAL, "adopting a worker needs its pid, pidfd and channel");
	/* It has been serving all along: its requests (some may wait in the channel since before
	 * the restart) are served at once; `ready` waits for its answer to our first heartbeat. */
	w = bw_alloc(args, W_ACTIVE);
	if (!w)
		return vb_errf(err, -ENOMEM, "out of memory");
	w->adopting = true;
	w->pid = pid;
	w->pidfd = pidfd;
	/* A copy of the channel, so that a failure leaves the caller's fds as they were. */
	cfd = fcntl(chan_fd, F_DUPFD_CLOEXEC, 3);
	r = cfd < 0 ? -errno : ipc_chan_new(cfd, &ipc_proto_broker, NULL, &chan);
	if (r < 0) {
		if (cfd >= 0)
			close(cfd);
		free(w);
		return vb_errf(err, r, "%s: worker %d's channel: %s", args->bdf, (int)pid,
			       strerror(-r));
	}
	/* The predecessor's requests may have been answered into the socket after it died. */
	while (first_id == 0)
		first_id = (uint32_t)bw_random64();
	ipc_chan_take_over(chan, first_id);
	r = ipc_uv_start(loop, chan, bw_on_msg, w, &w->u);
	if (r < 0) {
		ipc_chan_free(chan);
		free(w);
		return vb_errf(err, r, "%s: cannot watch worker %d's channel: %s", args->bdf,
			       (int)pid, strerror(-r));
	}
	uv_timer_init(loop, &w->removal_timer);
	w->removal_timer.data = w;
	w->open = 2;
	scfg.ctx = w;
	r = brk_sup_start(loop, pid, pidfd, &scfg, &w->sup);
	if (r < 0) {
		vb_errf(err, r, "%s: cannot supervise worker %d: %s", args->bdf, (int)pid,
			strerror(-r));
		/* The channel goes with the worker struct; the caller keeps the pidfd. */
		w->freeing = true;
		w->state = W_DEAD;
		ipc_uv_close(w->u, bw_chan_closed);
		uv_close((uv_handle_t *)&w->removal_timer, bw_timer_closed);
		return r;
	}
	/* Without periodic heartbeats, one all the same: its answer is what says it is there. */
	if (!cfg->heartbeat_interval_ms)
		(void)bw_send_heartbeat(w, bw_random64());
	close(chan_fd);
	*ret = w;
	return 0;
}

int brk_worker_request_removal(struct brk_worker *w, uint32_t timeout_ms)
{
	Vb__Brk__Removal rm = VB__BRK__REMOVAL__INIT;
	int r;

	if (w->state != W_ACTIVE)
		return -ESHUTDOWN;
	rm.timeout_ms = timeout_ms;
	r = ipc_chan_request(ipc_uv_chan(w->u), VB__BRK__TYPE__REMOVAL, &rm.base, NULL, 0,
			     &w->removal_id);
	if (r < 0)
		return r;
	w->state = W_REMOVING;
	w->removal_pending = true;
	uv_timer_start(&w->removal_timer, bw_removal_expired,
		       (uint64_t)timeout_ms + WKR_REMOVAL_GRACE_MS, 0);
	return 0;
}

void brk_worker_kill(struct brk_worker *w)
{
	bw_stop(w);
}

void brk_worker_free(struct brk_worker *w)
{
	if (!w || w->freeing)
		return;
	w->freeing = true;
	bw_stop(w);
	brk_sup_free(w->sup);
	ipc_uv_close(w->u, bw_chan_closed);
	uv_close((uv_handle_t *)&w->removal_timer, bw_timer_closed);
}

pid_t brk_worker_pid(const struct brk_worker *w)
{
	return w->pid;
}

bool brk_worker_vmm_connected(const struct brk_worker *w)
{
	return w->vmm_connected && w->state != W_DEAD;
}

void brk_worker_fds(const struct brk_worker *w, int *ret_channel, int *ret_pidfd)
{
	*ret_channel = ipc_chan_fd(ipc_uv_chan(w->u));
	*ret_pidfd = w->pidfd;
}

uint64_t brk_worker_epoch(void)
{
	static uint64_t epoch;

	while (epoch == 0)
		epoch = bw_random64();
	return epoch;
}

const struct brk_worker_ops brk_worker_ops_real = {
    .start = brk_worker_start,
    .adopt = brk_worker_adopt,
    .request_removal = brk_worker_request_removal,
    .kill = brk_worker_kill,
    .free = brk_worker_free,
    .pid = brk_worker_pid,
    .vmm_connected = brk_worker_vmm_connected,
    .fds = brk_worker_fds,
};

void brk_worker_metrics(FILE *f)
{
	static const char *const kinds[] = {"crashed", "hung", "protocol"};

	brk_worker__req_metrics(f);
	brk_metric_header(f, "vfio_broker_worker_faults_total", "counter",
			  "Workers ended for crashing, hanging or breaking the protocol.");
	for (int k = 0; k < 3; k++)
		fprintf(f, "vfio_broker_worker_faults_total{kind=\"%s\"} %llu\n", kinds[k],
			(unsigned long long)bw_faults[k]);
	brk_metric_header(f, "vfio_broker_heartbeats_sent_total", "counter",
			  "Heartbeats sent to workers.");
	fprintf(f, "vfio_broker_heartbeats_sent_total %llu\n", (unsigned long long)bw_heartbeats);
}
