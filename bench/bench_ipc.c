/*
 * bench_ipc: what the ipc layer costs on top of the socket it wraps.
 *
 *   ipc_call_*        ipc_chan_call() request/reply with a small vb.dev.Data body, against a
 *                     raw SOCK_SEQPACKET send/recv ping-pong of datagrams of the same sizes;
 *   ipc_fds{1,8}_*    the same with 1 and 8 fds in the request, against raw sendmsg/recvmsg
 *                     with SCM_RIGHTS (the receiver closes the fds on both sides);
 *   decode_arena_*    protobuf-c unpack into the bounded per-message arena, against protobuf-c's
 *                     default allocator (unpack + free_unpacked);
 *   ipc_recv_*        ipc_chan_recv() of queued, well-formed request datagrams, against
 *                     recv() + protobuf_c_message_unpack() of the same datagrams.
 *
 * Each peer is a thread of this process with its own channel (channels are single-threaded).
 * The round trips run in each placement of bench_placements() (`_1cpu`, `_2cpu`); the decode and
 * receive benchmarks have no peer and run afterwards on the timing thread's CPU.
 * Reaches into ipc_internal.h for the arena and the header codec: the arena is not public, and
 * the recv benchmark needs datagrams built independently of the channel that reads them.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base.h"
#include "bench.h"
#include "broker.pb-c.h"
#include "common.pb-c.h"
#include "device.pb-c.h"
#include "ipc.h"
#include "ipc_internal.h"

enum {
	B_PING = 1, /* Data -> Data */
	B_FDS = 2,  /* Data + up to 8 fds -> Empty */
};

#define BENCH_PROTO_VERSION 1
#define PAYLOAD		    32 /* bytes of Data.data: a config or small BAR access and then some */
#define MAX_FDS		    8

static const struct ipc_msgdef bench_defs[] = {
    {B_PING, &vb__dev__data__descriptor, &vb__dev__data__descriptor, 0, 0},
    {B_FDS, &vb__dev__data__descriptor, &vb__empty__descriptor, MAX_FDS, 0},
};

static const struct ipc_proto bench_proto = {
    .name = "bench",
    .id = IPC_PROTO_TEST,
    .version = BENCH_PROTO_VERSION,
    .defs = bench_defs,
    .ndefs = ARRAY_SIZE(bench_defs),
};

static uint8_t payload[PAYLOAD];

static Vb__Dev__Data data_body(void)
{
	Vb__Dev__Data d = VB__DEV__DATA__INIT;

	d.data.data = payload;
	d.data.len = sizeof(payload);
	return d;
}

/* ---- peers ------------------------------------------------------------------------------ */

/* Answers every request on its channel until the client hangs up: PING with the same body,
 * FDS with an empty reply (the fds are closed by ipc_msg_free()). Like the worker's loop, it
 * waits for readability, then receives one message: a receive on an empty socket first would
 * be a system call the worker does not make. */
static void *ipc_server(void *arg)
{
	struct ipc_chan *c = arg;
	struct pollfd pfd = {.fd = ipc_chan_fd(c), .events = POLLIN};
	struct ipc_msg *m;
	int r;

	for (;;) {
		if (poll(&pfd, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		r = ipc_chan_recv(c, &m);
		if (r == -EAGAIN)
			continue;
		if (r < 0)
			break;
		r = ipc_chan_reply(c, m, m->type == B_PING ? m->body : NULL, NULL, 0);
		ipc_msg_free(m);
		if (r < 0)
			break;
	}
	ipc_chan_free(c);
	return NULL;
}

/* Raw echo: answers each datagram with one of `reply_len` bytes (0: echo it), closing any fds
 * that came with it, until the peer hangs up. */
struct raw_server {
	int fd;
	size_t reply_len;
};

static void *raw_server(void *arg)
{
	struct raw_server *s = arg;
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
	} ctl;
	uint8_t buf[4096];

	for (;;) {
		struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
		struct msghdr mh = {.msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = ctl.buf,
				    .msg_controllen = sizeof(ctl.buf)};
		ssize_t n = recvmsg(s->fd, &mh, MSG_CMSG_CLOEXEC);

		if (n <= 0)
			break;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			int fds[MAX_FDS];

			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS ||
			    k > MAX_FDS)
				continue;
			memcpy(fds, CMSG_DATA(cm), k * sizeof(int));
			for (size_t i = 0; i < k; i++)
				close(fds[i]);
		}
		if (send(s->fd, buf, s->reply_len ? s->reply_len : (size_t)n, MSG_NOSIGNAL) < 0)
			break;
	}
	close(s->fd);
	return NULL;
}

