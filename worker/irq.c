/*
 * irq: interrupt routing for every VFIO IRQ index, expressed as SET_IRQS requests the owner
 * (the broker, through the callback) carries out.
 *
 * For MSI and MSI-X each vector is routed to exactly one eventfd: the VMM's irqfd when the guest
 * has it unmasked (the kernel then signals KVM directly, no worker hop), otherwise a worker-owned
 * eventfd whose firing sets the vector's pending bit. When a vector becomes unmasked it is routed
 * back to the VMM first and only then is its worker eventfd drained, so an interrupt that raced
 * with the re-route is delivered rather than lost. INTx, ERR and REQ pass the VMM's fds through.
 *
 * Owns: dups of the VMM's fds, the worker eventfds and the epoll fd that watches them. Trusts
 * the VMM's fd numbers only as fds (the kernel checks they are eventfds at SET_IRQS time), and
 * never waits for the VMM when it signals one (vmm_signal).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <poll.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "wkr_internal.h"

static const uint32_t idx_max[WKR_NUM_IRQS] = {1, 32, WKR_MSIX_VECTORS_MAX, 1, 1};

int wkr__irq_init(struct wkr_dev *d)
{
	/* Every index's fd is marked unused before any check can fail: wkr__irq_free() closes
	 * them all, and a zeroed one would be fd 0. */
	for (unsigned i = 0; i < WKR_NUM_IRQS; i++)
		d->irq[i].resample_fd = -1;
	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (d->epfd < 0)
		return -errno;
	for (unsigned i = 0; i < WKR_NUM_IRQS; i++) {
		struct wkr_irqidx *ix = &d->irq[i];

		ix->nvec = d->info.irqs[i].count;
		if (ix->nvec > idx_max[i])
			return -EINVAL;
		if (!ix->nvec)
			continue;
		ix->vec = calloc(ix->nvec, sizeof(*ix->vec));
		if (!ix->vec)
			return -ENOMEM;
		for (uint32_t v = 0; v < ix->nvec; v++)
			ix->vec[v] = (struct wkr_vec){.vmm_fd = -1, .wfd = -1, .routed = -1};
	}
	return 0;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

void wkr__irq_free(struct wkr_dev *d)
{
	for (unsigned i = 0; i < WKR_NUM_IRQS; i++) {
		struct wkr_irqidx *ix = &d->irq[i];

		for (uint32_t v = 0; ix->vec && v < ix->nvec; v++) {
			close_fd(&ix->vec[v].vmm_fd);
			close_fd(&ix->vec[v].wfd);
		}
		close_fd(&ix->resample_fd);
		free(ix->vec);
		ix->vec = NULL;
	}
	close_fd(&d->epfd);
}

static int call(struct wkr_dev *d, const struct wkr_irq_set *s)
{
	if (!d->cb.set_irqs)
		return -ENOSYS;
	return d->cb.set_irqs(d->cb.data, s);
}

static int worker_fd(struct wkr_dev *d, uint32_t index, uint32_t v)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = ((uint64_t)index << 32) | v};
	struct wkr_vec *vec = &d->irq[index].vec[v];
	_cleanup_close_ int fd = -1;

	if (vec->wfd >= 0)
		return vec->wfd;
	fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	vec->wfd = TAKE_FD(fd);
	return vec->wfd;
}

static int target(struct wkr_dev *d, uint32_t index, uint32_t v)
{
	struct wkr_vec *vec = &d->irq[index].vec[v];
	/* In VFIO mode the VMM masks in its own emulation: an assigned fd is always the target. */
	bool masked = vec->masked && d->irq_mode == WKR_IRQ_EMULATED;

	if (!masked && vec->vmm_fd >= 0)
		return vec->vmm_fd;
	return worker_fd(d, index, v);
}

static void pending_changed(struct wkr_dev *d, uint32_t index)
{
	if (index == VFIO_PCI_MSI_IRQ_INDEX)
		wkr__msi_pending_sync(d);
}

