/*
 * fuzz_vmm_req: a VMM talking to a worker. The worker is the real one of standalone mode (its
 * VMM server, request table and handlers, the standalone DMA/IRQ backend, the device emulation)
 * serving one of the captured device images (edu, e1000e, nvme); the VMM is the input, a list of
 * device-protocol requests (fuzz_msgs.h) sent on one connection. Every answer is read back.
 *
 * Byte 0 picks the image (bits 0-1) and whether BAR mmap is allowed (bit 2); then the records.
 * Whatever is asked, nothing crashes, the server keeps one session at most, and once the VMM
 * hangs up and the worker shuts down every handle is closed and no fd is left open.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <uv.h>

#include "devimg.h"
#include "fuzz_msgs.h"
#include "server.h"
#include "standalone.h"
#include "wkr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const images[] = {"edu.img", "e1000e.img", "nvme.img"};
static struct wkr_image *loaded[3];

struct vmm_fuzz {
	struct wkr_local *local;
	struct wkr_server *srv;
};

static int dev_set_irqs(void *data, const struct wkr_irq_set *s)
{
	struct vmm_fuzz *v = data;

	return wkr_local_ops.set_irqs(v->local, s);
}

static void dev_bars_changed(void *data, uint16_t command)
{
	struct vmm_fuzz *v = data;

	if (v->srv)
		wkr_server_bars_changed(v->srv, command);
}

static struct wkr_image *image(unsigned i)
{
	char path[512];
	struct vb_err err = {0};

	if (!loaded[i]) {
		snprintf(path, sizeof(path), "%s/%s", VB_FIXTURES, images[i]);
		if (wkr_image_load(path, &loaded[i], &err) < 0) {
			fprintf(stderr, "fuzz_vmm_req: %s: %s\n", path, err.msg);
			abort();
		}
	}
	return loaded[i];
}

/* A listening SOCK_SEQPACKET socket on an autobound abstract address, and a client on it. */
static void listen_pair(int *lfd, int *client)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	socklen_t len = sizeof(sa_family_t);

	*lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (*lfd < 0 || bind(*lfd, (struct sockaddr *)&sa, len) < 0 || listen(*lfd, 4) < 0)
		abort();
	len = sizeof(sa);
	if (getsockname(*lfd, (struct sockaddr *)&sa, &len) < 0)
		abort();
	*client = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (*client < 0 || connect(*client, (struct sockaddr *)&sa, len) < 0)
		abort();
}

static void settle(uv_loop_t *loop, int client)
{
	/* A few turns: a request may queue an event behind its reply. */
	for (int i = 0; i < 3; i++) {
		uv_run(loop, UV_RUN_NOWAIT);
		fuzz_drain(client);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vmm_fuzz v = {0};
	struct wkr_callbacks cb = {dev_set_irqs, dev_bars_changed, &v};
	const struct wkr_image *img;
	struct wkr_dev *dev = NULL;
	struct wkr_io io;
	struct fuzz_rec rec;
	uv_loop_t loop;
	int before, memfd, lfd, client;
	uint32_t id = 1;
	struct wkr_server_cfg sc;

	if (size < 1)
		return 0;
	fuzz_uv_warm_up();
	before = count_fds();
	img = image((data[0] & 3) % 3);
	if (wkr_image_build(img, &memfd) < 0 ||
	    wkr_local_new(img, memfd, 8, 1u << 20, &v.local) < 0)
		abort();
	wkr_io_from_fd(&io, memfd);
	if (wkr_dev_new(wkr_image_info(img), &io, &cb, &dev) < 0)
		abort(); /* the fixtures are good images */
	if (uv_loop_init(&loop) < 0)
		abort();
	listen_pair(&lfd, &client);
	sc = (struct wkr_server_cfg){
	    .loop = &loop,
	    .listen_fd = lfd,
	    .dev = dev,
	    .backend = {&wkr_local_ops, v.local},
	    .allow_mmap = data[0] & 4,
	    .owner_uid = getuid(),
	    .iommu_pgsize = 4096,
	    .max_dma_mappings = 8,
	    .max_pinned_bytes = 1u << 20,
	};
	if (wkr_server_new(&sc, &v.srv) < 0)
		abort();
	settle(&loop, client);
	if (!wkr_server_connected(v.srv))
		abort(); /* the owner's connection must be admitted */

	data++;
	size--;
	while (fuzz_rec_next(&data, &size, &rec)) {
		(void)fuzz_rec_send(client, &ipc_proto_device, id++, &rec);
		settle(&loop, client);
	}

	/* The VMM goes away: the worker drops its mappings and routes and waits for the next. */
	close(client);
	uv_run(&loop, UV_RUN_NOWAIT);
	uv_run(&loop, UV_RUN_NOWAIT);
	if (wkr_server_connected(v.srv))
		abort();
	wkr_server_close(v.srv, NULL, NULL);
	v.srv = NULL;
	uv_run(&loop, UV_RUN_NOWAIT);
	if (uv_loop_close(&loop) != 0)
		abort(); /* a handle left open */
	wkr_dev_free(dev);
	wkr_local_free(v.local);
	close(memfd);
	if (count_fds() != before)
		abort();
	return 0;
}
