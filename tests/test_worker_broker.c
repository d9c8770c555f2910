/*
 * Integration test of the vfio-worker binary in broker mode, against a fake broker: the test
 * plays the broker on the worker's fd 3 (HANDOFF with a device image memfd as the "device fd"
 * and a listening socket, then answering the worker's requests from a thread) and the VMM on
 * that socket. It checks what reaches the broker: VMM presence, SET_IRQS when the guest enables
 * MSI-X, DMA_MAP with the memfd, the teardown when the VMM leaves, HEARTBEAT and REMOVAL.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/pci_regs.h>
#include <linux/vfio.h>

#include "le.h"
#include "broker.pb-c.h"
#include "common.pb-c.h"
#include "devimg.h"
#include "broker_link.h"
#include "device.pb-c.h"
#include "ipc.h"
#include "vfu_client.h"
#include "worker.h"
#include "test_wait.h"
#include "test_memfd.h"

#define LOG_MAX 256

struct seen {
	uint16_t type;
	uint32_t index, start, count;
	uint64_t iova, size; /* DMA_MAP, DMA_UNMAP */
	bool disable, connected;
	size_t nfds, nslots;
};

struct fx {
	pid_t pid;
	char dir[64], sock[128], vsock[128]; /* native and vfio-user sockets */
	struct ipc_chan *brk;
	struct wkr_image *img;
	int memfd;
	pthread_t thread;
	pthread_mutex_t lock;
	bool stop;
	struct seen log[LOG_MAX];
	int nlog;
	int removal_answer; /* -1 none yet, 0 not acked, 1 acked */
	bool refuse_vmms;   /* answer VMM_ADMIT with EPERM, as for a stranger's VMM */
	int grant_fd;	    /* >= 0: sent with VMM_ADMIT's reply as the VMM's mmap grant */
	bool silent;	    /* record requests, answer none (a broker that is not there) */
	/* Requests of this type (0: none) are kept unanswered in `held` until held_answer(): a
	 * broker that answers late, after the worker gave up (--call-timeout). */
	uint16_t hold_type;
	struct ipc_msg *held[8];
	int nheld;
	int fail_irqs;	 /* SET_IRQS is answered with this negative errno (0: done) */
	int fail_unmaps; /* DMA_UNMAP likewise (-ENOENT: a range the kernel does not have) */
	int heartbeat_replies;
	uint64_t heartbeat_seq;	 /* the last answered */
	uint64_t heartbeat_irqs; /* its interrupts_pending */
	int msix_wfd[16];	 /* dups of the fds the last MSI-X SET_IRQS routed, per vector */
	int call_timeout_ms;	 /* the worker's --call-timeout (0: its default) */
	int log_fd;		 /* > 0: read end of the worker's stderr (else it shares ours) */
	bool stopped;		 /* the broker thread has been joined and the channel closed */
};

/* Keeps what an MSI-X SET_IRQS routes each vector to (the worker's own eventfds for masked
 * vectors), so that the test can fire them as the device would. */
static void keep_msix_fds(struct fx *f, const Vb__Brk__SetIrqs *q, const struct ipc_msg *m)
{
	for (size_t i = 0; i < q->n_fd_slots && q->start + i < 16; i++) {
		int32_t slot = q->fd_slots[i];
		int *kept = &f->msix_wfd[q->start + i];

		if (slot < 0 || (size_t)slot >= m->nfds)
			continue;
		if (*kept > 0)
			close(*kept);
		*kept = fcntl(m->fds[slot], F_DUPFD_CLOEXEC, 3);
	}
}

static void record(struct fx *f, const struct ipc_msg *m)
{
	struct seen s = {.type = m->type, .nfds = m->nfds};

	if (m->type == VB__BRK__TYPE__SET_IRQS) {
		const Vb__Brk__SetIrqs *q = (const Vb__Brk__SetIrqs *)m->body;

		if (q->index == VFIO_PCI_MSIX_IRQ_INDEX && !q->disable)
			keep_msix_fds(f, q, m);
		s.index = q->index;
		s.start = q->start;
		s.count = q->count;
		s.disable = q->disable;
		s.nslots = q->n_fd_slots;
	} else if (m->type == VB__BRK__TYPE__DMA_MAP) {
		s.iova = ((const Vb__DmaMap *)m->body)->iova;
		s.size = ((const Vb__DmaMap *)m->body)->size;
	} else if (m->type == VB__BRK__TYPE__DMA_UNMAP) {
		s.iova = ((const Vb__DmaUnmap *)m->body)->iova;
		s.size = ((const Vb__DmaUnmap *)m->body)->size;
	} else if (m->type == VB__BRK__TYPE__VMM_STATE) {
		s.connected = ((const Vb__Brk__VmmState *)m->body)->connected;
	}
	if (f->nlog < LOG_MAX)
		f->log[f->nlog++] = s;
}

/* As the real broker would, with success (VMM_ADMIT: the connection's own credentials), under
 * f->lock. */
static void answer(struct fx *f, const struct ipc_msg *m)
{
	if (m->type == VB__BRK__TYPE__VMM_ADMIT) {
		Vb__Brk__VmmAdmitReply rep = VB__BRK__VMM_ADMIT_REPLY__INIT;
		pid_t pid;
		uid_t uid;
		gid_t gid;

		if (f->refuse_vmms || m->nfds != 1 ||
		    ipc_peer_cred(m->fds[0], &pid, &uid, &gid) < 0) {
			ipc_chan_reply_error(f->brk, m, -EPERM, "not the owner");
		} else {
			rep.pid = (uint32_t)pid;
			rep.uid = (uint32_t)uid;
			ipc_chan_reply(f->brk, m, &rep.base, &f->grant_fd, f->grant_fd >= 0);
		}
	} else if (m->type == VB__BRK__TYPE__DMA_UNMAP_ALL) {
		Vb__Brk__DmaUnmapAllReply rep = VB__BRK__DMA_UNMAP_ALL_REPLY__INIT;

		ipc_chan_reply(f->brk, m, &rep.base, NULL, 0);
	} else if (m->type == VB__BRK__TYPE__SET_IRQS && f->fail_irqs) {
		ipc_chan_reply_error(f->brk, m, f->fail_irqs, "fake broker: SET_IRQS fails");
	} else if (m->type == VB__BRK__TYPE__DMA_UNMAP && f->fail_unmaps) {
		ipc_chan_reply_error(f->brk, m, f->fail_unmaps, "fake broker: no such mapping");
	} else {
		Vb__Empty e = VB__EMPTY__INIT;

		ipc_chan_reply(f->brk, m, &e.base, NULL, 0);
	}
}

/* The fake broker: answers every worker request with success. The channel is used under
 * f->lock only (the main thread sends REMOVAL through it). */
static void *broker_thread(void *arg)
{
	struct fx *f = arg;

	for (;;) {
		bool stop;
		struct pollfd p;
		bool queued;
		struct ipc_msg *m;
		int r;

		pthread_mutex_lock(&f->lock);
		stop = f->stop;
		pthread_mutex_unlock(&f->lock);
		if (stop)
			return NULL;
		p = (struct pollfd){.fd = ipc_chan_fd(f->brk), .events = POLLIN};
		pthread_mutex_lock(&f->lock);
		queued = ipc_chan_has_queued(f->brk);
		pthread_mutex_unlock(&f->lock);
		if (!queued && poll(&p, 1, 20) <= 0)
			continue;
		pthread_mutex_lock(&f->lock);
		r = ipc_chan_recv(f->brk, &m);
		if (r < 0) {
			pthread_mutex_unlock(&f->lock);
			continue;
		}
		if (m->kind == IPC_KIND_REPLY && m->type == VB__BRK__TYPE__REMOVAL) {
			f->removal_answer =
			    ((const Vb__Brk__RemovalReply *)m->body)->vmm_acknowledged ? 1 : 0;
		} else if (m->kind == IPC_KIND_REPLY && m->type == VB__BRK__TYPE__HEARTBEAT) {
			f->heartbeat_replies++;
			f->heartbeat_seq = ((const Vb__Brk__HeartbeatReply *)m->body)->seq;
			f->heartbeat_irqs =
			    ((const Vb__Brk__HeartbeatReply *)m->body)->interrupts_pending;
		} else if (m->kind == IPC_KIND_REQUEST) {
			record(f, m);
			if (f->silent) {
				/* Nobody answers. */
			} else if (m->type == f->hold_type && f->nheld < 8) {
				f->held[f->nheld++] = m;
				m = NULL;
			} else {
				answer(f, m);
			}
		}
		pthread_mutex_unlock(&f->lock);
		ipc_msg_free(m);
	}
}

