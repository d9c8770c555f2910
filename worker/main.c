/*
 * vfio-worker: the sandboxed process that gives one VFIO PCI device its PCI personality for
 * one VMM. This file is the top of the process: options, the two modes (broker and standalone),
 * the seccomp filter, signals and the only logging the worker does (to stderr).
 *
 * Order matters for the sandbox: everything that needs a system call outside the worker's
 * seccomp policy (opening the image, creating the listening socket, the memfd, the event loop
 * and its signal handlers) happens first; the filter is loaded before the first byte of
 * untrusted input (a VMM request) is read, and in broker mode before the HANDOFF is
 * acknowledged, so the broker knows a worker it lets serve is confined.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "broker_link.h"
#include "devimg.h"
#include "ipc.h"
#include "seccomp.h"
#include "server.h"
#include "standalone.h"
#include "steps.h"
#include "vfu.h"
#include "wkr.h"

#define BROKER_FD		3
#define HANDOFF_TIMEOUT_DEFAULT 10000
#define LOCAL_MAPS_DEFAULT	4096
#define LOCAL_BYTES_DEFAULT	(64ull << 30)

static const char usage[] =
    "Usage: vfio-worker [--seccomp=kill|log|off] [--handoff-timeout=MS] [--call-timeout=MS]\n"
    "                   [--no-ring]\n"
    "       vfio-worker --device-image=FILE [--listen=PATH] [--vfio-user=PATH]\n"
    "                   [--owner-uid=UID] [--no-ring]\n"
    "                   [--max-dma-mappings=N] [--max-dma-bytes=N] [--seccomp=kill|log|off]\n"
    "       vfio-worker --help | --version\n";

static const char help[] =
    "NAME\n"
    "    vfio-worker - the sandboxed PCI personality of one VFIO device\n"
    "\n"
    "DESCRIPTION\n"
    "    vfio-worker serves one VFIO PCI device to one VMM over the vfio-broker device protocol\n"
    "    (proto/device.proto): config space virtualized per capability, virtual BARs, MSI and\n"
    "    MSI-X emulated (table and PBA in the worker, unmasked vectors signalled by the kernel\n"
    "    straight into the VMM's irqfds), INTx, trapped BAR accesses, and mappable areas that\n"
    "    exclude the MSI-X pages. It makes no VFIO ioctl: DMA mappings, interrupt routing and\n"
    "    resets are requests to the broker. One VMM at a time; when it disconnects, its DMA\n"
    "    mappings and interrupt routes are dropped, the device state is kept, and a VMM may\n"
    "    connect again at once, over either protocol.\n"
    "\n"
    "MODES\n"
    "    Broker mode (the default) is how vfio-brokerd runs the worker, inside an empty root\n"
    "    with its own user, pid, mount and network namespaces. The worker waits for the\n"
    "    broker's HANDOFF on fd 3, builds the device from it, loads its seccomp filter,\n"
    "    acknowledges, and serves the VMM socket it was handed until the channel hangs up or a\n"
    "    signal ends it. It has no parent-death signal: it outlives a broker that restarts\n"
    "    while something (systemd's fd store, a re-executed broker) holds the other end of its\n"
    "    channel, and ends when the last holder closes it (a call to the broker in progress\n"
    "    then fails, and the worker exits 0 with \"broker channel closed: exiting\").\n"
    "\n"
    "    Standalone mode (--device-image) serves a device image (worker/DEVICE-IMAGE.md) from a\n"
    "    memfd laid out like a VFIO device fd, on a socket of its own: a VMM can be developed and\n"
    "    tested without hardware or a broker. DMA and interrupt requests go through the broker's\n"
    "    own checks (DMA memory: a memfd sealed with F_SEAL_SHRINK, open and not sealed against\n"
    "    the access asked; interrupt fds: eventfds) and are accounted, with the broker's answers\n"
    "    (an overlap is EEXIST, the quotas ENOSPC for mappings and EDQUOT for bytes, and an unmap\n"
    "    must name exactly one mapping, else ENOENT), but nothing is mapped and nothing fires.\n"
    "\n"
    "OPTIONS\n"
    "    --device-image=FILE\n"
    "        Standalone mode: serve the device described by FILE. Errors in the image are\n"
    "        reported with their line number.\n"
    "    --listen=PATH\n"
    "        Standalone mode (required there): the unix SOCK_SEQPACKET socket to create for the\n"
    "        VMM, mode 0600. A stale socket at PATH (nothing listening) is replaced; anything\n"
    "        else there is an error. The seccomp filter does not allow unlinking, so PATH is\n"
    "        left behind when the worker exits.\n"
    "    --vfio-user=PATH\n"
    "        Standalone mode: also (or only) serve the device with the vfio-user protocol\n"
    "        (version 0.1, as QEMU's vfio-user-pci and cloud-hypervisor's --user-device speak\n"
    "        it) on a unix SOCK_STREAM socket created at PATH, mode 0600, replaced like\n"
    "        --listen's. At least one of --listen and --vfio-user is required. One VMM at a\n"
    "        time over both sockets: a second connection is closed (vfio-user) or answered\n"
    "        EBUSY (native). The VMM's guest RAM must be shared memfds: a DMA_MAP without an fd\n"
    "        is refused with ENOTSUP (and a log line naming the fix).\n"
    "    --owner-uid=UID\n"
    "        Standalone mode: the uid a VMM must connect as (besides root). Default: the\n"
    "        worker's own uid. In broker mode the HANDOFF says.\n"
    "    --max-dma-mappings=N, --max-dma-bytes=N\n"
    "        Standalone mode: DMA quotas announced to and enforced on the VMM. Defaults: 4096\n"
    "        mappings, 64 GiB. In broker mode the broker enforces its own.\n"
    "    --no-ring\n"
    "        Decline the shared-memory ring a VMM offers in its HELLO (proto/device.proto\n"
    "        RingOffer, ipc/ipc_ring.h): its trapped config and region accesses then all go over\n"
    "        the socket, as with a VMM that offers none. By default a ring that passes the\n"
    "        checks (a memfd of exactly 4096 bytes sealed against shrinking, growing and\n"
    "        sealing, and an eventfd doorbell) is taken; one that does not is refused with the\n"
    "        reason in the HELLO's answer, and the socket serves.\n"
    "    --seccomp=kill|log|off\n"
    "        The seccomp filter loaded once the worker is initialized: kill (default) ends the\n"
    "        worker on any system call outside policy/worker.policy; log lets such calls\n"
    "        through and has the kernel log them (for bringing up a policy); off loads nothing\n"
    "        and is meant for standalone debugging only.\n"
    "    --handoff-timeout=MS\n"
    "        Broker mode: how long to wait for the HANDOFF (default 10000).\n"
    "    --call-timeout=MS\n"
    "        Broker mode: how long a request to the broker (DMA map and unmap, interrupt\n"
    "        routing, reset, admitting a VMM) waits for its answer (default 30000: a broker\n"
    "        restart). Then the VMM's request fails with ETIMEDOUT and \"the broker did not\n"
    "        answer in 30 s (it may be restarting); retry\" (a connecting VMM is refused so);\n"
    "        the next broker still carries the request out, and the worker undoes it when\n"
    "        the answer comes (a mapping unmapped again, interrupt routing sent again, a\n"
    "        VMM's mmap grant closed). When a new broker adopts the worker (its heartbeat\n"
    "        names another epoch) the worker re-sends its VMM's state and the routing of\n"
    "        every interrupt index whose request failed or went unanswered.\n"
    "    --help, --version\n"
    "        Print this text, or the version, and exit.\n"
    "\n"
    "FILE DESCRIPTORS\n"
    "    0, 1   unused (the broker passes none).\n"
    "    2      the log: one line per event, prefixed \"vfio-worker[DEVICE]: \".\n"
    "    3      broker mode: the broker channel, a SOCK_SEQPACKET socket (proto/broker.proto).\n"
    "           Its first message is HANDOFF with, in order: the VFIO device fd (used with\n"
    "           pread/pwrite only, never passed on), then a listening socket per protocol it\n"
    "           names: native (SOCK_SEQPACKET), then vfio-user (SOCK_STREAM). The worker\n"
    "           answers HEARTBEAT and REMOVAL and sends DMA_MAP, DMA_UNMAP, DMA_UNMAP_ALL,\n"
    "           SET_IRQS, RESET, VMM_STATE and VMM_ADMIT; when the HANDOFF allows mmap,\n"
    "           VMM_ADMIT's answer carries the VMM's own grant (a device file the broker opened\n"
    "           for it), which region info passes on and a disconnect closes.\n"
    "    A VMM connection is refused (its first request answered with EPERM) unless its peer\n"
    "    uid is the owner's or 0, and refused with EBUSY while another VMM is connected.\n"
    "\n"
    "SIGNALS\n"
    "    SIGTERM and SIGINT end the worker: the VMM is disconnected and the process exits 0.\n"
    "    The broker quiesces the device itself.\n"
    "\n"
    "EXIT STATUS\n"
    "    0 ended by a signal or by its broker channel hanging up; 1 a runtime failure (bad\n"
    "    handoff or image, device setup, seccomp); 2 a usage error.\n"
    "\n"
    "SEE ALSO\n"
    "    vfio-brokerd(8), worker/DEVICE-IMAGE.md, proto/device.proto, policy/worker.policy\n";

struct opts {
	const char *image;
	const char *listen;
	const char *vfio_user;
	uid_t owner_uid;
	bool owner_set;
	uint32_t max_maps;
	uint64_t max_bytes;
	enum sbx_seccomp_mode seccomp;
	int handoff_timeout;
	int call_timeout;
	bool no_ring;
};

/* Everything the process holds; the device's callbacks reach the backend and server here. */
struct worker {
	char name[80];
	uv_loop_t loop;
	uv_signal_t sigterm, sigint;
	struct wkr_dev *dev;
	struct wkr_server *srv;
	struct wkr_vfu *vfu;
	struct wkr_backend backend; /* what the server uses: logs, then forwards to `inner` */
	struct wkr_backend inner;
	int exit_code;
	bool loop_ok;
	uint64_t admit_begun_ns; /* when the VMM being admitted was accepted; 0: none */
};