/* ---- round trips ------------------------------------------------------------------------ */

struct rt {
	struct ipc_chan *chan;
	int raw; /* client end of the raw pair */
	pthread_t ipc_thread, raw_thread;
	struct raw_server rs;
	size_t req_len;	  /* bytes of the ipc request datagram, header included */
	size_t reply_len; /* bytes of its reply */
	int fds[MAX_FDS];
	size_t nfds;
	bool started_ipc, started_raw;
};

static int rt_ipc(void *ctx, uint64_t n)
{
	struct rt *t = ctx;
	Vb__Dev__Data d = data_body();
	struct ipc_msg *m;
	int r;

	for (uint64_t i = 0; i < n; i++) {
		r = ipc_chan_call(t->chan, t->nfds ? B_FDS : B_PING, &d.base, t->fds, t->nfds, 5000,
				  &m, NULL);
		if (r < 0)
			return r;
		ipc_msg_free(m);
	}
	return 0;
}

static int rt_raw(void *ctx, uint64_t n)
{
	struct rt *t = ctx;
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
	} ctl;
	uint8_t req[256] = {0}, rep[256];

	for (uint64_t i = 0; i < n; i++) {
		struct iovec iov = {.iov_base = req, .iov_len = t->req_len};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

		if (t->nfds) {
			struct cmsghdr *cm;

			memset(&ctl, 0, sizeof(ctl));
			mh.msg_control = ctl.buf;
			mh.msg_controllen = CMSG_SPACE(sizeof(int) * t->nfds);
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int) * t->nfds);
			memcpy(CMSG_DATA(cm), t->fds, sizeof(int) * t->nfds);
		}
		if (sendmsg(t->raw, &mh, MSG_NOSIGNAL) < 0)
			return -errno;
		if (recv(t->raw, rep, sizeof(rep), 0) < 0)
			return -errno;
	}
	return 0;
}

static size_t packed(const ProtobufCMessage *m)
{
	return IPC_HDR_SIZE + protobuf_c_message_get_packed_size(m);
}

static int rt_start(struct rt *t, size_t nfds)
{
	Vb__Dev__Data d = data_body();
	Vb__Empty e = VB__EMPTY__INIT;
	int sv[2], r;
	struct ipc_chan *srv;

	memset(t, 0, sizeof(*t));
	t->raw = -1;
	for (size_t i = 0; i < MAX_FDS; i++)
		t->fds[i] = -1;
	t->nfds = nfds;
	for (size_t i = 0; i < nfds; i++) {
		t->fds[i] = eventfd(0, EFD_CLOEXEC);
		if (t->fds[i] < 0)
			return -errno;
	}
	t->req_len = packed(&d.base);
	t->reply_len = nfds ? packed(&e.base) : t->req_len;

	r = ipc_socketpair(sv);
	if (r < 0)
		return r;
	r = ipc_chan_new(sv[0], &bench_proto, NULL, &t->chan);
	if (r < 0) {
		close(sv[0]);
		close(sv[1]);
		return r;
	}
	/* As libvfiobroker's channels: a call waits for its answer in recvmsg(). */
	r = ipc_chan_wait_in_recv(t->chan);
	if (r < 0) {
		close(sv[1]);
		return r;
	}
	r = ipc_chan_new(sv[1], &bench_proto, NULL, &srv);
	if (r < 0) {
		close(sv[1]);
		return r;
	}
	r = -pthread_create(&t->ipc_thread, NULL, ipc_server, srv);
	if (r < 0) {
		ipc_chan_free(srv);
		return r;
	}
	t->started_ipc = true;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	t->raw = sv[0];
	t->rs = (struct raw_server){.fd = sv[1], .reply_len = t->reply_len};
	r = -pthread_create(&t->raw_thread, NULL, raw_server, &t->rs);
	if (r < 0) {
		close(sv[1]);
		return r;
	}
	t->started_raw = true;
	return 0;
}