/* The fixture's own directory with the VMM's listening socket in it (f->dir, f->sock). */
static int listen_vmm(struct fx *f, int *lfd)
{
	snprintf(f->dir, sizeof(f->dir), "/tmp/vb-worker-brk-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->sock, sizeof(f->sock), "%s/vmm.sock", f->dir);
	return ipc_listen(f->sock, 0600, 4, lfd);
}

static int spawn(struct fx *f, int *ret_listen)
{
	int sp[2], lfd;
	int logp[2] = {-1, -1};
	char ct[48];

	if (listen_vmm(f, &lfd) < 0 || ipc_socketpair(sp) < 0)
		return -1;
	if (f->log_fd < 0 && pipe2(logp, O_CLOEXEC) < 0)
		return -1;
	snprintf(ct, sizeof(ct), "--call-timeout=%d", f->call_timeout_ms);
	f->pid = fork();
	if (f->pid == 0) {
		char *argv[] = {VB_WORKER_BIN, "--seccomp=" VB_WORKER_SECCOMP,
				f->call_timeout_ms ? ct : NULL, NULL};

		if (dup2(sp[1], 3) < 0 || (logp[1] >= 0 && dup2(logp[1], 2) < 0))
			_exit(126);
		execv(argv[0], argv);
		_exit(127);
	}
	close(sp[1]);
	if (logp[1] >= 0) {
		close(logp[1]);
		f->log_fd = logp[0];
	}
	*ret_listen = lfd;
	return ipc_chan_new(sp[0], &ipc_proto_broker, NULL, &f->brk);
}

/* Everything the worker wrote to its stderr until it closed it (it exited). */
static void read_log(struct fx *f, char *buf, size_t len)
{
	size_t off = 0;
	ssize_t n;

	while (off + 1 < len && (n = read(f->log_fd, buf + off, len - 1 - off)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		assert_true(n > 0);
		off += (size_t)n;
	}
	buf[off] = '\0';
}

/* The fake broker goes away: its thread ends and its end of the channel closes. */
static void broker_hang_up(struct fx *f)
{
	pthread_mutex_lock(&f->lock);
	f->stop = true;
	pthread_mutex_unlock(&f->lock);
	pthread_join(f->thread, NULL);
	ipc_chan_free(f->brk);
	f->brk = NULL;
	f->stopped = true;
}

/* HANDOFF from the image with the listening sockets `fds` (native and/or vfio-user) for
 * `protocols` (0: native, as an older broker sends); `drop_config` leaves region 7 out (a bad
 * handoff). */
static int handoff_protos(struct fx *f, uint32_t protocols, const int *lfds, size_t nl,
			  bool drop_config, struct ipc_error *err)
{
	const struct wkr_devinfo *in = wkr_image_info(f->img);
	Vb__Brk__Handoff h = VB__BRK__HANDOFF__INIT;
	Vb__Region regs[WKR_NUM_REGIONS], *pregs[WKR_NUM_REGIONS];
	Vb__Irq irqs[WKR_NUM_IRQS], *pirqs[WKR_NUM_IRQS];
	Vb__Limits lim = VB__LIMITS__INIT;
	int fds[3];
	struct ipc_msg *rep = NULL;
	int r;

	for (unsigned i = 0; i < WKR_NUM_REGIONS; i++) {
		if (drop_config && i == VFIO_PCI_CONFIG_REGION_INDEX)
			continue;
		vb__region__init(&regs[h.n_regions]);
		regs[h.n_regions].index = i;
		regs[h.n_regions].flags = in->regions[i].flags;
		regs[h.n_regions].size = in->regions[i].size;
		regs[h.n_regions].offset = in->regions[i].offset;
		pregs[h.n_regions] = &regs[h.n_regions];
		h.n_regions++;
	}
	for (unsigned i = 0; i < WKR_NUM_IRQS; i++) {
		vb__irq__init(&irqs[i]);
		irqs[i].index = i;
		irqs[i].flags = in->irqs[i].flags;
		irqs[i].count = in->irqs[i].count;
		pirqs[i] = &irqs[i];
	}
	h.version = VB__BRK__VERSION__VERSION_CURRENT;
	h.bdf = "0000:03:00.0";
	h.vm = "test-vm";
	h.device_flags = in->flags;
	h.regions = pregs;
	h.irqs = pirqs;
	h.n_irqs = WKR_NUM_IRQS;
	lim.max_dma_mappings = 16;
	lim.max_pinned_bytes = 1 << 30;
	h.limits = &lim;
	h.allow_mmap = true;
	h.iommu_pgsize = 4096;
	h.owner_uid = getuid();
	h.owner_gid = getgid();
	fds[0] = f->memfd;
	fds[1] = lfds[0];
	fds[2] = nl > 1 ? lfds[1] : -1;
	h.protocols = protocols;
	h.epoch = 1;
	r = ipc_chan_call(f->brk, VB__BRK__TYPE__HANDOFF, &h.base, fds, 1 + nl, TEST_HANG_MS, &rep,
			  err);
	ipc_msg_free(rep);
	return r;
}

/* A fixture before its worker runs: the device image built into f->memfd, the fake broker's
 * state as it starts (no removal answer, no mmap grant); `log_fd` as in struct fx (0: the
 * worker shares the test's stderr, -1: spawn() captures it). */
static int fx_init(struct fx *f, int log_fd)
{
	struct vb_err ierr;

	memset(f, 0, sizeof(*f));
	f->log_fd = log_fd;
	f->memfd = -1;
	f->removal_answer = -1;
	f->grant_fd = -1;
	pthread_mutex_init(&f->lock, NULL);
	if (wkr_image_load(VB_FIXTURES "/pcie_spec_sriov_ari_rebar.img", &f->img, &ierr) < 0)
		return -1;
	return wkr_image_build(f->img, &f->memfd);
}

/* What fx_init() and spawn() left on the file system and in memory, the worker gone. */
static void fx_release(struct fx *f)
{
	unlink(f->sock);
	if (f->vsock[0])
		unlink(f->vsock);
	rmdir(f->dir);
	if (f->memfd >= 0)
		close(f->memfd);
	wkr_image_free(f->img);
}

/* A worker handed the sockets of `protocols` (0: the native one, as an older broker sends; 2:
 * the vfio-user one only; 3: both), answered by the fake broker's thread from then on. */
static int setup_with(void **state, bool capture_log, int call_timeout_ms, uint32_t protocols)
{
	struct fx *f = calloc(1, sizeof(*f));
	int lfd[2] = {-1, -1};
	int r;

	if (!f || fx_init(f, capture_log ? -1 : 0) < 0)
		return -1;
	f->call_timeout_ms = call_timeout_ms;
	*state = f;
	if (spawn(f, &lfd[0]) < 0)
		return -1;
	if (protocols & 2) {
		snprintf(f->vsock, sizeof(f->vsock), "%s/vfu.sock", f->dir);
		if (ipc_listen_stream(f->vsock, 0600, 4, &lfd[1]) < 0)
			return -1;
	}
	if (protocols == 2)
		r = handoff_protos(f, protocols, &lfd[1], 1, false, NULL);
	else
		r = handoff_protos(f, protocols, lfd, protocols ? 2 : 1, false, NULL);
	close(lfd[0]);
	if (lfd[1] >= 0)
		close(lfd[1]);
	if (r < 0)
		return -1;
	return pthread_create(&f->thread, NULL, broker_thread, f) == 0 ? 0 : -1;
}

static int setup(void **state)
{
	return setup_with(state, false, 0, 0);
}

/* The same with the worker's log captured (f->log_fd). */
static int setup_log(void **state)
{
	return setup_with(state, true, 0, 0);
}

/* The same with a worker that gives up on a call after 300 ms (a broker answers late, or not),
 * its log captured. Nothing depends on that time being short or long: what is held is never
 * answered before the test releases it. */
static int setup_short(void **state)
{
	return setup_with(state, true, 300, 0);
}

/* A worker that holds a call for the broker ten times longer than any step of a test waits
 * (TEST_HANG_MS): what must happen while a call waits cannot be its timeout's doing. */
static int setup_long(void **state)
{
	return setup_with(state, false, 10 * TEST_HANG_MS, 0);
}

/* The same, handed the vfio-user socket only. */
static int setup_vfu_long(void **state)
{
	return setup_with(state, false, 10 * TEST_HANG_MS, 2);
}

/* The same worker handed the vfio-user socket only, giving up on calls after 300 ms. */
static int setup_vfu_short(void **state)
{
	return setup_with(state, true, 300, 2);
}

/* The same worker handed the vfio-user socket only. */
static int setup_vfu(void **state)
{
	return setup_with(state, false, 0, 2);
}

/* ... and handed both sockets. */
static int setup_both(void **state)
{
	return setup_with(state, false, 0, 3);
}

static int teardown(void **state)
{
	struct fx *f = *state;
	int status = 0;

	/* The broker closing its channel ends the worker with status 0. */
	if (!f->stopped)
		broker_hang_up(f);
	for (int i = 0; i < f->nheld; i++)
		ipc_msg_free(f->held[i]);
	for (int i = 0; i < 16; i++)
		if (f->msix_wfd[i] > 0)
			close(f->msix_wfd[i]);
	if (f->pid > 0)
		waitpid(f->pid, &status, 0);
	if (f->log_fd > 0)
		close(f->log_fd);
	fx_release(f);
	free(f);
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* A HANDOFF the worker refuses with `want` and a message containing `says`, and the worker then
 * exits 1: `protocols` named over one socket, `drop_config` leaving region 7 out. */
static void handoff_refused(uint32_t protocols, bool drop_config, int want, const char *says)
{
	struct fx f;
	struct ipc_error err = {0};
	int lfd, status;

	assert_int_equal(fx_init(&f, 0), 0);
	assert_int_equal(spawn(&f, &lfd), 0);
	assert_int_equal(handoff_protos(&f, protocols, &lfd, 1, drop_config, &err), want);
	if (!strstr(err.message, says))
		fail_msg("the broker was told '%s'", err.message);
	assert_int_equal(waitpid(f.pid, &status, 0), f.pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 1);
	close(lfd);
	ipc_chan_free(f.brk);
	fx_release(&f);
}

static int count(struct fx *f, uint16_t type, int index, int disable, int connected)
{
	int n = 0;

	pthread_mutex_lock(&f->lock);
	for (int i = 0; i < f->nlog; i++) {
		const struct seen *s = &f->log[i];

		if (s->type != type || (index >= 0 && s->index != (uint32_t)index) ||
		    (disable >= 0 && s->disable != (disable == 1)) ||
		    (connected >= 0 && s->connected != (connected == 1)))
			continue;
		n++;
	}
	pthread_mutex_unlock(&f->lock);
	return n;
}

static void wait_for(struct fx *f, uint16_t type, int index, int disable, int connected, int n)
{
	/* The bound (a minute) is for a worker that never does it, not a deadline: the machine may
	 * be busy. */
	for (int i = 0; i < 6000 && count(f, type, index, disable, connected) < n; i++)
		usleep(10000);
	assert_true(count(f, type, index, disable, connected) >= n);
}

/* The worker's answer to REMOVAL (f->removal_answer: 1 the VMM acknowledged, 0 not), waited
 * for. The bound (a minute) is for a worker that never answers, not a deadline: the machine may
 * be busy. */
static int removal_answered(struct fx *f)
{
	int a = -1;

	for (int64_t end = test_now_ms() + TEST_HANG_MS; a < 0 && test_now_ms() < end;) {
		pthread_mutex_lock(&f->lock);
		a = f->removal_answer;
		pthread_mutex_unlock(&f->lock);
		if (a < 0)
			usleep(10000);
	}
	return a;
}

static struct ipc_chan *vmm_connect_raw(struct fx *f)
{
	int fd;
	struct ipc_chan *c;

	assert_int_equal(ipc_connect(f->sock, &fd), 0);
	assert_int_equal(ipc_chan_new(fd, &ipc_proto_device, NULL, &c), 0);
	return c;
}

/* The VMM's HELLO on `c` (as `client`, NULL for none); the worker's answer (a refusal carries
 * no message, its error goes to `err`). */
static int vmm_hello(struct ipc_chan *c, const char *client, struct ipc_error *err)
{
	Vb__Dev__Hello h = VB__DEV__HELLO__INIT;
	struct ipc_msg *m = NULL;
	int r;

	h.version = VB__DEV__VERSION__VERSION_CURRENT;
	h.client = (char *)client;
	r = ipc_chan_call(c, VB__DEV__TYPE__HELLO, &h.base, NULL, 0, TEST_HANG_MS, &m, err);
	if (r < 0)
		assert_null(m);
	ipc_msg_free(m);
	return r;
}

/* The broker wait the worker's HELLO answer announces. */
static uint32_t vmm_hello_broker_wait(struct ipc_chan *c)
{
	Vb__Dev__Hello h = VB__DEV__HELLO__INIT;
	struct ipc_msg *m = NULL;
	uint32_t ms;

	h.version = VB__DEV__VERSION__VERSION_CURRENT;
	assert_int_equal(
	    ipc_chan_call(c, VB__DEV__TYPE__HELLO, &h.base, NULL, 0, TEST_HANG_MS, &m, NULL), 0);
	ms = ((const Vb__Dev__HelloReply *)m->body)->broker_wait_ms;
	ipc_msg_free(m);
	return ms;
}

static struct ipc_chan *vmm_connect(struct fx *f)
{
	struct ipc_chan *c = vmm_connect_raw(f);

	assert_int_equal(vmm_hello(c, NULL, NULL), 0);
	return c;
}

/* Closes the VMM's 16 MSI-X irqfds. */
static void close_msix_fds(const int *efd)
{
	for (int i = 0; i < 16; i++)
		close(efd[i]);
}

static int vmm_cfg_write(struct ipc_chan *c, uint32_t off, uint32_t size, uint32_t v)
{
	Vb__Dev__CfgWrite req = VB__DEV__CFG_WRITE__INIT;
	uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
	struct ipc_msg *m = NULL;
	int r;

	req.offset = off;
	req.data.data = b;
	req.data.len = size;
	r = ipc_chan_call(c, VB__DEV__TYPE__CFG_WRITE, &req.base, NULL, 0, TEST_HANG_MS, &m, NULL);
	ipc_msg_free(m);
	return r;
}

/* Hands the worker `n` eventfds (created here) as the VMM's MSI-X irqfds. */
static void set_msix_fds(struct ipc_chan *c, int *efd, int n)
{
	Vb__Dev__SetIrqFds sf = VB__DEV__SET_IRQ_FDS__INIT;
	struct ipc_msg *m = NULL;

	for (int i = 0; i < n; i++)
		efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	sf.index = VFIO_PCI_MSIX_IRQ_INDEX;
	sf.count = (uint32_t)n;
	assert_int_equal(
	    ipc_chan_call(c, VB__DEV__TYPE__SET_IRQ_FDS, &sf.base, efd, (size_t)n, 60000, &m, NULL),
	    0);
	ipc_msg_free(m);
}

/* A VMM's MSI-X enable (16 irqfds) whose SET_IRQS the broker refuses (EIO), the broker's later
 * SET_IRQS succeeding again: the index's routing is in doubt. Returns the VMM, `efd` its fds. */
static struct ipc_chan *vmm_with_failed_routing(struct fx *f, int *efd)
{
	struct ipc_chan *c = vmm_connect(f);

	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 1, 1);
	set_msix_fds(c, efd, 16);
	pthread_mutex_lock(&f->lock);
	f->fail_irqs = -EIO;
	pthread_mutex_unlock(&f->lock);
	(void)vmm_cfg_write(c, 0x72, 2, PCI_MSIX_FLAGS_ENABLE);
	wait_for(f, VB__BRK__TYPE__SET_IRQS, VFIO_PCI_MSIX_IRQ_INDEX, 0, -1, 1);
	pthread_mutex_lock(&f->lock);
	f->fail_irqs = 0;
	pthread_mutex_unlock(&f->lock);
	return c;
}

/* The broker decides who may connect: a VMM it refuses gets EPERM for its HELLO, the worker keeps
 * serving, and the connection's fd went to the broker exactly once. */
static void test_worker_broker_vmm_refused_by_broker_gets_eperm(void **state)
{
	struct fx *f = *state;
	struct ipc_error err = {0};
	struct ipc_chan *c;

	pthread_mutex_lock(&f->lock);
	f->refuse_vmms = true;
	pthread_mutex_unlock(&f->lock);
	c = vmm_connect_raw(f);
	assert_int_equal(vmm_hello(c, NULL, &err), -EPERM);
	ipc_chan_free(c);
	assert_int_equal(count(f, VB__BRK__TYPE__VMM_ADMIT, -1, -1, -1), 1);
	assert_int_equal(count(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 1), 0);
	/* Admitted again, the next VMM is served. */
	pthread_mutex_lock(&f->lock);
	f->refuse_vmms = false;
	pthread_mutex_unlock(&f->lock);
	c = vmm_connect(f);
	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 1, 1);
	ipc_chan_free(c);
}

static void test_worker_broker_msix_and_dma_reach_broker(void **state)
{
	struct fx *f = *state;
	struct ipc_chan *c = vmm_connect(f);
	struct ipc_msg *m = NULL;
	int efd[16];
	const struct seen *s;
	int ram;
	Vb__DmaMap dm = VB__DMA_MAP__INIT;
	Vb__Dev__CfgRead cr = VB__DEV__CFG_READ__INIT;
	const Vb__Dev__Data *d;

	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 1, 1);
	/* Hand over 16 irqfds and enable MSI-X: one SET_IRQS for all 16 vectors. */
	set_msix_fds(c, efd, 16);
	assert_int_equal(vmm_cfg_write(c, 0x72, 2, PCI_MSIX_FLAGS_ENABLE), 0);
	assert_int_equal(count(f, VB__BRK__TYPE__SET_IRQS, VFIO_PCI_MSIX_IRQ_INDEX, 0, -1), 1);
	pthread_mutex_lock(&f->lock);
	s = &f->log[f->nlog - 1];
	assert_int_equal(s->count, 16);
	assert_int_equal(s->nslots, 16);
	assert_int_equal(s->nfds, 16); /* every vector masked: 16 worker eventfds */
	pthread_mutex_unlock(&f->lock);

	/* DMA goes to the broker with the memfd. */
	ram = test_memfd(1 << 16, 0);
	dm.iova = 0x10000;
	dm.size = 1 << 16;
	dm.prot = VB__DEV__DMA_PROT__DMA_PROT_READ;
	assert_int_equal(
	    ipc_chan_call(c, VB__DEV__TYPE__DMA_MAP, &dm.base, &ram, 1, TEST_HANG_MS, &m, NULL), 0);
	ipc_msg_free(m);
	assert_int_equal(count(f, VB__BRK__TYPE__DMA_MAP, -1, -1, -1), 1);

	/* The VMM leaves: its routes and mappings go, through the broker. */
	ipc_chan_free(c);
	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 0, 1);
	assert_int_equal(count(f, VB__BRK__TYPE__SET_IRQS, VFIO_PCI_MSIX_IRQ_INDEX, 1, -1), 1);
	assert_int_equal(count(f, VB__BRK__TYPE__DMA_UNMAP_ALL, -1, -1, -1), 1);
	/* A new VMM gets in and finds MSI-X still enabled. */
	c = vmm_connect(f);
	cr.offset = 0x72;
	cr.size = 2;
	assert_int_equal(
	    ipc_chan_call(c, VB__DEV__TYPE__CFG_READ, &cr.base, NULL, 0, TEST_HANG_MS, &m, NULL),
	    0);
	d = (const Vb__Dev__Data *)m->body;
	assert_int_equal(d->data.data[1] & 0x80, 0x80);
	ipc_msg_free(m);
	ipc_chan_free(c);
	close(ram);
	close_msix_fds(efd);
}