static struct worker W = {.name = "vfio-worker"};

__attribute__((format(printf, 1, 2))) static void wlog(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = snprintf(line, sizeof(line), "%s: ", W.name);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", line);
}

/* ---- the backend as the server sees it: the real one, with the VMM's comings and goings logged */

static int fw_dma_map(void *c, uint64_t iova, uint64_t size, uint64_t off, uint32_t prot, int fd,
		      struct vb_err *err)
{
	return W.inner.ops->dma_map(W.inner.ctx, iova, size, off, prot, fd, err);
}

static int fw_dma_unmap(void *c, uint64_t iova, uint64_t size, struct vb_err *err)
{
	return W.inner.ops->dma_unmap(W.inner.ctx, iova, size, err);
}

static int fw_dma_unmap_all(void *c)
{
	int r = W.inner.ops->dma_unmap_all(W.inner.ctx);

	if (r < 0)
		wlog("dropping the VMM's DMA mappings failed: %s", strerror(-r));
	return r;
}

static int fw_set_irqs(void *c, const struct wkr_irq_set *s)
{
	int r = W.inner.ops->set_irqs(W.inner.ctx, s);

	if (r < 0)
		wlog("SET_IRQS index %u %s failed: %s", s->index, s->disable ? "disable" : "route",
		     strerror(-r));
	return r;
}

