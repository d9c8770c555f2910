/*
 * fuzz_worker_brk: the broker talking to a worker, as the worker sees it. The input's first
 * record is the HANDOFF (its type, kind and body as given; its fds always the device and a
 * listening VMM socket), taken through the worker's real start-up: wkr_broker_handoff, the
 * device built from what the handoff says (over the edu image's device memfd), the VMM server,
 * the broker link, the answer. The records after it are the broker's further messages
 * (HEARTBEAT, REMOVAL, a second HANDOFF, replies and events nobody asked for, unknown types),
 * served by the worker's loop. Every answer is read back.
 *
 * A handoff the worker refuses must be answered with an error and leave nothing open; an
 * accepted one must be answered once; nothing crashes; once the broker hangs up every handle is
 * closed and no fd is left open.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "broker_link.h"
#include "devimg.h"
#include "fuzz_msgs.h"
#include "server.h"
#include "wkr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct wkr_image *edu;
static struct wkr_server *srv;
static bool gone;

static int dev_set_irqs(void *data, const struct wkr_irq_set *s)
{
	return wkr_broker_ops.set_irqs(data, s);
}

static void dev_bars_changed(void *data, uint16_t command)
{
	if (srv)
		wkr_server_bars_changed(srv, command);
}

static void broker_gone(void *data, int err)
{
	gone = true;
}

static void load_image(void)
{
	char path[512];
	struct vb_err err = {0};

	snprintf(path, sizeof(path), "%s/edu.img", VB_FIXTURES);
	if (wkr_image_load(path, &edu, &err) < 0) {
		fuzz_fail("set-up: %s: %s", path, err.msg);
	}
}

/* Sends the handoff record with the worker's two fds; false when nothing could be sent. */
static bool send_handoff(int sock, const struct fuzz_rec *r, int devfd)
{
	struct raw_hdr h = {IPC_MAGIC, IPC_PROTO_BROKER, ipc_proto_broker.version,
			    r->type,   r->kind,		 2,
			    1,	       (uint32_t)r->len};
	int fds[2] = {devfd, fuzz_listener(SOCK_SEQPACKET)};
	ssize_t n = raw_send(sock, &h, r->body, r->len, fds, 2);

	close(fds[1]);
	return n > 0;
}

/* The worker's start-up after its handoff, as worker/main.c does it. */
static int start(uv_loop_t *loop, struct wkr_broker *b, struct wkr_handoff *h, struct wkr_dev **dev)
{
	struct wkr_callbacks cb = {dev_set_irqs, dev_bars_changed, b};
	struct wkr_io io;
	int r;
	struct wkr_server_cfg sc;

	wkr_io_from_fd(&io, h->device_fd);
	r = wkr_dev_new(&h->info, &io, &cb, dev);
	if (r < 0)
		return r;
	sc = (struct wkr_server_cfg){
	    .loop = loop,
	    .listen_fd = h->listen_fd,
	    .dev = *dev,
	    .backend = {&wkr_broker_ops, b},
	    .allow_mmap = h->allow_mmap,
	    .owner_uid = h->owner_uid,
	    .iommu_pgsize = h->iommu_pgsize,
	    .max_dma_mappings = h->max_dma_mappings,
	    .max_pinned_bytes = h->max_pinned_bytes,
	    .generation = h->generation,
	};
	r = wkr_server_new(&sc, &srv);
	if (r < 0)
		return r;
	h->listen_fd = -1;
	return wkr_broker_start(b, loop, srv, NULL, *dev, broker_gone, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wkr_handoff h = {.device_fd = -1, .listen_fd = -1, .vfu_fd = -1};
	struct wkr_broker *b = NULL;
	struct wkr_dev *dev = NULL;
	struct ipc_chan *chan;
	struct fuzz_rec rec;
	uv_loop_t loop;
	struct vb_err err = {0};
	int before, sv[2], devfd, r, answers;
	uint32_t id = 2;

	if (!edu)
		load_image();
	fuzz_uv_warm_up();
	before = count_fds();
	if (!fuzz_rec_next(&data, &size, &rec))
		return 0;
	if (wkr_image_build(edu, &devfd) < 0 || ipc_socketpair(sv) < 0 || uv_loop_init(&loop) < 0)
		fuzz_fail("set-up: the device memfd, the socketpair or the loop");
	if (ipc_chan_new(sv[0], &ipc_proto_broker, NULL, &chan) < 0 || wkr_broker_new(chan, &b) < 0)
		fuzz_fail("set-up: the broker channel");
	srv = NULL;
	gone = false;
	if (!send_handoff(sv[1], &rec, devfd))
		goto out;
	r = wkr_broker_handoff(b, 0, &h, &err);
	if (r < 0) {
		/* A refusal says why, and answers at most once. */
		if (!err.msg[0] || err.code != r)
			fuzz_fail("a handoff refusal returned %d with err.code %d, message \"%s\"",
				  r, err.code, err.msg);
		answers = fuzz_drain(sv[1]);
		if (answers > 1)
			fuzz_fail("a refused handoff was answered %d times", answers);
		goto out;
	}
	r = start(&loop, b, &h, &dev);
	if (r < 0)
		vb_errf(&err, r, "refused: %s", strerror(-r));
	/* The socket is ours and empty: the answer must go out, once. */
	if (wkr_broker_handoff_answer(b, r < 0 ? &err : NULL) < 0 && r == 0)
		fuzz_fail("the answer to an accepted handoff could not be sent");
	answers = fuzz_drain(sv[1]);
	if (answers != 1)
		fuzz_fail("a handoff was answered %d times, not once", answers);
	if (r < 0)
		goto out;
	while (!gone && fuzz_rec_next(&data, &size, &rec)) {
		(void)fuzz_rec_send(sv[1], &ipc_proto_broker, id++, &rec);
		for (int i = 0; i < 3; i++) {
			uv_run(&loop, UV_RUN_NOWAIT);
			fuzz_drain(sv[1]);
		}
	}
out:
	close(sv[1]);
	uv_run(&loop, UV_RUN_NOWAIT);
	wkr_server_close(srv, NULL, NULL);
	srv = NULL;
	wkr_broker_free(b);
	uv_run(&loop, UV_RUN_NOWAIT);
	fuzz_loop_close(&loop);
	wkr_dev_free(dev);
	if (h.listen_fd >= 0)
		close(h.listen_fd);
	if (h.device_fd >= 0)
		close(h.device_fd);
	if (h.vfu_fd >= 0)
		close(h.vfu_fd); /* vfio-user is not served here; worker/main.c closes it too */
	close(devfd);
	fuzz_fds_check(before);
	return 0;
}
