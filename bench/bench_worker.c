/*
 * bench_worker: the cost of the trap path. A VMM reading config space or a trapped BAR through
 * libvfiobroker goes VMM -> unix socket -> vfio-worker (seccomp-confined, libuv loop, config
 * virtualization) -> pread on the device fd -> back.
 *
 * A 4-byte access is compared with the least a round trip to another process can cost: a raw
 * SOCK_SEQPACKET ping-pong with an echo process (blocking send and recv on both ends) of
 * datagrams of exactly the request's and the reply's sizes on the wire. The ratio is what
 * libvfiobroker, ipc, protobuf, the worker's loop and its device model add to the socket.
 * A long read is compared with one pread of the same bytes from a memfd laid out like the
 * device fd (wkr_image_build() of the image the worker serves): what a VMM holding the device
 * fd itself would pay, which is what mapping the BAR instead saves.
 *
 *   cfg_read_4B      vfb_dev_cfg_read() of 4 bytes at 0x00  vs raw_seqpacket_pingpong_<req>B_<rep>B
 *   bar_read_4B      vfb_dev_region_read() of BAR0 + 0      vs raw_seqpacket_pingpong_<req>B_<rep>B
 *   bar_read_64KiB   vfb_dev_region_read() of 64 KiB        vs one pread of 64 KiB
 *
 * over the socket (the handle connected with VFB_DEV_CONNECT_NO_RING), and the two 4-byte
 * accesses through the shared-memory ring (ipc/ipc_ring.h) of a second worker of the same image,
 * against the same raw ping-pong of the socket's bytes (issue 15, P1+):
 *
 *   ring_cfg_read_4B, ring_bar_read_4B
 *   ring_worker_cpu_idle   the ring worker's CPU time (/proc/<pid>/schedstat) in a second that
 *                          starts with one access through the ring, against one CPU-second:
 *                          what its spin window after an answer costs an idle VMM (`_2cpu`
 *                          only: on one CPU nothing spins)
 *
 * Each runs in both placements of bench_placements(): the VMM (this process) on the first CPU,
 * the workers and the echo process on the same one (`_1cpu`), then on the second (`_2cpu`); the
 * pread baseline runs on the VMM's CPU.
 *
 * Usage: bench_worker [WORKER [IMAGE]] (defaults: this build's vfio-worker,
 * tests/fixtures/edu.img).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base.h"
#include "bench.h"
#include "devimg.h"
#include "device.pb-c.h"
#include "ipc.h"
#include "proc.h"

#define BIG (64u * 1024u)

struct trap {
	struct vfb_dev *dev;
	int memfd;
	uint32_t region;
	uint64_t offset;
	size_t len;
	size_t piece; /* bytes per vfb_dev_region_read() call: len, unless the worker refuses it */
	uint8_t *buf;
	int echo; /* this end of the raw pair; the echo process answers on the other */
	pid_t echo_pid;
	size_t req_len;	  /* the raw baseline's datagram sizes: those of the access's request */
	size_t reply_len; /* and of its reply, header included */
};

static int via_worker_cfg(void *ctx, uint64_t n)
{
	struct trap *t = ctx;
	int r;

	for (uint64_t i = 0; i < n; i++) {
		r = vfb_dev_cfg_read(t->dev, (uint32_t)t->offset, t->buf, t->len);
		if (r < 0)
			return r;
	}
	return 0;
}