static void rt_stop(struct rt *t)
{
	/* Hanging up ends both servers. */
	ipc_chan_free(t->chan);
	if (t->raw >= 0)
		shutdown(t->raw, SHUT_RDWR);
	if (t->started_ipc)
		pthread_join(t->ipc_thread, NULL);
	if (t->started_raw)
		pthread_join(t->raw_thread, NULL);
	if (t->raw >= 0)
		close(t->raw);
	for (size_t i = 0; i < MAX_FDS; i++)
		if (t->fds[i] >= 0)
			close(t->fds[i]);
}

static int bench_roundtrip(size_t nfds)
{
	char name[64], base[64];
	struct rt t;
	int r;
	struct bench_placement pl[BENCH_PLACEMENTS_MAX];
	int npl;

	if (nfds)
		snprintf(name, sizeof(name), "ipc_call_%zufd", nfds);
	else
		snprintf(name, sizeof(name), "ipc_call_%dB", PAYLOAD);
	r = rt_start(&t, nfds);
	if (r < 0) {
		bench_fail(name, "setup: %s", strerror(-r));
		rt_stop(&t);
		return r;
	}
	if (nfds)
		snprintf(base, sizeof(base), "raw_scm_rights_%zufd_%zuB", nfds, t.req_len);
	else
		snprintf(base, sizeof(base), "raw_seqpacket_pingpong_%zuB", t.req_len);
	npl = bench_placements(pl);
	if (npl < 0) {
		bench_fail(name, "the CPUs this process may use: %s", strerror(-npl));
		rt_stop(&t);
		return npl;
	}
	for (int i = 0; i < npl && r == 0; i++) {
		/* Both servers on the answering CPU: the ipc and the raw side see the same
		 * placement. */
		r = bench_pin_self(pl[i].client);
		if (r == 0)
			r = bench_pin_thread(t.ipc_thread, pl[i].server);
		if (r == 0)
			r = bench_pin_thread(t.raw_thread, pl[i].server);
		if (r < 0) {
			bench_fail(name, "pinning to CPUs %d and %d: %s", pl[i].client,
				   pl[i].server, strerror(-r));
			break;
		}
		r = bench_run_placed(&(struct bench_pair){.name = name,
							  .baseline = base,
							  .figure = rt_ipc,
							  .base = rt_raw,
							  .ctx = &t},
				     &pl[i]);
	}
	rt_stop(&t);
	return r;
}

/* ---- decoding --------------------------------------------------------------------------- */

struct dec {
	const ProtobufCMessageDescriptor *desc;
	uint8_t *buf;
	size_t len;
};

static int dec_arena(void *ctx, uint64_t n)
{
	struct dec *d = ctx;

	for (uint64_t i = 0; i < n; i++) {
		/* As the receive path does: the message and its arena, then the unpack into it. */
		struct ipc_msg *m = ipc__msg_new(0, ipc_limits_default.decode_budget);
		bool ok;

		if (!m)
			return -ENOMEM;
		m->body = protobuf_c_message_unpack(d->desc, &ipc__msg_box(m)->arena.allocator,
						    d->len, d->buf);
		ok = m->body != NULL;

		ipc_msg_free(m);
		if (!ok)
			return -EBADMSG;
	}
	return 0;
}

static int dec_default(void *ctx, uint64_t n)
{
	struct dec *d = ctx;

	for (uint64_t i = 0; i < n; i++) {
		ProtobufCMessage *m = protobuf_c_message_unpack(d->desc, NULL, d->len, d->buf);

		if (!m)
			return -EBADMSG;
		protobuf_c_message_free_unpacked(m, NULL);
	}
	return 0;
}

static int pack_into(const ProtobufCMessage *m, struct dec *d)
{
	d->desc = m->descriptor;
	d->len = protobuf_c_message_get_packed_size(m);
	d->buf = malloc(d->len ? d->len : 1);
	if (!d->buf)
		return -ENOMEM;
	protobuf_c_message_pack(m, d->buf);
	return 0;
}

