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
#include <stdint.h>
#include <unistd.h>

#include <uv.h>

#include "fuzz_msgs.h"
#include "fuzz_worker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
	struct fuzz_worker w;
	struct fuzz_rec rec;
	uint32_t id = 1;

	if (size < 1)
		return 0;
	fuzz_worker_start(&w, data[0] & 3, data[0] & 4);
	settle(&w.loop, w.client);
	data++;
	size--;
	while (fuzz_rec_next(&data, &size, &rec)) {
		(void)fuzz_rec_send(w.client, &ipc_proto_device, id++, &rec);
		settle(&w.loop, w.client);
	}
	/* The VMM goes away: the worker drops its mappings and routes and waits for the next. */
	fuzz_worker_stop(&w);
	return 0;
}
