/*
 * fuzz_worker: the worker the VMM-facing fuzz targets (fuzz_vmm_req, fuzz_ring) talk to: the
 * real VMM server of standalone mode (request table and handlers, the standalone DMA/IRQ
 * backend, the device emulation) on one of the captured device images, on a libuv loop of its
 * own, with a VMM connection admitted; and its teardown, which checks that every handle closes
 * and no fd is left open.
 */
#ifndef VB_TESTS_FUZZ_WORKER_H
#define VB_TESTS_FUZZ_WORKER_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "devimg.h"
#include "fuzz_msgs.h"
#include "server.h"
#include "standalone.h"
#include "wkr.h"

struct fuzz_worker {
	uv_loop_t loop;
	struct wkr_local *local;
	struct wkr_server *srv;
	struct wkr_dev *dev;
	int memfd;
	int client; /* the VMM's end, non-blocking; -1 once the caller took or closed it */
	int fds_before;
};

static int fuzz_worker__set_irqs(void *data, const struct wkr_irq_set *s)
{
	struct fuzz_worker *w = data;

	return wkr_local_ops.set_irqs(w->local, s);
}

static void fuzz_worker__bars_changed(void *data, uint16_t command)
{
	struct fuzz_worker *w = data;

	if (w->srv)
		wkr_server_bars_changed(w->srv, command);
}

/* The images, loaded once per process. */
static inline struct wkr_image *fuzz_worker__image(unsigned i)
{
	static const char *const images[] = {"edu.img", "e1000e.img", "nvme.img"};
	static struct wkr_image *loaded[3];
	char path[512];
	struct vb_err err = {0};

	i %= 3;
	if (!loaded[i]) {
		snprintf(path, sizeof(path), "%s/%s", VB_FIXTURES, images[i]);
		if (wkr_image_load(path, &loaded[i], &err) < 0) {
			fuzz_fail("set-up: %s: %s", path, err.msg);
		}
	}
	return loaded[i];
}

/* Starts the worker on image `image` (0 edu, 1 e1000e, 2 nvme) and connects its VMM, which
 * must be admitted once the loop has run. */
static inline void fuzz_worker_start(struct fuzz_worker *w, unsigned image, bool allow_mmap)
{
	struct wkr_callbacks cb = {fuzz_worker__set_irqs, fuzz_worker__bars_changed, w};
	const struct wkr_image *img = fuzz_worker__image(image);
	struct wkr_io io;
	int lfd;
	struct wkr_server_cfg sc;

	fuzz_uv_warm_up();
	*w = (struct fuzz_worker){.memfd = -1, .client = -1};
	w->fds_before = count_fds();
	if (wkr_image_build(img, &w->memfd) < 0 ||
	    wkr_local_new(img, w->memfd, 8, 1u << 20, &w->local) < 0)
		fuzz_fail("set-up: the device memfd or the standalone backend");
	wkr_io_from_fd(&io, w->memfd);
	if (wkr_dev_new(wkr_image_info(img), &io, &cb, &w->dev) < 0)
		fuzz_fail("set-up: wkr_dev_new on a fixture image");
	if (uv_loop_init(&w->loop) < 0)
		fuzz_fail("set-up: uv_loop_init");
	fuzz_listen_pair(&lfd, &w->client);
	sc = (struct wkr_server_cfg){
	    .loop = &w->loop,
	    .listen_fd = lfd,
	    .dev = w->dev,
	    .backend = {&wkr_local_ops, w->local},
	    .allow_mmap = allow_mmap,
	    .owner_uid = getuid(),
	    .iommu_pgsize = 4096,
	    .max_dma_mappings = 8,
	    .max_pinned_bytes = 1u << 20,
	};
	if (wkr_server_new(&sc, &w->srv) < 0)
		fuzz_fail("set-up: wkr_server_new");
	for (int i = 0; i < 3 && !wkr_server_connected(w->srv); i++)
		uv_run(&w->loop, UV_RUN_NOWAIT);
	if (!wkr_server_connected(w->srv))
		fuzz_fail("the owner's connection was not admitted in 3 turns");
}

/* The VMM has hung up (the caller closed its end): the worker drops its mappings and routes and
 * waits for the next; then it shuts down, every handle must close and no fd may be left. */
static inline void fuzz_worker_stop(struct fuzz_worker *w)
{
	if (w->client >= 0)
		close(w->client);
	w->client = -1;
	uv_run(&w->loop, UV_RUN_NOWAIT);
	uv_run(&w->loop, UV_RUN_NOWAIT);
	if (wkr_server_connected(w->srv))
		fuzz_fail("the worker still serves its VMM two turns after the VMM hung up");
	wkr_server_close(w->srv, NULL, NULL);
	w->srv = NULL;
	uv_run(&w->loop, UV_RUN_NOWAIT);
	fuzz_loop_close(&w->loop);
	wkr_dev_free(w->dev);
	wkr_local_free(w->local);
	close(w->memfd);
	fuzz_fds_check(w->fds_before);
}

#endif
