/*
 * test_client_fake: the fake worker thread of the libvfiobroker tests (see test_client_fake.h).
 * Its answers are computed from its own state, so the tests compare what the library returns
 * with what the fake holds, never with constants the library produced.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "device.pb-c.h"
#include "ipc.h"
#include "test_client_fake.h"
#include "test_wait.h"

static void fake_event(struct ipc_chan *c)
{
	Vb__Dev__Event ev = VB__DEV__EVENT__INIT;

	ev.kind = VB__DEV__EVENT_KIND__EVENT_REMOVAL_REQUESTED;
	ev.timeout_ms = 1234;
	ipc_chan_event(c, VB__DEV__TYPE__EVENT, &ev.base, NULL, 0);
}

static void fake_data(struct ipc_chan *c, struct ipc_msg *m, const uint8_t *p, size_t n)
{
	Vb__Dev__Data d = VB__DEV__DATA__INIT;

	d.data.data = (uint8_t *)p;
	d.data.len = n;
	ipc_chan_reply(c, m, &d.base, NULL, 0);
}

static void fake_empty(struct ipc_chan *c, struct ipc_msg *m)
{
	Vb__Empty e = VB__EMPTY__INIT;

	ipc_chan_reply(c, m, &e.base, NULL, 0);
}

static void fake_region(struct fake *f, struct ipc_chan *c, struct ipc_msg *m)
{
	const Vb__Dev__RegionInfoRequest *rq = (const void *)m->body;
	Vb__Region reg = VB__REGION__INIT;
	Vb__MmapArea a0 = VB__MMAP_AREA__INIT, a1 = VB__MMAP_AREA__INIT;
	Vb__MmapArea *areas[2] = {&a0, &a1};
	int fd = f->devfd;

	reg.index = rq->index;
	reg.flags = 0x7; /* read, write, mmap */
	reg.size = 0x4000;
	reg.offset = (uint64_t)rq->index << 40;
	a0.offset = 0;
	a0.size = 0x1000;
	a1.offset = 0x3000;
	a1.size = f->bad_area ? 0x2000 : 0x1000;
	reg.n_mmap_areas = 2;
	reg.mmap_areas = areas;
	/* The reply carries a copy; the fake keeps its own until it ends, so that counting the
	 * client's fds never races with the fake's close. */
	ipc_chan_reply(c, m, &reg.base, &fd, fd >= 0 ? 1 : 0);
}

static void fake_handle(struct fake *f, struct ipc_chan *c, struct ipc_msg *m)
{
	f->requests++;
	if (m->type == f->silent_type)
		return;
	if (m->type == f->late_type) {
		struct timespec ts = {f->late_ms / 1000, (long)(f->late_ms % 1000) * 1000000};

		nanosleep(&ts, NULL);
	}
	if (m->type == f->event_before_type)
		fake_event(c);
	if (m->type == f->error_type) {
		ipc_chan_reply_error(c, m, f->error_code, "denied by the fake's policy");
		return;
	}
	switch (m->type) {
	case VB__DEV__TYPE__HELLO: {
		const Vb__Dev__Hello *h = (const void *)m->body;
		Vb__Dev__HelloReply rep = VB__DEV__HELLO_REPLY__INIT;
		Vb__Dev__RingAnswer ring = VB__DEV__RING_ANSWER__INIT;
		Vb__Limits lim = VB__LIMITS__INIT;

		/* The ring's fds are closed before the answer, so that a test counting this
		 * process's fds once connected never races with the fake's close. */
		for (size_t i = 0; i < m->nfds; i++)
			close(ipc_msg_take_fd(m, i));
		if (f->no_hello_fds && m->nfds > 0) {
			ipc_chan_reply_error(c, m, -ETOOMANYREFS, "2 fds for a HELLO; at most 0");
			break;
		}
		if (h->ring) {
			ring.accepted = f->accept_ring;
			ring.error = f->accept_ring ? 0 : EOPNOTSUPP;
			ring.reason = f->accept_ring ? "" : "the fake takes no rings";
			rep.ring = &ring;
		}

		f->hello_seen_version = h->version;
		snprintf(f->client, sizeof(f->client), "%s", h->client);
		lim.max_fds = f->max_fds;
		lim.max_message_bytes = f->max_message;
		lim.max_dma_mappings = 77;
		rep.version = f->hello_version;
		rep.limits = &lim;
		rep.bdf = FAKE_BDF;
		rep.broker_wait_ms = f->broker_wait_ms;
		ipc_chan_reply(c, m, &rep.base, NULL, 0);
		break;
	}
	case VB__DEV__TYPE__DEVICE_INFO: {
		Vb__Dev__DeviceInfo d = VB__DEV__DEVICE_INFO__INIT;

		d.bdf = FAKE_BDF;
		d.vendor_id = (uint32_t)(f->cfg[0] | f->cfg[1] << 8);
		d.device_id = (uint32_t)(f->cfg[2] | f->cfg[3] << 8);
		d.num_regions = 9;
		d.num_irqs = 5;
		ipc_chan_reply(c, m, &d.base, NULL, 0);
		break;
	}
	case VB__DEV__TYPE__REGION_INFO:
		fake_region(f, c, m);
		break;
	case VB__DEV__TYPE__CFG_READ: {
		const Vb__Dev__CfgRead *rq = (const void *)m->body;

		if (f->nreads < 64)
			f->reads[f->nreads++] = (struct piece){rq->offset, rq->size};
		if (rq->offset + rq->size > sizeof(f->cfg)) {
			ipc_chan_reply_error(c, m, -EINVAL, "out of config space");
			break;
		}
		fake_data(c, m, f->cfg + rq->offset, rq->size);
		break;
	}
	case VB__DEV__TYPE__CFG_WRITE: {
		const Vb__Dev__CfgWrite *rq = (const void *)m->body;

		if (f->nwrites < 64)
			f->writes[f->nwrites++] =
			    (struct piece){rq->offset, (uint32_t)rq->data.len};
		if (rq->offset + rq->data.len <= sizeof(f->cfg))
			memcpy(f->cfg + rq->offset, rq->data.data, rq->data.len);
		fake_empty(c, m);
		break;
	}
	case VB__DEV__TYPE__REGION_READ: {
		const Vb__Dev__RegionRead *rq = (const void *)m->body;

		if (f->nrreads < 64)
			f->rreads[f->nrreads++] = (struct piece){(uint32_t)rq->offset, rq->size};
		if (rq->offset + rq->size > sizeof(f->bar)) {
			ipc_chan_reply_error(c, m, -EINVAL, "out of the region");
			break;
		}
		fake_data(c, m, f->bar + rq->offset, rq->size);
		break;
	}
	case VB__DEV__TYPE__DMA_MAP: {
		const Vb__DmaMap *rq = (const void *)m->body;

		f->ndma++;
		f->dma_iova = rq->iova;
		f->dma_size = rq->size;
		f->dma_offset = rq->offset;
		f->dma_prot = rq->prot;
		fake_empty(c, m);
		break;
	}
	case VB__DEV__TYPE__SET_IRQ_FDS: {
		const Vb__Dev__SetIrqFds *rq = (const void *)m->body;

		if (f->nirqs < 32)
			f->irqs[f->nirqs++] = (struct irq_batch){rq->index, rq->start, rq->count,
								 rq->resample, m->nfds};
		fake_empty(c, m);
		break;
	}
	default:
		fake_empty(c, m);
	}
	if (m->type == f->event_after_type)
		fake_event(c);
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	struct ipc_chan *c;
	struct ipc_msg *m;
	int r;

	if (ipc_chan_new(f->fd, &ipc_proto_device, NULL, &c) < 0) {
		close(f->fd);
		close(f->devfd);
		return NULL;
	}
	for (;;) {
		struct pollfd p = {.fd = ipc_chan_fd(c), .events = POLLIN};

		r = ipc_chan_recv(c, &m);
		if (r == -EAGAIN) {
			if (poll(&p, 1, TEST_HANG_MS) <= 0)
				break;
			continue;
		}
		if (r < 0)
			break;
		fake_handle(f, c, m);
		ipc_msg_free(m);
		if (f->hangup_after_hello && f->requests == 1)
			break;
	}
	ipc_chan_free(c);
	if (f->devfd >= 0)
		close(f->devfd);
	return NULL;
}