/*
 * Signals a VMM's eventfd without ever waiting for the VMM. The file is the VMM's (a dup shares
 * its status flags), so the worker cannot make it O_NONBLOCK, and a write to a blocking eventfd
 * whose counter is at 0xfffffffffffffffe sleeps until the VMM reads it: the whole event loop
 * would stop for a VMM that never does. Kernel vfio-pci accepts a blocking eventfd and its
 * eventfd_signal() never sleeps (it saturates), so the worker takes any eventfd as the kernel
 * does and writes only when poll() says the counter has room; otherwise the VMM already has
 * 2^64 - 2 interrupts unread, and this one is counted, not written. Returns true when written.
 */
static bool vmm_signal(struct wkr_dev *d, int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	uint64_t one = 1;

	if (poll(&p, 1, 0) == 1 && (p.revents & POLLOUT) &&
	    write(fd, &one, sizeof(one)) == sizeof(one))
		return true;
	d->irq_unsent++;
	return false;
}

/* Reads (and so resets) a worker eventfd: true when it had fired. */
static bool drain(int fd)
{
	uint64_t n = 0;

	return fd >= 0 && read(fd, &n, sizeof(n)) == sizeof(n) && n > 0;
}

static void deliver(struct wkr_dev *d, uint32_t index, uint32_t v)
{
	struct wkr_vec *vec = &d->irq[index].vec[v];

	if (drain(vec->wfd))
		vec->pending = true;
	/* In VFIO mode the VMM keeps its own pending bits; what fired while a vector had no
	 * trigger is lost, as with kernel vfio-pci, rather than replayed into a later one. */
	if (d->irq_mode == WKR_IRQ_VFIO)
		vec->pending = false;
	/* Unsent only when the VMM's counter is full: it has an interrupt outstanding anyway,
	 * so the pending bit is cleared either way, as kernel vfio-pci's saturating signal. */
	if (vec->pending && vec->routed == vec->vmm_fd && vec->vmm_fd >= 0) {
		(void)vmm_signal(d, vec->vmm_fd);
		vec->pending = false;
	}
}

static int route(struct wkr_dev *d, uint32_t index, uint32_t start, uint32_t count, bool enable)
{
	_cleanup_free_ int *fds = malloc(count * sizeof(int));
	struct wkr_irq_set s = {.index = index,
				.start = start,
				.count = count,
				.action = VFIO_IRQ_SET_ACTION_TRIGGER,
				.enable = enable,
				.fds = fds};
	int r;

	if (!fds)
		return -ENOMEM;
	for (uint32_t i = 0; i < count; i++) {
		int t = target(d, index, start + i);

		if (t < 0)
			return t;
		fds[i] = t;
	}
	r = call(d, &s);
	if (r == 0) {
		for (uint32_t i = 0; i < count; i++)
			d->irq[index].vec[start + i].routed = fds[i];
		for (uint32_t i = 0; i < count; i++)
			deliver(d, index, start + i);
		pending_changed(d, index);
	}
	return r;
}

static int disable(struct wkr_dev *d, uint32_t index)
{
	struct wkr_irqidx *ix = &d->irq[index];
	struct wkr_irq_set s;
	int r;

	ix->want = 0;
	if (!ix->hw_on)
		return 0;
	s = (struct wkr_irq_set){
	    .index = index, .action = VFIO_IRQ_SET_ACTION_TRIGGER, .disable = true};
	r = call(d, &s);
	/* Whatever the broker answered, nothing is routed from our side any more: the broker
	 * tears the index down itself when the worker goes away. */
	ix->hw_on = false;
	ix->hw_count = 0;
	for (uint32_t v = 0; v < ix->nvec; v++)
		ix->vec[v].routed = -1;
	return r;
}

static int irq_enable(struct wkr_dev *d, uint32_t index, uint32_t nvec)
{
	struct wkr_irqidx *ix = &d->irq[index];
	int r = disable(d, index);

	if (nvec > ix->nvec)
		nvec = ix->nvec;
	if (nvec == 0 || r < 0)
		return r;
	ix->want = nvec;
	r = route(d, index, 0, nvec, true);
	if (r == 0) {
		ix->hw_on = true;
		ix->hw_count = nvec;
	}
	return r;
}

