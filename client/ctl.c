/*
 * ctl: the orchestrator side of the control protocol (vfio-brokerd's control socket): add,
 * remove, list, status, metrics and the event subscription.
 *
 * PCI addresses and VM names are checked before anything is sent. Replies come from the
 * privileged broker but are still only data: strings are copied with their lengths checked
 * against the public structures, never trusted to fit.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control.pb-c.h"

#include "vfiobroker/client.h"

#include "base.h"
#include "conn.h"

/* A broker-side removal waits for the VMM this long when the request names no timeout. */
#define REMOVE_DEFAULT_GRACE_MS 30000
/* Devices asked for per ListDevices page: as many as the broker fits in one control datagram.
 * Statuses run from about 150 bytes (a device with its socket) to about 720 (the longest VM
 * name, paths and fault), so a fixed count either wastes round trips on typical devices (64 a
 * page made 128 devices two requests, each a round trip through the broker's loop) or would
 * not fit the largest; the broker ends each page at the datagram's end, and a page's work is
 * bounded by it. */
#define CTL_LIST_PAGE UINT32_MAX

struct vfb_ctl {
	struct vfb__conn conn;
};

static int ctl_new(int fd, const char *path, uint32_t flags, struct vfb_ctl **ret)
{
	_cleanup_free_ struct vfb_ctl *ctl = NULL;
	int r;

	if (flags != 0 || !ret)
		return -EINVAL;
	ctl = calloc(1, sizeof(*ctl));
	if (!ctl)
		return -ENOMEM;
	if (path)
		r = vfb__conn_open(&ctl->conn, path, &ipc_proto_control, VB__CTL__TYPE__EVENT);
	else
		r = vfb__conn_init(&ctl->conn, fd, &ipc_proto_control, VB__CTL__TYPE__EVENT);
	if (r < 0)
		return r;
	ctl->conn.timeout_ms = VFB_TIMEOUT_DEFAULT_MS;
	*ret = TAKE_PTR(ctl);
	return 0;
}

int vfb_ctl_connect(const char *path, uint32_t flags, struct vfb_ctl **ret)
{
	return ctl_new(-1, path ? path : VFB_CTL_SOCKET_DEFAULT, flags, ret);
}

int vfb_ctl_connect_fd(int fd, uint32_t flags, struct vfb_ctl **ret)
{
	int r = vfb__conn_check_fd(fd);

	return r < 0 ? r : ctl_new(fd, NULL, flags, ret);
}

void vfb_ctl_close(struct vfb_ctl *ctl)
{
	if (!ctl)
		return;
	vfb__conn_fini(&ctl->conn);
	free(ctl);
}

int vfb_ctl_set_timeout(struct vfb_ctl *ctl, int timeout_ms)
{
	return vfb__conn_set_timeout(&ctl->conn, timeout_ms);
}

const char *vfb_ctl_last_error(const struct vfb_ctl *ctl)
{
	return ctl->conn.last_error;
}