static int via_worker_bar(void *ctx, uint64_t n)
{
	struct trap *t = ctx;
	int r;

	for (uint64_t i = 0; i < n; i++) {
		for (size_t at = 0; at < t->len; at += t->piece) {
			size_t k = t->len - at < t->piece ? t->len - at : t->piece;

			r = vfb_dev_region_read(t->dev, t->region, t->offset + at, t->buf + at, k);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

/*
 * libvfiobroker splits long region accesses by the worker's message limit (64 KiB), but the
 * worker refuses an access longer than WKR_ACCESS_MAX (4 KiB) with -EINVAL. Rather than report
 * nothing, long reads are measured as the VMM can make them today, in pieces the worker takes,
 * and the run says so.
 */
static size_t piece_for(struct trap *t)
{
	int r = vfb_dev_region_read(t->dev, t->region, t->offset, t->buf, t->len);

	if (r == -EINVAL && t->len > WKR_ACCESS_MAX) {
		printf("note: the worker refuses a %zu-byte region read (-EINVAL); measuring %zu "
		       "reads of %u bytes (WKR_ACCESS_MAX)\n",
		       t->len, t->len / WKR_ACCESS_MAX, WKR_ACCESS_MAX);
		return WKR_ACCESS_MAX;
	}
	return t->len;
}

static int via_pread(void *ctx, uint64_t n)
{
	struct trap *t = ctx;
	off_t at = (off_t)(WKR_REGION_OFFSET(t->region) + t->offset);

	for (uint64_t i = 0; i < n; i++) {
		ssize_t k = pread(t->memfd, t->buf, t->len, at);

		if (k < 0)
			return -errno;
		if ((size_t)k != t->len)
			return -EIO;
	}
	return 0;
}

static int via_raw(void *ctx, uint64_t n)
{
	struct trap *t = ctx;
	uint8_t req[64] = {0}, rep[64];

	for (uint64_t i = 0; i < n; i++) {
		ssize_t k;

		if (send(t->echo, req, t->req_len, MSG_NOSIGNAL) < 0)
			return -errno;
		k = recv(t->echo, rep, sizeof(rep), 0);
		if (k < 0)
			return -errno;
		if ((size_t)k != t->reply_len)
			return -EIO;
	}
	return 0;
}

static void echo_stop(struct trap *t)
{
	bench_echo_stop(t->echo, t->echo_pid);
	t->echo = -1;
	t->echo_pid = 0;
}

/* Forks the echo process, answering with the reply's size, and pins it where the worker runs. */
static int echo_start(struct trap *t, int cpu)
{
	int r = bench_echo_start(t->reply_len, &t->echo, &t->echo_pid);

	if (r == 0)
		r = bench_pin_process(t->echo_pid, cpu);
	if (r < 0)
		echo_stop(t);
	return r;
}

/* The datagram sizes of a 4-byte read on the wire, as libvfiobroker and the worker send them. */
static void access_sizes(uint32_t region, uint64_t offset, size_t len, struct trap *t)
{
	uint8_t data[4] = {0};
	Vb__Dev__Data rep = VB__DEV__DATA__INIT;

	rep.data.data = data;
	rep.data.len = len;
	t->reply_len = IPC_HDR_SIZE + protobuf_c_message_get_packed_size(&rep.base);
	if (region == VFIO_PCI_CONFIG_REGION_INDEX) {
		Vb__Dev__CfgRead req = VB__DEV__CFG_READ__INIT;

		req.offset = (uint32_t)offset;
		req.size = (uint32_t)len;
		t->req_len = IPC_HDR_SIZE + protobuf_c_message_get_packed_size(&req.base);
	} else {
		Vb__Dev__RegionRead req = VB__DEV__REGION_READ__INIT;

		req.index = region;
		req.offset = offset;
		req.size = (uint32_t)len;
		t->req_len = IPC_HDR_SIZE + protobuf_c_message_get_packed_size(&req.base);
	}
}

struct trap_case {
	const char *name, *baseline; /* baseline NULL: the raw ping-pong of the access's sizes */
	bench_fn figure;
	uint32_t region;
	uint64_t offset;
	size_t len;
	bool ring; /* through the ring worker's handle */
};

static int run_cases(struct trap *t, struct vfb_dev *const devs[2], const struct trap_case *cases,
		     size_t ncases, const struct bench_placement *pl)
{
	char name[64], base[64];
	int r, failed = 0;

	for (size_t i = 0; i < ncases; i++) {
		const struct trap_case *c = &cases[i];

		t->dev = devs[c->ring];
		t->region = c->region;
		t->offset = c->offset;
		t->len = c->len;
		t->piece = c->figure == via_worker_bar ? piece_for(t) : c->len;
		if (t->piece < t->len)
			snprintf(name, sizeof(name), "%s_by_%zuB", c->name, t->piece);
		else
			snprintf(name, sizeof(name), "%s", c->name);
		if (!c->baseline) {
			access_sizes(c->region, c->offset, c->len, t);
			snprintf(base, sizeof(base), "raw_seqpacket_pingpong_%zuB_%zuB", t->req_len,
				 t->reply_len);
			r = echo_start(t, pl->server);
			if (r < 0) {
				bench_fail(name, "echo process on CPU %d: %s", pl->server,
					   strerror(-r));
				failed = 1;
				continue;
			}
		}
		r = bench_run_placed(
		    &(struct bench_pair){.name = name,
					 .baseline = c->baseline ? c->baseline : base,
					 .figure = c->figure,
					 .base = c->baseline ? via_pread : via_raw,
					 .ctx = t},
		    pl);
		echo_stop(t);
		failed |= r < 0;
	}
	return failed;
}

/* The ring worker's CPU over a second that starts with one access through its ring. */
static int ring_idle_cpu(struct trap *t, struct vfb_dev *dev, pid_t pid, const char *suffix)
{
	struct bench_stats fig, second = {.median = 1e9, .p99 = 1e9, .iterations = 1};
	uint64_t c0, c1;
	char name[64];
	int r = bench_cpu_ns(pid, &c0);

	if (r == 0)
		r = vfb_dev_cfg_read(dev, 0, t->buf, 4);
	if (r < 0)
		return r;
	bench_sleep_ns(1000000000u);
	r = bench_cpu_ns(pid, &c1);
	if (r < 0)
		return r;
	fig = (struct bench_stats){
	    .median = (double)(c1 - c0), .p99 = (double)(c1 - c0), .iterations = 1};
	snprintf(name, sizeof(name), "ring_worker_cpu_idle%s", suffix);
	bench_report(name, &fig, "one_cpu_second", &second, "ns");
	return 0;
}

/* Connects to a started worker, with or without offering a ring; a ring must be taken. The
 * socket exists from its bind(), a moment before the worker listens: a refusal is tried again. */
static int connect_worker(struct bproc_worker *w, bool ring)
{
	uint32_t flags = ring ? 0 : VFB_DEV_CONNECT_NO_RING;
	int r = -ECONNREFUSED;

	for (int i = 0; i < 500 && r == -ECONNREFUSED; i++) {
		r = vfb_dev_connect(w->sock, "vb-bench", flags, &w->dev);
		if (r == -ECONNREFUSED)
			usleep(10000);
	}

	if (r == 0 && ring && !vfb_dev_ring_active(w->dev)) {
		snprintf(w->why, sizeof(w->why), "no ring: %s", vfb_dev_ring_reason(w->dev));
		r = -EPROTO;
	}
	return r;
}

int main(int argc, char **argv)
{
	const char *worker = argc > 1 ? argv[1] : VB_WORKER_PATH;
	const char *image = argc > 2 ? argv[2] : VB_FIXTURES "/edu.img";
	const struct trap_case cases[] = {
	    {"cfg_read_4B", NULL, via_worker_cfg, VFIO_PCI_CONFIG_REGION_INDEX, 0, 4, false},
	    {"bar_read_4B", NULL, via_worker_bar, 0, 0, 4, false},
	    {"bar_read_64KiB", "pread_memfd_bar0_64KiB", via_worker_bar, 0, 0, BIG, false},
	    {"ring_cfg_read_4B", NULL, via_worker_cfg, VFIO_PCI_CONFIG_REGION_INDEX, 0, 4, true},
	    {"ring_bar_read_4B", NULL, via_worker_bar, 0, 0, 4, true},
	};
	struct vb_err err = {0};
	struct wkr_image *img = NULL;
	struct bproc_worker w, wr = {.pid = 0};
	struct vfb_dev *devs[2];
	struct trap t = {.memfd = -1, .echo = -1};
	int r, failed = 0;
	struct bench_placement pl[BENCH_PLACEMENTS_MAX];
	int npl;

	bench_header(
	    "trap path: libvfiobroker -> vfio-worker (standalone) against pread of a memfd");
	t.buf = malloc(BIG);
	if (!t.buf)
		return 1;
	r = wkr_image_load(image, &img, &err);
	if (r == 0)
		r = wkr_image_build(img, &t.memfd);
	if (r < 0) {
		for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
			bench_fail(cases[i].name, "image %s: %s", image, vb_err_msg(&err, r));
		free(t.buf);
		return 1;
	}
	r = bproc_worker_start(worker, image, false, &w);
	if (r == 0)
		r = connect_worker(&w, false);
	if (r == 0)
		r = bproc_worker_start(worker, image, false, &wr);
	if (r == 0)
		r = connect_worker(&wr, true);
	if (r < 0) {
		const char *why = wr.why[0] ? wr.why : w.why;

		for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
			bench_fail(cases[i].name, "starting %s: %s%s%s", worker, strerror(-r),
				   why[0] ? ": " : "", why);
		failed = 1;
		goto stop;
	}
	devs[0] = w.dev;
	devs[1] = wr.dev;
	npl = bench_placements(pl);
	if (npl < 0) {
		for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
			bench_fail(cases[i].name, "the CPUs this process may use: %s",
				   strerror(-npl));
		failed = 1;
	}
	for (int k = 0; k < npl; k++) {
		/* The echo process is pinned with the worker (run_cases()); the pread baseline runs
		 * on the VMM's CPU: it has no other end. */
		r = bench_pin_self(pl[k].client);
		if (r == 0)
			r = bench_pin_process(w.pid, pl[k].server);
		if (r == 0)
			r = bench_pin_process(wr.pid, pl[k].server);
		if (r < 0) {
			for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
				bench_fail(cases[i].name, "pinning to CPUs %d and %d: %s",
					   pl[k].client, pl[k].server, strerror(-r));
			failed = 1;
			break;
		}
		failed |= run_cases(&t, devs, cases, ARRAY_SIZE(cases), &pl[k]);
		if (pl[k].client == pl[k].server)
			continue;
		r = ring_idle_cpu(&t, wr.dev, wr.pid, pl[k].suffix);
		if (r < 0) {
			bench_fail("ring_worker_cpu_idle", "%s", strerror(-r));
			failed = 1;
		}
	}
stop:
	if (wr.pid > 0)
		bproc_worker_stop(&wr);
	if (w.pid > 0)
		bproc_worker_stop(&w);
	close(t.memfd);
	wkr_image_free(img);
	free(t.buf);
	return failed;
}