static void test_worker_broker_removal_acked_by_vmm(void **state)
{
	struct fx *f = *state;
	struct ipc_chan *c = vmm_connect(f);
	Vb__Brk__Removal rm = VB__BRK__REMOVAL__INIT;
	struct ipc_msg *m;
	uint32_t id;
	Vb__Brk__Heartbeat hb = VB__BRK__HEARTBEAT__INIT;
	const Vb__Brk__HeartbeatReply *hr;
	struct pollfd p;
	Vb__Empty e = VB__EMPTY__INIT;

	rm.timeout_ms = 5000;
	/* HEARTBEAT first: the worker says a VMM is connected and has been served. */
	hb.seq = 42;
	pthread_mutex_lock(&f->lock);
	assert_int_equal(ipc_chan_call(f->brk, VB__BRK__TYPE__HEARTBEAT, &hb.base, NULL, 0,
				       TEST_HANG_MS, &m, NULL),
			 0);
	hr = (const Vb__Brk__HeartbeatReply *)m->body;
	assert_int_equal(hr->seq, 42);
	assert_true(hr->vmm_connected);
	assert_true(hr->requests_served >= 1);
	ipc_msg_free(m);
	assert_int_equal(ipc_chan_request(f->brk, VB__BRK__TYPE__REMOVAL, &rm.base, NULL, 0, &id),
			 0);
	pthread_mutex_unlock(&f->lock);
	p = (struct pollfd){.fd = ipc_chan_fd(c), .events = POLLIN};
	assert_int_equal(poll(&p, 1, TEST_HANG_MS), 1);
	assert_int_equal(ipc_chan_recv(c, &m), 0);
	assert_int_equal(m->kind, IPC_KIND_EVENT);
	assert_int_equal(((const Vb__Dev__Event *)m->body)->kind,
			 VB__DEV__EVENT_KIND__EVENT_REMOVAL_REQUESTED);
	assert_int_equal(((const Vb__Dev__Event *)m->body)->timeout_ms, 5000);
	ipc_msg_free(m);
	assert_int_equal(
	    ipc_chan_call(c, VB__DEV__TYPE__REMOVAL_ACK, &e.base, NULL, 0, TEST_HANG_MS, &m, NULL),
	    0);
	ipc_msg_free(m);
	assert_int_equal(removal_answered(f), 1);
	ipc_chan_free(c);
}

static ino_t fd_ino(int fd)
{
	struct stat st;

	assert_int_equal(fstat(fd, &st), 0);
	return st.st_ino;
}

/* REGION_INFO of a mappable BAR, on a fresh connection: flags and the fd that came with it. */
static void region0(struct fx *f, uint32_t *flags, int *fd)
{
	Vb__Dev__RegionInfoRequest rq = VB__DEV__REGION_INFO_REQUEST__INIT;
	struct ipc_chan *c = vmm_connect(f);
	struct ipc_msg *m = NULL;

	rq.index = 0;
	assert_int_equal(
	    ipc_chan_call(c, VB__DEV__TYPE__REGION_INFO, &rq.base, NULL, 0, TEST_HANG_MS, &m, NULL),
	    0);
	*flags = ((const Vb__Region *)m->body)->flags;
	*fd = m->nfds == 1 ? ipc_msg_take_fd(m, 0) : -1;
	ipc_msg_free(m);
	ipc_chan_free(c);
	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 0, 1);
	pthread_mutex_lock(&f->lock);
	f->nlog = 0;
	pthread_mutex_unlock(&f->lock);
}

/* Issue 13 #3: what a VMM may mmap is the grant the broker made for it at VMM_ADMIT, never the
 * worker's own device fd; a VMM the broker gave no grant is offered no mmap at all. */
static void test_worker_broker_mmap_only_through_vmm_grant(void **state)
{
	struct fx *f = *state;
	int grant = memfd_create("grant", MFD_CLOEXEC), fd;
	uint32_t flags;

	assert_true(grant >= 0);
	region0(f, &flags, &fd);
	assert_int_equal(fd, -1);
	assert_int_equal(flags & VFIO_REGION_INFO_FLAG_MMAP, 0);

	pthread_mutex_lock(&f->lock);
	f->grant_fd = grant;
	pthread_mutex_unlock(&f->lock);
	region0(f, &flags, &fd);
	assert_true(fd >= 0);
	assert_true(flags & VFIO_REGION_INFO_FLAG_MMAP);
	assert_true(fd_ino(fd) == fd_ino(grant));
	assert_true(fd_ino(fd) != fd_ino(f->memfd));
	close(fd);
	pthread_mutex_lock(&f->lock);
	f->grant_fd = -1;
	pthread_mutex_unlock(&f->lock);
	close(grant);
}

static void test_worker_broker_bad_handoff_refused(void **state)
{
	(void)state;

	handoff_refused(0, true, -EINVAL, "disagree");
}

/* A vfio-user VMM on a worker handed only its vfio-user socket: SET_IRQS, DMA_MAP and its
 * leaving reach the broker as they do for a native VMM. */
static int vfu_connect(struct fx *f)
{
	int fd;
	struct vfu_reply r;

	assert_int_equal(vfu_cli_connect(f->vsock, &fd), 0);
	assert_int_equal(vfu_cli_version(fd, "{\"capabilities\":{\"max_msg_fds\":16}}", &r), 0);
	vfu_reply_free(&r);
	return fd;
}

static void test_worker_broker_vfio_user_reaches_broker(void **state)
{
	struct fx *f = *state;
	int fd = vfu_connect(f);
	struct vfu_reply r;
	int efd[16];
	uint8_t set[20];
	int mfd;
	uint8_t map[32] = {0};

	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 1, 1);
	assert_true(count(f, VB__BRK__TYPE__VMM_ADMIT, -1, -1, -1) >= 1);
	/* MSI-X vectors 0-15 in one chunk: the broker enables the index with all 16. */
	for (int i = 0; i < 16; i++)
		efd[i] = eventfd(0, EFD_CLOEXEC);
	vb_le32_put(set, 20);
	vb_le32_put(set + 4, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER);
	vb_le32_put(set + 8, VFIO_PCI_MSIX_IRQ_INDEX);
	vb_le32_put(set + 12, 0);
	vb_le32_put(set + 16, 16);
	assert_int_equal(vfu_cli_call(fd, 8, set, 20, efd, 16, &r), 0);
	assert_false(r.flags & (1u << 5));
	vfu_reply_free(&r);
	assert_true(count(f, VB__BRK__TYPE__SET_IRQS, VFIO_PCI_MSIX_IRQ_INDEX, 0, -1) >= 1);
	/* A memfd for DMA travels on to the broker. */
	mfd = test_memfd(1 << 20, 0);
	vb_le32_put(map, 32);
	vb_le32_put(map + 4, 3);
	vb_le32_put(map + 16, 0x100000);
	vb_le32_put(map + 24, 1 << 20);
	assert_int_equal(vfu_cli_call(fd, 2, map, 32, &mfd, 1, &r), 0);
	assert_false(r.flags & (1u << 5));
	vfu_reply_free(&r);
	assert_int_equal(count(f, VB__BRK__TYPE__DMA_MAP, -1, -1, -1), 1);
	close(mfd);
	close_msix_fds(efd);
	/* Leaving: interrupts off, mappings dropped, the broker told. */
	close(fd);
	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 0, 1);
	assert_true(count(f, VB__BRK__TYPE__SET_IRQS, VFIO_PCI_MSIX_IRQ_INDEX, 1, -1) >= 1);
	assert_int_equal(count(f, VB__BRK__TYPE__DMA_UNMAP_ALL, -1, -1, -1), 1);
}

static void test_worker_broker_vfio_user_refused_by_broker_closed(void **state)
{
	struct fx *f = *state;
	struct vfu_reply r;
	int fd;
	int e;

	/* The broker's decision, as for the native socket: a stranger's connection is closed
	 * before anything of it is read. */
	pthread_mutex_lock(&f->lock);
	f->refuse_vmms = true;
	pthread_mutex_unlock(&f->lock);
	assert_int_equal(vfu_cli_connect(f->vsock, &fd), 0);
	e = vfu_cli_version(fd, "{}", &r);
	assert_true(e == -EPIPE || e == -ECONNRESET);
	close(fd);
	wait_for(f, VB__BRK__TYPE__VMM_ADMIT, -1, -1, -1, 1);
	assert_int_equal(count(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 1), 0);
}

static void test_worker_broker_vfio_user_removal_signals_req(void **state)
{
	struct fx *f = *state;
	int fd = vfu_connect(f);
	struct vfu_reply r;
	int req = eventfd(0, EFD_CLOEXEC);
	uint8_t set[20];
	Vb__Brk__Removal rm = VB__BRK__REMOVAL__INIT;
	uint32_t id;
	struct pollfd p;

	vb_le32_put(set, 20);
	vb_le32_put(set + 4, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER);
	vb_le32_put(set + 8, VFIO_PCI_REQ_IRQ_INDEX);
	vb_le32_put(set + 12, 0);
	vb_le32_put(set + 16, 1);
	assert_int_equal(vfu_cli_call(fd, 8, set, 20, &req, 1, &r), 0);
	assert_false(r.flags & (1u << 5));
	vfu_reply_free(&r);
	/* REMOVAL: the VMM's REQ eventfd fires (as kernel vfio-pci's does before an unbind);
	 * the VMM lets go by disconnecting, which acknowledges. */
	rm.timeout_ms = 10000;
	pthread_mutex_lock(&f->lock);
	assert_int_equal(ipc_chan_request(f->brk, VB__BRK__TYPE__REMOVAL, &rm.base, NULL, 0, &id),
			 0);
	pthread_mutex_unlock(&f->lock);
	p = (struct pollfd){.fd = req, .events = POLLIN};
	assert_int_equal(poll(&p, 1, TEST_HANG_MS), 1);
	close(fd);
	assert_int_equal(removal_answered(f), 1);
	close(req);
}

static void test_worker_broker_both_protocols_one_vmm(void **state)
{
	struct fx *f = *state;
	int fd = vfu_connect(f);
	/* The native socket is served too, but the device is taken: EBUSY. */
	struct ipc_chan *c = vmm_connect_raw(f);

	assert_int_equal(vmm_hello(c, "test", NULL), -EBUSY);
	ipc_chan_free(c);
	close(fd);
	/* Once the vfio-user VMM has gone, a native one is served. */
	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 0, 1);
	c = vmm_connect(f);
	ipc_chan_free(c);
}

/* Issue 12: no parent-death signal ends a worker; its broker channel hanging up does, even while
 * the worker waits in a call to the broker. The VMM's DMA_MAP, which the broker never answers,
 * gets an error when the broker's end closes, and the worker exits 0 saying why. */
static void test_worker_broker_channel_hangup_during_call_ends_worker(void **state)
{
	struct fx *f = *state;
	struct ipc_chan *c = vmm_connect(f);
	struct ipc_msg *m = NULL;
	char log[8192];
	int status;
	int ram;
	Vb__DmaMap dm = VB__DMA_MAP__INIT;
	struct pollfd p;
	int r;

	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 1, 1);
	pthread_mutex_lock(&f->lock);
	f->silent = true;
	pthread_mutex_unlock(&f->lock);
	ram = test_memfd(1 << 16, 0);
	dm.iova = 0x10000;
	dm.size = 1 << 16;
	dm.prot = VB__DEV__DMA_PROT__DMA_PROT_READ;
	assert_int_equal(ipc_chan_request(c, VB__DEV__TYPE__DMA_MAP, &dm.base, &ram, 1, NULL), 0);
	/* The worker is in its call once the broker has the request. */
	wait_for(f, VB__BRK__TYPE__DMA_MAP, -1, -1, -1, 1);
	broker_hang_up(f);
	p = (struct pollfd){.fd = ipc_chan_fd(c), .events = POLLIN};
	while ((r = ipc_chan_recv(c, &m)) == -EAGAIN)
		assert_int_equal(poll(&p, 1, -1), 1);
	assert_int_equal(r, 0);
	assert_int_equal(m->kind, IPC_KIND_ERROR);
	ipc_msg_free(m);
	assert_int_equal(waitpid(f->pid, &status, 0), f->pid);
	f->pid = 0;
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	read_log(f, log, sizeof(log));
	if (!strstr(log, "broker channel closed: exiting"))
		fail_msg("the worker's log does not say why it ended:\n%s", log);
	ipc_chan_free(c);
	close(ram);
}

/* A broker that dies before the worker's HANDOFF (the channel exists before the worker runs its
 * first instruction, so there is no window): the worker's wait for it ends, and it exits 0. */
