/*
 * dev: the device handle's internals, shared by dev.c (connection, handshake, information,
 * events) and dev_io.c (config and region accesses, DMA, interrupts, reset).
 */
#ifndef VFB_DEV_H
#define VFB_DEV_H

#include "vfiobroker/client.h"

#include "conn.h"
#include "ring.h"

struct vfb_dev {
	struct vfb__conn conn;
	struct vfb_limits peer; /* the worker's, from HelloReply */
	char bdf[VFB_BDF_MAX];
	struct vfb__ring ring;		 /* made when offered; its page is NULL otherwise */
	bool ring_on;			 /* the worker took it and it has not failed since */
	char ring_why[VFB_RING_WHY_MAX]; /* why not, when not */
	/* HelloReply.broker_wait_ms: how much longer than the handle's timeout a request the
	 * worker may hold for the broker waits (0: none). */
	int broker_wait_ms;
};

/* Body bytes one data-carrying request or reply may hold on this connection. */
size_t vfb__dev_chunk(const struct vfb_dev *dev);

/* Most eventfds one SET_IRQ_FDS request may carry (the protocol's and the worker's limit). */
size_t vfb__dev_irq_batch(const struct vfb_dev *dev);

#endif