/* A HANDOFF as the broker sends it for a device with every region and IRQ index: the largest
 * message of the protocols, with the most sub-messages. */
#define HO_REGIONS 9
#define HO_IRQS	   5
struct handoff {
	Vb__Brk__Handoff h;
	Vb__Region r[HO_REGIONS], *rp[HO_REGIONS];
	Vb__MmapArea a[HO_REGIONS][2], *ap[HO_REGIONS][2];
	Vb__Irq q[HO_IRQS], *qp[HO_IRQS];
	Vb__Limits lim;
};

static void handoff_fill(struct handoff *x)
{
	vb__brk__handoff__init(&x->h);
	vb__limits__init(&x->lim);
	x->lim.max_message_bytes = 65536;
	x->lim.max_fds = 16;
	x->h.version = 1;
	x->h.bdf = "0000:00:03.0";
	x->h.vm = "bench-vm";
	x->h.device_flags = 0x3;
	x->h.limits = &x->lim;
	x->h.iommu_pgsize = 4096;
	x->h.owner_uid = 1000;
	x->h.owner_gid = 1000;
	for (int i = 0; i < HO_REGIONS; i++) {
		vb__region__init(&x->r[i]);
		x->r[i].index = (uint32_t)i;
		x->r[i].flags = 0x7;
		x->r[i].size = 0x100000;
		x->r[i].offset = (uint64_t)i << 40;
		for (int k = 0; k < 2; k++) {
			vb__mmap_area__init(&x->a[i][k]);
			x->a[i][k].offset = (uint64_t)k * 0x8000;
			x->a[i][k].size = 0x4000;
			x->ap[i][k] = &x->a[i][k];
		}
		x->r[i].n_mmap_areas = 2;
		x->r[i].mmap_areas = x->ap[i];
		x->rp[i] = &x->r[i];
	}
	for (int i = 0; i < HO_IRQS; i++) {
		vb__irq__init(&x->q[i]);
		x->q[i].index = (uint32_t)i;
		x->q[i].flags = 0x9;
		x->q[i].count = i == 2 ? 2048 : 1;
		x->qp[i] = &x->q[i];
	}
	x->h.n_regions = HO_REGIONS;
	x->h.regions = x->rp;
	x->h.n_irqs = HO_IRQS;
	x->h.irqs = x->qp;
}

static int bench_decode(void)
{
	struct handoff ho;
	Vb__Dev__Data d = data_body();
	struct dec small = {0}, big = {0};
	char name[64], base[64];
	int r, ret = 0;

	handoff_fill(&ho);
	if (pack_into(&d.base, &small) < 0 || pack_into(&ho.h.base, &big) < 0) {
		bench_fail("decode_arena", "out of memory");
		ret = -ENOMEM;
		goto out;
	}
	snprintf(name, sizeof(name), "decode_arena_data_%zuB", small.len);
	snprintf(base, sizeof(base), "decode_malloc_data_%zuB", small.len);
	r = bench_run(&(struct bench_pair){.name = name,
					   .baseline = base,
					   .figure = dec_arena,
					   .base = dec_default,
					   .ctx = &small});
	ret = ret ? ret : r;
	snprintf(name, sizeof(name), "decode_arena_handoff_%zuB", big.len);
	snprintf(base, sizeof(base), "decode_malloc_handoff_%zuB", big.len);
	r = bench_run(&(struct bench_pair){
	    .name = name, .baseline = base, .figure = dec_arena, .base = dec_default, .ctx = &big});
	ret = ret ? ret : r;
out:
	free(small.buf);
	free(big.buf);
	return ret;
}

/* ---- the receive path ------------------------------------------------------------------- */

/* Datagrams are queued (untimed) by the writer end, then read (timed) by one side. A batch is
 * bounded by what the socket buffer holds without blocking the writer. */
#define RECV_BATCH 64

struct rcv {
	int wr_chan, wr_raw; /* writer ends */
	int rd_raw;	     /* reader end of the raw pair */
	struct ipc_chan *chan;
	uint8_t dgram[IPC_HDR_SIZE + 64];
	size_t len;
	uint32_t next_id;
};