static void test_worker_broker_channel_hangup_before_handoff_ends_worker(void **state)
{
	struct fx f;
	char log[4096];
	int lfd, status;

	(void)state;

	assert_int_equal(fx_init(&f, -1), 0);
	assert_int_equal(spawn(&f, &lfd), 0);
	close(lfd);
	ipc_chan_free(f.brk);
	assert_int_equal(waitpid(f.pid, &status, 0), f.pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	read_log(&f, log, sizeof(log));
	if (!strstr(log, "broker channel closed: exiting"))
		fail_msg("the worker's log does not say why it ended:\n%s", log);
	close(f.log_fd);
	fx_release(&f);
}

static void test_worker_broker_handoff_fd_count_must_match_protocols(void **state)
{
	(void)state;

	/* Both protocols named, one socket sent. */
	handoff_refused(3, false, -EPROTO, "not 3");
}

/* ---- a broker that answers late, not at all, or restarts (issue 12) ----------------------- */

/* Waits until the fake broker holds `n` requests (a minute's bound for a worker that never
 * sends them). */
static void wait_held(struct fx *f, int n)
{
	int got = 0;

	for (int i = 0; i < 6000; i++) {
		pthread_mutex_lock(&f->lock);
		got = f->nheld;
		pthread_mutex_unlock(&f->lock);
		if (got >= n)
			return;
		usleep(10000);
	}
	fail_msg("the broker holds %d requests, not %d", got, n);
}

/* The late answers: what the broker held is answered now, with success. */
static void held_answer(struct fx *f)
{
	pthread_mutex_lock(&f->lock);
	f->hold_type = 0;
	for (int i = 0; i < f->nheld; i++) {
		answer(f, f->held[i]);
		ipc_msg_free(f->held[i]);
	}
	f->nheld = 0;
	pthread_mutex_unlock(&f->lock);
}

/* The broker that held the requests is killed: they are never answered (its successor drops
 * what it finds in flight, ipc_chan_take_over). */
static void held_drop(struct fx *f)
{
	pthread_mutex_lock(&f->lock);
	f->hold_type = 0;
	for (int i = 0; i < f->nheld; i++)
		ipc_msg_free(f->held[i]);
	f->nheld = 0;
	pthread_mutex_unlock(&f->lock);
}

static void hold(struct fx *f, uint16_t type)
{
	pthread_mutex_lock(&f->lock);
	f->hold_type = type;
	pthread_mutex_unlock(&f->lock);
}

static void send_heartbeat(struct fx *f, uint64_t seq, uint64_t epoch)
{
	Vb__Brk__Heartbeat hb = VB__BRK__HEARTBEAT__INIT;

	hb.seq = seq;
	hb.epoch = epoch;
	hb.answers_sync = true; /* as the broker says */
	pthread_mutex_lock(&f->lock);
	assert_int_equal(
	    ipc_chan_request(f->brk, VB__BRK__TYPE__HEARTBEAT, &hb.base, NULL, 0, NULL), 0);
	pthread_mutex_unlock(&f->lock);
}

static void wait_heartbeat_answered(struct fx *f, uint64_t seq)
{
	for (int i = 0; i < 6000; i++) {
		bool got;

		pthread_mutex_lock(&f->lock);
		got = f->heartbeat_replies && f->heartbeat_seq == seq;
		pthread_mutex_unlock(&f->lock);
		if (got)
			return;
		usleep(10000);
	}
	fail_msg("heartbeat %llu was not answered", (unsigned long long)seq);
}

/* The broker hears of an admitted VMM (VMM_STATE) once the worker has answered its HELLO, not
 * before: the handshake does not wait for the broker's bookkeeping. A heartbeat round trip
 * after the admission orders whatever the worker sent before it. */
/* The HELLO's answer says how long the worker holds a request for the broker: its call
 * timeout (--call-timeout, or the default), which libvfiobroker adds to its own wait. */
static void test_worker_broker_hello_announces_call_timeout(void **state)
{
	struct fx *f = *state;
	struct ipc_chan *c = vmm_connect_raw(f);

	assert_int_equal(vmm_hello_broker_wait(c), f->call_timeout_ms
						       ? (uint32_t)f->call_timeout_ms
						       : (uint32_t)WKR_BROKER_CALL_TIMEOUT_MS);
	ipc_chan_free(c);
}

static void test_worker_broker_vmm_state_after_hello_answered(void **state)
{
	struct fx *f = *state;
	struct ipc_chan *c = vmm_connect_raw(f);

	wait_for(f, VB__BRK__TYPE__VMM_ADMIT, -1, -1, -1, 1);
	send_heartbeat(f, 7, 1);
	wait_heartbeat_answered(f, 7);
	assert_int_equal(count(f, VB__BRK__TYPE__VMM_STATE, -1, -1, -1), 0);
	assert_int_equal(vmm_hello(c, NULL, NULL), 0);
	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 1, 1);
	ipc_chan_free(c);
	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 0, 1);
	assert_int_equal(count(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 1), 1);
}

/* A VMM admitted that hangs up before sending anything: the broker hears that it came and that
 * it went, in that order, once each. */
static void test_worker_broker_vmm_gone_before_hello_announced_both(void **state)
{
	struct fx *f = *state;
	struct ipc_chan *c = vmm_connect_raw(f);

	wait_for(f, VB__BRK__TYPE__VMM_ADMIT, -1, -1, -1, 1);
	ipc_chan_free(c);
	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 0, 1);
	assert_int_equal(count(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 1), 1);
	assert_int_equal(count(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 0), 1);
	pthread_mutex_lock(&f->lock);
	for (int i = 0, seen = 0; i < f->nlog; i++) {
		if (f->log[i].type != VB__BRK__TYPE__VMM_STATE)
			continue;
		/* connected first, then disconnected */
		assert_int_equal(f->log[i].connected, seen++ == 0);
	}
	pthread_mutex_unlock(&f->lock);
}

/* Ends the worker (its channel hangs up) and returns what it logged. */
static void end_and_read_log(struct fx *f, char *log, size_t len)
{
	int status;

	broker_hang_up(f);
	assert_int_equal(waitpid(f->pid, &status, 0), f->pid);
	f->pid = 0;
	read_log(f, log, len);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("the worker ended with status %#x:\n%s", status, log);
}

/* The VMM's next answer on `c` is a reply (events before it are skipped); a minute's bound. */
static void expect_reply(struct ipc_chan *c)
{
	struct pollfd p = {.fd = ipc_chan_fd(c), .events = POLLIN};
	struct ipc_msg *m = NULL;
	int r;

	for (;;) {
		while ((r = ipc_chan_recv(c, &m)) == -EAGAIN)
			assert_int_equal(poll(&p, 1, 60000), 1);
		assert_int_equal(r, 0);
		if (m->kind != IPC_KIND_EVENT)
			break;
		ipc_msg_free(m);
	}
	assert_int_equal(m->kind, IPC_KIND_REPLY);
	ipc_msg_free(m);
}

/* The VMM's DMA_MAP of 0x40000+0x10000 from a 128 KiB memfd (returned; `dm` filled for a
 * retry), once the VMM is connected: its result must be `want`, and a -ETIMEDOUT comes with a
 * message that says to retry. */
static int vmm_map(struct fx *f, struct ipc_chan *c, Vb__DmaMap *dm, int want)
{
	struct ipc_error err = {0};
	struct ipc_msg *m = NULL;
	int ram = test_memfd(1 << 17, 0);

	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 1, 1);
	dm->iova = 0x40000;
	dm->size = 1 << 16;
	dm->prot = VB__DEV__DMA_PROT__DMA_PROT_READ;
	assert_int_equal(
	    ipc_chan_call(c, VB__DEV__TYPE__DMA_MAP, &dm->base, &ram, 1, 60000, &m, &err), want);
	ipc_msg_free(m);
	if (want == -ETIMEDOUT &&
	    (!strstr(err.message, "may be restarting") || !strstr(err.message, "retry")))
		fail_msg("the VMM was told '%s'", err.message);
	return ram;
}

/* The same map, held by the broker: ETIMEDOUT. */
static int map_times_out(struct fx *f, struct ipc_chan *c, Vb__DmaMap *dm)
{
	hold(f, VB__BRK__TYPE__DMA_MAP);
	return vmm_map(f, c, dm, -ETIMEDOUT);
}

/* The DMA requests the broker got, in order, are exactly `n` of types `type` over 0x40000 with
 * sizes `size`. */
static void expect_dma_log(struct fx *f, const uint16_t *type, const uint64_t *size, int n)
{
	int got = 0;

	pthread_mutex_lock(&f->lock);
	for (int i = 0; i < f->nlog; i++) {
		const struct seen *s = &f->log[i];

		if (s->type != VB__BRK__TYPE__DMA_MAP && s->type != VB__BRK__TYPE__DMA_UNMAP)
			continue;
		if (got == n || s->type != type[got] || s->iova != 0x40000 ||
		    s->size != size[got]) {
			pthread_mutex_unlock(&f->lock);
			fail_msg("DMA request %d the broker got: type %u 0x%llx+0x%llx", got,
				 s->type, (unsigned long long)s->iova, (unsigned long long)s->size);
		}
		got++;
	}
	pthread_mutex_unlock(&f->lock);
	assert_int_equal(got, n);
}

/* The VMM's DMA_UNMAP of 0x40000+0x10000 on `c`: 0 or the error it was told. */
static int vmm_unmap(struct ipc_chan *c, uint64_t iova, struct ipc_error *err)
{
	Vb__DmaUnmap du = VB__DMA_UNMAP__INIT;
	struct ipc_msg *m = NULL;
	int r;

	du.iova = iova;
	du.size = 1 << 16;
	r = ipc_chan_call(c, VB__DEV__TYPE__DMA_UNMAP, &du.base, NULL, 0, 60000, &m, err);
	ipc_msg_free(m);
	return r;
}

/* The VMM retries the map that timed out, then unmaps it: the broker got the first map, the
 * unmap of its range, the retry and the VMM's unmap, nothing else (the last request orders
 * every earlier one of the worker in the log). Ends the VMM. */
static void retried_map_unmapped(struct fx *f, struct ipc_chan *c, Vb__DmaMap *dm, int ram)
{
	const uint16_t want[] = {VB__BRK__TYPE__DMA_MAP, VB__BRK__TYPE__DMA_UNMAP,
				 VB__BRK__TYPE__DMA_MAP, VB__BRK__TYPE__DMA_UNMAP};
	const uint64_t want_size[] = {1 << 16, 1 << 16, 1 << 16, 1 << 16};
	struct ipc_error err = {0};
	struct ipc_msg *m = NULL;

	assert_int_equal(
	    ipc_chan_call(c, VB__DEV__TYPE__DMA_MAP, &dm->base, &ram, 1, 60000, &m, &err), 0);
	ipc_msg_free(m);
	assert_int_equal(vmm_unmap(c, 0x40000, &err), 0);
	expect_dma_log(f, want, want_size, 4);
	ipc_chan_free(c);
	close(ram);
}

/* A DMA_MAP the broker does not answer in time fails for the VMM with ETIMEDOUT and a message
 * that says to retry; the worker unmaps exactly that range at once, in the channel's order,
 * while the map is still unanswered, so that whoever carries the map out carries the unmap out
 * after it. Here the broker that read the map is killed before it answers (it carried the map
 * out and committed it; its successor adopts the mapping and never answers): the range is gone
 * all the same, and the VMM's retry is served. */
static void test_worker_broker_dma_map_never_answered_range_unmapped(void **state)
{
	struct fx *f = *state;
	struct ipc_chan *c = vmm_connect(f);
	char log[16384];
	Vb__DmaMap dm = VB__DMA_MAP__INIT;
	int ram = map_times_out(f, c, &dm);

	wait_for(f, VB__BRK__TYPE__DMA_UNMAP, -1, -1, -1, 1);
	pthread_mutex_lock(&f->lock);
	assert_int_equal(f->nheld, 1); /* the map: still unanswered */
	pthread_mutex_unlock(&f->lock);
	held_drop(f);
	/* The next broker attaches; the VMM retries, then unmaps. */
	send_heartbeat(f, 0x7000, 2);
	wait_heartbeat_answered(f, 0x7000);
	retried_map_unmapped(f, c, &dm, ram);
	end_and_read_log(f, log, sizeof(log));
	if (!strstr(log, "0x40000+0x10000 went unanswered (the VMM is told it failed): unmapping"))
		fail_msg("the worker's log does not name the unmapped range:\n%s", log);
}

/* The same map answered late, with success (a restarted broker read it from the channel and
 * carried it out before the unmap behind it): nothing more is sent for it. */
static void test_worker_broker_late_dma_map_timed_out_then_unmapped(void **state)
{
	struct fx *f = *state;
	struct ipc_chan *c = vmm_connect(f);
	Vb__DmaMap dm = VB__DMA_MAP__INIT;
	int ram = map_times_out(f, c, &dm);

	wait_for(f, VB__BRK__TYPE__DMA_UNMAP, -1, -1, -1, 1);
	held_answer(f);
	/* The worker goes on: the VMM's retry is served, then its unmap. */
	retried_map_unmapped(f, c, &dm, ram);
}

/* A DMA_UNMAP that timed out was carried out by the broker that read it, which was killed
 * before it answered: the VMM's retry of the same range finds it gone (ENOENT from the next
 * broker) and is told it is done, as it asked. A plain unmap of a range never mapped, and the
 * same retry once more, still get ENOENT. */
static void test_worker_broker_unmap_timed_out_retry_done_when_range_gone(void **state)
{
	struct fx *f = *state;
	struct ipc_chan *c = vmm_connect(f);
	struct ipc_error err = {0};
	char log[16384];
	Vb__DmaMap dm = VB__DMA_MAP__INIT;
	int ram = vmm_map(f, c, &dm, 0);

	hold(f, VB__BRK__TYPE__DMA_UNMAP);
	assert_int_equal(vmm_unmap(c, 0x40000, &err), -ETIMEDOUT);
	if (!strstr(err.message, "may be restarting") || !strstr(err.message, "retry"))
		fail_msg("the VMM was told '%s'", err.message);
	held_drop(f);
	pthread_mutex_lock(&f->lock);
	f->fail_unmaps = -ENOENT;
	pthread_mutex_unlock(&f->lock);
	assert_int_equal(vmm_unmap(c, 0x40000, &err), 0);
	assert_int_equal(vmm_unmap(c, 0x80000, &err), -ENOENT);
	assert_int_equal(vmm_unmap(c, 0x40000, &err), -ENOENT);
	ipc_chan_free(c);
	close(ram);
	end_and_read_log(f, log, sizeof(log));
	if (!strstr(log, "a retried DMA_UNMAP of 0x40000+0x10000: the range is gone"))
		fail_msg("the worker's log does not say why the retry succeeded:\n%s", log);
}

/* The same, but the first unmap's late answer says the range was never mapped (ENOENT): the
 * retry, read after it, is told the same. */
static void test_worker_broker_unmap_timed_out_late_enoent_retry_enoent(void **state)
{
	struct fx *f = *state;
	struct ipc_chan *c = vmm_connect(f);
	struct ipc_error err = {0};

	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 1, 1);
	hold(f, VB__BRK__TYPE__DMA_UNMAP);
	assert_int_equal(vmm_unmap(c, 0x40000, &err), -ETIMEDOUT);
	pthread_mutex_lock(&f->lock);
	f->fail_unmaps = -ENOENT;
	pthread_mutex_unlock(&f->lock);
	held_answer(f);
	assert_int_equal(vmm_unmap(c, 0x40000, &err), -ENOENT);
	ipc_chan_free(c);
}

/* The VMM's vfio-user DMA_UNMAP of 64 KiB at `iova` (the session's reply in `r`): 0 or the
 * errno of the error reply. */
