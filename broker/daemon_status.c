/*
 * daemon_status: the read-only control requests (ListDevices, DeviceStatus, Metrics), built from
 * the registry and the VFIO core's own counters. Responsible for reporting what is true now,
 * including for faulted devices whose VFIO objects are already released. Changes nothing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "daemon_priv.h"
#include "irq.h"
#include "metrics.h"
#include "pool.h"

struct dmn_status_buf {
	Vb__Ctl__DeviceStatus st;
	Vb__Ctl__IrqState irq_store[BRK_DEVICE_MAX_IRQS];
	Vb__Ctl__IrqState *irqs[BRK_DEVICE_MAX_IRQS];
};

static void dmn_fill_status(const struct brk_dev_rec *d, struct dmn_status_buf *b)
{
	const struct dmn_assignment *dd = d->priv;
	const struct dmn_vm *v = d->vm->priv;
	Vb__Ctl__DeviceStatus *st = &b->st;
	struct brk_dma_stats ds;
	const struct brk_irqs *irqs;

	vb__ctl__device_status__init(st);
	st->bdf = (char *)d->bdf;
	st->vm = (char *)d->vm->name;
	st->state = (Vb__Ctl__DeviceState)brk_dev_state_wire(d->state);
	st->worker_pid = (uint32_t)d->worker_pid;
	st->restarts = d->restarts;
	st->socket_path = (char *)d->socket_path;
	st->vfio_user_socket_path = (char *)d->vfu_socket_path;
	st->protocol = (Vb__Ctl__Protocol)d->protocols;
	st->iommu_group = d->iommu_group;
	st->last_fault = (char *)d->last_fault;
	st->resets = dd->resets_before;
	if (v && v->dma) {
		brk_dma_stats(v->dma, &ds);
		st->dma_mappings = ds.mappings;
		st->pinned_bytes = ds.pinned_bytes;
	}
	if (!dd->device)
		return;
	st->resets += brk_vfio_dev_resets(dd->device);
	irqs = brk_vfio_dev_irqs(dd->device);
	for (uint32_t i = 0; i < brk_irq_count(irqs) && i < BRK_DEVICE_MAX_IRQS; i++) {
		struct brk_irq_status is;

		if (brk_irq_status(irqs, i, &is) < 0 || !is.count)
			continue;
		vb__ctl__irq_state__init(&b->irq_store[st->n_irqs]);
		b->irq_store[st->n_irqs].index = is.index;
		b->irq_store[st->n_irqs].enabled = is.triggers;
		b->irqs[st->n_irqs] = &b->irq_store[st->n_irqs];
		st->n_irqs++;
	}
	st->irqs = b->irqs;
}

int brk_daemon__device_status(void *ctx, const char *bdf, struct brk_ctl_call *call)
{
	struct brk_daemon *dmn = ctx;
	struct brk_dev_rec *d = brk_registry_find(dmn->reg, bdf);
	struct dmn_status_buf *b;

	if (!d) {
		brk_ctl_call_set_message(call, "%s is not assigned", bdf);
		return -ENOENT;
	}
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	dmn_fill_status(d, b);
	brk_ctl_call_reply(call, &b->st.base);
	free(b);
	return 0;
}

/*
 * A page's bytes are written here rather than by protobuf-c: its generic sizing and packing walk
 * each message's descriptor field by field, and sizing then packing 128 statuses was most of the
 * broker's time for a page (a fifth of a whole vfb_ctl_list() on the host, more in the emulated
 * test guest). The statuses are still filled as Vb__Ctl__DeviceStatus (dmn_fill_status(), shared
 * with DeviceStatus); what follows writes exactly what protobuf_c_message_pack() writes for one:
 * every field in the order of its number, proto3's zeros and empty strings left out, lengths
 * and values as minimal varints. tests/test_daemon.c compares the bytes with protobuf-c's for
 * statuses of every shape, and fails when the schema gains a field this does not write.
 */
#define DMN_PB_LEN     2 /* the wire type of strings, bytes and messages; 0: varints */
#define DMN_PB_DEVICES 1 /* ListDevicesReply.devices */
#define DMN_PB_NEXT    2 /* ListDevicesReply.next */

static size_t dmn_pb_varint_size(uint64_t v)
{
	size_t n = 1;

	for (; v >= 0x80; v >>= 7)
		n++;
	return n;
}

static uint8_t *dmn_pb_varint(uint8_t *p, uint64_t v)
{
	for (; v >= 0x80; v >>= 7)
		*p++ = (uint8_t)(v | 0x80);
	*p++ = (uint8_t)v;
	return p;
}

/* Every field number here is below 16: its key is one byte. */
static uint8_t *dmn_pb_key(uint8_t *p, unsigned number, unsigned wire_type)
{
	*p++ = (uint8_t)(number << 3 | wire_type);
	return p;
}