static int irq_sync(struct wkr_dev *d, uint32_t index, uint32_t start, uint32_t count)
{
	struct wkr_irqidx *ix = &d->irq[index];
	uint32_t lo = UINT32_MAX, hi = 0;

	if (!ix->hw_on || start >= ix->hw_count)
		return 0;
	if (count > ix->hw_count - start)
		count = ix->hw_count - start;
	/* Re-route only the span whose targets changed, in one request. */
	for (uint32_t v = start; v < start + count; v++) {
		int t = target(d, index, v);

		if (t < 0)
			return t;
		if (t != ix->vec[v].routed) {
			lo = lo < v ? lo : v;
			hi = v;
		}
	}
	if (lo == UINT32_MAX)
		return 0;
	return route(d, index, lo, hi - lo + 1, false);
}

/* The guest's config-space enables and masks route only in EMULATED mode; in VFIO mode they
 * are recorded in the shadow and SET_IRQS decides (kernel vfio-pci virtualizes them the same
 * way). */
int wkr__irq_enable(struct wkr_dev *d, uint32_t index, uint32_t nvec)
{
	return d->irq_mode == WKR_IRQ_EMULATED ? irq_enable(d, index, nvec) : 0;
}

int wkr__irq_sync(struct wkr_dev *d, uint32_t index, uint32_t start, uint32_t count)
{
	return d->irq_mode == WKR_IRQ_EMULATED ? irq_sync(d, index, start, count) : 0;
}

int wkr__irq_quiesce(struct wkr_dev *d, bool drop_vmm)
{
	int first = 0;

	for (uint32_t i = 0; i < WKR_NUM_IRQS; i++) {
		int r = disable(d, i);

		if (r < 0 && first == 0)
			first = r;
		if (!drop_vmm)
			continue;
		for (uint32_t v = 0; v < d->irq[i].nvec; v++)
			close_fd(&d->irq[i].vec[v].vmm_fd);
		close_fd(&d->irq[i].resample_fd);
	}
	return first;
}

int wkr_irq_release(struct wkr_dev *d)
{
	return wkr__irq_quiesce(d, true);
}

/* Routes a direct index (INTx, ERR, REQ) to the VMM's fds it holds: the trigger, and for INTx
 * the unmask eventfd. */
static int direct_route(struct wkr_dev *d, uint32_t index)
{
	struct wkr_irqidx *ix = &d->irq[index];
	struct wkr_irq_set s = {.index = index,
				.count = 1,
				.action = VFIO_IRQ_SET_ACTION_TRIGGER,
				.enable = true,
				.fds = &ix->vec[0].vmm_fd};
	int r;

	if (ix->vec[0].vmm_fd < 0)
		return 0;
	r = call(d, &s);
	if (r < 0)
		return r;
	ix->hw_on = true;
	ix->hw_count = 1;
	ix->vec[0].routed = ix->vec[0].vmm_fd;
	if (index != VFIO_PCI_INTX_IRQ_INDEX || ix->resample_fd < 0)
		return 0;
	s.action = VFIO_IRQ_SET_ACTION_UNMASK;
	s.fds = &ix->resample_fd;
	return call(d, &s);
}

/* INTx, ERR and REQ: the VMM's eventfds are the triggers, no emulation in between. */
static int set_direct(struct wkr_dev *d, uint32_t index, uint32_t count, const int *fds,
		      int resample)
{
	struct wkr_irqidx *ix = &d->irq[index];
	int r = disable(d, index);
	int trig;

	close_fd(&ix->vec[0].vmm_fd);
	close_fd(&ix->resample_fd);
	if (count == 0 || r < 0)
		return r;
	trig = fcntl(fds[0], F_DUPFD_CLOEXEC, 3);
	if (trig < 0)
		return -errno;
	ix->vec[0].vmm_fd = trig;
	if (index == VFIO_PCI_INTX_IRQ_INDEX && resample >= 0) {
		ix->resample_fd = fcntl(resample, F_DUPFD_CLOEXEC, 3);
		if (ix->resample_fd < 0)
			return -errno;
	}
	ix->want = 1;
	return direct_route(d, index);
}