/* Starts a fake worker and returns the client end of its socket. */
int fake_start(struct fake *f)
{
	int sv[2];

	for (size_t i = 0; i < sizeof(f->cfg); i++)
		f->cfg[i] = (uint8_t)(i * 7 + 3);
	for (size_t i = 0; i < sizeof(f->bar); i++)
		f->bar[i] = (uint8_t)(i * 13 + i / 256);
	if (!f->hello_version)
		f->hello_version = VB__DEV__VERSION__VERSION_CURRENT;
	f->devfd = memfd_create("fake-device", MFD_CLOEXEC);
	assert_true(f->devfd >= 0);
	assert_int_equal(ipc_socketpair(sv), 0);
	f->fd = sv[1];
	assert_int_equal(pthread_create(&f->th, NULL, fake_main, f), 0);
	return sv[0];
}

void fake_join(struct fake *f)
{
	pthread_join(f->th, NULL);
}

struct vfb_dev *connect_fake(struct fake *f)
{
	struct vfb_dev *dev = NULL;
	int fd = fake_start(f);

	assert_int_equal(vfb_dev_connect_fd(fd, "test-vmm", 0, &dev), 0);
	assert_non_null(dev);
	return dev;
}

void standalone_worker_start(struct standalone_worker *w, const char *worker, const char *image,
			     const char *arg)
{
	int64_t deadline = test_now_ms() + TEST_HANG_MS;
	int fd = -1;

	strcpy(w->dir, "/tmp/vfb-test-XXXXXX");
	assert_non_null(mkdtemp(w->dir));
	snprintf(w->sock, sizeof(w->sock), "%s/dev.sock", w->dir);
	w->pid = fork();
	assert_true(w->pid >= 0);
	if (w->pid == 0) {
		/* Never outlive the test, whatever happens to it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execl(worker, "vfio-worker", "--device-image", image, "--listen", w->sock, arg,
		      (char *)NULL);
		_exit(127);
	}
	/* Until it listens (the socket exists a moment before). */
	while (ipc_connect(w->sock, &fd) < 0 && test_now_ms() < deadline)
		poll(NULL, 0, 20);
	assert_true(fd >= 0);
	close(fd);
}

void standalone_worker_stop(struct standalone_worker *w)
{
	int status;

	if (w->pid <= 0)
		return;
	kill(w->pid, SIGTERM);
	waitpid(w->pid, &status, 0);
	w->pid = 0;
	unlink(w->sock);
	rmdir(w->dir);
}

int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own fd */
}

bool fd_readable(int fd, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}