static int fw_reset(void *c, struct vb_err *err)
{
	return W.inner.ops->reset(W.inner.ctx, err);
}

static void fw_vmm_state(void *c, bool connected, pid_t pid, uid_t uid)
{
	if (connected && W.admit_begun_ns)
		wlog("VMM pid %d uid %u connected, %.2f ms after its connect (admission, HELLO)",
		     (int)pid, (unsigned)uid, (double)(vb_steps_now_ns() - W.admit_begun_ns) / 1e6);
	else
		wlog("VMM pid %d uid %u %s", (int)pid, (unsigned)uid,
		     connected ? "connected"
			       : "disconnected; its DMA and interrupt routes are dropped");
	W.admit_begun_ns = 0;
	W.inner.ops->vmm_state(W.inner.ctx, connected, pid, uid);
}

/* A broker's decision comes later: its refusals are logged by the link (broker_link.c). */
static int fw_vmm_admit(void *c, int fd, uid_t owner, struct wkr_admit *ret)
{
	int r;

	W.admit_begun_ns = vb_steps_now_ns();
	r = W.inner.ops->vmm_admit(W.inner.ctx, fd, owner, ret);

	if (r < 0)
		wlog("a VMM connection was refused: %s", strerror(-r));
	return r;
}

static void fw_collect(void *c, struct wkr_defer *d)
{
	if (W.inner.ops->collect)
		W.inner.ops->collect(W.inner.ctx, d);
}