int wkr_irq_resync(struct wkr_dev *d, uint32_t index)
{
	struct wkr_irqidx *ix;
	uint32_t want;
	int r;

	if (index >= WKR_NUM_IRQS)
		return -EINVAL;
	ix = &d->irq[index];
	if (ix->nvec == 0)
		return 0;
	want = ix->want;
	/* Off first whatever we believed: an enable the owner was given up on may have been
	 * carried out after all, and a re-route may have been half done. */
	ix->hw_on = true;
	r = disable(d, index);
	if (r == 0 && want) {
		ix->want = want;
		if (index == VFIO_PCI_MSI_IRQ_INDEX || index == VFIO_PCI_MSIX_IRQ_INDEX) {
			r = route(d, index, 0, want, true);
			if (r == 0) {
				ix->hw_on = true;
				ix->hw_count = want;
			}
		} else {
			r = direct_route(d, index);
		}
	}
	/* Kept for the next attempt when this one fails too. */
	ix->want = want;
	return r;
}

void wkr_irq_doubt(struct wkr_dev *d, uint32_t index)
{
	struct wkr_irqidx *ix;

	if (index >= WKR_NUM_IRQS)
		return;
	ix = &d->irq[index];
	for (uint32_t v = 0; ix->vec && v < ix->nvec; v++)
		if (ix->vec[v].routed >= 0)
			ix->vec[v].routed = -2;
}

int wkr__irq_after_reset(struct wkr_dev *d)
{
	int first = 0;
	const uint32_t direct[] = {VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_ERR_IRQ_INDEX,
				   VFIO_PCI_REQ_IRQ_INDEX};

	/* What fired before the reset belongs to the device's previous life. */
	for (uint32_t i = VFIO_PCI_MSI_IRQ_INDEX; i <= VFIO_PCI_MSIX_IRQ_INDEX; i++) {
		for (uint32_t v = 0; v < d->irq[i].nvec; v++) {
			(void)drain(d->irq[i].vec[v].wfd);
			d->irq[i].vec[v].pending = false;
		}
	}
	/* INTx, ERR and REQ have no guest enable to bring them back: their routes are the VMM's
	 * configuration, so they are set up again with the fds it gave. */
	for (size_t k = 0; k < ARRAY_SIZE(direct); k++) {
		struct wkr_irqidx *ix = &d->irq[direct[k]];
		int trig, res;
		int r;

		if (ix->nvec == 0 || ix->vec[0].vmm_fd < 0)
			continue;
		trig = ix->vec[0].vmm_fd;
		res = ix->resample_fd;
		ix->vec[0].vmm_fd = -1;
		ix->resample_fd = -1;
		r = set_direct(d, direct[k], 1, &trig, res);
		close_fd(&trig);
		close_fd(&res);
		if (r < 0 && first == 0)
			first = r;
	}
	return first;
}

static uint32_t guest_nvec(const struct wkr_dev *d, uint32_t index)
{
	if (index == VFIO_PCI_MSI_IRQ_INDEX)
		return d->msi.enabled ? d->msi.nvec : 0;
	return d->msix.enabled ? d->msix.size : 0;
}