/* What one length-delimited field of `len` bytes adds to a message: key, length, bytes. */
static size_t dmn_pb_field_size(size_t len)
{
	return 1 + dmn_pb_varint_size(len) + len;
}

static uint8_t *dmn_pb_field_head(uint8_t *p, unsigned number, size_t len)
{
	return dmn_pb_varint(dmn_pb_key(p, number, DMN_PB_LEN), len);
}

/* A scalar field (enums are int32: a negative one is ten bytes, as protobuf-c writes it). */
static size_t dmn_pb_uint_size(uint64_t v)
{
	return v ? 1 + dmn_pb_varint_size(v) : 0;
}

static uint8_t *dmn_pb_uint(uint8_t *p, unsigned number, uint64_t v)
{
	return v ? dmn_pb_varint(dmn_pb_key(p, number, 0), v) : p;
}

static uint64_t dmn_pb_enum(int v)
{
	return (uint64_t)(int64_t)v;
}

static size_t dmn_pb_str_size(const char *s)
{
	size_t len = s ? strlen(s) : 0;

	return len ? dmn_pb_field_size(len) : 0;
}

static uint8_t *dmn_pb_str(uint8_t *p, unsigned number, const char *s)
{
	size_t len = s ? strlen(s) : 0;

	if (!len)
		return p;
	p = dmn_pb_field_head(p, number, len);
	memcpy(p, s, len);
	return p + len;
}

static size_t dmn_irq_state_size(const Vb__Ctl__IrqState *q)
{
	return dmn_pb_uint_size(q->index) + dmn_pb_uint_size(q->enabled);
}

size_t brk_daemon__status_packed_size(const Vb__Ctl__DeviceStatus *st)
{
	size_t n = dmn_pb_str_size(st->bdf) + dmn_pb_str_size(st->vm) +
		   dmn_pb_uint_size(dmn_pb_enum(st->state)) + dmn_pb_uint_size(st->worker_pid) +
		   dmn_pb_uint_size(st->dma_mappings) + dmn_pb_uint_size(st->pinned_bytes) +
		   dmn_pb_uint_size(st->restarts) + dmn_pb_str_size(st->socket_path) +
		   dmn_pb_uint_size(st->iommu_group) + dmn_pb_str_size(st->last_fault) +
		   dmn_pb_uint_size(st->resets) + dmn_pb_uint_size(dmn_pb_enum(st->protocol)) +
		   dmn_pb_str_size(st->vfio_user_socket_path);

	for (size_t i = 0; i < st->n_irqs; i++)
		n += dmn_pb_field_size(dmn_irq_state_size(st->irqs[i]));
	return n;
}

size_t brk_daemon__status_pack(const Vb__Ctl__DeviceStatus *st, uint8_t *out)
{
	uint8_t *p = out;

	p = dmn_pb_str(p, 1, st->bdf);
	p = dmn_pb_str(p, 2, st->vm);
	p = dmn_pb_uint(p, 3, dmn_pb_enum(st->state));
	p = dmn_pb_uint(p, 4, st->worker_pid);
	p = dmn_pb_uint(p, 5, st->dma_mappings);
	p = dmn_pb_uint(p, 6, st->pinned_bytes);
	for (size_t i = 0; i < st->n_irqs; i++) {
		p = dmn_pb_field_head(p, 7, dmn_irq_state_size(st->irqs[i]));
		p = dmn_pb_uint(p, 1, st->irqs[i]->index);
		p = dmn_pb_uint(p, 2, st->irqs[i]->enabled);
	}
	p = dmn_pb_uint(p, 8, st->restarts);
	p = dmn_pb_str(p, 9, st->socket_path);
	p = dmn_pb_uint(p, 10, st->iommu_group);
	p = dmn_pb_str(p, 11, st->last_fault);
	p = dmn_pb_uint(p, 12, st->resets);
	p = dmn_pb_uint(p, 13, dmn_pb_enum(st->protocol));
	p = dmn_pb_str(p, 14, st->vfio_user_socket_path);
	return (size_t)(p - out);
}

/*
 * A page: the devices after `req->after` in BDF order (canonical BDFs order as strings), at most
 * `req->max_devices`, and no more than fit one datagram with the `next` cursor; at least one when
 * any is left (a status is at most about 720 bytes). The cursor is a BDF, not a position, so a
 * device removed between two pages moves nothing; one added meanwhile below the cursor is in the
 * next full listing. max_devices 0 is a client from before paging: everything in one reply, or
 * EMSGSIZE with the size it would have had.
 *
 * The reply is packed here, a status at a time, into the daemon's list buffer: each status is
 * sized once (for the room check and its length) and packed once, where building the whole
 * ListDevicesReply and handing it to ipc_chan_reply() had protobuf-c size every status three
 * times (here, for the room; for the datagram; for its length while packing) and needed all of
 * them in memory at once. The devices come from the registry's BDF index: no copy, no sort.
 */
