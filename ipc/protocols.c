/*
 * protocols: the message tables of the three wire protocols, transcribed from the `Type` enums
 * and their comments in proto/{control,broker,device}.proto: for each type, the request and reply
 * bodies and how many fds each direction may carry. A type that is missing here cannot be sent or
 * received.
 *
 * Trusts proto/ as the specification. tests/test_ipc.c checks that every enum value has an entry.
 */
#include "broker.pb-c.h"
#include "common.pb-c.h"
#include "control.pb-c.h"
#include "device.pb-c.h"
#include "base.h"
#include "ipc.h"

#define REQ(t, rq, rp)                                        \
	{                                                     \
		.type = (t), .request = &(rq), .reply = &(rp) \
	}
#define REQ_FDS(t, rq, nrq, rp, nrp)                                                     \
	{                                                                                \
		.type = (t), .request = &(rq), .reply = &(rp), .max_request_fds = (nrq), \
		.max_reply_fds = (nrp)                                                   \
	}
#define EVENT(t, ev)                                         \
	{                                                    \
		.type = (t), .request = &(ev), .reply = NULL \
	}

static const struct ipc_msgdef control_defs[] = {
    REQ(VB__CTL__TYPE__ADD_DEVICE, vb__ctl__add_device__descriptor,
	vb__ctl__add_device_reply__descriptor),
    REQ(VB__CTL__TYPE__REMOVE_DEVICE, vb__ctl__remove_device__descriptor,
	vb__ctl__remove_device_reply__descriptor),
    REQ(VB__CTL__TYPE__LIST_DEVICES, vb__ctl__list_devices__descriptor,
	vb__ctl__list_devices_reply__descriptor),
    REQ(VB__CTL__TYPE__DEVICE_STATUS, vb__ctl__device_status_request__descriptor,
	vb__ctl__device_status__descriptor),
    REQ(VB__CTL__TYPE__SUBSCRIBE_EVENTS, vb__ctl__subscribe_events__descriptor,
	vb__empty__descriptor),
    EVENT(VB__CTL__TYPE__EVENT, vb__ctl__event__descriptor),
    REQ(VB__CTL__TYPE__METRICS, vb__ctl__metrics_request__descriptor,
	vb__ctl__metrics_reply__descriptor),
};

const struct ipc_proto ipc_proto_control = {
    .name = "control",
    .id = IPC_PROTO_CONTROL,
    .version = VB__CTL__VERSION__VERSION_CURRENT,
    .defs = control_defs,
    .ndefs = ARRAY_SIZE(control_defs),
};

static const struct ipc_msgdef broker_defs[] = {
    /* fds: the device fd and the worker's VMM listening sockets (native, vfio-user or both). */
    REQ_FDS(VB__BRK__TYPE__HANDOFF, vb__brk__handoff__descriptor, 3, vb__empty__descriptor, 0),
    /* fd: the memfd that backs the mapping. */
    REQ_FDS(VB__BRK__TYPE__DMA_MAP, vb__dma_map__descriptor, 1, vb__empty__descriptor, 0),
    REQ(VB__BRK__TYPE__DMA_UNMAP, vb__dma_unmap__descriptor, vb__empty__descriptor),
    REQ(VB__BRK__TYPE__DMA_UNMAP_ALL, vb__empty__descriptor,
	vb__brk__dma_unmap_all_reply__descriptor),
    /* fds: one eventfd per vector slot; the channel's max_fds is the real bound. */
    REQ_FDS(VB__BRK__TYPE__SET_IRQS, vb__brk__set_irqs__descriptor, IPC_FDS_MAX,
	    vb__empty__descriptor, 0),
    REQ(VB__BRK__TYPE__RESET, vb__empty__descriptor, vb__empty__descriptor),
    REQ(VB__BRK__TYPE__HEARTBEAT, vb__brk__heartbeat__descriptor,
	vb__brk__heartbeat_reply__descriptor),
    REQ(VB__BRK__TYPE__REMOVAL, vb__brk__removal__descriptor, vb__brk__removal_reply__descriptor),
    REQ(VB__BRK__TYPE__VMM_STATE, vb__brk__vmm_state__descriptor, vb__empty__descriptor),
    /* fd: the VMM's connection; reply fd: its mmap grant, when the device allows mmap. */
    REQ_FDS(VB__BRK__TYPE__VMM_ADMIT, vb__empty__descriptor, 1,
	    vb__brk__vmm_admit_reply__descriptor, 1),
    REQ(VB__BRK__TYPE__SYNC, vb__empty__descriptor, vb__empty__descriptor),
};

const struct ipc_proto ipc_proto_broker = {
    .name = "broker",
    .id = IPC_PROTO_BROKER,
    .version = VB__BRK__VERSION__VERSION_CURRENT,
    .defs = broker_defs,
    .ndefs = ARRAY_SIZE(broker_defs),
};

static const struct ipc_msgdef device_defs[] = {
    /* fds: a ring's memfd and request doorbell (ipc_ring.h), when the VMM offers one. */
    REQ_FDS(VB__DEV__TYPE__HELLO, vb__dev__hello__descriptor, 2, vb__dev__hello_reply__descriptor,
	    0),
    REQ(VB__DEV__TYPE__DEVICE_INFO, vb__empty__descriptor, vb__dev__device_info__descriptor),
    /* reply fd: the VMM's mmap grant (a device file of its own), when the policy allows it. */
    REQ_FDS(VB__DEV__TYPE__REGION_INFO, vb__dev__region_info_request__descriptor, 0,
	    vb__region__descriptor, 1),
    REQ(VB__DEV__TYPE__IRQ_INFO, vb__dev__irq_info_request__descriptor, vb__irq__descriptor),
    REQ(VB__DEV__TYPE__CFG_READ, vb__dev__cfg_read__descriptor, vb__dev__data__descriptor),
    REQ(VB__DEV__TYPE__CFG_WRITE, vb__dev__cfg_write__descriptor, vb__empty__descriptor),
    REQ(VB__DEV__TYPE__REGION_READ, vb__dev__region_read__descriptor, vb__dev__data__descriptor),
    REQ(VB__DEV__TYPE__REGION_WRITE, vb__dev__region_write__descriptor, vb__empty__descriptor),
    /* fd: the memfd of guest RAM behind the mapping. */
    REQ_FDS(VB__DEV__TYPE__DMA_MAP, vb__dma_map__descriptor, 1, vb__empty__descriptor, 0),
    REQ(VB__DEV__TYPE__DMA_UNMAP, vb__dma_unmap__descriptor, vb__empty__descriptor),
    /* fds: count eventfds, plus the INTx resample eventfd; bounded by the channel's max_fds. */
    REQ_FDS(VB__DEV__TYPE__SET_IRQ_FDS, vb__dev__set_irq_fds__descriptor, IPC_FDS_MAX,
	    vb__empty__descriptor, 0),
    REQ(VB__DEV__TYPE__RESET, vb__empty__descriptor, vb__empty__descriptor),
    REQ(VB__DEV__TYPE__REMOVAL_ACK, vb__empty__descriptor, vb__empty__descriptor),
    EVENT(VB__DEV__TYPE__EVENT, vb__dev__event__descriptor),
};

const struct ipc_proto ipc_proto_device = {
    .name = "device",
    .id = IPC_PROTO_DEVICE,
    .version = VB__DEV__VERSION__VERSION_CURRENT,
    .defs = device_defs,
    .ndefs = ARRAY_SIZE(device_defs),
};