static int vfu_unmap(int fd, uint64_t iova)
{
	uint8_t um[24] = {0};
	struct vfu_reply r;
	int e;

	vb_le32_put(um, 24);
	vb_le64_put(um + 8, iova);
	vb_le64_put(um + 16, 1 << 16);
	assert_int_equal(vfu_cli_call(fd, 3, um, 24, NULL, 0, &r), 0);
	e = r.flags & (1u << 5) ? -(int)r.error : 0;
	vfu_reply_free(&r);
	return e;
}

/* Over vfio-user as over the native protocol (test_worker_broker_unmap_timed_out_retry_done_
 * when_range_gone): a DMA_UNMAP that timed out was carried out by the broker that read it, then
 * killed; the VMM's retry of the same range finds it gone (ENOENT from the next broker) and is
 * told it is done, not ENOENT from the session's own table, which forgot the range when the
 * first unmap was sent. An unmap of a range never mapped, and the same retry once more, still
 * get ENOENT. */
static void test_worker_broker_vfio_user_unmap_timed_out_retry_done_when_range_gone(void **state)
{
	struct fx *f = *state;
	int fd = vfu_connect(f);
	int mfd = test_memfd(1 << 16, 0);
	uint8_t map[32] = {0};
	struct vfu_reply r;

	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 1, 1);
	vb_le32_put(map, 32);
	vb_le32_put(map + 4, 1);
	vb_le64_put(map + 16, 0x40000);
	vb_le64_put(map + 24, 1 << 16);
	assert_int_equal(vfu_cli_call(fd, 2, map, 32, &mfd, 1, &r), 0);
	assert_false(r.flags & (1u << 5));
	vfu_reply_free(&r);
	hold(f, VB__BRK__TYPE__DMA_UNMAP);
	assert_int_equal(vfu_unmap(fd, 0x40000), -ETIMEDOUT);
	held_drop(f);
	pthread_mutex_lock(&f->lock);
	f->fail_unmaps = -ENOENT;
	pthread_mutex_unlock(&f->lock);
	assert_int_equal(vfu_unmap(fd, 0x40000), 0);
	assert_int_equal(vfu_unmap(fd, 0x80000), -ENOENT);
	assert_int_equal(vfu_unmap(fd, 0x40000), -ENOENT);
	close(mfd);
	close(fd);
}

/* The VMM retries a DMA_MAP that timed out at once, while the first one is still unanswered in
 * the channel (no broker runs): the next broker carries both out in order, so the worker sends
 * an unmap of the first one's range between them (else the retry would fail as an overlap), and
 * sends nothing more when the first one's success comes late. */
static void test_worker_broker_late_dma_map_retried_first_unmapped_before(void **state)
{
	struct fx *f = *state;
	struct ipc_chan *c = vmm_connect(f);
	struct ipc_error err = {0};
	struct ipc_msg *m = NULL;
	uint16_t want[] = {VB__BRK__TYPE__DMA_MAP, VB__BRK__TYPE__DMA_UNMAP, VB__BRK__TYPE__DMA_MAP,
			   VB__BRK__TYPE__DMA_UNMAP};
	uint64_t want_size[] = {1 << 16, 1 << 16, 1 << 17, 1 << 17};
	int got = 0;
	Vb__DmaMap dm = VB__DMA_MAP__INIT;
	int ram = map_times_out(f, c, &dm);
	Vb__DmaUnmap du = VB__DMA_UNMAP__INIT;

	/* The retry, over a larger range that contains the first. */
	dm.size = 1 << 17;
	assert_int_equal(ipc_chan_request(c, VB__DEV__TYPE__DMA_MAP, &dm.base, &ram, 1, NULL), 0);
	wait_held(f, 2);
	held_answer(f);
	expect_reply(c);
	/* A last request through the channel: whatever the worker sent before it is logged. */
	du.iova = 0x40000;
	du.size = 1 << 17;
	assert_int_equal(
	    ipc_chan_call(c, VB__DEV__TYPE__DMA_UNMAP, &du.base, NULL, 0, 60000, &m, &err), 0);
	ipc_msg_free(m);
	pthread_mutex_lock(&f->lock);
	for (int i = 0; i < f->nlog; i++) {
		const struct seen *s = &f->log[i];

		if (s->type != VB__BRK__TYPE__DMA_MAP && s->type != VB__BRK__TYPE__DMA_UNMAP)
			continue;
		if (got == 4 || s->type != want[got] || s->iova != 0x40000 ||
		    s->size != want_size[got]) {
			pthread_mutex_unlock(&f->lock);
			fail_msg("DMA request %d the broker got: type %u 0x%llx+0x%llx", got,
				 s->type, (unsigned long long)s->iova, (unsigned long long)s->size);
		}
		got++;
	}
	pthread_mutex_unlock(&f->lock);
	assert_int_equal(got, 4);
	ipc_chan_free(c);
	close(ram);
}

/* While a call waits, the broker's heartbeats are still answered (a broker that waits on the
 * worker is there, and must not call it hung); the call completes when its answer comes. */
static void test_worker_broker_heartbeat_answered_while_call_waits(void **state)
{
	struct fx *f = *state;
	struct ipc_chan *c = vmm_connect(f);
	struct ipc_msg *m = NULL;
	Vb__Empty e = VB__EMPTY__INIT;

	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 1, 1);
	hold(f, VB__BRK__TYPE__RESET);
	assert_int_equal(ipc_chan_request(c, VB__DEV__TYPE__RESET, &e.base, NULL, 0, NULL), 0);
	wait_held(f, 1);
	send_heartbeat(f, 41, 1);
	wait_heartbeat_answered(f, 41);
	/* The VMM's reset is still waiting for the broker. */
	assert_int_equal(ipc_chan_recv(c, &m), -EAGAIN);
	held_answer(f);
	/* Events the reset causes may come first. */
	expect_reply(c);
	ipc_chan_free(c);
}

/* A SET_IRQS the worker gave up on (300 ms here): the index's whole routing is sent again at
 * once (off, then on with every vector the guest enabled), since the kernel may hold either,
 * once only (the re-send going unanswered too sends nothing more); its late answers make it be
 * sent again, and the last thing the broker sees is the whole routing. */
static void test_worker_broker_late_set_irqs_routing_sent_again(void **state)
{
	struct fx *f = *state;
	struct ipc_chan *c = vmm_connect(f);
	int efd[16];
	bool rerouted = false;
	int before;

	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 1, 1);
	set_msix_fds(c, efd, 16);
	hold(f, VB__BRK__TYPE__SET_IRQS);
	(void)vmm_cfg_write(c, 0x72, 2, PCI_MSIX_FLAGS_ENABLE);
	/* The enable, then the re-send's off and on, all held. */
	wait_held(f, 3);
	assert_int_equal(count(f, VB__BRK__TYPE__SET_IRQS, VFIO_PCI_MSIX_IRQ_INDEX, 0, -1), 2);
	assert_int_equal(count(f, VB__BRK__TYPE__SET_IRQS, VFIO_PCI_MSIX_IRQ_INDEX, 1, -1), 1);
	pthread_mutex_lock(&f->lock);
	before = f->nlog;
	pthread_mutex_unlock(&f->lock);
	held_answer(f);
	/* Waits for the event, not a time: a routing of all 16 vectors sent after the answers
	 * (the bound is for a worker that never sends it). */
	for (int i = 0; i < TEST_HANG_MS / 10 && !rerouted; i++) {
		const struct seen *s;

		pthread_mutex_lock(&f->lock);
		s = &f->log[f->nlog - 1];
		rerouted = f->nlog > before && !s->disable && s->count == 16;
		pthread_mutex_unlock(&f->lock);
		if (!rerouted)
			usleep(10000);
	}
	assert_true(rerouted);
	ipc_chan_free(c);
	close_msix_fds(efd);
}

/* A new broker's heartbeat (another epoch) makes the worker re-send its VMM's state, and the
 * routing of an index whose SET_IRQS failed meanwhile; the same broker's heartbeats do not. */
static void test_worker_broker_new_epoch_state_and_failed_routing_resent(void **state)
{
	struct fx *f = *state;
	int efd[16];
	struct ipc_chan *c = vmm_with_failed_routing(f, efd);
	struct ipc_msg *m = NULL;
	Vb__Dev__CfgRead cr = VB__DEV__CFG_READ__INIT;

	/* The handoff's broker (epoch 1): nothing to re-send. A VMM round trip afterwards orders
	 * anything the heartbeat started before it. */
	send_heartbeat(f, 5, 1);
	wait_heartbeat_answered(f, 5);
	cr.offset = 0x72;
	cr.size = 2;
	assert_int_equal(
	    ipc_chan_call(c, VB__DEV__TYPE__CFG_READ, &cr.base, NULL, 0, 60000, &m, NULL), 0);
	ipc_msg_free(m);
	assert_int_equal(count(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 1), 1);
	assert_int_equal(count(f, VB__BRK__TYPE__SET_IRQS, VFIO_PCI_MSIX_IRQ_INDEX, -1, -1), 1);
	/* A restarted broker. */
	send_heartbeat(f, 0x9000, 2);
	wait_heartbeat_answered(f, 0x9000);
	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 1, 2);
	wait_for(f, VB__BRK__TYPE__SET_IRQS, VFIO_PCI_MSIX_IRQ_INDEX, 1, -1, 1);
	wait_for(f, VB__BRK__TYPE__SET_IRQS, VFIO_PCI_MSIX_IRQ_INDEX, 0, -1, 2);
	ipc_chan_free(c);
	close_msix_fds(efd);
}

/* A VMM that connects while the broker does not answer is refused with ETIMEDOUT and "retry"
 * (not EPERM: it may be admitted); the broker's late admission brings a grant, which the worker
 * closes (the VMM never got it); the next VMM gets in. */
static void test_worker_broker_late_vmm_admit_refused_retry_grant_closed(void **state)
{
	struct fx *f = *state;
	struct ipc_error err = {0};
	struct ipc_chan *c;
	int p[2];
	char b;
	struct pollfd pf;

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pthread_mutex_lock(&f->lock);
	f->grant_fd = p[1];
	f->hold_type = VB__BRK__TYPE__VMM_ADMIT;
	pthread_mutex_unlock(&f->lock);
	c = vmm_connect_raw(f);
	assert_int_equal(vmm_hello(c, NULL, &err), -ETIMEDOUT);
	if (!strstr(err.message, "may be restarting") || !strstr(err.message, "retry"))
		fail_msg("the VMM was told '%s'", err.message);
	ipc_chan_free(c);
	held_answer(f);
	pthread_mutex_lock(&f->lock);
	f->grant_fd = -1;
	pthread_mutex_unlock(&f->lock);
	close(p[1]);
	/* The worker's copy of the grant is closed: the pipe reads end-of-file. */
	pf = (struct pollfd){.fd = p[0], .events = POLLIN};
	assert_int_equal(poll(&pf, 1, 60000), 1);
	assert_int_equal(read(p[0], &b, 1), 0);
	close(p[0]);
	c = vmm_connect(f);
	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 1, 1);
	ipc_chan_free(c);
}

/* ---- the worker's loop never waits on the broker (issue 14) ------------------------------ */

/* The fake broker answers what it held with `err` and a message saying so. */
static void held_answer_error(struct fx *f, int err)
{
	pthread_mutex_lock(&f->lock);
	f->hold_type = 0;
	for (int i = 0; i < f->nheld; i++) {
		ipc_chan_reply_error(f->brk, f->held[i], err, "fake broker: refused after a while");
		ipc_msg_free(f->held[i]);
	}
	f->nheld = 0;
	pthread_mutex_unlock(&f->lock);
}

/* Sends the VMM's DMA_MAP of 64 KiB of `ram` at `iova` without waiting for its answer. */
static uint32_t dma_map_send(struct ipc_chan *c, uint64_t iova, int ram)
{
	Vb__DmaMap dm = VB__DMA_MAP__INIT;
	uint32_t id;

	dm.iova = iova;
	dm.size = 1 << 16;
	dm.prot = VB__DEV__DMA_PROT__DMA_PROT_READ;
	assert_int_equal(ipc_chan_request(c, VB__DEV__TYPE__DMA_MAP, &dm.base, &ram, 1, &id), 0);
	return id;
}

/* The VMM's next message, waited for up to TEST_HANG_MS. */
static struct ipc_msg *vmm_next(struct ipc_chan *c)
{
	struct pollfd p = {.fd = ipc_chan_fd(c), .events = POLLIN};
	struct ipc_msg *m = NULL;
	int r;

	while ((r = ipc_chan_recv(c, &m)) == -EAGAIN)
		assert_int_equal(poll(&p, 1, TEST_HANG_MS), 1);
	assert_int_equal(r, 0);
	return m;
}

/* The VMM's answer to request `id`, of `kind`. */
static void vmm_answered(struct ipc_chan *c, uint32_t id, int kind)
{
	struct ipc_msg *m = vmm_next(c);

	assert_int_equal(m->kind, kind);
	assert_int_equal(m->id, id);
	ipc_msg_free(m);
}

/* A VMM connected, with `ram` to map, and a DMA_MAP of it that the broker holds unanswered. */
static struct ipc_chan *vmm_with_held_map(struct fx *f, int *ram, uint32_t *id)
{
	struct ipc_chan *c = vmm_connect(f);

	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 1, 1);
	*ram = test_memfd(1 << 16, 0);
	hold(f, VB__BRK__TYPE__DMA_MAP);
	*id = dma_map_send(c, 0x40000, *ram);
	wait_held(f, 1);
	return c;
}

/* Issue 12: a broker killed before it answers a call it read never answers it; its successor
 * attaches. Far more restarts than the worker's budget of calls given up on (48), each with a
 * VMM's DMA_MAP in flight: each VMM is told to retry (ETIMEDOUT), and the worker lets go of the
 * dead broker's calls once the new one has answered its fence (SYNC), so the map after the
 * last restart is done (before, from the 49th on, every call was refused EBUSY for good). */