int brk_daemon__list_devices(void *ctx, const Vb__Ctl__ListDevices *req, struct brk_ctl_call *call)
{
	struct brk_daemon *dmn = ctx;
	struct brk_dev_rec *const *devs;
	uint32_t n = brk_registry_after(dmn->reg, req->after ? req->after : "", &devs), i;
	uint32_t want = req->max_devices && req->max_devices < n ? req->max_devices : n;
	size_t room = brk_ctl_reply_room(), used = 0, len = 0;
	struct dmn_status_buf b;

	/* A page keeps room for its cursor; an unpaged reply has none. */
	if (req->max_devices)
		room -= dmn_pb_field_size(VB_BDF_LEN - 1);
	if (!dmn->list_buf) {
		dmn->list_buf = malloc(brk_ctl_reply_room());
		if (!dmn->list_buf)
			return -ENOMEM;
	}
	for (i = 0; i < want; i++) {
		uint8_t *p;

		dmn_fill_status(devs[i], &b);
		len = brk_daemon__status_packed_size(&b.st);
		if (used + dmn_pb_field_size(len) > room)
			break;
		p = dmn_pb_field_head(dmn->list_buf + used, DMN_PB_DEVICES, len);
		used = (size_t)(p - dmn->list_buf) + brk_daemon__status_pack(&b.st, p);
	}
	/* What does not fit: a page ends before it (it has at least one status: one always fits);
	 * an unpaged reply, or a page whose first status alone would not fit, is refused with the
	 * size the whole would have had. */
	if (i < want && (!req->max_devices || i == 0)) {
		for (used += dmn_pb_field_size(len); ++i < want;) {
			dmn_fill_status(devs[i], &b);
			used += dmn_pb_field_size(brk_daemon__status_packed_size(&b.st));
		}
		brk_ctl_call_reply_too_large(call, used);
		return 0;
	}
	if (req->max_devices && i < n) {
		used = (size_t)(dmn_pb_str(dmn->list_buf + used, DMN_PB_NEXT, devs[i - 1]->bdf) -
				dmn->list_buf);
	}
	brk_ctl_call_reply_packed(call, &vb__ctl__list_devices_reply__descriptor, dmn->list_buf,
				  used);
	return 0;
}

static void dmn_metrics_devices(struct brk_daemon *dmn, FILE *f)
{
	uint32_t by_state[BRK_DEV_FAULTED + 1] = {0}, workers = 0;

	for (struct brk_dev_rec *d = brk_registry_first(dmn->reg); d; d = d->next) {
		const struct dmn_assignment *dd = d->priv;

		by_state[brk_dev_state_wire(d->state)]++;
		workers += dd->worker != NULL;
	}
	brk_metric_header(f, "vfio_broker_devices", "gauge", "Assigned devices, by state.");
	for (int s = BRK_DEV_STARTING; s <= BRK_DEV_FAULTED; s++)
		fprintf(f, "vfio_broker_devices{state=\"%s\"} %u\n",
			brk_dev_state_name((enum brk_dev_state)s), by_state[s]);
	brk_metric_header(f, "vfio_broker_vms", "gauge", "VMs with at least one device.");
	fprintf(f, "vfio_broker_vms %u\n", brk_registry_nvms(dmn->reg));
	brk_metric_header(f, "vfio_broker_workers", "gauge", "Worker processes running.");
	fprintf(f, "vfio_broker_workers %u\n", workers);
	brk_metric_header(f, "vfio_broker_worker_restarts_total", "counter",
			  "Workers restarted after a crash or hang.");
	fprintf(f, "vfio_broker_worker_restarts_total %llu\n",
		(unsigned long long)dmn->restarts_total);
	brk_metric_header(f, "vfio_broker_devices_added_total", "counter", "AddDevice completed.");
	fprintf(f, "vfio_broker_devices_added_total %llu\n", (unsigned long long)dmn->adds_total);
	brk_metric_header(f, "vfio_broker_devices_removed_total", "counter",
			  "RemoveDevice completed.");
	fprintf(f, "vfio_broker_devices_removed_total %llu\n",
		(unsigned long long)dmn->removes_total);
}