int vfb_vm_name_check(const char *vm)
{
	size_t n;

	if (!vm)
		return -EINVAL;
	n = strlen(vm);
	if (n == 0 || n > VFB_VM_NAME_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		char c = vm[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return -EINVAL;
	}
	/* "." and ".." could name directories wherever the broker uses VM names in paths. */
	if (strcmp(vm, ".") == 0 || strcmp(vm, "..") == 0)
		return -EINVAL;
	return 0;
}

static int copy_str(char *dst, size_t size, const char *src)
{
	size_t n = strlen(src);

	if (n >= size)
		return -EPROTO;
	memcpy(dst, src, n + 1);
	return 0;
}

const char *vfb_ctl_proto_name(uint32_t protocol)
{
	static const char *const names[] = {"unknown", "native", "vfio-user", "both"};

	return protocol < 4 ? names[protocol] : "unknown";
}

int vfb_ctl_add(struct vfb_ctl *ctl, const struct vfb_ctl_add_request *req,
		struct vfb_ctl_add_reply *ret)
{
	Vb__Ctl__AddDevice pb = VB__CTL__ADD_DEVICE__INIT;
	Vb__Ctl__DeviceLimits lim = VB__CTL__DEVICE_LIMITS__INIT;
	const Vb__Ctl__AddDeviceReply *rep;
	struct vfb_ctl_add_reply out;
	char bdf[VFB_BDF_MAX];
	_cleanup_(ipc_msg_freep) struct ipc_msg *m = NULL;
	int r;

	const uint32_t known =
	    VFB_CTL_ADD_BIND | VFB_CTL_ADD_ALLOW_MMAP | VFB_CTL_ADD_NATIVE | VFB_CTL_ADD_VFIO_USER;

	if (!req || !ret || (req->flags & ~known))
		return -EINVAL;
	r = vfb_bdf_normalize(req->bdf, bdf, sizeof(bdf));
	if (r < 0)
		return -EINVAL;
	r = vfb_vm_name_check(req->vm);
	if (r < 0)
		return r;
	pb.bdf = bdf;
	pb.vm = (char *)req->vm;
	pb.owner_uid = req->owner_uid;
	pb.owner_gid = req->owner_gid;
	lim.max_dma_mappings = req->max_dma_mappings;
	lim.max_pinned_bytes = req->max_pinned_bytes;
	pb.limits = &lim;
	pb.bind_vfio = !!(req->flags & VFB_CTL_ADD_BIND);
	pb.allow_mmap = !!(req->flags & VFB_CTL_ADD_ALLOW_MMAP);
	pb.protocol =
	    (req->flags & VFB_CTL_ADD_NATIVE ? VB__CTL__PROTOCOL__PROTOCOL_NATIVE : 0) |
	    (req->flags & VFB_CTL_ADD_VFIO_USER ? VB__CTL__PROTOCOL__PROTOCOL_VFIO_USER : 0);
	r = vfb__conn_call(&ctl->conn, VB__CTL__TYPE__ADD_DEVICE, &pb.base, NULL, 0, 0, &m);
	if (r < 0)
		return r;
	rep = (const Vb__Ctl__AddDeviceReply *)m->body;
	memset(&out, 0, sizeof(out));
	r = copy_str(out.socket_path, sizeof(out.socket_path), rep->socket_path);
	if (r == 0)
		r = copy_str(out.iommu_backend, sizeof(out.iommu_backend), rep->iommu_backend);
	if (r == 0)
		r = copy_str(out.vfio_user_socket_path, sizeof(out.vfio_user_socket_path),
			     rep->vfio_user_socket_path);
	out.protocol = (uint32_t)rep->protocol;
	out.worker_pid = rep->worker_pid;
	out.iommu_group = rep->iommu_group;
	if (r == 0)
		*ret = out;
	return r;
}

int vfb_ctl_remove(struct vfb_ctl *ctl, const char *bdf, uint32_t timeout_ms, uint32_t flags,
		   bool *ret_acknowledged)
{
	Vb__Ctl__RemoveDevice pb = VB__CTL__REMOVE_DEVICE__INIT;
	char nbdf[VFB_BDF_MAX];
	_cleanup_(ipc_msg_freep) struct ipc_msg *m = NULL;
	uint32_t grace;
	int r;

	if (flags & ~VFB_CTL_REMOVE_FORCE)
		return -EINVAL;
	if (vfb_bdf_normalize(bdf, nbdf, sizeof(nbdf)) < 0)
		return -EINVAL;
	pb.bdf = nbdf;
	pb.timeout_ms = timeout_ms;
	pb.force = !!(flags & VFB_CTL_REMOVE_FORCE);
	/* The broker answers only after the VMM acknowledged or its grace ran out. */
	grace = pb.force ? 0 : (timeout_ms ? timeout_ms : REMOVE_DEFAULT_GRACE_MS);
	r = vfb__conn_call(&ctl->conn, VB__CTL__TYPE__REMOVE_DEVICE, &pb.base, NULL, 0,
			   grace > INT32_MAX ? INT32_MAX : (int)grace, &m);
	if (r < 0)
		return r;
	if (ret_acknowledged)
		*ret_acknowledged = ((const Vb__Ctl__RemoveDeviceReply *)m->body)->vmm_acknowledged;
	return 0;
}

/* A device's strings and interrupt states live in one allocation, which its bdf points at: one
 * malloc and one free per device rather than six of each (for a list of 128 devices those took
 * about half as long as decoding the reply). */
static void device_clear(struct vfb_ctl_device *d)
{
	free(d->bdf);
	memset(d, 0, sizeof(*d));
}

/* Copies `s` to *p and makes `dst` point at the copy; *p moves past it. */
static void put_str(char **p, char **dst, const char *s, size_t len)
{
	memcpy(*p, s, len + 1);
	*dst = *p;
	*p += len + 1;
}

static int device_from_pb(const Vb__Ctl__DeviceStatus *s, struct vfb_ctl_device *d)
{
	const char *const strs[] = {s->bdf, s->vm, s->socket_path, s->vfio_user_socket_path,
				    s->last_fault};
	char **const dsts[] = {&d->bdf, &d->vm, &d->socket_path, &d->vfio_user_socket_path,
			       &d->last_fault};
	size_t lens[ARRAY_SIZE(strs)], size = 0, irqs_at;
	char *block, *p;

	memset(d, 0, sizeof(*d));
	for (size_t i = 0; i < ARRAY_SIZE(strs); i++) {
		lens[i] = strlen(strs[i]);
		size += lens[i] + 1;
	}
	irqs_at = (size + alignof(struct vfb_ctl_irq_state) - 1) /
		  alignof(struct vfb_ctl_irq_state) * alignof(struct vfb_ctl_irq_state);
	block = malloc(irqs_at + s->n_irqs * sizeof(*d->irqs));
	if (!block)
		return -ENOMEM;
	p = block;
	/* bdf first: device_clear() frees the block through it. */
	for (size_t i = 0; i < ARRAY_SIZE(strs); i++)
		put_str(&p, dsts[i], strs[i], lens[i]);
	d->state = s->state;
	d->worker_pid = s->worker_pid;
	d->dma_mappings = s->dma_mappings;
	d->pinned_bytes = s->pinned_bytes;
	d->restarts = s->restarts;
	d->resets = s->resets;
	d->iommu_group = s->iommu_group;
	d->protocol = (uint32_t)s->protocol;
	d->nirqs = s->n_irqs;
	if (s->n_irqs)
		d->irqs = (struct vfb_ctl_irq_state *)(block + irqs_at);
	for (size_t i = 0; i < s->n_irqs; i++) {
		d->irqs[i].index = s->irqs[i]->index;
		d->irqs[i].enabled = s->irqs[i]->enabled;
	}
	return 0;
}

void vfb_ctl_device_free(struct vfb_ctl_device *d)
{
	if (!d)
		return;
	device_clear(d);
	free(d);
}

void vfb_ctl_device_list_free(struct vfb_ctl_device *list, size_t n)
{
	if (!list)
		return;
	for (size_t i = 0; i < n; i++)
		device_clear(&list[i]);
	free(list);
}

int vfb_ctl_status(struct vfb_ctl *ctl, const char *bdf, struct vfb_ctl_device **ret)
{
	Vb__Ctl__DeviceStatusRequest pb = VB__CTL__DEVICE_STATUS_REQUEST__INIT;
	_cleanup_free_ struct vfb_ctl_device *d = NULL;
	char nbdf[VFB_BDF_MAX];
	_cleanup_(ipc_msg_freep) struct ipc_msg *m = NULL;
	int r;

	if (!ret || vfb_bdf_normalize(bdf, nbdf, sizeof(nbdf)) < 0)
		return -EINVAL;
	pb.bdf = nbdf;
	r = vfb__conn_call(&ctl->conn, VB__CTL__TYPE__DEVICE_STATUS, &pb.base, NULL, 0, 0, &m);
	if (r < 0)
		return r;
	d = malloc(sizeof(*d));
	if (!d)
		r = -ENOMEM;
	else
		r = device_from_pb((const Vb__Ctl__DeviceStatus *)m->body, d);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(d);
	return 0;
}

/* Appends one ListDevices page to *list (n devices so far); *after becomes the page's cursor, ""
 * after the last page. -EPROTO for a cursor that does not move forward (a broker that would
 * keep the loop going). */
static int ctl_list_page(struct vfb_ctl *ctl, char *after, size_t after_size,
			 struct vfb_ctl_device **list, size_t *n)
{
	Vb__Ctl__ListDevices pb = VB__CTL__LIST_DEVICES__INIT;
	const Vb__Ctl__ListDevicesReply *rep;
	struct vfb_ctl_device *grown;
	_cleanup_(ipc_msg_freep) struct ipc_msg *m = NULL;
	int r;

	pb.after = after;
	pb.max_devices = CTL_LIST_PAGE;
	r = vfb__conn_call(&ctl->conn, VB__CTL__TYPE__LIST_DEVICES, &pb.base, NULL, 0, 0, &m);
	if (r < 0)
		return r;
	rep = (const Vb__Ctl__ListDevicesReply *)m->body;
	/* One spare element so that an empty list is still a pointer the caller may free. */
	grown = realloc(*list, (*n + rep->n_devices + 1) * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	*list = grown;
	memset(&grown[*n], 0, (rep->n_devices + 1) * sizeof(*grown));
	/* A device that failed half-way is counted: the caller's free clears what it got. */
	for (size_t i = 0; r == 0 && i < rep->n_devices; i++, (*n)++)
		r = device_from_pb(rep->devices[i], &grown[*n]);
	if (r == 0 && rep->next && rep->next[0]) {
		if (!rep->n_devices || strlen(rep->next) >= after_size ||
		    strcmp(rep->next, after) <= 0)
			r = -EPROTO;
		else
			snprintf(after, after_size, "%s", rep->next);
	} else if (r == 0) {
		after[0] = '\0';
	}
	return r;
}

int vfb_ctl_list(struct vfb_ctl *ctl, struct vfb_ctl_device **ret, size_t *ret_n)
{
	struct vfb_ctl_device *list = NULL;
	char after[32] = "";
	size_t n = 0;
	int r;

	if (!ret || !ret_n)
		return -EINVAL;
	/* Every page, each from where the last ended. A broker from before paging ignores the
	 * fields and answers everything at once without a cursor: one page. */
	do {
		r = ctl_list_page(ctl, after, sizeof(after), &list, &n);
	} while (r == 0 && after[0]);
	if (r < 0) {
		vfb_ctl_device_list_free(list, n);
		return r;
	}
	if (!list)
		list = calloc(1, sizeof(*list));
	if (!list)
		return -ENOMEM;
	*ret = list;
	*ret_n = n;
	return 0;
}

int vfb_ctl_metrics(struct vfb_ctl *ctl, char **ret)
{
	Vb__Ctl__MetricsRequest pb = VB__CTL__METRICS_REQUEST__INIT;
	_cleanup_(ipc_msg_freep) struct ipc_msg *m = NULL;
	char *text;
	int r;

	if (!ret)
		return -EINVAL;
	r = vfb__conn_call(&ctl->conn, VB__CTL__TYPE__METRICS, &pb.base, NULL, 0, 0, &m);
	if (r < 0)
		return r;
	text = strdup(((const Vb__Ctl__MetricsReply *)m->body)->text);
	if (!text)
		return -ENOMEM;
	*ret = text;
	return 0;
}

int vfb_ctl_subscribe(struct vfb_ctl *ctl)
{
	Vb__Ctl__SubscribeEvents pb = VB__CTL__SUBSCRIBE_EVENTS__INIT;
	_cleanup_(ipc_msg_freep) struct ipc_msg *m = NULL;

	return vfb__conn_call(&ctl->conn, VB__CTL__TYPE__SUBSCRIBE_EVENTS, &pb.base, NULL, 0, 0,
			      &m);
}

int vfb_ctl_event_fd(const struct vfb_ctl *ctl)
{
	return ctl->conn.epfd;
}

void vfb_ctl_event_free(struct vfb_ctl_event *ev)
{
	if (!ev)
		return;
	free(ev->bdf);
	free(ev->vm);
	free(ev->detail);
	free(ev);
}
VB_DEFINE_CLEANUP(struct vfb_ctl_event, vfb_ctl_event_free);

int vfb_ctl_next_event(struct vfb_ctl *ctl, struct vfb_ctl_event **ret)
{
	_cleanup_(vfb_ctl_event_freep) struct vfb_ctl_event *ev = NULL;
	const Vb__Ctl__Event *pb;
	_cleanup_(ipc_msg_freep) struct ipc_msg *m = NULL;
	int r;

	if (!ret)
		return -EINVAL;
	r = vfb__conn_next_event(&ctl->conn, &m);
	if (r < 0)
		return r;
	pb = (const Vb__Ctl__Event *)m->body;
	ev = calloc(1, sizeof(*ev));
	if (ev) {
		ev->kind = pb->kind;
		ev->timestamp_ns = pb->timestamp_ns;
		ev->bdf = strdup(pb->bdf);
		ev->vm = strdup(pb->vm);
		ev->detail = strdup(pb->detail);
	}
	if (!ev || !ev->bdf || !ev->vm || !ev->detail)
		return -ENOMEM;
	*ret = TAKE_PTR(ev);
	return 0;
}