int wkr_irq_set_fds(struct wkr_dev *d, uint32_t index, uint32_t start, uint32_t count,
		    const int *fds, int resample_fd)
{
	struct wkr_irqidx *ix;
	int dups[WKR_MSIX_VECTORS_MAX];
	uint32_t nvec;

	if (index >= WKR_NUM_IRQS || (count && !fds))
		return -EINVAL;
	ix = &d->irq[index];
	if (ix->nvec == 0)
		return -ENOENT;
	if (start > ix->nvec || count > ix->nvec - start)
		return -EINVAL;
	if (resample_fd >= 0 && index != VFIO_PCI_INTX_IRQ_INDEX)
		return -EINVAL;
	for (uint32_t i = 0; i < count; i++)
		if (fds[i] < 0)
			return -EBADF;
	if (index != VFIO_PCI_MSI_IRQ_INDEX && index != VFIO_PCI_MSIX_IRQ_INDEX)
		return start ? -EINVAL : set_direct(d, index, count, fds, resample_fd);

	for (uint32_t i = 0; i < count; i++) {
		dups[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
		if (dups[i] < 0) {
			int e = -errno;

			while (i--)
				close(dups[i]);
			return e;
		}
	}
	if (count == 0) {
		start = 0;
		for (uint32_t v = 0; v < ix->nvec; v++) {
			if (ix->vec[v].routed >= 0 && ix->vec[v].routed == ix->vec[v].vmm_fd)
				ix->vec[v].routed = -2;
			close_fd(&ix->vec[v].vmm_fd);
		}
	}
	for (uint32_t i = 0; i < count; i++) {
		close_fd(&ix->vec[start + i].vmm_fd);
		ix->vec[start + i].vmm_fd = dups[i];
		/* A new dup may reuse the old number: force the re-route. */
		if (ix->vec[start + i].routed >= 0)
			ix->vec[start + i].routed = -2;
	}
	nvec = guest_nvec(d, index);
	if (nvec && !ix->hw_on)
		return wkr__irq_enable(d, index, nvec); /* routes torn down by a disconnect */
	return wkr__irq_sync(d, index, count ? start : 0, count ? count : ix->nvec);
}

void wkr_irq_set_mode(struct wkr_dev *d, enum wkr_irq_mode mode)
{
	d->irq_mode = mode;
}

/* Replaces the VMM fds of vectors [start, start+count); fds NULL or an entry -1: none. */
static int vmm_fds_replace(struct wkr_irqidx *ix, uint32_t start, uint32_t count, const int *fds)
{
	_cleanup_free_ int *dups = calloc(count, sizeof(int));

	if (!dups)
		return -ENOMEM;
	for (uint32_t i = 0; i < count; i++) {
		dups[i] = -1;
		if (!fds || fds[i] < 0)
			continue;
		dups[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
		if (dups[i] < 0) {
			int e = -errno;

			while (i--)
				if (dups[i] >= 0)
					close(dups[i]);
			return e;
		}
	}
	for (uint32_t i = 0; i < count; i++) {
		struct wkr_vec *v = &ix->vec[start + i];

		close_fd(&v->vmm_fd);
		v->vmm_fd = dups[i];
		/* A new dup may reuse the old number: force the re-route. */
		if (v->routed >= 0)
			v->routed = -2;
	}
	return 0;
}

/* MSI/MSI-X triggers. The first assignment enables the index: MSI-X with all its vectors (a
 * client sends them in chunks of its fd limit, and a kernel without dynamic MSI-X cannot grow
 * an enabled index), MSI with the vectors named; vectors without an fd fire into worker
 * eventfds, never nowhere. */
static int vfio_msi_trigger(struct wkr_dev *d, uint32_t index, uint32_t start, uint32_t count,
			    const int *fds)
{
	struct wkr_irqidx *ix = &d->irq[index];
	int r = vmm_fds_replace(ix, start, count, fds);
	uint32_t want;

	if (r < 0)
		return r;
	want = index == VFIO_PCI_MSIX_IRQ_INDEX ? ix->nvec : start + count;
	if (!ix->hw_on || start + count > ix->hw_count)
		return irq_enable(d, index, want > ix->hw_count ? want : ix->hw_count);
	return irq_sync(d, index, start, count);
}

static void index_off(struct wkr_dev *d, uint32_t index, int *r)
{
	struct wkr_irqidx *ix = &d->irq[index];

	*r = disable(d, index);
	for (uint32_t v = 0; v < ix->nvec; v++)
		close_fd(&ix->vec[v].vmm_fd);
	close_fd(&ix->resample_fd);
}

/* INTx, ERR, REQ: one vector, the VMM's eventfd is the trigger. */
static int vfio_line(struct wkr_dev *d, uint32_t index, uint32_t action, uint32_t data,
		     const int *fds, const uint8_t *bools)
{
	struct wkr_irqidx *ix = &d->irq[index];
	int r = 0;
	struct wkr_irq_set s;

	if (action == VFIO_IRQ_SET_ACTION_TRIGGER) {
		if (!fds || fds[0] < 0) {
			index_off(d, index, &r);
			return r;
		}
		return set_direct(d, index, 1, fds, -1);
	}
	if (index != VFIO_PCI_INTX_IRQ_INDEX)
		return -EINVAL;
	s = (struct wkr_irq_set){.index = index, .count = 1, .action = action};
	if (data == VFIO_IRQ_SET_DATA_EVENTFD) {
		if (action != VFIO_IRQ_SET_ACTION_UNMASK)
			return -EINVAL;
		close_fd(&ix->resample_fd);
		if (fds && fds[0] >= 0 && (ix->resample_fd = fcntl(fds[0], F_DUPFD_CLOEXEC, 3)) < 0)
			return -errno;
		s.fds = &ix->resample_fd;
		return call(d, &s);
	}
	if (data == VFIO_IRQ_SET_DATA_BOOL && !bools[0])
		return 0;
	return call(d, &s); /* fds NULL: DATA_NONE */
}

int wkr_irq_set_vfio(struct wkr_dev *d, uint32_t index, uint32_t flags, uint32_t start,
		     uint32_t count, const int *fds, const uint8_t *bools)
{
	uint32_t data = flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
	uint32_t action = flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
	bool msi = index == VFIO_PCI_MSI_IRQ_INDEX || index == VFIO_PCI_MSIX_IRQ_INDEX;
	int r = 0;
	struct wkr_irqidx *ix;

	if (index >= WKR_NUM_IRQS ||
	    (flags & ~(VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK)) ||
	    __builtin_popcount(data) != 1 || __builtin_popcount(action) != 1)
		return -EINVAL;
	ix = &d->irq[index];
	if (ix->nvec == 0)
		return -ENOENT;
	if (data == VFIO_IRQ_SET_DATA_BOOL && !bools)
		return -EINVAL;
	if (action == VFIO_IRQ_SET_ACTION_TRIGGER && data == VFIO_IRQ_SET_DATA_NONE && count == 0) {
		if (start)
			return -EINVAL;
		index_off(d, index, &r);
		return r;
	}
	if (count == 0 || start >= ix->nvec || count > ix->nvec - start)
		return -EINVAL;
	if (action == VFIO_IRQ_SET_ACTION_TRIGGER && data != VFIO_IRQ_SET_DATA_EVENTFD) {
		/* A loopback trigger: what the device would signal, signalled now. */
		for (uint32_t i = 0; i < count; i++) {
			int fd = ix->vec[start + i].vmm_fd;

			if (fd >= 0 && (data == VFIO_IRQ_SET_DATA_NONE || bools[i]))
				(void)vmm_signal(d, fd);
		}
		return 0;
	}
	if (msi)
		return action == VFIO_IRQ_SET_ACTION_TRIGGER
			   ? vfio_msi_trigger(d, index, start, count, fds)
			   : -EINVAL; /* MSI and MSI-X are not maskable through SET_IRQS */
	return vfio_line(d, index, action, data, fds, bools);
}

int wkr_irq_poll_fd(const struct wkr_dev *d)
{
	return d->epfd;
}

int wkr_irq_service(struct wkr_dev *d)
{
	struct epoll_event ev[32];
	int fired = 0;
	int n = epoll_wait(d->epfd, ev, 32, 0);

	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n; i++) {
		uint32_t index = (uint32_t)(ev[i].data.u64 >> 32);
		uint32_t v = (uint32_t)ev[i].data.u64;
		struct wkr_vec *vec = &d->irq[index].vec[v];

		if (!drain(vec->wfd))
			continue;
		fired++;
		vec->pending = true;
		deliver(d, index, v);
		pending_changed(d, index);
	}
	return fired;
}

uint64_t wkr_irq_unsent(const struct wkr_dev *d)
{
	return d->irq_unsent;
}

uint64_t wkr_irq_pending(const struct wkr_dev *d)
{
	uint64_t n = 0;

	for (uint32_t i = VFIO_PCI_MSI_IRQ_INDEX; i <= VFIO_PCI_MSIX_IRQ_INDEX; i++)
		for (uint32_t v = 0; v < d->irq[i].nvec; v++)
			n += d->irq[i].vec[v].pending;
	return n;
}