static void test_worker_broker_restarts_with_call_in_flight_never_exhaust_calls(void **state)
{
	struct fx *f = *state;
	struct ipc_chan *c = vmm_connect(f);
	struct ipc_msg *m;
	int ram = test_memfd(1 << 16, 0);
	int syncs;

	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 1, 1);
	for (int i = 0; i < 64; i++) {
		uint32_t id;

		hold(f, VB__BRK__TYPE__DMA_MAP);
		id = dma_map_send(c, 0x40000, ram);
		wait_held(f, 1);
		held_drop(f);
		send_heartbeat(f, 0x100 + (uint64_t)i, 2 + (uint64_t)i);
		wait_heartbeat_answered(f, 0x100 + (uint64_t)i);
		m = vmm_next(c);
		assert_int_equal(m->kind, IPC_KIND_ERROR);
		assert_int_equal(m->id, id);
		assert_int_equal(((const Vb__Error *)m->body)->code, ETIMEDOUT);
		if (!strstr(((const Vb__Error *)m->body)->message, "retry"))
			fail_msg("restart %d: the VMM was told '%s'", i,
				 ((const Vb__Error *)m->body)->message);
		ipc_msg_free(m);
	}
	vmm_answered(c, dma_map_send(c, 0x40000, ram), IPC_KIND_REPLY);
	pthread_mutex_lock(&f->lock);
	syncs = 0;
	for (int i = 0; i < f->nlog; i++)
		syncs += f->log[i].type == VB__BRK__TYPE__SYNC;
	pthread_mutex_unlock(&f->lock);
	/* One per restart (the log keeps the first LOG_MAX requests). */
	assert_true(syncs >= 40);
	ipc_chan_free(c);
	close(ram);
}

/* The DMA requests the broker got, in order, as "M" (map) and "U" (unmap) of 64 KiB at 0x40000
 * ("m"/"u" at 0x80000), e.g. "MMm"; other requests are left out. */
static void dma_log(struct fx *f, char *buf, size_t len)
{
	size_t n = 0;

	pthread_mutex_lock(&f->lock);
	for (int i = 0; i < f->nlog && n + 1 < len; i++) {
		const struct seen *s = &f->log[i];
		bool map = s->type == VB__BRK__TYPE__DMA_MAP;

		if (!map && s->type != VB__BRK__TYPE__DMA_UNMAP)
			continue;
		buf[n++] = s->iova == 0x40000 ? (map ? 'M' : 'U') : (map ? 'm' : 'u');
	}
	pthread_mutex_unlock(&f->lock);
	buf[n] = '\0';
}

/* A VMM maps a range, then maps it again: the broker refuses the second as an overlap (EEXIST)
 * and creates nothing. When that second map times out instead (the broker that read it is
 * killed; the next attaches), the worker must not unmap the range: the mapping is the first
 * one's, which the VMM was told it has. Nothing but the maps reaches the broker (a last map
 * elsewhere orders whatever the worker sent before it), and the VMM's unmap is still done. */
static void test_worker_broker_dma_map_twice_timed_out_first_kept(void **state)
{
	struct fx *f = *state;
	struct ipc_chan *c = vmm_connect(f);
	struct ipc_error err = {0};
	char log[16];
	Vb__DmaMap dm = VB__DMA_MAP__INIT;
	int ram = vmm_map(f, c, &dm, 0);

	hold(f, VB__BRK__TYPE__DMA_MAP);
	(void)vmm_map(f, c, &dm, -ETIMEDOUT);
	held_drop(f);
	send_heartbeat(f, 0x7100, 2);
	wait_heartbeat_answered(f, 0x7100);
	vmm_answered(c, dma_map_send(c, 0x80000, ram), IPC_KIND_REPLY);
	dma_log(f, log, sizeof(log));
	assert_string_equal(log, "MMm");
	assert_int_equal(vmm_unmap(c, 0x40000, &err), 0);
	ipc_chan_free(c);
	close(ram);
}

/* The same second map, answered done late after all (a broker's table that had lost the first):
 * it created a mapping the VMM was told failed, which is unmapped. */
static void test_worker_broker_dma_map_twice_late_done_unmapped(void **state)
{
	struct fx *f = *state;
	struct ipc_chan *c = vmm_connect(f);
	char log[16];
	Vb__DmaMap dm = VB__DMA_MAP__INIT;
	int ram = vmm_map(f, c, &dm, 0);

	hold(f, VB__BRK__TYPE__DMA_MAP);
	(void)vmm_map(f, c, &dm, -ETIMEDOUT);
	held_answer(f);
	wait_for(f, VB__BRK__TYPE__DMA_UNMAP, -1, -1, -1, 1);
	dma_log(f, log, sizeof(log));
	assert_string_equal(log, "MMU");
	ipc_chan_free(c);
	close(ram);
}

/* While a VMM's DMA_MAP waits for the broker, a second VMM is turned away (EBUSY) at once, not
 * once the call has ended: the first VMM has no answer yet when the second has its refusal. */
static void test_worker_broker_call_waiting_second_vmm_refused_at_once(void **state)
{
	struct fx *f = *state;
	struct ipc_error err = {0};
	struct ipc_msg *m = NULL;
	uint32_t id;
	int ram;
	struct ipc_chan *c = vmm_with_held_map(f, &ram, &id), *c2 = vmm_connect_raw(f);

	assert_int_equal(vmm_hello(c2, NULL, &err), -EBUSY);
	ipc_chan_free(c2);
	assert_int_equal(ipc_chan_recv(c, &m), -EAGAIN);
	held_answer(f);
	vmm_answered(c, id, IPC_KIND_REPLY);
	ipc_chan_free(c);
	close(ram);
}

/* MSI-X vector `v`'s control word written 0 (unmasked) through the table (BIR and offset at
 * 0x74); the worker's answer. */
static int msix_unmask(struct ipc_chan *c, uint32_t v, struct ipc_error *err)
{
	Vb__Dev__CfgRead cr = VB__DEV__CFG_READ__INIT;
	Vb__Dev__RegionWrite rw = VB__DEV__REGION_WRITE__INIT;
	struct ipc_msg *m = NULL;
	uint8_t zero[4] = {0};
	uint32_t tbl;
	int r;

	cr.offset = 0x74;
	cr.size = 4;
	assert_int_equal(
	    ipc_chan_call(c, VB__DEV__TYPE__CFG_READ, &cr.base, NULL, 0, TEST_HANG_MS, &m, NULL),
	    0);
	tbl = vb_le32_get(((const Vb__Dev__Data *)m->body)->data.data);
	ipc_msg_free(m);
	rw.index = tbl & PCI_MSIX_TABLE_BIR;
	rw.offset =
	    (tbl & PCI_MSIX_TABLE_OFFSET) + v * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_VECTOR_CTRL;
	rw.data.data = zero;
	rw.data.len = 4;
	m = NULL;
	r = ipc_chan_call(c, VB__DEV__TYPE__REGION_WRITE, &rw.base, NULL, 0, TEST_HANG_MS, &m, err);
	ipc_msg_free(m);
	return r;
}

/* MSI-X vector 3, masked, fires while a DMA_MAP waits for the broker: the worker services it at
 * once (its pending bit is set, as the heartbeat reports), and once the VMM unmasks the vector
 * the interrupt reaches the VMM's irqfd. */
static void test_worker_broker_call_waiting_interrupt_serviced_then_delivered(void **state)
{
	struct fx *f = *state;
	struct ipc_chan *c = vmm_connect(f);
	struct ipc_msg *m = NULL;
	uint64_t one = 1, seq = 100, got = 0;
	int efd[16], ram;
	uint32_t id;
	struct pollfd p;

	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 1, 1);
	set_msix_fds(c, efd, 16);
	assert_int_equal(vmm_cfg_write(c, 0x72, 2, PCI_MSIX_FLAGS_ENABLE), 0);
	ram = test_memfd(1 << 16, 0);
	hold(f, VB__BRK__TYPE__DMA_MAP);
	id = dma_map_send(c, 0x40000, ram);
	wait_held(f, 1);
	pthread_mutex_lock(&f->lock);
	assert_true(f->msix_wfd[3] > 0);
	assert_int_equal(write(f->msix_wfd[3], &one, sizeof(one)), sizeof(one));
	pthread_mutex_unlock(&f->lock);
	/* Each heartbeat is answered at once; the interrupt is seen in the loop's next turns. */
	for (int64_t end = test_now_ms() + TEST_HANG_MS; !got && test_now_ms() < end; seq++) {
		send_heartbeat(f, seq, 1);
		wait_heartbeat_answered(f, seq);
		pthread_mutex_lock(&f->lock);
		got = f->heartbeat_irqs;
		pthread_mutex_unlock(&f->lock);
	}
	assert_int_equal(got, 1);
	assert_int_equal(ipc_chan_recv(c, &m), -EAGAIN); /* the map still waits */
	held_answer(f);
	vmm_answered(c, id, IPC_KIND_REPLY);
	assert_int_equal(msix_unmask(c, 3, NULL), 0);
	p = (struct pollfd){.fd = efd[3], .events = POLLIN};
	assert_int_equal(poll(&p, 1, TEST_HANG_MS), 1);
	ipc_chan_free(c);
	close(ram);
	close_msix_fds(efd);
}

/* The VMM's next request is not served before the one that waits for the broker: its
 * DMA_UNMAP reaches the broker, and is answered, only after the DMA_MAP sent before it. */
static void test_worker_broker_call_waiting_same_vmm_next_request_waits(void **state)
{
	struct fx *f = *state;
	Vb__DmaUnmap du = VB__DMA_UNMAP__INIT;
	struct ipc_msg *m = NULL;
	uint32_t id, id2;
	int ram;
	struct ipc_chan *c = vmm_with_held_map(f, &ram, &id);

	du.iova = 0x80000;
	du.size = 1 << 16;
	assert_int_equal(ipc_chan_request(c, VB__DEV__TYPE__DMA_UNMAP, &du.base, NULL, 0, &id2), 0);
	/* A broker round trip: the worker's loop has turned since the DMA_UNMAP arrived. */
	send_heartbeat(f, 7, 1);
	wait_heartbeat_answered(f, 7);
	assert_int_equal(count(f, VB__BRK__TYPE__DMA_UNMAP, -1, -1, -1), 0);
	assert_int_equal(ipc_chan_recv(c, &m), -EAGAIN);
	held_answer(f);
	vmm_answered(c, id, IPC_KIND_REPLY);
	vmm_answered(c, id2, IPC_KIND_REPLY);
	assert_int_equal(count(f, VB__BRK__TYPE__DMA_UNMAP, -1, -1, -1), 1);
	ipc_chan_free(c);
	close(ram);
}

/* A new broker makes the worker send a routing in doubt again, off then on, without waiting
 * for either answer: until both are answered the VMM's requests are held (an access served
 * while the index is off in the kernel could raise an interrupt no route carries, and it would
 * be lost). Fails with the hold taken out: the config read is answered at once. */
static void test_worker_broker_new_epoch_routing_resent_vmm_held_until_routed(void **state)
{
	struct fx *f = *state;
	int efd[16];
	struct ipc_chan *c = vmm_with_failed_routing(f, efd);
	struct ipc_msg *m = NULL;
	Vb__Dev__CfgRead cr = VB__DEV__CFG_READ__INIT;
	uint32_t id;

	/* A restarted broker that holds its answers to SET_IRQS. */
	hold(f, VB__BRK__TYPE__SET_IRQS);
	send_heartbeat(f, 0x9000, 2);
	wait_heartbeat_answered(f, 0x9000);
	wait_held(f, 2);
	cr.offset = 0x72;
	cr.size = 2;
	assert_int_equal(ipc_chan_request(c, VB__DEV__TYPE__CFG_READ, &cr.base, NULL, 0, &id), 0);
	/* A broker round trip: the worker's loop has turned since the read arrived. */
	send_heartbeat(f, 0x9001, 2);
	wait_heartbeat_answered(f, 0x9001);
	assert_int_equal(ipc_chan_recv(c, &m), -EAGAIN);
	held_answer(f);
	vmm_answered(c, id, IPC_KIND_REPLY);
	ipc_chan_free(c);
	close_msix_fds(efd);
}

/* REMOVAL while a VMM's request waits for the broker: the VMM hears the removal event at once,
 * before its reply; its REMOVAL_ACK is read after that reply, and the broker hears the VMM let
 * go only then. */
static void test_worker_broker_call_waiting_removal_event_first_ack_after(void **state)
{
	struct fx *f = *state;
	Vb__Brk__Removal rm = VB__BRK__REMOVAL__INIT;
	Vb__Empty e = VB__EMPTY__INIT;
	struct ipc_msg *m;
	uint32_t id, rid, ack;
	int ram;
	struct ipc_chan *c = vmm_with_held_map(f, &ram, &id);

	rm.timeout_ms = TEST_HANG_MS;
	pthread_mutex_lock(&f->lock);
	assert_int_equal(ipc_chan_request(f->brk, VB__BRK__TYPE__REMOVAL, &rm.base, NULL, 0, &rid),
			 0);
	pthread_mutex_unlock(&f->lock);
	m = vmm_next(c);
	assert_int_equal(m->kind, IPC_KIND_EVENT);
	assert_int_equal(((const Vb__Dev__Event *)m->body)->kind,
			 VB__DEV__EVENT_KIND__EVENT_REMOVAL_REQUESTED);
	ipc_msg_free(m);
	assert_int_equal(ipc_chan_request(c, VB__DEV__TYPE__REMOVAL_ACK, &e.base, NULL, 0, &ack),
			 0);
	send_heartbeat(f, 9, 1);
	wait_heartbeat_answered(f, 9);
	pthread_mutex_lock(&f->lock);
	assert_int_equal(f->removal_answer, -1);
	pthread_mutex_unlock(&f->lock);
	held_answer(f);
	vmm_answered(c, id, IPC_KIND_REPLY);
	vmm_answered(c, ack, IPC_KIND_REPLY);
	assert_int_equal(removal_answered(f), 1);
	ipc_chan_free(c);
	close(ram);
}

/* A VMM hangs up while its DMA_MAP waits for the broker and the next one connects at once; the
 * map is answered done once the teardown's DMA_UNMAP_ALL has reached the broker. Returns the
 * next VMM's channel. */
static struct ipc_chan *vmm_gone_next_in_map_answered(struct fx *f, int *ram)
{
	uint32_t id;
	struct ipc_chan *c = vmm_with_held_map(f, ram, &id);

	ipc_chan_free(c);
	c = vmm_connect(f);
	wait_for(f, VB__BRK__TYPE__DMA_UNMAP_ALL, -1, -1, -1, 1);
	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 1, 2);
	held_answer(f); /* the first VMM's map: done, after the unmap-all */
	return c;
}