static void dmn_metrics_vms(struct brk_daemon *dmn, FILE *f)
{
	struct brk_dma_stats ds;

	brk_metric_header(f, "vfio_broker_dma_mappings", "gauge", "DMA mappings, by VM.");
	for (struct brk_vm *vm = brk_registry_first_vm(dmn->reg); vm; vm = vm->next) {
		const struct dmn_vm *v = vm->priv;

		if (v && v->dma) {
			brk_dma_stats(v->dma, &ds);
			fprintf(f, "vfio_broker_dma_mappings{vm=\"%s\"} %u\n", vm->name,
				ds.mappings);
		}
	}
	brk_metric_header(f, "vfio_broker_pinned_bytes", "gauge", "Pinned guest memory, by VM.");
	for (struct brk_vm *vm = brk_registry_first_vm(dmn->reg); vm; vm = vm->next) {
		const struct dmn_vm *v = vm->priv;

		if (v && v->dma) {
			brk_dma_stats(v->dma, &ds);
			fprintf(f, "vfio_broker_pinned_bytes{vm=\"%s\"} %llu\n", vm->name,
				(unsigned long long)ds.pinned_bytes);
		}
	}
	brk_metric_header(f, "vfio_broker_dma_map_rejects_total", "counter",
			  "DmaMap requests refused, by VM (since the VM's first device).");
	for (struct brk_vm *vm = brk_registry_first_vm(dmn->reg); vm; vm = vm->next) {
		const struct dmn_vm *v = vm->priv;

		if (v && v->dma) {
			brk_dma_stats(v->dma, &ds);
			fprintf(f, "vfio_broker_dma_map_rejects_total{vm=\"%s\"} %llu\n", vm->name,
				(unsigned long long)ds.rejects);
		}
	}
}

static void dmn_metrics_irqs(struct brk_daemon *dmn, FILE *f)
{
	brk_metric_header(f, "vfio_broker_interrupts_routed", "gauge",
			  "Interrupt vectors with an eventfd trigger installed, by device.");
	for (struct brk_dev_rec *d = brk_registry_first(dmn->reg); d; d = d->next) {
		const struct dmn_assignment *dd = d->priv;
		uint32_t routed = 0;
		const struct brk_irqs *irqs;

		if (!dd->device)
			continue;
		irqs = brk_vfio_dev_irqs(dd->device);
		for (uint32_t i = 0; i < brk_irq_count(irqs); i++) {
			struct brk_irq_status is;

			if (brk_irq_status(irqs, i, &is) == 0)
				routed += is.triggers;
		}
		fprintf(f, "vfio_broker_interrupts_routed{bdf=\"%s\",vm=\"%s\"} %u\n", d->bdf,
			d->vm->name, routed);
	}
}

/* How this broker took over from the last one (daemon_adopt.c). */
static void dmn_metrics_adopt(struct brk_daemon *dmn, FILE *f)
{
	const struct dmn_adopt *a = &dmn->adopt;

	brk_metric_header(
	    f, "vfio_broker_starts_total", "counter",
	    "Broker starts (restarts and re-execs included), as the state record counts "
	    "them; 0 without a record.");
	fprintf(f, "vfio_broker_starts_total %llu\n", (unsigned long long)a->starts);
	brk_metric_header(f, "vfio_broker_adoption_attempted", "gauge",
			  "1 when this broker started with the fds of an earlier one (a restart).");
	fprintf(f, "vfio_broker_adoption_attempted %d\n", a->attempted);
	brk_metric_header(f, "vfio_broker_adoption_milliseconds", "gauge",
			  "How long taking over (or quiescing) the earlier broker's state took.");
	fprintf(f, "vfio_broker_adoption_milliseconds %llu\n", (unsigned long long)a->ms);
	brk_metric_header(f, "vfio_broker_adoption_devices", "gauge",
			  "Devices at this broker's start, by outcome (adopted or quiesced).");
	fprintf(f, "vfio_broker_adoption_devices{outcome=\"adopted\"} %u\n", a->adopted);
	fprintf(f, "vfio_broker_adoption_devices{outcome=\"quiesced\"} %u\n", a->quiesced);
	brk_metric_header(f, "vfio_broker_adoption_untrusted", "gauge",
			  "1 when the earlier broker's state was not trusted; reason says why.");
	fprintf(f, "vfio_broker_adoption_untrusted{reason=\"");
	for (const char *p = a->untrusted; *p; p++) {
		if (*p == '"' || *p == '\\')
			fputc('\\', f);
		fputc(*p == '\n' ? ' ' : *p, f);
	}
	fprintf(f, "\"} %d\n", a->untrusted[0] != '\0');
}

int brk_daemon__metrics(void *ctx, FILE *f)
{
	struct brk_daemon *dmn = ctx;

	dmn_metrics_adopt(dmn, f);
	dmn_metrics_devices(dmn, f);
	dmn_metrics_vms(dmn, f);
	dmn_metrics_irqs(dmn, f);
	brk_pool_metrics(dmn->pool, f);
	brk_worker_metrics(f);
	return 0;
}