static void fw_forget(void *c, struct wkr_defer *d)
{
	if (W.inner.ops->forget)
		W.inner.ops->forget(W.inner.ctx, d);
}

static void vmm_dropped(pid_t pid, uid_t uid, const char *why)
{
	wlog("VMM pid %d uid %u %s", (int)pid, (unsigned)uid, why);
}

static const struct wkr_backend_ops fw_ops = {
    .dma_map = fw_dma_map,
    .dma_unmap = fw_dma_unmap,
    .dma_unmap_all = fw_dma_unmap_all,
    .set_irqs = fw_set_irqs,
    .reset = fw_reset,
    .vmm_state = fw_vmm_state,
    .vmm_admit = fw_vmm_admit,
    .collect = fw_collect,
    .forget = fw_forget,
};

static int dev_set_irqs(void *data, const struct wkr_irq_set *s)
{
	return fw_set_irqs(NULL, s);
}

static void dev_bars_changed(void *data, uint16_t command)
{
	if (W.srv)
		wkr_server_bars_changed(W.srv, command);
}

/* ---- options ------------------------------------------------------------------------------ */

static bool parse_u64(const char *s, uint64_t max, uint64_t *ret)
{
	char *end;
	unsigned long long v;

	errno = 0;
	if (!s || !*s || *s == '-')
		return false;
	v = strtoull(s, &end, 0);
	if (errno || *end || v > max)
		return false;
	*ret = v;
	return true;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
	    {"device-image", required_argument, NULL, 'i'},
	    {"listen", required_argument, NULL, 'l'},
	    {"vfio-user", required_argument, NULL, 'U'},
	    {"owner-uid", required_argument, NULL, 'u'},
	    {"max-dma-mappings", required_argument, NULL, 'm'},
	    {"max-dma-bytes", required_argument, NULL, 'b'},
	    {"seccomp", required_argument, NULL, 's'},
	    {"handoff-timeout", required_argument, NULL, 't'},
	    {"call-timeout", required_argument, NULL, 'c'},
	    {"no-ring", no_argument, NULL, 'R'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {0},
	};
	uint64_t v;
	int c, idx = 0;

	*o = (struct opts){.max_maps = LOCAL_MAPS_DEFAULT,
			   .max_bytes = LOCAL_BYTES_DEFAULT,
			   .seccomp = SBX_SECCOMP_KILL,
			   .handoff_timeout = HANDOFF_TIMEOUT_DEFAULT,
			   .call_timeout = WKR_BROKER_CALL_TIMEOUT_MS};
	while ((c = getopt_long(argc, argv, "h", longopts, &idx)) != -1) {
		switch (c) {
		case 'i':
			o->image = optarg;
			break;
		case 'l':
			o->listen = optarg;
			break;
		case 'U':
			o->vfio_user = optarg;
			break;
		case 'u':
			if (!parse_u64(optarg, UINT32_MAX - 1, &v))
				goto bad;
			o->owner_uid = (uid_t)v;
			o->owner_set = true;
			break;
		case 'm':
			if (!parse_u64(optarg, UINT32_MAX, &v) || v == 0)
				goto bad;
			o->max_maps = (uint32_t)v;
			break;
		case 'b':
			if (!parse_u64(optarg, UINT64_MAX, &v) || v == 0)
				goto bad;
			o->max_bytes = v;
			break;
		case 's':
			if (sbx_seccomp_mode_parse(optarg, &o->seccomp) < 0)
				goto bad;
			break;
		case 't':
			if (!parse_u64(optarg, INT_MAX, &v) || v == 0)
				goto bad;
			o->handoff_timeout = (int)v;
			break;
		case 'c':
			if (!parse_u64(optarg, INT_MAX, &v) || v == 0)
				goto bad;
			o->call_timeout = (int)v;
			break;
		case 'R':
			o->no_ring = true;
			break;
		case 'h':
			fputs(usage, stdout);
			fputs("\n", stdout);
			fputs(help, stdout);
			exit(0);
		case 'V':
			printf("vfio-worker %s\n", VB_VERSION);
			exit(0);
		default:
			fputs(usage, stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vfio-worker: unexpected argument '%s'\n%s", argv[optind], usage);
		return -EINVAL;
	}
	if (!o->image != !(o->listen || o->vfio_user)) {
		fprintf(stderr,
			"vfio-worker: --device-image goes with --listen, --vfio-user or both\n%s",
			usage);
		return -EINVAL;
	}
	if (!o->image && o->owner_set) {
		fprintf(stderr, "vfio-worker: --owner-uid is for standalone mode\n%s", usage);
		return -EINVAL;
	}
	return 0;
bad:
	fprintf(stderr, "vfio-worker: bad value '%s' for --%s\n%s", optarg, longopts[idx].name,
		usage);
	return -EINVAL;
}

/* ---- the common part of both modes -------------------------------------------------------- */

static void on_signal(uv_signal_t *h, int signum)
{
	wlog("%s: ending", strsignal(signum));
	W.exit_code = 0;
	uv_stop(h->loop);
}

static int setup_loop(void)
{
	int r = uv_loop_init(&W.loop);

	if (r < 0)
		return r;
	W.loop_ok = true;
	/* Signal handlers are installed now: sigaction is outside the seccomp policy. They are
	 * never removed for the same reason; the process exits with them in place. */
	uv_signal_init(&W.loop, &W.sigterm);
	uv_signal_init(&W.loop, &W.sigint);
	r = uv_signal_start(&W.sigterm, on_signal, SIGTERM);
	if (r == 0)
		r = uv_signal_start(&W.sigint, on_signal, SIGINT);
	uv_unref((uv_handle_t *)&W.sigterm);
	uv_unref((uv_handle_t *)&W.sigint);
	return r;
}

static int load_seccomp(enum sbx_seccomp_mode mode)
{
	int r = sbx_seccomp_load(SBX_ROLE_WORKER, mode);

	if (r < 0)
		wlog("loading the seccomp filter (%s) failed: %s", sbx_seccomp_mode_name(mode),
		     strerror(-r));
	else if (mode != SBX_SECCOMP_KILL)
		wlog("seccomp filter mode %s: not for production", sbx_seccomp_mode_name(mode));
	return r;
}

static void finish(void)
{
	wkr_server_close(W.srv, NULL, NULL);
	W.srv = NULL;
	wkr_vfu_close(W.vfu, NULL, NULL);
	W.vfu = NULL;
	/* Let libuv run the close callbacks. */
	if (W.loop_ok)
		uv_run(&W.loop, UV_RUN_NOWAIT);
	wkr_dev_free(W.dev);
	W.dev = NULL;
}

static void vfu_note(void *data, const char *line)
{
	wlog("%s", line);
}

/* One VMM per device across both protocols. */
static bool native_busy(void *data)
{
	return wkr_vfu_busy(W.vfu);
}

static bool vfu_busy(void *data)
{
	return wkr_server_busy(W.srv);
}

/* The vfio-user server beside (or instead of) the native one; the worker eventfds are serviced
 * by the native server when there is one. */
static int start_vfu(int listen_fd, const struct wkr_server_cfg *sc)
{
	struct wkr_server_cfg vc = *sc;

	vc.listen_fd = listen_fd;
	vc.irqs_elsewhere = W.srv != NULL;
	vc.busy = vfu_busy;
	vc.busy_data = NULL;
	vc.note = vfu_note;
	return wkr_vfu_new(&vc, &W.vfu);
}

/* ---- the serve path both modes share ---------------------------------------------------- */

/* What a mode hands the serve path: its device, its VMM socket and its backend. */
struct serve {
	const struct wkr_devinfo *info;
	int device_fd; /* stays the mode's */
	/* The VMM sockets, native and vfio-user, -1 for a protocol not served; the servers'
	 * once serve_prepare() has made them (then -1 here). */
	int listen_fd;
	int vfu_fd;
	struct wkr_backend inner;
	struct wkr_server_cfg sc; /* the mode's limits; the rest is filled here */
	/* Runs once the server exists, before the seccomp filter (broker mode starts serving
	 * the broker channel here). NULL for none. */
	int (*attach)(void *ctx);
	void *ctx;
	struct vb_steps steps; /* broker mode: from the HANDOFF's receipt to its answer */
};

/* The fds a mode still holds when it is done (those the servers took are -1 by then). */
static void serve_done(struct serve *s)
{
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	if (s->vfu_fd >= 0)
		close(s->vfu_fd);
	if (s->device_fd >= 0)
		close(s->device_fd);
}

#define SERVE_INIT                                             \
	{                                                      \
		.device_fd = -1, .listen_fd = -1, .vfu_fd = -1 \
	}

/* Builds the device, the loop and the VMM server, then loads the seccomp filter: after this,
 * the process makes no call outside its policy. On failure `err` says which step failed. */
static int serve_prepare(struct serve *s, enum sbx_seccomp_mode seccomp, struct vb_err *err)
{
	struct wkr_callbacks cb = {dev_set_irqs, dev_bars_changed, NULL};
	struct wkr_io io;
	int r;

	W.inner = s->inner;
	W.backend = (struct wkr_backend){&fw_ops, NULL};
	wkr_io_from_fd(&io, s->device_fd);
	r = wkr_dev_new(s->info, &io, &cb, &W.dev);
	if (r < 0)
		return vb_errf(err, r, "the device's config space and regions disagree: %s",
			       strerror(-r));
	vb_steps_mark(&s->steps, "device");
	r = setup_loop();
	if (r < 0)
		return vb_errf(err, r, "event loop: %s", strerror(-r));
	s->sc.loop = &W.loop;
	s->sc.listen_fd = s->listen_fd;
	s->sc.dev = W.dev;
	s->sc.backend = W.backend;
	s->sc.busy = native_busy;
	if (s->listen_fd >= 0) {
		r = wkr_server_new(&s->sc, &W.srv);
		if (r < 0)
			return vb_errf(err, r, "VMM socket: %s", strerror(-r));
		s->listen_fd = -1;
	}
	if (s->vfu_fd >= 0) {
		r = start_vfu(s->vfu_fd, &s->sc);
		if (r < 0)
			return vb_errf(err, r, "vfio-user socket: %s", strerror(-r));
		s->vfu_fd = -1;
	}
	if (s->attach && (r = s->attach(s->ctx)) < 0)
		return vb_errf(err, r, "broker channel: %s", strerror(-r));
	vb_steps_mark(&s->steps, "servers");
	r = load_seccomp(seccomp);
	if (r < 0)
		return vb_errf(err, r, "seccomp: %s", strerror(-r));
	vb_steps_mark(&s->steps, "seccomp");
	return 0;
}

/* Serves until a signal, the broker or a fatal error stops the loop. */
static void serve_run(void)
{
	W.exit_code = 1;
	uv_run(&W.loop, UV_RUN_DEFAULT);
}

/* ---- broker mode -------------------------------------------------------------------------- */

/* The broker channel hanging up is how a worker's life ends (no parent-death signal: a broker
 * restart keeps it, since the fd store or a re-executed broker holds the other end): the last
 * holder of the broker's end is gone, nobody will ever answer or supervise it again. */
static void broker_gone(void *data, int err)
{
	if (err == -EPIPE || err == -ECONNRESET) {
		wlog("broker channel closed: exiting");
		W.exit_code = 0;
	} else {
		wlog("broker channel failed: %s", strerror(-err));
		W.exit_code = 1;
	}
	uv_stop(&W.loop);
}

static void broker_note(void *data, const char *line)
{
	wlog("%s", line);
}

static int broker_attach(void *ctx)
{
	return wkr_broker_start(ctx, &W.loop, W.srv, W.vfu, W.dev, broker_gone, NULL);
}

VB_DEFINE_CLEANUP(struct wkr_broker, wkr_broker_free);
VB_DEFINE_CLEANUP(struct wkr_image, wkr_image_free);
VB_DEFINE_CLEANUP(struct wkr_local, wkr_local_free);

/* What the servers are given in broker mode: the handoff's device, sockets and limits, the
 * broker link as the backend behind the worker's own, and what the command line says. */
static void serve_from_handoff(struct serve *s, const struct wkr_handoff *h, struct wkr_broker *b,
			       const struct opts *o)
{
	s->info = &h->info;
	s->device_fd = h->device_fd;
	s->listen_fd = h->listen_fd;
	s->vfu_fd = h->vfu_fd;
	s->inner = (struct wkr_backend){&wkr_broker_ops, b};
	s->sc = (struct wkr_server_cfg){
	    .allow_mmap = h->allow_mmap,
	    .owner_uid = h->owner_uid,
	    .iommu_pgsize = h->iommu_pgsize,
	    .max_dma_mappings = h->max_dma_mappings,
	    .max_pinned_bytes = h->max_pinned_bytes,
	    .generation = h->generation,
	    .broker_wait_ms = (uint32_t)o->call_timeout,
	    .no_ring = o->no_ring,
	    .dropped = vmm_dropped,
	};
	s->attach = broker_attach;
	s->ctx = b;
}

static int run_broker(const struct opts *o)
{
	_cleanup_(serve_done) struct serve s = SERVE_INIT;
	_cleanup_(ipc_chan_freep) struct ipc_chan *chan = NULL;
	_cleanup_(wkr_broker_freep) struct wkr_broker *b = NULL;
	struct vb_err err = {0};
	struct wkr_handoff h;
	int r;

	r = ipc_chan_new(BROKER_FD, &ipc_proto_broker, NULL, &chan);
	if (r < 0) {
		wlog("fd %d is not a broker channel (%s); for standalone use see --help", BROKER_FD,
		     strerror(-r));
		return 2;
	}
	if (wkr_broker_new(chan, &b) < 0)
		return 1;
	(void)TAKE_PTR(chan); /* the broker link's now */
	wkr_broker_set_call_timeout(b, o->call_timeout);
	wkr_broker_set_note(b, broker_note);
	r = wkr_broker_handoff(b, o->handoff_timeout, &h, &err);
	if (r == -EPIPE || r == -ECONNRESET) {
		wlog("broker channel closed: exiting");
		return 0;
	}
	if (r < 0) {
		wlog("handoff: %s", err.msg);
		return 1;
	}
	vb_steps_begin(&s.steps);
	snprintf(W.name, sizeof(W.name), "vfio-worker[%s]", h.info.bdf);
	/* A worker started ahead of its device (prestart) has the configured ceiling of open
	 * files; the device's own need is lower, and lowering is always allowed, before the
	 * first file of the device is opened. */
	if (h.rlimit_nofile &&
	    setrlimit(RLIMIT_NOFILE, &(struct rlimit){h.rlimit_nofile, h.rlimit_nofile}) < 0) {
		vb_errf(&err, -errno, "cannot set RLIMIT_NOFILE to %llu: %s",
			(unsigned long long)h.rlimit_nofile, strerror(errno));
		wlog("handoff: %s", err.msg);
		wkr_broker_handoff_answer(b, &err);
		return 1;
	}
	serve_from_handoff(&s, &h, b, o);
	r = serve_prepare(&s, o->seccomp, &err);
	if (r < 0) {
		wlog("%s", err.msg);
		wkr_broker_handoff_answer(b, &err);
	} else {
		r = wkr_broker_handoff_answer(b, NULL);
		vb_steps_mark(&s.steps, "answer");
		wlog("serving %s for VM %s (generation %u, mmap %s, protocol %s), answered %.2f ms "
		     "after the HANDOFF: %s",
		     h.info.bdf, h.vm, h.generation, h.allow_mmap ? "allowed" : "not allowed",
		     h.native && h.vfio_user ? "both"
		     : h.vfio_user	     ? "vfio-user"
					     : "native",
		     vb_steps_total_ms(&s.steps), s.steps.text);
		if (r == 0)
			serve_run();
		else
			W.exit_code = 1;
	}
	/* The servers, then the broker link, then what their closing left to the loop; the fds
	 * still held go last, with `s`. */
	finish();
	wkr_broker_free(TAKE_PTR(b));
	if (W.loop_ok)
		uv_run(&W.loop, UV_RUN_NOWAIT);
	return r < 0 ? 1 : W.exit_code;
}

/* ---- standalone mode ---------------------------------------------------------------------- */

static int run_standalone(const struct opts *o)
{
	/* Released in the reverse order: the accounting, the image, then the fds. */
	_cleanup_(serve_done) struct serve s = SERVE_INIT;
	_cleanup_(wkr_image_freep) struct wkr_image *img = NULL;
	_cleanup_(wkr_local_freep) struct wkr_local *local = NULL;
	const struct wkr_devinfo *info;
	struct vb_err ierr = {0};
	struct vb_err err = {0};
	int r;

	r = wkr_image_load(o->image, &img, &ierr);
	if (r < 0) {
		wlog("%s: %s", o->image, vb_err_msg(&ierr, r));
		return 1;
	}
	info = wkr_image_info(img);
	snprintf(W.name, sizeof(W.name), "vfio-worker[%s]", info->name[0] ? info->name : o->image);
	s.info = info;
	s.sc = (struct wkr_server_cfg){
	    .allow_mmap = true,
	    .owner_uid = o->owner_set ? o->owner_uid : getuid(),
	    .dropped = vmm_dropped,
	    .iommu_pgsize = 4096,
	    .max_dma_mappings = o->max_maps,
	    .max_pinned_bytes = o->max_bytes,
	    .no_ring = o->no_ring,
	};
	r = wkr_image_build(img, &s.device_fd);
	if (r < 0)
		vb_errf(&err, r, "building the device memfd: %s", strerror(-r));
	if (r == 0 && (r = wkr_local_new(img, s.device_fd, o->max_maps, o->max_bytes, &local)) < 0)
		vb_errf(&err, r, "local DMA and IRQ accounting: %s", strerror(-r));
	if (r == 0 && o->listen && (r = ipc_listen(o->listen, 0600, 4, &s.listen_fd)) < 0)
		vb_errf(&err, r, "%s: %s", o->listen, strerror(-r));
	if (r == 0 && o->vfio_user && (r = ipc_listen_stream(o->vfio_user, 0600, 4, &s.vfu_fd)) < 0)
		vb_errf(&err, r, "%s: %s", o->vfio_user, strerror(-r));
	if (r == 0) {
		s.inner = (struct wkr_backend){&wkr_local_ops, local};
		r = serve_prepare(&s, o->seccomp, &err);
	}
	if (r == 0) {
		wlog("serving image %s on%s%s%s%s", o->image, o->listen ? " " : "",
		     o->listen ? o->listen : "", o->vfio_user ? " (vfio-user) " : "",
		     o->vfio_user ? o->vfio_user : "");
		serve_run();
	} else {
		wlog("%s", err.msg);
		W.exit_code = 1;
	}
	finish();
	return W.exit_code;
}

int main(int argc, char **argv)
{
	struct opts o;

	if (parse_opts(argc, argv, &o) < 0)
		return 2;
	return o.image ? run_standalone(&o) : run_broker(&o);
}