/* A VMM that hangs up while its request waits for the broker, and reconnects at once, gets in:
 * the waiting session ends when the new connection is judged, its teardown (DMA_UNMAP_ALL) goes
 * to the broker behind the DMA_MAP it made. */
static void test_worker_broker_call_waiting_vmm_gone_reconnect_gets_in(void **state)
{
	struct fx *f = *state;
	int ram;
	struct ipc_chan *c = vmm_gone_next_in_map_answered(f, &ram);

	ipc_chan_free(c);
	close(ram);
}

/* A VMM that hangs up while its DMA_MAP waits for the broker is let go of at once: its teardown
 * (DMA_UNMAP_ALL, then VMM_STATE gone) reaches the broker while the map is still held, not when
 * the broker answers, the call times out (here ten minutes) or another VMM connects. The late
 * answer goes nowhere, and the device takes the next VMM. */
static void test_worker_broker_call_waiting_vmm_gone_seen_at_once(void **state)
{
	struct fx *f = *state;
	uint32_t id;
	int ram;
	struct ipc_chan *c = vmm_with_held_map(f, &ram, &id);

	ipc_chan_free(c);
	wait_for(f, VB__BRK__TYPE__DMA_UNMAP_ALL, -1, -1, -1, 1);
	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 0, 1);
	pthread_mutex_lock(&f->lock);
	assert_int_equal(f->nheld, 1); /* the map: still unanswered */
	pthread_mutex_unlock(&f->lock);
	held_answer(f);
	c = vmm_connect(f);
	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 1, 2);
	ipc_chan_free(c);
	close(ram);
}

/* A VMM that only shuts its sending side while its DMA_MAP waits for the broker has not left: it
 * is answered when the broker answers, and its leaving is seen after that, when the worker reads
 * from it again. */
static void test_worker_broker_call_waiting_vmm_shut_write_still_answered(void **state)
{
	struct fx *f = *state;
	uint32_t id;
	int ram;
	struct ipc_chan *c = vmm_with_held_map(f, &ram, &id);

	assert_int_equal(shutdown(ipc_chan_fd(c), SHUT_WR), 0);
	/* Two broker round trips: the worker's loop has turned since the shutdown. */
	send_heartbeat(f, 0x7300, 1);
	wait_heartbeat_answered(f, 0x7300);
	send_heartbeat(f, 0x7301, 1);
	wait_heartbeat_answered(f, 0x7301);
	assert_int_equal(count(f, VB__BRK__TYPE__DMA_UNMAP_ALL, -1, -1, -1), 0);
	held_answer(f);
	vmm_answered(c, id, IPC_KIND_REPLY);
	wait_for(f, VB__BRK__TYPE__DMA_UNMAP_ALL, -1, -1, -1, 1);
	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 0, 1);
	ipc_chan_free(c);
	close(ram);
}

/* Over vfio-user as over the native protocol: a VMM that closes its socket while its DMA_MAP
 * waits for the broker is let go of at once. */
static void test_worker_broker_vfio_user_call_waiting_vmm_gone_seen_at_once(void **state)
{
	struct fx *f = *state;
	int fd = vfu_connect(f);
	int mfd = test_memfd(1 << 16, 0);
	uint8_t map[32] = {0};

	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 1, 1);
	hold(f, VB__BRK__TYPE__DMA_MAP);
	vb_le32_put(map, 32);
	vb_le32_put(map + 4, 3);
	vb_le64_put(map + 16, 0x40000);
	vb_le64_put(map + 24, 1 << 16);
	assert_int_equal(vfu_cli_send(fd, 7, 2, 0, map, sizeof(map), &mfd, 1), 0);
	wait_held(f, 1);
	close(fd);
	wait_for(f, VB__BRK__TYPE__DMA_UNMAP_ALL, -1, -1, -1, 1);
	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 0, 1);
	pthread_mutex_lock(&f->lock);
	assert_int_equal(f->nheld, 1);
	pthread_mutex_unlock(&f->lock);
	held_answer(f);
	close(mfd);
}

/* A VMM leaves while its DMA_MAP waits for the broker: the worker's DMA_UNMAP_ALL at the
 * hang-up undoes whatever the map did, so a "done" for that map read after the unmap-all does
 * not make its range the VMM's. Held, it would make the next VMM's map over that range, given
 * up on when its broker dies, leave its mapping in place (a map over a held range creates
 * nothing, so nothing is unmapped); not held, the range is unmapped once the next broker has
 * answered its fence. Heartbeat round trips order each step; no step waits for a timeout. */
static void test_worker_broker_map_done_after_unmap_all_not_held(void **state)
{
	struct fx *f = *state;
	struct ipc_msg *m;
	char log[16];
	uint32_t id;
	int ram;
	/* The next VMM's connection makes the worker see the hang-up while the map waits. */
	struct ipc_chan *c = vmm_gone_next_in_map_answered(f, &ram);

	send_heartbeat(f, 0x7200, 1); /* the same broker: orders its answer before the rest */
	wait_heartbeat_answered(f, 0x7200);
	hold(f, VB__BRK__TYPE__DMA_MAP);
	id = dma_map_send(c, 0x40000, ram);
	wait_held(f, 1);
	held_drop(f);
	send_heartbeat(f, 0x7201, 2);
	wait_heartbeat_answered(f, 0x7201);
	m = vmm_next(c);
	assert_int_equal(m->kind, IPC_KIND_ERROR);
	assert_int_equal(m->id, id);
	assert_int_equal(((const Vb__Error *)m->body)->code, ETIMEDOUT);
	ipc_msg_free(m);
	wait_for(f, VB__BRK__TYPE__DMA_UNMAP, -1, -1, -1, 1);
	dma_log(f, log, sizeof(log));
	assert_string_equal(log, "MMU");
	ipc_chan_free(c);
	close(ram);
}

/* An unmask whose SET_IRQS goes unanswered fails with ETIMEDOUT; the VMM's retry of the same
 * write sends that route again and waits for it (here: times out too), rather than being told
 * at once that a route exists which the kernel may not have. */
static void test_worker_broker_timed_out_route_retry_routes_again(void **state)
{
	struct fx *f = *state;
	struct ipc_chan *c = vmm_connect(f);
	struct ipc_error err = {0};
	int efd[16];

	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 1, 1);
	set_msix_fds(c, efd, 16);
	assert_int_equal(vmm_cfg_write(c, 0x72, 2, PCI_MSIX_FLAGS_ENABLE), 0);
	hold(f, VB__BRK__TYPE__SET_IRQS);
	assert_int_equal(msix_unmask(c, 3, &err), -ETIMEDOUT);
	assert_int_equal(msix_unmask(c, 3, &err), -ETIMEDOUT);
	if (!strstr(err.message, "retry"))
		fail_msg("the VMM was told '%s'", err.message);
	wait_held(f, 2);
	held_answer(f);
	ipc_chan_free(c);
	close_msix_fds(efd);
}

/* The deferred reply carries the broker's own result: its errno and its message. */
static void test_worker_broker_call_waiting_reply_carries_broker_error(void **state)
{
	struct fx *f = *state;
	uint32_t id;
	int ram;
	struct ipc_chan *c = vmm_with_held_map(f, &ram, &id);
	struct ipc_msg *m;

	held_answer_error(f, -ENOSPC);
	m = vmm_next(c);
	assert_int_equal(m->kind, IPC_KIND_ERROR);
	assert_int_equal(m->id, id);
	assert_int_equal(((const Vb__Error *)m->body)->code, ENOSPC);
	if (!strstr(((const Vb__Error *)m->body)->message, "refused after a while"))
		fail_msg("the VMM was told '%s'", ((const Vb__Error *)m->body)->message);
	ipc_msg_free(m);
	ipc_chan_free(c);
	close(ram);
}

/* vfio-user alike: a DMA_MAP the broker holds keeps the VMM's next command (a config read)
 * unanswered; the map's reply, with the broker's errno, comes first, then the read's. */
static void test_worker_broker_vfio_user_call_waiting_replies_in_order(void **state)
{
	struct fx *f = *state;
	int fd = vfu_connect(f), mfd = test_memfd(1 << 20, 0);
	uint8_t map[32] = {0}, rd[16] = {0};
	struct pollfd p = {.fd = fd, .events = POLLIN};
	struct vfu_reply r;

	wait_for(f, VB__BRK__TYPE__VMM_STATE, -1, -1, 1, 1);
	vb_le32_put(map, 32);
	vb_le32_put(map + 4, 3);
	vb_le32_put(map + 16, 0x100000);
	vb_le32_put(map + 24, 1 << 20);
	hold(f, VB__BRK__TYPE__DMA_MAP);
	assert_int_equal(vfu_cli_send(fd, 1, 2, 0, map, 32, &mfd, 1), 0);
	wait_held(f, 1);
	vb_le32_put(rd + 8, VFIO_PCI_CONFIG_REGION_INDEX);
	vb_le32_put(rd + 12, 4);
	assert_int_equal(vfu_cli_send(fd, 2, 9, 0, rd, 16, NULL, 0), 0);
	send_heartbeat(f, 11, 1);
	wait_heartbeat_answered(f, 11);
	assert_int_equal(poll(&p, 1, 0), 0);
	held_answer_error(f, -ENOSPC);
	assert_int_equal(vfu_cli_recv(fd, TEST_HANG_MS, &r), 0);
	assert_int_equal(r.id, 1);
	assert_true(r.flags & (1u << 5));
	assert_int_equal(r.error, ENOSPC);
	vfu_reply_free(&r);
	assert_int_equal(vfu_cli_recv(fd, TEST_HANG_MS, &r), 0);
	assert_int_equal(r.id, 2);
	assert_false(r.flags & (1u << 5));
	assert_int_equal(r.len, 16 + 4);
	vfu_reply_free(&r);
	close(fd);
	close(mfd);
}

/* ---- a new broker adopting a running worker (issue 12) ------------------------------------ */

/* The worker as a restarted broker finds it: started by another process (here a parent that has
 * exited), reparented to a subreaper that is not the test (so waitid(P_PIDFD) cannot reap it:
 * ECHILD), served by a predecessor until then. */
struct orphan {
	pid_t subreaper;
	pid_t pid;
	int pidfd;
};

static int spawn_orphan(struct fx *f, struct orphan *o, int *ret_listen)
{
	int sp[2], pp[2], lfd;

	if (listen_vmm(f, &lfd) < 0 || ipc_socketpair(sp) < 0 || pipe2(pp, O_CLOEXEC) < 0)
		return -1;
	o->subreaper = fork();
	if (o->subreaper == 0) {
		pid_t parent;

		if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
			_exit(125);
		parent = fork();
		if (parent == 0) {
			pid_t w = fork();

			if (w == 0) {
				char *argv[] = {VB_WORKER_BIN, "--seccomp=" VB_WORKER_SECCOMP,
						NULL};

				if (dup2(sp[1], 3) < 0)
					_exit(126);
				execv(argv[0], argv);
				_exit(127);
			}
			_exit(write(pp[1], &w, sizeof(w)) == sizeof(w) ? 0 : 1);
		}
		/* Holds no end of the channel: only the test's end may keep it open. */
		close(sp[0]);
		close(sp[1]);
		close(lfd);
		while (wait(NULL) > 0 || errno == EINTR)
			;
		_exit(0);
	}
	close(sp[1]);
	close(pp[1]);
	if (read(pp[0], &o->pid, sizeof(o->pid)) != sizeof(o->pid))
		return -1;
	close(pp[0]);
	o->pidfd = (int)syscall(SYS_pidfd_open, o->pid, 0);
	if (o->pidfd < 0)
		return -1;
	f->pid = 0; /* not the test's to wait for */
	*ret_listen = lfd;
	return ipc_chan_new(sp[0], &ipc_proto_broker, NULL, &f->brk);
}

struct adopted {
	bool ready, faulted, exited, vmm_connected, vmm_seen;
	int vmm_states;
	enum brk_worker_fault kind;
	int code, status;
	uint32_t vmm_pid;
	char reason[256];
};

static void ad_ready(void *ctx)
{
	((struct adopted *)ctx)->ready = true;
}

static void ad_vmm_state(void *ctx, bool connected, uint32_t pid, uint32_t uid)
{
	struct adopted *a = ctx;

	a->vmm_states++;
	a->vmm_seen = true;
	a->vmm_connected = connected;
	a->vmm_pid = pid;
}

static void ad_removal_done(void *ctx, bool acknowledged)
{
}

static void ad_fault(void *ctx, enum brk_worker_fault kind, const char *reason)
{
	struct adopted *a = ctx;

	a->faulted = true;
	a->kind = kind;
	snprintf(a->reason, sizeof(a->reason), "%s", reason);
}

static void ad_exited(void *ctx, int code, int status)
{
	struct adopted *a = ctx;

	a->exited = true;
	a->code = code;
	a->status = status;
}

static const struct brk_worker_hooks ad_hooks = {ad_ready, ad_vmm_state, ad_removal_done, ad_fault,
						 ad_exited};

/* Runs the loop until *flag, or until the worker faulted or exited (each turn waits for an
 * event; the heartbeat timer ticks), so that a wrong outcome fails instead of waiting forever. */
static void run_until(uv_loop_t *loop, const struct adopted *ad, const bool *flag)
{
	while (!*flag && !ad->faulted && !ad->exited)
		uv_run(loop, UV_RUN_ONCE);
	if (!*flag)
		fail_msg("the adopted worker %s: %s", ad->exited ? "exited" : "faulted",
			 ad->reason);
}

/* The predecessor leaves an answer in the socket (a heartbeat it never read the reply to) and
 * goes; its successor adopts the channel (a duplicate stands for the fd store's copy). */
static int predecessor_leaves(struct fx *f)
{
	Vb__Brk__Heartbeat hb = VB__BRK__HEARTBEAT__INIT;
	int keep;

	hb.seq = 7;
	hb.epoch = 0x0123456789abcdefull;
	if (ipc_chan_request(f->brk, VB__BRK__TYPE__HEARTBEAT, &hb.base, NULL, 0, NULL) < 0)
		return -1;
	keep = fcntl(ipc_chan_fd(f->brk), F_DUPFD_CLOEXEC, 3);
	ipc_chan_free(f->brk);
	f->brk = NULL;
	f->stopped = true;
	return keep;
}