static int rcv_queue(int fd, struct rcv *x, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		struct ipc__hdr h = {.magic = IPC_MAGIC,
				     .proto = IPC_PROTO_TEST,
				     .version = BENCH_PROTO_VERSION,
				     .type = B_PING,
				     .kind = IPC_KIND_REQUEST,
				     .id = ++x->next_id,
				     .len = (uint32_t)(x->len - IPC_HDR_SIZE)};

		ipc__hdr_encode(&h, x->dgram);
		if (send(fd, x->dgram, x->len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			return -errno;
	}
	return 0;
}

static int rcv_prep_chan(void *ctx, uint64_t n)
{
	struct rcv *x = ctx;

	return rcv_queue(x->wr_chan, x, n);
}

static int rcv_prep_raw(void *ctx, uint64_t n)
{
	struct rcv *x = ctx;

	return rcv_queue(x->wr_raw, x, n);
}

static int rcv_chan(void *ctx, uint64_t n)
{
	struct rcv *x = ctx;
	struct ipc_msg *m;
	int r;

	for (uint64_t i = 0; i < n; i++) {
		r = ipc_chan_recv(x->chan, &m);
		if (r < 0)
			return r;
		ipc_msg_free(m);
	}
	return 0;
}

static int rcv_raw(void *ctx, uint64_t n)
{
	struct rcv *x = ctx;
	uint8_t buf[256];

	for (uint64_t i = 0; i < n; i++) {
		ssize_t k = recv(x->rd_raw, buf, sizeof(buf), MSG_DONTWAIT);
		ProtobufCMessage *m;

		if (k < 0)
			return -errno;
		if (k < IPC_HDR_SIZE)
			return -EBADMSG;
		m = protobuf_c_message_unpack(&vb__dev__data__descriptor, NULL,
					      (size_t)k - IPC_HDR_SIZE, buf + IPC_HDR_SIZE);
		if (!m)
			return -EBADMSG;
		protobuf_c_message_free_unpacked(m, NULL);
	}
	return 0;
}

static int bench_recv(void)
{
	Vb__Dev__Data d = data_body();
	struct rcv x = {.wr_chan = -1, .wr_raw = -1, .rd_raw = -1};
	char name[64], base[64];
	int sv[2], r;

	x.len = IPC_HDR_SIZE + protobuf_c_message_get_packed_size(&d.base);
	protobuf_c_message_pack(&d.base, x.dgram + IPC_HDR_SIZE);
	snprintf(name, sizeof(name), "ipc_recv_%zuB", x.len);
	snprintf(base, sizeof(base), "raw_recv_unpack_%zuB", x.len);
	r = ipc_socketpair(sv);
	if (r == 0) {
		x.wr_chan = sv[1];
		r = ipc_chan_new(sv[0], &bench_proto, NULL, &x.chan);
		if (r < 0)
			close(sv[0]);
	}
	if (r == 0) {
		r = ipc_socketpair(sv);
		if (r == 0) {
			x.rd_raw = sv[0];
			x.wr_raw = sv[1];
		}
	}
	if (r == 0)
		r = bench_run(&(struct bench_pair){.name = name,
						   .baseline = base,
						   .figure = rcv_chan,
						   .base = rcv_raw,
						   .figure_prep = rcv_prep_chan,
						   .base_prep = rcv_prep_raw,
						   .ctx = &x,
						   .per_batch = RECV_BATCH});
	else
		bench_fail(name, "setup: %s", strerror(-r));
	ipc_chan_free(x.chan);
	if (x.wr_chan >= 0)
		close(x.wr_chan);
	if (x.wr_raw >= 0)
		close(x.wr_raw);
	if (x.rd_raw >= 0)
		close(x.rd_raw);
	return r;
}

int main(void)
{
	int failed = 0;

	memset(payload, 0xa5, sizeof(payload));
	bench_header("ipc: framing, protobuf, checks and fd passing against raw sockets");
	failed |= bench_roundtrip(0) < 0;
	failed |= bench_roundtrip(1) < 0;
	failed |= bench_roundtrip(MAX_FDS) < 0;
	failed |= bench_decode() < 0;
	failed |= bench_recv() < 0;
	return failed;
}