static void adopt_args(struct brk_worker_args *a, struct brk_config *cfg, struct adopted *ad)
{
	*a = (struct brk_worker_args){.cfg = cfg,
				      .bdf = "0000:03:00.0",
				      .vm = "test-vm",
				      .owner_uid = getuid(),
				      .owner_gid = getgid(),
				      .vmm_listen_fd = -1,
				      .vfu_listen_fd = -1,
				      .hooks = &ad_hooks,
				      .ctx = ad};
}

static void orphan_setup(struct fx *f, struct orphan *o)
{
	int lfd = -1;

	assert_int_equal(fx_init(f, 0), 0);
	assert_int_equal(spawn_orphan(f, o, &lfd), 0);
	assert_int_equal(handoff_protos(f, 0, &lfd, 1, false, NULL), 0);
	close(lfd);
}

static void orphan_teardown(struct fx *f, struct orphan *o)
{
	int status;

	/* The subreaper reaped the worker and ended. */
	assert_int_equal(waitpid(o->subreaper, &status, 0), o->subreaper);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	fx_release(f);
}

/* The successor's side of every adoption test: the predecessor leaves (predecessor_leaves) and a
 * new broker, with `cfg`, adopts the orphan on its own loop; `ad` hears the hooks. */
static struct brk_worker *adopt_orphan(struct fx *f, struct orphan *o, uv_loop_t *loop,
				       struct brk_config *cfg, struct adopted *ad)
{
	struct brk_worker_args args;
	struct brk_worker *w = NULL;
	struct vb_err err = {0};
	int chan = predecessor_leaves(f);

	assert_true(chan >= 0);
	assert_int_equal(uv_loop_init(loop), 0);
	adopt_args(&args, cfg, ad);
	if (brk_worker_adopt(loop, &args, o->pid, o->pidfd, chan, &w, &err) < 0)
		fail_msg("adopt: %s", err.msg);
	return w;
}

/* Frees the adopted worker, lets its loop close everything, and checks the orphan's end. */
static void adopted_end(struct fx *f, struct orphan *o, uv_loop_t *loop, struct brk_worker *w)
{
	brk_worker_free(w);
	uv_run(loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(loop), 0);
	orphan_teardown(f, o);
}

/* Adoption: a worker that is not the test's child, whose channel holds an answer meant for the
 * predecessor. The new broker drops that answer (no protocol fault), `ready` comes with the
 * answer to its own heartbeat, and when the worker dies the pidfd tells (it cannot be waited
 * for: code 0, status -1), as a crash. */
static void test_worker_broker_adopted_not_our_child_ready_then_death_seen(void **state)
{
	struct brk_config cfg = {.heartbeat_interval_ms = 1000, .heartbeat_timeout_ms = 60000};
	struct adopted ad = {0};
	struct brk_worker *w;
	struct fx f;
	struct orphan o;
	uv_loop_t loop;
	siginfo_t si = {0};
	int ch = -1, pfd = -1;

	(void)state;

	orphan_setup(&f, &o);
	/* Not ours: waitid cannot reap it. */
	assert_int_equal(waitid((idtype_t)3 /* P_PIDFD */, (id_t)o.pidfd, &si, WEXITED | WNOHANG),
			 -1);
	assert_int_equal(errno, ECHILD);
	w = adopt_orphan(&f, &o, &loop, &cfg, &ad);
	brk_worker_fds(w, &ch, &pfd);
	assert_int_equal(pfd, o.pidfd);
	assert_true(ch >= 0);
	assert_int_equal(brk_worker_pid(w), o.pid);
	run_until(&loop, &ad, &ad.ready);
	assert_false(ad.faulted);
	/* It dies of something else than us. */
	assert_int_equal(syscall(SYS_pidfd_send_signal, o.pidfd, SIGKILL, NULL, 0), 0);
	while (!ad.exited)
		uv_run(&loop, UV_RUN_ONCE);
	assert_true(ad.faulted);
	assert_int_equal(ad.kind, BRK_WORKER_CRASHED);
	assert_non_null(strstr(ad.reason, "not our child"));
	assert_int_equal(ad.code, 0);
	assert_int_equal(ad.status, -1);
	adopted_end(&f, &o, &loop, w);
}

/* The predecessor serves what a VMM's connection asks of it (VMM_ADMIT, VMM_STATE). */
static void predecessor_serves(struct fx *f, uint16_t until)
{
	struct pollfd p = {.fd = ipc_chan_fd(f->brk), .events = POLLIN};
	struct ipc_msg *m;
	int r;

	for (;;) {
		uint16_t type;

		while ((r = ipc_chan_recv(f->brk, &m)) == -EAGAIN)
			assert_int_equal(poll(&p, 1, 60000), 1);
		assert_int_equal(r, 0);
		type = m->kind == IPC_KIND_REQUEST ? m->type : 0;
		if (type)
			answer(f, m);
		ipc_msg_free(m);
		if (type == until)
			return;
	}
}

/* A worker whose VMM connected under the predecessor tells its adopter who the VMM is: the new
 * broker's epoch differs from the handoff's, so after answering the first heartbeat the worker
 * re-sends VMM_STATE, which reaches the adopter's vmm_state hook (it cannot know otherwise). */
static void test_worker_broker_adopted_worker_resends_vmm_state(void **state)
{
	struct brk_config cfg = {.heartbeat_interval_ms = 1000, .heartbeat_timeout_ms = 60000};
	Vb__Dev__Hello h = VB__DEV__HELLO__INIT;
	struct adopted ad = {0};
	struct brk_worker *w;
	struct ipc_chan *vmm;
	struct ipc_msg *m;
	struct fx f;
	struct orphan o;
	uv_loop_t loop;
	int fd, r;
	struct pollfd p;

	(void)state;

	orphan_setup(&f, &o);
	assert_int_equal(ipc_connect(f.sock, &fd), 0);
	assert_int_equal(ipc_chan_new(fd, &ipc_proto_device, NULL, &vmm), 0);
	h.version = VB__DEV__VERSION__VERSION_CURRENT;
	assert_int_equal(ipc_chan_request(vmm, VB__DEV__TYPE__HELLO, &h.base, NULL, 0, NULL), 0);
	predecessor_serves(&f, VB__BRK__TYPE__VMM_STATE);
	p = (struct pollfd){.fd = ipc_chan_fd(vmm), .events = POLLIN};
	while ((r = ipc_chan_recv(vmm, &m)) == -EAGAIN)
		assert_int_equal(poll(&p, 1, 60000), 1);
	assert_int_equal(r, 0);
	assert_int_equal(m->kind, IPC_KIND_REPLY);
	ipc_msg_free(m);
	w = adopt_orphan(&f, &o, &loop, &cfg, &ad);
	run_until(&loop, &ad, &ad.ready);
	run_until(&loop, &ad, &ad.vmm_seen);
	assert_true(ad.vmm_connected);
	assert_int_equal(ad.vmm_pid, (uint32_t)getpid());
	assert_true(brk_worker_vmm_connected(w));
	/* Ended before its VMM leaves: this adopter has no DMA table to serve the teardown. */
	brk_worker_kill(w);
	while (!ad.exited)
		uv_run(&loop, UV_RUN_ONCE);
	ipc_chan_free(vmm);
	adopted_end(&f, &o, &loop, w);
}

/* An adopted worker that does not answer (stopped, so it never can, however slow the machine)
 * is declared hung once the heartbeat timeout passes; freeing it ends it (the subreaper reaps
 * it), and the caller's fds were the worker's to close. */
static void test_worker_broker_adopted_unanswering_worker_hung(void **state)
{
	struct brk_config cfg = {.heartbeat_interval_ms = 20, .heartbeat_timeout_ms = 200};
	struct adopted ad = {0};
	struct brk_worker *w;
	struct fx f;
	struct orphan o;
	uv_loop_t loop;

	(void)state;

	orphan_setup(&f, &o);
	assert_int_equal(syscall(SYS_pidfd_send_signal, o.pidfd, SIGSTOP, NULL, 0), 0);
	w = adopt_orphan(&f, &o, &loop, &cfg, &ad);
	while (!ad.faulted)
		uv_run(&loop, UV_RUN_ONCE);
	assert_false(ad.ready);
	assert_int_equal(ad.kind, BRK_WORKER_HUNG);
	adopted_end(&f, &o, &loop, w);
}

/* What the caller passes is checked, and a failed adoption leaves the caller's fds open. */
static void test_worker_broker_adopt_bad_args_refused_fds_kept(void **state)
{
	struct brk_config cfg = {.heartbeat_interval_ms = 1000, .heartbeat_timeout_ms = 60000};
	struct brk_worker_args args;
	struct adopted ad = {0};
	struct brk_worker *w = NULL;
	struct vb_err err = {0};
	uv_loop_t loop;
	int p[2];

	(void)state;

	assert_int_equal(uv_loop_init(&loop), 0);
	adopt_args(&args, &cfg, &ad);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	/* A pipe is no channel. */
	assert_int_equal(brk_worker_adopt(&loop, &args, getpid(), p[0], p[1], &w, &err), -ENOTSOCK);
	assert_non_null(strstr(err.msg, "channel"));
	assert_int_equal(brk_worker_adopt(&loop, &args, 0, p[0], p[1], &w, &err), -EINVAL);
	assert_null(w);
	assert_true(fcntl(p[0], F_GETFD) >= 0);
	assert_true(fcntl(p[1], F_GETFD) >= 0);
	close(p[0]);
	close(p[1]);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_worker_broker_vmm_refused_by_broker_gets_eperm,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_worker_broker_hello_announces_call_timeout, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_worker_broker_hello_announces_call_timeout,
					    setup_short, teardown),
	    cmocka_unit_test_setup_teardown(test_worker_broker_vmm_state_after_hello_answered,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_worker_broker_vmm_gone_before_hello_announced_both,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_worker_broker_msix_and_dma_reach_broker, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_worker_broker_removal_acked_by_vmm, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_worker_broker_mmap_only_through_vmm_grant, setup,
					    teardown),
	    cmocka_unit_test(test_worker_broker_bad_handoff_refused),
	    cmocka_unit_test_setup_teardown(test_worker_broker_vfio_user_reaches_broker, setup_vfu,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_worker_broker_vfio_user_refused_by_broker_closed,
					    setup_vfu, teardown),
	    cmocka_unit_test_setup_teardown(test_worker_broker_vfio_user_removal_signals_req,
					    setup_vfu, teardown),
	    cmocka_unit_test_setup_teardown(test_worker_broker_both_protocols_one_vmm, setup_both,
					    teardown),
	    cmocka_unit_test(test_worker_broker_handoff_fd_count_must_match_protocols),
	    cmocka_unit_test(test_worker_broker_channel_hangup_before_handoff_ends_worker),
	    cmocka_unit_test_setup_teardown(
		test_worker_broker_channel_hangup_during_call_ends_worker, setup_log, teardown),
	    cmocka_unit_test_setup_teardown(
		test_worker_broker_dma_map_never_answered_range_unmapped, setup_short, teardown),
	    cmocka_unit_test_setup_teardown(
		test_worker_broker_unmap_timed_out_retry_done_when_range_gone, setup_short,
		teardown),
	    cmocka_unit_test_setup_teardown(
		test_worker_broker_unmap_timed_out_late_enoent_retry_enoent, setup_short, teardown),
	    cmocka_unit_test_setup_teardown(
		test_worker_broker_restarts_with_call_in_flight_never_exhaust_calls, setup_short,
		teardown),
	    cmocka_unit_test_setup_teardown(test_worker_broker_dma_map_twice_timed_out_first_kept,
					    setup_short, teardown),
	    cmocka_unit_test_setup_teardown(test_worker_broker_dma_map_twice_late_done_unmapped,
					    setup_short, teardown),
	    cmocka_unit_test_setup_teardown(
		test_worker_broker_vfio_user_unmap_timed_out_retry_done_when_range_gone,
		setup_vfu_short, teardown),
	    cmocka_unit_test_setup_teardown(test_worker_broker_late_dma_map_timed_out_then_unmapped,
					    setup_short, teardown),
	    cmocka_unit_test_setup_teardown(
		test_worker_broker_late_dma_map_retried_first_unmapped_before, setup_short,
		teardown),
	    cmocka_unit_test_setup_teardown(test_worker_broker_heartbeat_answered_while_call_waits,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_worker_broker_late_set_irqs_routing_sent_again,
					    setup_short, teardown),
	    cmocka_unit_test_setup_teardown(
		test_worker_broker_new_epoch_state_and_failed_routing_resent, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_worker_broker_new_epoch_routing_resent_vmm_held_until_routed, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_worker_broker_late_vmm_admit_refused_retry_grant_closed, setup_short,
		teardown),
	    cmocka_unit_test_setup_teardown(
		test_worker_broker_call_waiting_second_vmm_refused_at_once, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_worker_broker_call_waiting_interrupt_serviced_then_delivered, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_worker_broker_call_waiting_same_vmm_next_request_waits, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_worker_broker_call_waiting_removal_event_first_ack_after, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_worker_broker_call_waiting_vmm_gone_reconnect_gets_in, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_worker_broker_call_waiting_vmm_gone_seen_at_once,
					    setup_long, teardown),
	    cmocka_unit_test_setup_teardown(
		test_worker_broker_call_waiting_vmm_shut_write_still_answered, setup_long,
		teardown),
	    cmocka_unit_test_setup_teardown(
		test_worker_broker_vfio_user_call_waiting_vmm_gone_seen_at_once, setup_vfu_long,
		teardown),
	    cmocka_unit_test_setup_teardown(test_worker_broker_map_done_after_unmap_all_not_held,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_worker_broker_call_waiting_reply_carries_broker_error, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_worker_broker_timed_out_route_retry_routes_again,
					    setup_short, teardown),
	    cmocka_unit_test_setup_teardown(
		test_worker_broker_vfio_user_call_waiting_replies_in_order, setup_vfu, teardown),
	    cmocka_unit_test(test_worker_broker_adopted_not_our_child_ready_then_death_seen),
	    cmocka_unit_test(test_worker_broker_adopted_worker_resends_vmm_state),
	    cmocka_unit_test(test_worker_broker_adopted_unanswering_worker_hung),
	    cmocka_unit_test(test_worker_broker_adopt_bad_args_refused_fds_kept),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
